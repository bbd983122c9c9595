"""``territory init``: detection of ids, dates, target, frequency and CRS; the written config.

Detection is tested on hand-written frames; the written config on the demo's
own files (it must give back the demo's config and validate) and on the
demo's files renamed as a user's files would be (``FIPS`` in the units
file, ``fips`` and DD/MM/YYYY dates in the sales file).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import yaml
from shapely.geometry import box
from typer.testing import CliRunner

from territory.features import detect
from territory.features.errors import InputError
from territory.pipelines.cli import app
from territory.pipelines.config import DataConfig, load_config
from territory.pipelines.init_config import (
    SECTIONS,
    TEMPLATE,
    init_config,
    plan_config,
    render_config,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
DEMO_FILES = {"units": DEMO / "counties.parquet", "sales": DEMO / "sales.parquet",
              "demographics": DEMO / "demographics.parquet",
              "alignment": DEMO / "alignment.csv", "reps": DEMO / "reps.csv"}


def _units(ids, crs="EPSG:4326", x0=-95.0, y0=40.0, name="unit_id") -> gpd.GeoDataFrame:
    geoms = [box(x0 + i * 0.5, y0, x0 + i * 0.5 + 0.5, y0 + 0.5) for i in range(len(ids))]
    return gpd.GeoDataFrame({name: ids, "POLY_ID": range(1, len(ids) + 1)}, geometry=geoms,
                            crs=crs)


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict) and prefix + key in SECTIONS:
            out |= _keys(value, prefix + key + ".")
    return out


def _invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["init", *map(str, args)])
    return result.exit_code, result.output


# --- ids ----------------------------------------------------------------------------------


def test_unit_column_is_matched_by_values_across_names():
    units = _units(["01001", "01003", "01005", "01007"], name="FIPS")
    sales = pd.DataFrame({"fips": ["01001", "01003", "01005", "01001"],
                          "accounts": ["10", "12", "3", "4"]})  # CSV read as text
    ids = detect.detect_id_columns(units, sales, "u.shp", "s.csv")
    assert (ids.units, ids.sales.column) == ("FIPS", "fips")
    assert ids.sales.n_ids == 3 and ids.sales.n_matched == 3 and ids.sales.n_units == 4
    assert ids.sales.match_rate == 1.0
    assert "3 of 4 units appear" in ids.sales.evidence


def test_a_small_number_column_inside_numeric_ids_never_wins():
    # accounts 1..4 all fall inside POLY_ID 1..40, but cover a tenth of it: the Jaccard rank.
    units = _units([f"{i:05d}" for i in range(40)])
    sales = pd.DataFrame({"unit_id": [f"{i:05d}" for i in range(40)],
                          "accounts": [1, 2, 3, 4] * 10})
    assert detect.detect_id_columns(units, sales, "u", "s").sales.column == "unit_id"


def test_ids_written_as_whole_floats_match_text_ids():
    found = detect.detect_unit_column(pd.DataFrame({"id": [1001.0, 1003.0]}),
                                      pd.Series(["1001", "1003"]))
    assert found is not None and found.column == "id" and found.n_matched == 2


def test_no_unit_column_when_no_values_match():
    table = pd.DataFrame({"code": ["A", "B"], "n": [1, 2]})
    assert detect.detect_unit_column(table, pd.Series(["01001", "01003"])) is None


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values, evidence", [
    (pd.Series(pd.to_datetime(["2021-01-01", "2021-02-01"])), "stored as dates"),
    (pd.Series(["2021-01-31", "2021-02-28"]), "ISO dates"),
    (pd.Series(["2021-01", "2021-02"]), "ISO dates"),
    (pd.Series([1929, 1930, 2009]), "whole years (1929-2009)"),
    (pd.Series(["1929", "1930"]), "years as text"),
])
def test_iso_dates_and_years_need_no_format(values, evidence):
    found = detect.detect_date_format(values)
    assert found is not None and found.format is None and not found.confirm
    assert evidence in found.evidence


def test_day_first_is_decided_by_a_first_field_above_12():
    found = detect.detect_date_format(pd.Series(["01/02/2021", "13/02/2021", "01/03/2021"]))
    assert found.format == "%d/%m/%Y" and not found.confirm
    assert "'13/02/2021' has 13 in the first field" in found.evidence


def test_month_first_is_decided_by_a_second_field_above_12():
    found = detect.detect_date_format(pd.Series(["01.02.21", "02.28.21"]))
    assert found.format == "%m.%d.%y" and not found.confirm


def test_ambiguous_day_month_is_written_but_must_be_confirmed():
    found = detect.detect_date_format(pd.Series(["01/02/2021", "01/03/2021", "01/04/2021"]))
    assert found.confirm and "reads both ways" in found.evidence
    assert found.format == "%d/%m/%Y"  # the day holds still at the period start: a guess


@pytest.mark.parametrize("values", [
    pd.Series(["13/01/2021", "01/13/2021"]),  # both orders in one column
    pd.Series(["north", "south"]),
    pd.Series([3.5, 7.25]),
    pd.Series([12, 40, 7]),  # whole numbers, but not years
])
def test_values_that_are_not_one_date_column(values):
    assert detect.detect_date_format(values) is None


def test_time_column_prefers_time_names_and_reads_years():
    sales = pd.DataFrame({"unit": ["a", "b"], "label": ["2021-01", "2021-02"],
                          "year": [1990, 1991], "income": [1.0, 2.0]})
    found = detect.detect_time_column(sales, "s.csv", exclude=["unit"])
    assert found.column == "year"
    assert list(found.periods) == [pd.Timestamp("1990-01-01"), pd.Timestamp("1991-01-01")]


def test_a_number_column_is_a_year_only_when_its_name_says_so():
    sales = pd.DataFrame({"unit": ["a", "b"], "count": [1990, 1991], "when": ["2021-01-01",
                                                                              "2021-02-01"]})
    assert detect.detect_time_column(sales, "s.csv", exclude=["unit"]).column == "when"


# --- frequency ------------------------------------------------------------------------------


def test_integer_years_are_annual():
    periods = pd.DatetimeIndex(pd.to_datetime([str(y) for y in range(1929, 2010)]))
    freq = detect.detect_frequency(periods)
    assert (freq.code, freq.n_periods, freq.confirm) == ("YS", 81, False)
    assert freq.evidence == "81 periods, 1 year apart"


@pytest.mark.parametrize("dates, code", [
    (pd.date_range("2020-01-01", periods=12, freq="QS"), "QS"),
    (pd.date_range("2020-01-01", periods=24, freq="MS"), "MS"),
    (pd.date_range("2020-01-31", periods=24, freq="ME"), "MS"),  # month ends: 28 to 31 days
    (pd.date_range("2020-01-06", periods=60, freq="W-MON"), "W-MON"),
])
def test_frequency_from_the_modal_spacing(dates, code):
    assert detect.detect_frequency(dates).code == code


def test_irregular_steps_are_counted_not_hidden():
    dates = pd.date_range("2020-01-01", periods=24, freq="MS").delete([5, 6])
    freq = detect.detect_frequency(dates)
    assert freq.code == "MS" and "(1 irregular steps)" in freq.evidence


def test_daily_data_is_summed_to_months_and_flagged():
    freq = detect.detect_frequency(pd.date_range("2021-01-01", periods=90, freq="D"))
    assert freq.code == "MS" and freq.confirm


# --- target -------------------------------------------------------------------------------


def test_target_is_the_only_numeric_column():
    sales = pd.DataFrame({"id": ["a"], "t": ["2021-01-01"], "amount_usd": ["12.5"]})
    assert detect.detect_target(sales, "s", ["id", "t"]).column == "amount_usd"


def test_among_several_numbers_the_plausible_name_wins():
    sales = pd.DataFrame({"id": ["a"], "t": ["2021"], "visits": [3], "Revenue": [9.0]})
    target = detect.detect_target(sales, "s", ["id", "t"])
    assert target.column == "Revenue" and target.candidates == ("visits", "Revenue")
    assert not target.confirm
    assert detect.detect_workload(sales, ["id", "t", "Revenue"]) == "visits"


def test_several_numbers_without_a_plausible_name_ask_for_confirmation():
    sales = pd.DataFrame({"id": ["a"], "t": ["2021"], "x1": [3], "x2": [9.0]})
    target = detect.detect_target(sales, "s", ["id", "t"])
    assert target.column == "x1" and target.confirm and "x2" in target.evidence


def test_a_code_constant_within_each_unit_is_not_a_target():
    sales = pd.DataFrame({"Name": ["A", "A", "B", "B"], "year": ["1990", "1991"] * 2,
                          "STATE_FIPS": [1, 1, 4, 4], "x": [3.0, 4.0, 5.0, 6.0]})
    target = detect.detect_target(sales, "s", ["Name", "year"], unit="Name")
    assert target.column == "x" and target.candidates == ("x",)


def _annual(n_years: int) -> dict[str, pd.DataFrame]:
    units = _units(["01", "02", "03"], name="STATE_FIPS")
    sales = pd.DataFrame([{"state": u, "year": 1980 + t, "income": 100.0 + t + i}
                          for i, u in enumerate(["01", "02", "03"]) for t in range(n_years)])
    return {"units": units, "sales": sales}


def test_a_contract_name_taken_by_another_column_keeps_the_files_name():
    units = _units(["a", "b"], name="code")
    sales = pd.DataFrame({"code": ["a", "b"], "period": ["2021-01-01"] * 2,
                          "revenue": [1.0, 2.0], "sales": ["x", "y"]})  # 'sales' is text here
    plan = plan_config({"units": units, "sales": sales}, {"units": "u", "sales": "s"})
    assert plan.values["data.columns.target_col"] == "revenue"
    assert plan.values["data.columns.unit_col"] == "unit_id"
    assert plan.values["data.table_columns"] == {"units": {"unit_col": "code"},
                                                 "sales": {"unit_col": "code"}}


def test_an_annual_panel_is_written_in_years():
    plan = plan_config(_annual(40), {"units": "us48.shp", "sales": "income.csv"})
    text = render_config(plan, {"units": "us48.shp", "sales": "income.csv"}, "us")
    written = yaml.safe_load(text)
    assert written["features"]["frequency"] == "YS"
    assert written["features"]["seasonality"] is False
    assert written["features"]["lags"] == [1, 2, 3]
    assert written["features"]["spatial_lag_columns"] == ["sales_roll_mean_w3"]
    assert written["forecast"]["horizon"] == 3 and written["forecast"]["validation_periods"] == 3
    assert written["data"]["columns"] == {"unit_col": "unit_id", "time_col": "period",
                                          "target_col": "sales", "territory_col": "territory_id",
                                          "rep_col": "rep_id"}
    assert written["data"]["table_columns"] == {
        "units": {"unit_col": "STATE_FIPS"},
        "sales": {"unit_col": "state", "time_col": "year", "target_col": "income"}}
    assert written["territories"]["workload_column"] is None
    assert "# detected: 40 periods, 1 year apart" in text


def test_a_short_history_shortens_the_features_and_says_so():
    plan = plan_config(_annual(9), {"units": "u", "sales": "s"})
    assert plan.values["features.rolling_windows"] == [2]
    assert plan.values["forecast.backtest.windows"] == 0
    assert any("the history is short for YS" in line for line in plan.missing)


def test_no_numeric_column_is_an_error_naming_the_file():
    with pytest.raises(InputError, match="s.csv: no numeric column to forecast") as err:
        detect.detect_target(pd.DataFrame({"id": ["a"], "t": ["2021"]}), "s.csv", ["id", "t"])
    assert "what to do" in str(err.value)


# --- CRS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("x0, y0, code, confirm", [
    (-95.0, 40.0, "EPSG:5070", False),     # contiguous US
    (5.0, 48.0, "EPSG:3035", False),       # Europe
    (150.0, -34.0, "EPSG:32756", False),   # Sydney: UTM 56 south
])
def test_projected_crs_for_the_extent(x0, y0, code, confirm):
    choice = detect.detect_crs(_units(["a", "b"], x0=x0, y0=y0))
    assert (choice.source, choice.projected, choice.confirm) == ("EPSG:4326", code, confirm)


def test_a_wide_extent_outside_known_regions_is_flagged():
    units = _units([str(i) for i in range(40)], x0=100.0, y0=-30.0)  # 20 degrees wide
    choice = detect.detect_crs(units)
    assert choice.projected.startswith("EPSG:327") and choice.confirm


def test_a_projected_file_keeps_its_crs_and_a_missing_crs_is_reported():
    projected = _units(["a", "b"]).to_crs("EPSG:5070")
    assert detect.detect_crs(projected).projected == "EPSG:5070"
    bare = _units(["a", "b"]).set_crs(None, allow_override=True)
    choice = detect.detect_crs(bare)
    assert choice.source is None and choice.confirm and "longitude/latitude" in choice.evidence
    assert choice.projected == "EPSG:5070"  # if they are lon/lat, as the evidence says


def test_lat_lon_tables_are_read_as_wgs84():
    units = pd.DataFrame({"unit_id": ["a", "b"], "lat": [40.0, 41.0], "lon": [-95.0, -94.0]})
    assert detect.detect_crs(units).projected == "EPSG:5070"


# --- the written config on the demo's files -----------------------------------------------


def test_init_on_the_demo_files_gives_back_the_demo_config_and_it_validates(tmp_path):
    out = tmp_path / "mine.yaml"
    code, output = _invoke(*[a for k, p in DEMO_FILES.items() for a in (f"--{k}", p)],
                           "--out", out)
    assert code == 0, output
    assert "frequency MS: 60 periods, 1 month apart" in output
    assert "unit id unit_id: units.unit_id <-> sales.unit_id: 3,085 of 3,085" in output
    written = yaml.safe_load(out.read_text())
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    assert _keys(demo) <= _keys(written)  # every key the demo has is there
    mine = load_config(out).model_dump(mode="json")
    ref = load_config(ROOT / "configs" / "demo.yaml").model_dump(mode="json")
    for key in ("run_name", "workspace", "tracking"):
        mine.pop(key), ref.pop(key)
    ref["data"]["truth"] = None  # evaluation only: init never names it
    assert mine == ref
    assert "# detected: units.unit_id <-> sales.unit_id: 3,085 of 3,085" in out.read_text()
    result = CliRunner().invoke(app, ["validate", "--config", str(out)])
    assert result.exit_code == 0, result.output


@pytest.fixture()
def renamed(demo_slice_dir, tmp_path) -> dict[str, Path]:
    """The demo slice as a user's files: FIPS / fips / county ids, DD/MM/YYYY month ends."""
    units = gpd.read_parquet(demo_slice_dir / "counties.parquet").rename(
        columns={"unit_id": "FIPS"})
    units.to_file(tmp_path / "counties.shp")
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet").rename(columns={"unit_id": "fips"})
    sales["period"] = (sales["period"] + pd.offsets.MonthEnd(0)).dt.strftime("%d/%m/%Y")
    sales.to_csv(tmp_path / "sales.csv", index=False)
    alignment = pd.read_csv(demo_slice_dir / "alignment.csv", dtype=str)
    alignment.rename(columns={"unit_id": "county"}).to_csv(tmp_path / "align.csv", index=False)
    return {"units": tmp_path / "counties.shp", "sales": tmp_path / "sales.csv",
            "alignment": tmp_path / "align.csv"}


