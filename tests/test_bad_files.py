"""Every bad file of the contract, refused by ``territory validate``, one table of cases.

``tests/test_bad_inputs.py`` covers what issue #12 found (dates, the future,
as-of, non-finite values, config against data, per-table column names,
listed unknown ids, warnings, memory). This table takes the contract's own
rules (``features/_pandera_schemas.py``, ``features/io.py``) through the
same command a user runs: each case breaks one thing in the 3 x 3 grid of
``test_bad_inputs``, and the message must name the file, the column (or
config key) and the rows, say what to do, and leave the folder as it was
(``refused`` compares the listing before and after).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from tests.test_bad_inputs import UNITS, _sales, _tables, refused


def _changed(table: str, change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> dict:
    frame = _tables()[table].copy()
    out = change(frame)
    return {table: frame if out is None else out}


def _cell(table: str, column: str, position: int, value) -> dict:
    def change(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[position, column] = value
    return _changed(table, change)


def _yearly_sales() -> dict:
    sales = pd.DataFrame([(u, f"{y}-01-01") for u in UNITS for y in range(2019, 2024)],
                         columns=["unit_id", "period"])
    return {"sales": sales.assign(sales=10.0)}


def _twice(table: str, extra: dict) -> dict:
    return _changed(table, lambda f: pd.concat([f, pd.DataFrame(extra)], ignore_index=True))


#: id: (tables, data, config, fragments the one-line message must hold: file, column or key,
#: rows, what to do)
CASES = {
    "units: duplicate id": (
        _cell("units", "unit_id", 4, "01001"), {}, {},
        ["units.geojson, column 'unit_id'", "row 1 (unit_id=01001), row 5 (unit_id=01001)",
         "keep one row per unit_id"]),
    "units: blank id": (
        _cell("units", "unit_id", 4, None), {}, {},
        ["units.geojson, column 'unit_id'", "must not be empty", "row 5 (unit_id=<empty>)",
         "fill in the missing values"]),
    "units: no id column": (
        _changed("units", lambda f: f.rename(columns={"unit_id": "id"})), {}, {},
        ["units.geojson, column 'unit_id'", "columns found: id, geometry", "add or rename"]),
    "units: file not found": (
        {}, {"units": "counties.geojson"}, {},
        ["config.yaml, key 'data.units': file not found", "counties.geojson",
         "relative paths are resolved from the config file's folder"]),
    "sales: no sales column": (
        _changed("sales", lambda f: f.rename(columns={"sales": "amount"})), {}, {},
        ["sales.csv, column 'sales'", "columns found: unit_id, period, amount, visits",
         "set its name in the columns config"]),
    "sales: negative": (
        _cell("sales", "sales", 3, -5.0), {}, {},
        ["sales.csv, column 'sales': sales must be >= 0",
         "line 5 (unit_id=01001, period=2023-04-01, sales=-5.0)", "record returns"]),
    "sales: decimal comma": (
        _cell("sales", "sales", 3, "12,5"), {}, {},
        ["sales.csv, column 'sales': sales must be numeric", "sales=12,5)",
         "thousands separators"]),
    "sales: blank value": (
        _cell("sales", "sales", 3, None), {}, {},
        ["sales.csv, column 'sales': sales must not be empty", "sales=<empty>)",
         "drop the row if there was no sale"]),
    "sales: month 13": (
        _cell("sales", "period", 3, "2023-13-01"), {}, {},
        ["sales.csv, column 'period'", "line 5 (unit_id=01001, period=2023-13-01)",
         "write dates as YYYY-MM-DD"]),
    "sales: same unit and period twice": (
        _twice("sales", {"unit_id": ["01001"], "period": ["2023-01-01"], "sales": [1.0],
                         "visits": [1]}), {}, {},
        ["sales.csv, column 'unit_id, period'", "line 2 (unit_id=01001, period=2023-01-01), "
         "line 218 (unit_id=01001, period=2023-01-01)", "remove the duplicate rows"]),
    "sales: negative visits": (
        _cell("sales", "visits", 3, -1), {}, {},
        ["sales.csv, column 'visits': visits must be >= 0", "visits=-1)", "must not be negative"]),
    "sales: ids that lost leading zeros": (
        _cell("sales", "unit_id", 3, "1001"), {}, {},
        ["sales.csv, column 'unit_id'", "1 id is not in the units file: 1001",
         "line 5 (unit_id=1001", "lost leading zeros"]),
    "sales: yearly dates under a monthly frequency": (
        _yearly_sales(), {}, {},
        ["sales.csv, column 'period'", "5 periods, 1 year apart", "features.frequency: YS"]),
    "sales: header only": (
        _changed("sales", lambda f: f.iloc[:0]), {}, {},
        ["sales.csv: file has no data rows", "export the table again"]),
    "sales: a spreadsheet workbook": (
        {}, {"sales": "sales.xlsx"}, {},
        ["sales.xlsx: the pipeline does not read spreadsheet workbooks", "save the sheet as CSV"]),
    "demographics: thousands separator": (
        _cell("demographics", "population", 3, "1,234"), {}, {},
        ["demographics.csv, column 'population'", "line 5 (unit_id=01004, population=1,234)",
         "fix or blank the text values"]),
    "demographics: a unit twice": (
        _twice("demographics", {"unit_id": ["01001"], "population": [1.0]}), {}, {},
        ["demographics.csv, column 'unit_id'", "line 2 (unit_id=01001), line 11 (unit_id=01001)",
         "keep one row per (unit_id)"]),
    "demographics: a year that is not whole": (
        _changed("demographics", lambda f: f.assign(year=[2020.5] + [2020.0] * 8)), {}, {},
        ["demographics.csv, column 'year'", "line 2 (unit_id=01001, year=2020.5)",
         "give years as e.g. 2023"]),
    "demographics: a unit and year twice": (
        _changed("demographics", lambda f: pd.concat(
            [f.assign(year=2020), f.iloc[[0]].assign(year=2020)], ignore_index=True)), {}, {},
        ["demographics.csv, column 'unit_id, year'", "line 11 (unit_id=01001, year=2020)",
         "keep one row per (unit_id, year)"]),
    "alignment: a unit assigned twice": (
        _twice("alignment", {"unit_id": ["01001"], "territory_id": ["T2"]}), {}, {},
        ["alignment.csv, column 'unit_id'", "line 11 (unit_id=01001, territory_id=T2)",
         "keep one territory per unit"]),
    "alignment: blank territory": (
        _cell("alignment", "territory_id", 4, None), {}, {},
        ["alignment.csv, column 'territory_id'", "line 6 (unit_id=01005, territory_id=<empty>)",
         "fill in the missing values"]),
    "alignment: no territory column": (
        _changed("alignment", lambda f: f.rename(columns={"territory_id": "terr"})), {}, {},
        ["alignment.csv, column 'territory_id'", "columns found: unit_id, terr",
         "add or rename"]),
    "reps: unknown territory": (
        _cell("reps", "territory_id", 1, "T9"), {}, {},
        ["reps.csv, column 'territory_id'", "1 id is not in the alignment file: T9",
         "line 3 (rep_id=R2, territory_id=T9)", "use territory ids that exist"]),
    "reps: capacity 0": (
        _changed("reps", lambda f: f.assign(capacity=[0, 1, 1])), {}, {},
        ["reps.csv, column 'capacity': capacity must be > 0", "line 2 (rep_id=R1",
         "a positive number"]),
    "reps: capacity as text": (
        _changed("reps", lambda f: f.assign(capacity=["lots", 1, 1])), {}, {},
        ["reps.csv, column 'capacity': capacity must be numeric", "capacity=lots)",
         "remove text"]),
    "reps: blank rep id": (
        _cell("reps", "rep_id", 1, None), {}, {},
        ["reps.csv, column 'rep_id': rep_id must not be empty",
         "line 3 (rep_id=<empty>, territory_id=T2)", "fill in the missing values"]),
    "reps: no rep column": (
        _changed("reps", lambda f: f.drop(columns=["rep_id"])), {}, {},
        ["reps.csv, column 'rep_id'", "columns found: territory_id, home_unit_id",
         "add or rename"]),
    "config: auto K without a capacity": (
        {}, {}, {"territories": {"n_territories": "auto"}},
        ["reps.csv, column 'capacity'", "n_territories is auto, but no capacity is known",
         "set territories.rep_capacity"]),
    "config: name columns the units file lacks": (
        {}, {"name_columns": ["county"]}, {},
        ["units.geojson, column 'county', key 'data.name_columns'",
         "list columns of the units file (unit_id, geometry)"]),
    "gaps: a unit with no sales history": (
        _changed("sales", lambda f: f[f["unit_id"] != "01009"]), {}, {},
        ["sales.csv, column 'unit_id'", "1 of 9 units have no sales history",
         "offending rows: 01009", "set data.gaps: exclude"]),
    "gaps: a unit with no demographics": (
        _changed("demographics", lambda f: f[f["unit_id"] != "01009"]), {}, {},
        ["demographics.csv, column 'unit_id'", "1 of 9 units have no demographics",
         "offending rows: 01009", "or estimate"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_refused_naming_file_column_rows_and_writing_nothing(tmp_path, case):
    tables, data, config, fragments = CASES[case]
    if "sales" in data:  # a real workbook beside the config, under the name it gives
        tmp_path.mkdir(parents=True, exist_ok=True)
        _sales().to_excel(tmp_path / data["sales"], index=False)
    message = refused(tmp_path, tables=tables, data=data, **config)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"{case}: {missing} not in {message}"
