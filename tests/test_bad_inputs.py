"""Bad inputs a new user's files really have, each refused (or warned about) by ``validate``.

Issue #12 asks for at least 30 bad-input cases. Already covered elsewhere:
tests/test_io.py (missing, empty, header-only, corrupt and unsupported files,
CSV lines, a Shapefile without CRS, unknown units: 9 cases),
tests/test_schemas.py (duplicate, empty and unknown ids, bad geometry,
lat/lon, text in numbers, negative sales and drivers, unparseable dates,
reps: 27 cases) and tests/test_config.py (unknown key, wrong type, missing
file, bad YAML, bad as_of: 5 cases). This file adds the dates, the future,
the as-of date, non-finite values, config against data, per-table column
names, listed unknown ids, alignment and rep warnings and the memory
estimate; tests/test_bad_files.py takes the contract's own rules (ids,
columns, numbers, dates, duplicates, reps, gaps) through ``validate`` too.

Each case builds a small 3 x 3 grid of units with two years of monthly
sales, breaks one thing, runs ``territory validate`` and checks that the
message names the file, the column (or key), the rows and what to do, and
that nothing was written.
"""

from __future__ import annotations

import logging
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import box
from typer.testing import CliRunner

from territory.features.errors import InputError
from territory.pipelines import stages, validation
from territory.pipelines.cli import app
from territory.pipelines.config import load_config

UNITS = [f"0100{i}" for i in range(1, 10)]  # 3 x 3 grid, row by row
MONTHS = pd.date_range("2023-01-01", periods=24, freq="MS")


def _sales() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame([(u, m) for u in UNITS for m in MONTHS], columns=["unit_id", "period"])
    frame["sales"] = rng.uniform(10, 100, len(frame)).round(2)
    frame["visits"] = rng.integers(1, 5, len(frame))
    frame["period"] = frame["period"].dt.strftime("%Y-%m-%d")
    return frame


def _tables() -> dict[str, pd.DataFrame]:
    units = gpd.GeoDataFrame(
        {"unit_id": UNITS,
         "geometry": [box(x * 0.1, y * 0.1, x * 0.1 + 0.1, y * 0.1 + 0.1)
                      for y in range(3) for x in range(3)]},
        crs="EPSG:4326")
    return {
        "units": units,
        "sales": _sales(),
        "demographics": pd.DataFrame({"unit_id": UNITS, "population": np.arange(9) * 100.0 + 50}),
        "alignment": pd.DataFrame({"unit_id": UNITS,
                                   "territory_id": ["T1", "T2", "T3"] * 3}),  # columns of the grid
        "reps": pd.DataFrame({"territory_id": ["T1", "T2", "T3"], "rep_id": ["R1", "R2", "R3"],
                              "home_unit_id": ["01001", "01002", "01003"]}),
        "truth": pd.DataFrame({"unit_id": UNITS, "potential": np.ones(9)}),
    }


