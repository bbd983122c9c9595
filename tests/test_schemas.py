"""Contract tests for features.schemas: every rule, with bad input, and the message it gives."""

from __future__ import annotations

import warnings

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Point, Polygon, box

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.schemas import (
    GeometryRepairWarning,
    validate_alignment,
    validate_demographics,
    validate_reps,
    validate_sales,
    validate_units,
)

COLUMNS = ColumnsConfig()
UNIT_IDS = ["01001", "01003", "01005"]
BOW_TIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])


def units_gdf(**overrides) -> gpd.GeoDataFrame:
    data = {
        "unit_id": UNIT_IDS,
        "name": ["Autauga", "Baldwin", "Barbour"],
        "region": ["01", "01", "02"],
        "geometry": [box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1)],
    }
    data.update(overrides)
    return gpd.GeoDataFrame(data, geometry="geometry", crs="EPSG:4326")


def sales_df(**overrides) -> pd.DataFrame:
    data = {
        "unit_id": ["01001", "01001", "01003", "01005", "01005"],
        "period": ["2024-01-01", "2024-02-01", "2024-01-01", "2024-01-01", "2024-02-01"],
        "sales": [10.0, 12.0, 5.0, 7.0, 8.0],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def raises(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- units


def test_units_valid_polygons_keep_optional_columns():
    out = validate_units(units_gdf(), "units.gpkg", COLUMNS)
    assert isinstance(out, gpd.GeoDataFrame)
    assert list(out["unit_id"]) == UNIT_IDS
    assert {"name", "region"} <= set(out.columns)
    assert out.crs.to_epsg() == 4326


def test_units_integer_ids_become_text():
    out = validate_units(units_gdf(unit_id=[1, 2, 3]), "units.gpkg", COLUMNS)
    assert list(out["unit_id"]) == ["1", "2", "3"]


def test_units_missing_id_column_lists_found_columns():
    message = raises(validate_units, units_gdf().drop(columns="unit_id"), "units.gpkg", COLUMNS)
    assert "units.gpkg" in message
    assert "column 'unit_id'" in message
    assert "columns found: name, region, geometry" in message


def test_units_duplicate_id():
    gdf = units_gdf(unit_id=["01001", "01003", "01001"])
    message = raises(validate_units, gdf, "units.gpkg", COLUMNS)
    assert "column 'unit_id'" in message
    assert "must be unique" in message
    assert "index 2 (unit_id=01001)" in message


def test_units_null_id():
    gdf = units_gdf(unit_id=["01001", None, "01005"])
    message = raises(validate_units, gdf, "units.gpkg", COLUMNS)
    assert "unit_id must not be empty" in message
    assert "index 1" in message


def test_units_bow_tie_is_repaired_with_a_warning():
    gdf = units_gdf(geometry=[box(0, 0, 1, 1), BOW_TIE, box(2, 0, 3, 1)])
    with pytest.warns(GeometryRepairWarning, match=r"units\.gpkg.*index 1 \(unit_id=01003\)"):
        out = validate_units(gdf, "units.gpkg", COLUMNS)
    repaired = out.geometry.iloc[1]
    assert repaired.is_valid
    assert repaired.geom_type in ("Polygon", "MultiPolygon")
    assert repaired.area == pytest.approx(0.5)


def test_units_unrepairable_geometry():
    line_like = Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])  # no area at all
    gdf = units_gdf(geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), line_like])
    message = raises(validate_units, gdf, "units.gpkg", COLUMNS)
    assert "column 'geometry'" in message
    assert "no area left after repair" in message
    assert "index 2 (unit_id=01005" in message


def test_units_empty_geometry_lists_rows():
    gdf = units_gdf(geometry=[box(0, 0, 1, 1), Polygon(), None])
    message = raises(validate_units, gdf, "units.gpkg", COLUMNS)
    assert "geometry must not be empty" in message
    assert "index 1 (unit_id=01003" in message
    assert "index 2 (unit_id=01005" in message


def test_units_missing_crs():
    gdf = units_gdf().set_crs(None, allow_override=True)
    message = raises(validate_units, gdf, "units.shp", COLUMNS)
    assert "units.shp" in message
    assert "column 'geometry'" in message
    assert "no coordinate reference system" in message
    assert "what to do:" in message


def test_units_lines_are_rejected():
    gdf = units_gdf(geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), Point(0, 0).buffer(1).exterior])
    message = raises(validate_units, gdf, "units.gpkg", COLUMNS)
    assert "Polygon, MultiPolygon or Point" in message
    assert "index 2" in message