def test_init_on_renamed_files_maps_each_table_and_reads_day_first(renamed, tmp_path):
    out = tmp_path / "cfg" / "user.yaml"
    plan, path = init_config(renamed, out)
    found = {item.key: item for item in plan.items}
    assert found["data.columns.unit_col"].value == "fips"
    assert "units.FIPS <-> sales.fips: 192 of 192 distinct ids (100%)" in \
        found["data.columns.unit_col"].evidence
    assert found["data.date_format"].value == "%d/%m/%Y" and not found["data.date_format"].confirm
    assert found["features.frequency"].value == "MS"
    n_territories = pd.read_csv(renamed["alignment"])["territory_id"].nunique()
    assert found["territories.n_territories"].value == n_territories
    written = yaml.safe_load(path.read_text())
    assert written["data"]["columns"]["unit_col"] == "unit_id"  # the contract inside the run
    assert written["data"]["date_format"] == "%d/%m/%Y"
    assert written["data"]["table_columns"] == {"units": {"unit_col": "FIPS"},
                                                "sales": {"unit_col": "fips"},
                                                "alignment": {"unit_col": "county"}}
    assert written["data"]["units"] == "../counties.shp"  # relative to the config's folder
    assert plan.missing == []
    result = CliRunner().invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output


def test_ambiguous_dates_are_written_and_listed_as_to_confirm(demo_slice_dir, tmp_path):
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales["period"] = sales["period"].dt.strftime("%d/%m/%Y")  # day 01: never above 12
    sales.to_csv(tmp_path / "sales.csv", index=False)
    code, output = _invoke("--units", demo_slice_dir / "counties.parquet", "--sales",
                           tmp_path / "sales.csv", "--out", tmp_path / "c.yaml")
    assert code == 0, output
    text = (tmp_path / "c.yaml").read_text()
    assert "date_format: '%d/%m/%Y'" in text and "# CONFIRM: sales.period: ambiguous" in text
    assert "missing or to confirm: confirm data.date_format" in " ".join(output.split())


