"""Reading input files in every supported format, and what happens with bad files."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from shapely.geometry import Polygon, box

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.io import (
    load_alignment,
    load_demographics,
    load_reps,
    load_sales,
    load_units,
    read_table,
)
from territory.features.schemas import GeometryRepairWarning

COLUMNS = ColumnsConfig()
UNIT_IDS = ["01001", "01003", "01005"]
BOW_TIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])


def units_gdf(crs: str | None = "EPSG:4326") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"unit_id": UNIT_IDS, "name": ["Autauga", "Baldwin", "Barbour"]},
        geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
        crs=crs,
    )


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def raises(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("units.parquet", lambda gdf, path: gdf.to_parquet(path)),
        ("units.geojson", lambda gdf, path: gdf.to_file(path, driver="GeoJSON")),
        ("units.json", lambda gdf, path: gdf.to_file(path, driver="GeoJSON")),
        ("units.gpkg", lambda gdf, path: gdf.to_file(path, driver="GPKG")),
        ("units.shp", lambda gdf, path: gdf.to_file(path)),
    ],
)
def test_units_round_trip_in_spatial_formats(tmp_path, name, write):
    write(units_gdf(), tmp_path / name)
    out = load_units(tmp_path / name, COLUMNS)
    assert isinstance(out, gpd.GeoDataFrame)
    assert out["unit_id"].tolist() == UNIT_IDS
    assert out.crs.to_epsg() == 4326
    assert shapely.area(out.geometry.values).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_plain_parquet_is_read_with_pandas(tmp_path):
    path = tmp_path / "sales.parquet"
    pd.DataFrame(
        {
            "unit_id": ["01001", "01003"],
            "period": pd.to_datetime(["2024-01-05"] * 2),
            "sales": [1, 2],
        }
    ).to_parquet(path)
    frame = read_table(path)
    assert type(frame) is pd.DataFrame
    out = load_sales(path, UNIT_IDS, COLUMNS)
    assert out["period"].tolist() == [pd.Timestamp("2024-01-01")] * 2


def test_units_from_lat_lon_csv(tmp_path):
    path = write_csv(
        tmp_path / "units.csv", "unit_id,lat,lon\n01001,32.5,-86.6\n01003,30.7,-87.7\n"
    )
    out = load_units(path, COLUMNS)
    assert out["unit_id"].tolist() == ["01001", "01003"]
    assert out.crs.to_epsg() == 4326
    assert (out.geometry.x.tolist(), out.geometry.y.tolist()) == ([-86.6, -87.7], [32.5, 30.7])


def test_leading_zeros_survive_csv(tmp_path):
    path = write_csv(
        tmp_path / "alignment.csv", "unit_id,territory_id\n01001,007\n01003,007\n01005,010\n"
    )
    frame = read_table(path)
    assert frame["unit_id"].tolist() == UNIT_IDS
    out = load_alignment(path, UNIT_IDS, COLUMNS)
    assert out["unit_id"].tolist() == UNIT_IDS
    assert out["territory_id"].tolist() == ["007", "007", "010"]


def test_leading_zeros_survive_csv_with_custom_id_column(tmp_path):
    columns = ColumnsConfig(unit_col="fips")
    path = write_csv(tmp_path / "demo.csv", "fips,population\n01001,10\n01003,20\n")
    out = load_demographics(path, UNIT_IDS, columns)
    assert out["fips"].tolist() == ["01001", "01003"]
    assert out["population"].tolist() == [10.0, 20.0]


def test_semicolon_csv_is_read(tmp_path):
    path = write_csv(tmp_path / "demo.csv", "unit_id;population\n01001;10\n01003;20\n")
    assert read_table(path)["unit_id"].tolist() == ["01001", "01003"]


def test_load_sales_aggregates_daily_csv_rows(tmp_path):
    path = write_csv(
        tmp_path / "sales.csv",
        "unit_id,period,sales\n01001,2024-01-02,1\n01001,2024-01-30,2\n01003,2024-02-15,4\n",
    )
    out = load_sales(path, UNIT_IDS, COLUMNS, frequency="MS")
    assert out.to_dict("list") == {
        "unit_id": ["01001", "01003"],
        "period": [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")],
        "sales": [3.0, 4.0],
    }


def test_load_reps(tmp_path):
    path = write_csv(
        tmp_path / "reps.csv", "territory_id,rep_id,home_unit_id,capacity\nT1,R1,01001,1\nT2,R2,,\n"
    )
    out = load_reps(path, UNIT_IDS, ["T1", "T2"], COLUMNS)
    assert out["home_unit_id"].tolist() == ["01001", None]


# --------------------------------------------------------------------------- errors name file lines


def test_csv_errors_name_file_lines(tmp_path):
    path = write_csv(
        tmp_path / "sales.csv",
        "unit_id,period,sales\n01001,2024-01-01,1\n01003,2024-01-01,-3\n",
    )
    message = raises(load_sales, path, UNIT_IDS, COLUMNS)
    assert "sales.csv" in message
    assert "line 3 (unit_id=01003, period=2024-01-01, sales=-3)" in message


def test_parquet_errors_name_rows(tmp_path):
    path = tmp_path / "alignment.parquet"
    pd.DataFrame({"unit_id": ["01001", "01001"], "territory_id": ["A", "B"]}).to_parquet(path)
    message = raises(load_alignment, path, UNIT_IDS, COLUMNS)
    assert "row 1 (unit_id=01001, territory_id=A)" in message
    assert "row 2 (unit_id=01001, territory_id=B)" in message


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_shapefile_without_crs(tmp_path):
    units_gdf(crs=None).to_file(tmp_path / "units.shp")
    message = raises(load_units, tmp_path / "units.shp", COLUMNS)
    assert "units.shp" in message
    assert "no coordinate reference system" in message


def test_geopackage_bow_tie_is_repaired(tmp_path):
    gdf = units_gdf()
    gdf.loc[1, "geometry"] = BOW_TIE
    gdf.to_file(tmp_path / "units.gpkg", driver="GPKG")
    with pytest.warns(GeometryRepairWarning, match=r"units\.gpkg.*row 2 \(unit_id=01003\)"):
        out = load_units(tmp_path / "units.gpkg", COLUMNS)
    assert out.is_valid.all()


def test_unknown_unit_in_demographics_csv(tmp_path):
    path = write_csv(tmp_path / "demo.csv", "unit_id,population\n01001,1\n1003,2\n")
    message = raises(load_demographics, path, UNIT_IDS, COLUMNS)
    assert "line 3 (unit_id=1003)" in message
    assert "lost leading zeros" in message


# --------------------------------------------------------------------------- unreadable files


def test_missing_file(tmp_path):
    message = raises(read_table, tmp_path / "nope.csv")
    assert "nope.csv" in message
    assert "file not found" in message
    assert "what to do:" in message


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "sales.txt"
    path.write_bytes(b"unit_id sales")
    message = raises(read_table, path)
    assert "sales.txt" in message
    assert "unsupported file format '.txt'" in message
    assert ".csv, .parquet, .geojson, .json, .gpkg, .shp" in message


def test_a_spreadsheet_workbook_is_refused_with_how_to_save_it(tmp_path):
    path = tmp_path / "sales.xlsx"
    path.write_bytes(b"not really excel")
    message = raises(read_table, path)
    assert "sales.xlsx: the pipeline does not read spreadsheet workbooks" in message
    assert "save the sheet as CSV (UTF-8)" in message


def test_empty_csv_zero_bytes(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes(b"")
    message = raises(read_table, path)
    assert "sales.csv" in message
    assert "empty" in message


def test_header_only_csv(tmp_path):
    path = write_csv(tmp_path / "sales.csv", "unit_id,period,sales\n")
    message = raises(load_sales, path, UNIT_IDS, COLUMNS)
    assert "sales.csv" in message
    assert "no data rows" in message


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "sales.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    message = raises(read_table, path)
    assert "sales.parquet" in message
    assert "cannot read the file" in message
    assert "Traceback" not in message


def test_corrupt_geopackage(tmp_path):
    path = tmp_path / "units.gpkg"
    path.write_bytes(b"garbage" * 10)
    message = raises(load_units, path, COLUMNS)
    assert "units.gpkg" in message
    assert "cannot read the file" in message