def test_units_points_with_crs_are_accepted():
    gdf = units_gdf(geometry=[Point(0, 0), Point(1, 1), Point(2, 2)])
    assert validate_units(gdf, "units.geojson", COLUMNS).geom_type.eq("Point").all()


def test_units_from_lat_lon_build_wgs84_points():
    df = pd.DataFrame(
        {"unit_id": UNIT_IDS, "lat": [32.5, 30.7, 31.9], "lon": [-86.6, -87.7, -85.4]}
    )
    out = validate_units(df, "units.csv", COLUMNS)
    assert out.crs.to_epsg() == 4326
    assert out.geometry.iloc[0].equals(Point(-86.6, 32.5))


def test_units_lat_out_of_range():
    df = pd.DataFrame(
        {"unit_id": UNIT_IDS, "lat": [32.5, 95.0, 31.9], "lon": [-86.6, -87.7, -85.4]}
    )
    message = raises(validate_units, df, "units.csv", COLUMNS)
    assert "column 'lat'" in message
    assert "between -90 and 90" in message
    assert "index 1 (unit_id=01003, lat=95.0)" in message


def test_units_lat_not_numeric():
    df = pd.DataFrame({"unit_id": UNIT_IDS, "lat": ["32.5", "north", "31.9"], "lon": [1, 2, 3]})
    message = raises(validate_units, df, "units.csv", COLUMNS)
    assert "lat must be numeric" in message
    assert "lat=north" in message


def test_units_without_geometry_or_coordinates():
    df = pd.DataFrame({"unit_id": UNIT_IDS, "lat": [1.0, 2.0, 3.0]})
    message = raises(validate_units, df, "units.csv", COLUMNS)
    assert "column 'lon'" in message
    assert "columns found: unit_id, lat" in message


# --------------------------------------------------------------------------- demographics


def test_demographics_valid_with_year():
    df = pd.DataFrame(
        {
            "unit_id": ["01001", "01001", "01003"],
            "year": [2022, 2023, 2023],
            "population": [100, 110, 50],
        }
    )
    out = validate_demographics(df, "demo.csv", UNIT_IDS, COLUMNS)
    assert out["year"].dtype == "int64"
    assert out["population"].dtype == "float64"


def test_demographics_unknown_unit_ids():
    df = pd.DataFrame({"unit_id": ["01001", "99999", "01003"], "population": [1, 2, 3]})
    message = raises(validate_demographics, df, "demo.csv", UNIT_IDS, COLUMNS)
    assert "demo.csv" in message
    assert "column 'unit_id'" in message
    assert "must be a known unit" in message
    assert "index 1 (unit_id=99999)" in message


def test_demographics_unknown_ids_that_lost_leading_zeros_get_a_hint():
    df = pd.DataFrame({"unit_id": [1001, 1003], "population": [1, 2]})
    message = raises(validate_demographics, df, "demo.parquet", UNIT_IDS, COLUMNS)
    assert "lost leading zeros" in message


def test_demographics_string_in_numeric_column():
    df = pd.DataFrame({"unit_id": UNIT_IDS, "median_income": [52000, "n/a", 48000]})
    message = raises(validate_demographics, df, "demo.csv", UNIT_IDS, COLUMNS)
    assert "column 'median_income'" in message
    assert "must be numeric" in message
    assert "index 1 (unit_id=01003, median_income=n/a)" in message


def test_demographics_duplicate_unit_without_year():
    df = pd.DataFrame({"unit_id": ["01001", "01001"], "population": [1, 2]})
    message = raises(validate_demographics, df, "demo.csv", UNIT_IDS, COLUMNS)
    assert "must be unique" in message
    assert "index 0" in message and "index 1" in message


def test_demographics_missing_unit_column():
    df = pd.DataFrame({"county": UNIT_IDS, "population": [1, 2, 3]})
    message = raises(validate_demographics, df, "demo.csv", UNIT_IDS, COLUMNS)
    assert "column 'unit_id'" in message
    assert "columns found: county, population" in message


# --------------------------------------------------------------------------- sales