def test_units_without_sales_are_reported_as_gaps(demo_slice_dir, tmp_path):
    units = gpd.read_parquet(demo_slice_dir / "counties.parquet")
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales = sales[sales["unit_id"] != units["unit_id"].iloc[0]]
    plan = plan_config({"units": units, "sales": sales}, {"units": "u", "sales": "s"})
    assert any("1 of 192 units have no sales history" in line for line in plan.missing)
    text = render_config(plan, {"units": "u", "sales": "s"}, "x")
    if "gaps" in DataConfig.model_fields:
        assert yaml.safe_load(text)["data"]["gaps"] == "exclude"


def test_every_template_key_is_written_with_a_comment(demo_slice_dir):
    tables = {"units": gpd.read_parquet(demo_slice_dir / "counties.parquet"),
              "sales": pd.read_parquet(demo_slice_dir / "sales.parquet")}
    text = render_config(plan_config(tables, {"units": "u", "sales": "s"}),
                         {"units": "u", "sales": "s"}, "x")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith(("#", "-")):
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), line
    assert _keys(yaml.safe_load(text)) >= {k for k, _, _ in TEMPLATE} - {
        "data.date_format", "data.table_columns", "data.gaps"}


# --- overwriting and errors ----------------------------------------------------------------


def test_an_existing_config_is_kept_unless_force(demo_slice_dir, tmp_path):
    out = tmp_path / "c.yaml"
    out.write_text("mine: true\n")
    args = ("--units", demo_slice_dir / "counties.parquet", "--sales",
            demo_slice_dir / "sales.parquet", "--out", out)
    code, output = _invoke(*args)
    assert code == 2 and f"{out}" in output and "--force" in output
    assert out.read_text() == "mine: true\n"
    code, output = _invoke(*args, "--force")
    assert code == 0, output
    assert yaml.safe_load(out.read_text())["data"]["columns"]["unit_col"] == "unit_id"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no temporary left