def write_case(folder, tables=None, data=None, **config) -> str:
    """Write the tables and a config into ``folder``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {**_tables(), **(tables or {})}
    paths = {}
    for name, frame in tables.items():
        if frame is None:
            continue
        if name == "units":
            path = folder / "units.geojson"
            frame.to_file(path, driver="GeoJSON")
        elif name == "truth":
            path = folder / "truth.parquet"
            frame.to_parquet(path, index=False)
        else:
            path = folder / f"{name}.csv"
            frame.to_csv(path, index=False)
        paths[name] = path.name
    raw = {"run_name": "bad", "workspace": "ws", "progress": "none",
           "data": {**paths, **(data or {})},
           "features": {"lags": [1, 2, 3], "rolling_windows": [3]},
           "territories": {"n_territories": 3}}
    for key, value in config.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _listing(folder) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def validate(config_path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", "--config", str(config_path)])
    return result.exit_code, result.output


def refused(tmp_path, *, tables=None, data=None, **config) -> str:
    """Run validate on a broken case; assert exit 2 and nothing written; return the message."""
    path = write_case(tmp_path, tables, data, **config)
    before = _listing(tmp_path)
    code, output = validate(path)
    assert code == 2, output
    assert "error:" in output and "what to do:" in output
    assert _listing(tmp_path) == before  # nothing written: no workspace, no outputs
    return " ".join(output.split())  # one line, whatever the terminal width


def with_sales(**columns) -> dict:
    sales = _sales()
    for name, change in columns.items():
        sales[name] = sales[name].astype(object)
        for position, value in change.items():
            sales.loc[position, name] = value
    return {"sales": sales}


def test_the_clean_case_validates_without_warnings(tmp_path):
    code, output = validate(write_case(tmp_path))
    assert code == 0, output
    assert "ok: 9 units, 216 sales rows" in output
    assert "estimated peak memory" in output and "warning" not in output


# --------------------------------------------------------------------------- dates


def _dated(fmt: str, months=MONTHS, day: int = 1) -> dict:
    sales = _sales()
    stamps = pd.to_datetime(sales["period"]) + pd.Timedelta(days=day - 1)
    sales["period"] = stamps.dt.strftime(fmt)
    return {"sales": sales}


def test_ambiguous_day_month_dates_need_a_format(tmp_path):
    message = refused(tmp_path, tables=_dated("%d/%m/%Y"))  # 01/02/2023: every field <= 12
    assert "sales.csv" in message and "column 'period'" in message
    assert "is ambiguous" in message
    assert "line 2 (unit_id=01001, period=01/01/2023)" in message
    assert "set data.date_format, e.g. '%d/%m/%Y' (day first) or '%m/%d/%Y'" in message


def test_day_first_dates_are_named_but_still_need_the_format(tmp_path):
    message = refused(tmp_path, tables=_dated("%d/%m/%Y", day=15))  # 15/01/2023
    assert "column 'period'" in message and "period=15/01/2023" in message
    assert "the dates look day-first; set data.date_format: '%d/%m/%Y'" in message


def test_month_first_dates_are_named(tmp_path):
    message = refused(tmp_path, tables=_dated("%m-%d-%Y", day=20))  # 01-20-2023
    assert "period=01-20-2023" in message
    assert "the dates look month-first; set data.date_format: '%m-%d-%Y'" in message


def test_mixed_iso_and_day_first_dates(tmp_path):
    message = refused(tmp_path, tables=with_sales(period={3: "15/04/2023", 4: "15/05/2023"}))
    assert "mixes date formats" in message
    assert "line 5 (unit_id=01001, period=15/04/2023)" in message
    assert "period=2023-01-01" in message  # an ISO row shown beside them
    assert "set data.date_format, e.g. '%d/%m/%Y'" in message


def test_mixed_day_first_and_month_first(tmp_path):
    sales = _dated("%d/%m/%Y")["sales"]
    sales.loc[0, "period"], sales.loc[1, "period"] = "13/01/2023", "01/13/2023"
    message = refused(tmp_path, tables={"sales": sales})
    assert "mixes day-first and month-first" in message
    assert "period=13/01/2023" in message and "period=01/13/2023" in message
    assert "set data.date_format" in message


def test_rows_that_do_not_match_the_date_format(tmp_path):
    tables = _dated("%d/%m/%Y")
    tables["sales"].loc[7, "period"] = "2023-08-01"
    message = refused(tmp_path, tables=tables, data={"date_format": "%d/%m/%Y"})
    assert "does not match data.date_format '%d/%m/%Y'" in message
    assert "line 9 (unit_id=01001, period=2023-08-01)" in message
    assert "fix those rows" in message


def test_text_month_dates_get_a_suggested_format(tmp_path):
    message = refused(tmp_path, tables=_dated("%b %Y"))  # "Jan 2023"
    assert "not in ISO format" in message and "period=Jan 2023" in message
    assert "set data.date_format: '%b %Y'" in message


def test_date_format_without_codes_is_a_config_error(tmp_path):
    message = refused(tmp_path, data={"date_format": "dd/mm/yyyy"})
    assert "config.yaml" in message and "key 'data.date_format'" in message
    assert "'%d/%m/%Y'" in message


def test_day_first_dates_with_their_format_keep_twelve_months(tmp_path):
    path = write_case(tmp_path, tables=_dated("%d/%m/%Y", day=3),
                      data={"date_format": "%d/%m/%Y"})
    inputs = stages.load_inputs(load_config(path))
    assert inputs.sales["period"].nunique() == 24  # never folded into January
    assert inputs.sales["period"].min() == pd.Timestamp("2023-01-01")


# --------------------------------------------------------------------------- future and as_of


def test_a_period_in_2099_is_refused_by_validate_and_run(tmp_path):
    tables = with_sales(period={5: "2099-01-01"})
    message = refused(tmp_path, tables=tables)
    assert "sales.csv" in message and "column 'period'" in message
    assert "must not be after today" in message
    assert "(unit_id=01001, period=2099-01-01)" in message
    assert "set as_of" in message
    with pytest.raises(InputError, match="2099-01-01"):  # the run stops at the same place
        stages.load_inputs(load_config(tmp_path / "config.yaml"))
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize(("as_of", "where"), [("2030-01-01", "after the last"),
                                              ("2019-06-01", "before the first")])
def test_as_of_outside_the_history(tmp_path, as_of, where):
    message = refused(tmp_path, as_of=as_of)
    assert "sales.csv" in message and "key 'as_of'" in message
    assert f"as_of {as_of} is {where} period" in message
    assert "runs from 2023-01-01 to 2024-12-01" in message
    assert "set as_of between 2023-01-01 and 2024-12-01" in message


def test_periods_after_a_configured_as_of_are_refused_by_validate(tmp_path):
    message = refused(tmp_path, as_of="2024-10-01")
    assert "must not be after as_of (2024-10-01)" in message
    assert "(unit_id=01001, period=2024-12-01)" in message
    assert "(and 13 more)" in message  # 9 units x 2 months
    # a run (and a backfill replaying earlier as-of dates) may still use the later periods
    stages.load_inputs(load_config(tmp_path / "config.yaml"))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(("table", "column", "value"), [
    ("sales", "sales", "inf"),
    ("sales", "sales", "-inf"),
    ("sales", "sales", "1e308"),
    ("sales", "visits", "1e16"),
    ("demographics", "population", "inf"),
    ("demographics", "population", "-1e308"),
])
def test_non_finite_and_absurd_values(tmp_path, table, column, value):
    frame = _tables()[table].astype({column: object})
    frame.loc[2, column] = value
    message = refused(tmp_path, tables={table: frame})
    assert f"{table}.csv" in message and f"column '{column}'" in message
    assert "must be a finite number no larger than 1e15 in size" in message
    assert f"line 4 (unit_id={frame.loc[2, 'unit_id']}" in message
    assert "blank the cell" in message


# --------------------------------------------------------------------------- config against data


def test_more_territories_than_units(tmp_path):
    message = refused(tmp_path, territories={"n_territories": 12})
    assert "units.geojson" in message and "key 'territories.n_territories'" in message
    assert "only 9 units" in message and "at most 9" in message


@pytest.mark.parametrize(("crs", "words"), [("EPSG:99999", "is not a coordinate reference"),
                                            ("EPSG:4326", "is in degrees")])
def test_bad_projected_crs(tmp_path, crs, words):
    message = refused(tmp_path, data={"projected_crs": crs})
    assert "key 'data.projected_crs'" in message and words in message
    assert "EPSG:5070" in message


# --------------------------------------------------------------------------- column names per table


def _fips_units() -> dict:
    return {"units": _tables()["units"].rename(columns={"unit_id": "FIPS"})}


def test_units_keyed_by_fips_work_with_table_columns(tmp_path):
    path = write_case(tmp_path, tables=_fips_units(),
                      data={"table_columns": {"units": {"unit_col": "FIPS"}}})
    code, output = validate(path)
    assert code == 0, output
    inputs = stages.load_inputs(load_config(path))
    assert inputs.units["unit_id"].tolist() == UNITS  # the contract name, for the stages


def test_errors_name_the_files_own_column(tmp_path):
    units = _fips_units()["units"]
    units.loc[4, "FIPS"] = "01001"
    message = refused(tmp_path, tables={"units": units},
                      data={"table_columns": {"units": {"unit_col": "FIPS"}}})
    assert "units.geojson" in message and "column 'FIPS'" in message
    assert "row 1 (FIPS=01001)" in message and "row 5 (FIPS=01001)" in message


def test_mapped_column_beside_a_column_of_the_contract_name(tmp_path):
    units = _fips_units()["units"]
    units["unit_id"] = "x"
    message = refused(tmp_path, tables={"units": units},
                      data={"table_columns": {"units": {"unit_col": "FIPS"}}})
    assert "column 'unit_id'" in message and "'FIPS' is mapped to 'unit_id'" in message
    assert "rename or drop" in message


def test_unknown_table_in_table_columns(tmp_path):
    message = refused(tmp_path, data={"table_columns": {"counties": {"unit_col": "FIPS"}}})
    assert "key 'data.table_columns" in message and "counties" in message


# --------------------------------------------------------------------------- unknown ids listed


def test_unknown_sales_ids_are_listed_with_their_count(tmp_path):
    extra = pd.DataFrame({"unit_id": [f"99{i:03d}" for i in range(25)], "period": "2023-01-01",
                          "sales": 1.0, "visits": 1})
    message = refused(tmp_path, tables={"sales": pd.concat([_sales(), extra])})
    assert "sales.csv" in message and "column 'unit_id'" in message
    assert "25 distinct ids are not in the units file (the first 20): 99000, 99001" in message
    assert "99019" in message and "99020" not in message
    assert "line 218 (unit_id=99000" in message


@pytest.mark.parametrize(("table", "column"), [("demographics", "unit_id"),
                                               ("alignment", "unit_id"),
                                               ("reps", "home_unit_id")])
def test_unknown_ids_in_other_tables(tmp_path, table, column):
    frame = _tables()[table]
    frame.loc[0, column] = "77777"
    message = refused(tmp_path, tables={table: frame})
    assert f"{table}.csv" in message and f"column '{column}'" in message
    assert "1 id is not in the units file: 77777" in message
    assert f"line 2 ({column}=77777" in message or "line 2 (rep_id=R1" in message


def test_unknown_ids_in_the_truth_file(tmp_path):
    truth = _tables()["truth"]
    truth.loc[[0, 1], "unit_id"] = ["X1", "X2"]
    message = refused(tmp_path, tables={"truth": truth})
    assert "truth.parquet" in message and "column 'unit_id'" in message
    assert "2 distinct ids are not in the units file: X1, X2" in message


# --------------------------------------------------------------------------- warnings


def _warnings(tmp_path, **tables):
    path = write_case(tmp_path, tables=tables)
    before = _listing(tmp_path)
    code, output = validate(path)
    assert code == 0, output
    assert "warning:" in output and "what to do:" in output
    assert _listing(tmp_path) == before  # a warning writes nothing either
    config = load_config(path)
    report = validation.validate_inputs(config, stages.load_inputs(config))
    return report.warnings, " ".join(output.split())


def test_a_current_territory_in_two_pieces_is_a_warning(tmp_path):
    alignment = _tables()["alignment"]
    alignment.loc[[0, 8], "territory_id"] = ["T3", "T1"]  # swap two far corners
    found, output = _warnings(tmp_path, alignment=alignment)
    assert len(found) == 1 and found[0].column == "territory_id"
    assert found[0].source.endswith("alignment.csv")
    assert "warning:" in output and "current territories are not contiguous" in output
    assert "T1 (2 pieces; a detached one holds 01009)" in output


def test_units_without_a_territory_are_a_warning(tmp_path):
    found, output = _warnings(tmp_path, alignment=_tables()["alignment"].iloc[:7])
    assert [w.rows for w in found] == [["01008", "01009"]]
    assert "2 units have no territory in the alignment" in output and "01008, 01009" in output


def test_territories_without_a_rep_are_a_warning(tmp_path):
    found, output = _warnings(tmp_path, reps=_tables()["reps"].iloc[:2])
    assert [w.rows for w in found] == [["T3"]]
    assert "reps.csv" in output and "1 territories of the alignment have no rep" in output


def test_reps_without_a_territory_are_a_warning_listing_them(tmp_path):
    reps = _tables()["reps"]
    reps.loc[len(reps)] = [None, "R9", "01005"]  # a new hire, not placed yet
    reps.loc[len(reps)] = ["", "R4", None]  # a blank is missing too
    found, output = _warnings(tmp_path, reps=reps)
    assert [(w.column, list(w.rows), w.n_rows) for w in found] == [
        ("territory_id", ["R4", "R9"], 2)]
    assert found[0].source.endswith("reps.csv")
    assert "2 reps have no territory (territory_id is blank)" in output
    assert "R4, R9" in output and "what to do: give each rep the territory" in output
    loaded = stages.load_inputs(load_config(write_case(tmp_path / "again",
                                                       tables={"reps": reps})))
    assert loaded.reps["territory_id"].isna().sum() == 2  # kept, with no territory


def test_a_rep_without_a_territory_beside_a_territory_without_a_rep(tmp_path):
    reps = _tables()["reps"]
    reps.loc[2, "territory_id"] = None  # R3 lost its territory: T3 has no rep now
    found, output = _warnings(tmp_path, reps=reps)
    assert [list(w.rows) for w in found] == [["R3"], ["T3"]]
    assert "1 reps have no territory" in output
    assert "1 territories of the alignment have no rep" in output


def test_reps_without_a_territory_and_without_an_alignment_are_a_warning(tmp_path):
    reps = _tables()["reps"].assign(territory_id=["T1", None, "T3"])
    found, output = _warnings(tmp_path, alignment=None, reps=reps)
    assert [list(w.rows) for w in found] == [["R2"]] and "reps.csv" in output


# --------------------------------------------------------------------------- memory


def test_a_run_that_cannot_fit_in_memory_stops_with_the_estimate(tmp_path, monkeypatch):
    path = write_case(tmp_path)
    monkeypatch.setattr(validation, "available_memory", lambda: 2**20)
    message = refused(tmp_path)
    assert re.search(r"the run needs about \d+\.\d GiB \(estimated from units x periods x "
                     r"features\), but only 0\.0 GiB", message)
    assert "key 'features'" in message and "fewer periods" in message
    with pytest.raises(InputError, match="the run needs about"):
        stages.load_inputs(load_config(path))


def test_memory_estimate_grows_with_the_panel(tmp_path):
    config = load_config(write_case(tmp_path))
    small = validation.estimate_memory(config, stages.load_inputs(config))
    assert (small.n_units, small.n_periods) == (9, 24)
    from territory.features.input_checks import estimate_peak_memory

    assert estimate_peak_memory(90, 24, small.n_features) > small.needed
    assert estimate_peak_memory(9, 48, small.n_features) > small.needed


def test_a_run_repeats_the_warnings_of_validate(tmp_path):
    """``territory run`` loads its inputs through the same warnings as ``validate``: a rep
    without a territory is logged once, naming the file, the rep and what to do."""
    from territory.pipelines import flows

    reps = _tables()["reps"]
    reps.loc[len(reps)] = [None, "R9", "01005"]
    config = load_config(write_case(tmp_path, tables={"reps": reps}))
    records = []
    inputs = _load_for_run(config, records)
    found = [r.getMessage() for r in records]
    assert len(found) == 1 and "reps.csv" in found[0] and "R9" in found[0]
    assert "1 reps have no territory" in found[0] and "what to do:" in found[0]
    assert inputs.reps["territory_id"].isna().sum() == 1
    assert flows.load_inputs_task.fn is stages.load_inputs_for_run  # what every flow loads


def test_a_run_without_findings_logs_no_warning(tmp_path):
    records = []
    _load_for_run(load_config(write_case(tmp_path)), records)
    assert records == []


def _load_for_run(config, records: list):
    """Prefect's logging set-up replaces the root handlers (caplog's among them) when it
    first loads, so the records are collected on the module logger itself."""
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    stages.log.addHandler(handler)
    try:
        return stages.load_inputs_for_run(config)
    finally:
        stages.log.removeHandler(handler)