def test_sales_daily_rows_are_summed_to_month_start():
    df = pd.DataFrame(
        {
            "unit_id": ["01003", "01001", "01001", "01001", "01003"],
            "period": ["2024-01-20", "2024-01-03", "2024-01-17", "2024-02-29", "2024-01-02"],
            "sales": [1.0, 2.0, 3.0, 4.0, 5.0],
            "visits": [1, 1, 1, 1, None],
            "accounts": [10, 20, 40, 30, 10],
        }
    )
    out = validate_sales(df, "sales.csv", UNIT_IDS, COLUMNS, frequency="MS")
    assert list(out.columns) == ["unit_id", "period", "sales", "accounts", "visits"]
    assert out["unit_id"].tolist() == ["01001", "01001", "01003"]
    assert (
        out["period"].tolist()
        == pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01"]).tolist()
    )
    assert out["sales"].tolist() == [5.0, 4.0, 6.0]
    assert out["visits"].tolist() == [2.0, 1.0, 1.0]
    assert out["accounts"].tolist() == [30.0, 30.0, 10.0]
    assert out["period"].dtype == "datetime64[ns]"
    assert out["sales"].dtype == "float64"
    assert out["unit_id"].map(type).eq(str).all()


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [("W-MON", "2024-01-15"), ("QS", "2024-01-01"), ("MS", "2024-01-01")],
)
def test_sales_period_is_normalised_to_period_start(frequency, expected):
    df = pd.DataFrame({"unit_id": ["01001"], "period": ["2024-01-17"], "sales": [1.0]})
    out = validate_sales(df, "sales.csv", UNIT_IDS, COLUMNS, frequency=frequency)
    assert out["period"].iloc[0] == pd.Timestamp(expected)


def test_sales_unknown_frequency():
    message = raises(validate_sales, sales_df(), "sales.csv", UNIT_IDS, COLUMNS, frequency="D")
    assert "frequency" in message


def test_sales_missing_column():
    message = raises(validate_sales, sales_df().drop(columns="period"), "sales.csv", UNIT_IDS)
    assert "sales.csv" in message
    assert "column 'period'" in message
    assert "columns found: unit_id, sales" in message