def _refused(tmp_path, *args) -> str:
    out = tmp_path / "out.yaml"
    before = set(tmp_path.rglob("*"))
    code, output = _invoke(*args, "--out", out)
    assert code == 2, output
    assert "error:" in output and "what to do:" in output
    assert set(tmp_path.rglob("*")) == before  # nothing written
    return " ".join(output.split())


def test_error_when_the_units_file_is_missing(tmp_path, demo_slice_dir):
    message = _refused(tmp_path, "--units", tmp_path / "nope.shp", "--sales",
                       demo_slice_dir / "sales.parquet")
    assert f"{tmp_path / 'nope.shp'}, key '--units': file not found" in message
    assert "pass --units with the path of your units file" in message


def test_error_when_no_units_file_is_given(tmp_path, demo_slice_dir):
    message = _refused(tmp_path, "--sales", demo_slice_dir / "sales.parquet")
    assert "key '--units': no units file given" in message and "Shapefile" in message


def test_error_when_no_column_is_shared(tmp_path, demo_slice_dir):
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales["unit_id"] = "X" + sales["unit_id"]
    sales.to_csv(tmp_path / "sales.csv", index=False)
    message = _refused(tmp_path, "--units", demo_slice_dir / "counties.parquet",
                       "--sales", tmp_path / "sales.csv")
    assert f"{tmp_path / 'sales.csv'}: no column shares its values" in message
    assert str(demo_slice_dir / "counties.parquet") in message
    assert "offending rows: first row: unit_id=X" in message
    assert "give both files the same unit id" in message