def test_sales_duplicate_unit_period():
    df = sales_df(period=["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "2024-02-01"])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "column 'unit_id, period'" in message
    assert "must be unique" in message
    assert "index 0 (unit_id=01001, period=2024-01-01)" in message
    assert "index 1 (unit_id=01001, period=2024-01-01)" in message
    assert "index 2" not in message


def test_sales_negative():
    message = raises(
        validate_sales, sales_df(sales=[1.0, -3.0, 2.0, 1.0, 1.0]), "sales.csv", UNIT_IDS
    )
    assert "column 'sales'" in message
    assert "sales must be >= 0" in message
    assert "index 1 (unit_id=01001, period=2024-02-01, sales=-3.0)" in message


def test_sales_non_numeric():
    df = sales_df(sales=["1.0", "12", "ten", "7", "8"])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "column 'sales'" in message
    assert "must be numeric" in message
    assert "sales=ten" in message


def test_sales_negative_visits():
    df = sales_df(visits=[1, 2, -1, 0, None])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "visits must be >= 0" in message
    assert "index 2" in message


def test_sales_unknown_unit_ids():
    df = sales_df(unit_id=["01001", "XX", "01003", "YY", "01005"])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "column 'unit_id'" in message
    assert "must be a known unit" in message
    assert "index 1 (unit_id=XX" in message and "index 3 (unit_id=YY" in message


def test_sales_unparseable_dates():
    df = sales_df(period=["2024-01-01", "someday", "2024-01-01", "2024-13-45", "2024-02-01"])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "column 'period'" in message
    assert "must be a date" in message
    assert "index 1 (unit_id=01001, period=someday)" in message
    assert "period=2024-13-45" in message


def test_sales_custom_column_names():
    columns = ColumnsConfig(unit_col="fips", time_col="month", target_col="revenue")
    df = sales_df().rename(columns={"unit_id": "fips", "period": "month", "sales": "revenue"})
    out = validate_sales(df, "sales.csv", UNIT_IDS, columns)
    assert list(out.columns) == ["fips", "month", "revenue"]
    message = raises(validate_sales, df.assign(revenue=-1.0), "sales.csv", UNIT_IDS, columns)
    assert "column 'revenue'" in message


def test_error_shows_at_most_five_rows_and_the_total():
    df = sales_df(sales=[-1.0] * 5)
    df = pd.concat([df, df.assign(period="2024-03-01")], ignore_index=True)
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert message.count("index ") == 5
    assert "(and 5 more)" in message


# --------------------------------------------------------------------------- alignment and reps


def test_alignment_valid():
    df = pd.DataFrame({"unit_id": UNIT_IDS, "territory_id": [1, 1, 2]})
    out = validate_alignment(df, "alignment.csv", UNIT_IDS, COLUMNS)
    assert out["territory_id"].tolist() == ["1", "1", "2"]


def test_alignment_unit_assigned_twice():
    df = pd.DataFrame({"unit_id": ["01001", "01003", "01001"], "territory_id": ["T1", "T1", "T2"]})
    message = raises(validate_alignment, df, "alignment.csv", UNIT_IDS, COLUMNS)
    assert "alignment.csv" in message
    assert "column 'unit_id'" in message
    assert "assigned at most once" in message
    assert "index 2 (unit_id=01001, territory_id=T2)" in message


def test_alignment_unknown_unit():
    df = pd.DataFrame({"unit_id": ["01001", "77777"], "territory_id": ["T1", "T2"]})
    message = raises(validate_alignment, df, "alignment.csv", UNIT_IDS, COLUMNS)
    assert "must be a known unit" in message
    assert "unit_id=77777" in message


def test_reps_valid():
    df = pd.DataFrame(
        {
            "territory_id": ["T1", "T2"],
            "rep_id": ["R1", "R2"],
            "home_unit_id": ["01001", None],
            "capacity": [1.0, None],
        }
    )
    out = validate_reps(df, "reps.csv", UNIT_IDS, ["T1", "T2"], COLUMNS)
    assert out["home_unit_id"].tolist() == ["01001", None]


def test_reps_home_unit_unknown():
    df = pd.DataFrame(
        {"territory_id": ["T1", "T2"], "rep_id": ["R1", "R2"], "home_unit_id": ["01001", "5"]}
    )
    message = raises(validate_reps, df, "reps.csv", UNIT_IDS, None, COLUMNS)
    assert "reps.csv" in message
    assert "column 'home_unit_id'" in message
    assert "must be a known unit" in message
    assert "index 1 (rep_id=R2, territory_id=T2, home_unit_id=5)" in message


def test_reps_unknown_territory():
    df = pd.DataFrame({"territory_id": ["T1", "T9"], "rep_id": ["R1", "R2"]})
    message = raises(validate_reps, df, "reps.csv", UNIT_IDS, ["T1", "T2"], COLUMNS)
    assert "column 'territory_id'" in message
    assert "must be a known territory" in message
    assert "territory_id=T9" in message


def test_reps_capacity_must_be_positive():
    df = pd.DataFrame({"territory_id": ["T1", "T2"], "rep_id": ["R1", "R2"], "capacity": [0, 1]})
    message = raises(validate_reps, df, "reps.csv", UNIT_IDS, None, COLUMNS)
    assert "capacity must be > 0" in message
    assert "index 0" in message


def test_reps_missing_rep_column():
    df = pd.DataFrame({"territory_id": ["T1"]})
    message = raises(validate_reps, df, "reps.csv", UNIT_IDS, None, COLUMNS)
    assert "column 'rep_id'" in message
    assert "columns found: territory_id" in message


def test_valid_input_raises_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_units(units_gdf(), "units.gpkg", COLUMNS)
        validate_sales(sales_df(), "sales.csv", UNIT_IDS, COLUMNS)


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("2024-03-17", "2024-03-01"),
        ("2024-03", "2024-03-01"),
        ("2024-3-5", "2024-03-01"),
        ("2024-03-17T23:30:00Z", "2024-03-01"),
        ("2024-03-17 08:00", "2024-03-01"),
        ("20240317", "2024-03-01"),
        (20240317, "2024-03-01"),
    ],
)
def test_sales_iso_dates_are_read_without_a_format(period, expected):
    df = pd.DataFrame({"unit_id": ["01001"], "period": [period], "sales": [1.0]})
    out = validate_sales(df, "sales.csv", UNIT_IDS, COLUMNS)
    assert out["period"].iloc[0] == pd.Timestamp(expected)


def test_sales_dates_are_read_by_the_given_format():
    df = sales_df(period=["03/04/2024", "03/05/2024", "13/04/2024", "01/04/2024", "01/05/2024"])
    out = validate_sales(df, "sales.csv", UNIT_IDS, COLUMNS, date_format="%d/%m/%Y")
    assert out["period"].dt.month.tolist() == [4, 5, 4, 4, 5]  # day first, as configured


def test_sales_unknown_ids_are_listed_distinct_and_sorted():
    df = sales_df(unit_id=["ZZ", "XX", "01003", "XX", "01005"])
    message = raises(validate_sales, df, "sales.csv", UNIT_IDS, COLUMNS)
    assert "2 distinct ids are not in the units file: XX, ZZ" in message