def test_error_when_no_column_is_a_date(tmp_path, demo_slice_dir):
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales["period"] = "month " + sales["period"].dt.month.astype(str)
    sales.to_csv(tmp_path / "sales.csv", index=False)
    message = _refused(tmp_path, "--units", demo_slice_dir / "counties.parquet",
                       "--sales", tmp_path / "sales.csv")
    assert f"{tmp_path / 'sales.csv'}: no column parses as dates or years" in message
    assert "offending rows: line 2: period=month 1" in message
    assert "add a period column with ISO dates" in message


def test_error_for_an_excel_workbook_says_to_save_csv(tmp_path, demo_slice_dir):
    pd.DataFrame({"a": [1]}).to_excel(tmp_path / "sales.xlsx", index=False)
    message = _refused(tmp_path, "--units", demo_slice_dir / "counties.parquet",
                       "--sales", tmp_path / "sales.xlsx")
    assert "key '--sales': the pipeline does not read Excel" in message
    assert "save the sheet as CSV" in message


def test_error_when_an_optional_file_matches_no_unit(tmp_path, demo_slice_dir):
    demo = pd.read_parquet(demo_slice_dir / "demographics.parquet")
    demo["unit_id"] = "Z" + demo["unit_id"]
    demo.to_csv(tmp_path / "demo.csv", index=False)
    message = _refused(tmp_path, "--units", demo_slice_dir / "counties.parquet", "--sales",
                       demo_slice_dir / "sales.parquet", "--demographics", tmp_path / "demo.csv")
    assert f"{tmp_path / 'demo.csv'}, key '--demographics': no column matches the unit ids" \
        in message
    assert "offending rows: columns: unit_id, population" in message
    assert "or leave it out" in message
