"""Input data contracts: pandera schemas and the functions that apply them.

Each input table (units, demographics, sales, alignment, reps) has a schema
built from a :class:`~features.config.ColumnsConfig`, so column names are
configurable. Validation is lazy; the first broken rule is turned into one
:class:`~features.errors.InputError` that names the file, the column, up to
five offending rows and the rule.

Validation runs in two stages. The *parse* stage casts identifiers to text,
parses dates and coerces numeric columns, so a rule check never sees a value
of the wrong type. The *rule* stage checks nulls, known ids, ranges and
uniqueness on the parsed frame.

Rows are named after where they came from. :func:`territory.features.io.read_table`
records the number of the first data row in ``DataFrame.attrs`` (2 for CSV,
where line 1 is the header; 1 for other formats), so messages say
``line 8`` (CSV) or ``row 7``; a frame built in memory is described by its
index labels (``index 6``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import geopandas as gpd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import shapely
from pandera.errors import SchemaErrors

from territory.features.config import ColumnsConfig
from territory.features.errors import MAX_ROWS_SHOWN, InputError

#: ``DataFrame.attrs`` key holding the number of the first data row in its file.
FIRST_ROW_ATTR = "territory_first_row"
#: ``DataFrame.attrs`` key naming rows in messages: ``"line"`` (CSV) or ``"row"``.
FIRST_ROW_KIND_ATTR = "territory_row_kind"

LAT_COL, LON_COL = "lat", "lon"
GEOMETRY_COL = "geometry"
UNIT_TEXT_COLS = ("name", "region")
SALES_DRIVER_SUM_COLS = ("orders", "visits")
SALES_DRIVER_MEAN_COLS = ("accounts",)
HOME_UNIT_COL = "home_unit_id"
CAPACITY_COL = "capacity"

#: Pandas period alias used to find the start of each configured frequency.
PERIOD_ALIAS = {"MS": "M", "W-MON": "W-SUN", "QS": "Q"}

_POLYGONAL = ("Polygon", "MultiPolygon")
_MAX_VALUE_CHARS = 40


class GeometryRepairWarning(UserWarning):
    """Invalid unit geometry was repaired with ``shapely.make_valid``."""


@dataclass(frozen=True)
class _Rule:
    """A rule in words and what the user should do when it is broken."""

    text: str
    hint: str


# --------------------------------------------------------------------------- #
# Row descriptions and error construction
# --------------------------------------------------------------------------- #


def _format_value(value: Any) -> str:
    """Short, readable rendering of one cell."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return "<empty>"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, shapely.Geometry):
        return "EMPTY" if value.is_empty else value.geom_type
    text = str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _row_name(frame: pd.DataFrame, position: int) -> str:
    """Name a row by file line (CSV), 1-based file row, or index label."""
    first = frame.attrs.get(FIRST_ROW_ATTR)
    if first is None:
        return f"index {frame.index[position]}"
    kind = frame.attrs.get(FIRST_ROW_KIND_ATTR, "row")
    return f"{kind} {position + int(first)}"


def _describe_rows(
    frame: pd.DataFrame, positions: Sequence[int], columns: Sequence[str]
) -> list[str]:
    """``row 7 (unit_id=01001, sales=-3.0)`` for the first few offending rows."""
    shown_cols = [c for c in dict.fromkeys(columns) if c in frame.columns]
    described = []
    for pos in list(positions)[:MAX_ROWS_SHOWN]:
        values = ", ".join(f"{c}={_format_value(frame[c].iloc[pos])}" for c in shown_cols)
        name = _row_name(frame, pos)
        described.append(f"{name} ({values})" if values else name)
    return described


def _raise_rows(
    source: str,
    frame: pd.DataFrame,
    positions: Iterable[int],
    column: str,
    rule: _Rule,
    context: Sequence[str] = (),
) -> NoReturn:
    """Raise one :class:`InputError` for the rows at ``positions`` of ``frame``."""
    positions = sorted({int(p) for p in positions})
    rows = _describe_rows(frame, positions, [*context, *column.split(", ")])
    raise InputError(
        source, rule.text, column=column, rows=rows, n_rows=len(positions), hint=rule.hint
    )


def _require_columns(frame: pd.DataFrame, source: str, required: Sequence[str], table: str) -> None:
    """Raise when a required column is missing, listing the columns found."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            source,
            f"the {table} table needs column '{missing[0]}' (columns found: {_found(frame)})",
            column=missing[0],
            hint=(
                f"add or rename the column, or set its name in the columns config; "
                f"required columns: {', '.join(required)}"
            ),
        )


def _found(frame: pd.DataFrame) -> str:
    return ", ".join(map(str, frame.columns)) or "none"


def _as_plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop the geometry of a tabular input that happens to come from a spatial file."""
    if isinstance(frame, gpd.GeoDataFrame):
        geometry_cols = [
            c for c in frame.columns if isinstance(frame[c].dtype, gpd.array.GeometryDtype)
        ]
        frame = pd.DataFrame(frame.drop(columns=geometry_cols))
    return frame


def _active_geometry_name(frame: pd.DataFrame) -> str | None:
    """Name of the active geometry column, or ``None`` for a plain table."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return None
    try:
        return frame.geometry.name
    except AttributeError:  # GeoDataFrame without an active geometry column
        return None


def _to_text_ids(values: pd.Series) -> pd.Series:
    """Cast identifiers to ``str`` and strip blanks, keeping missing values missing.

    Whole floats (``1001.0``, typical of a numeric column with gaps) become ``"1001"``.
    """
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole % 1 == 0).all():
            values = values.astype("Int64")
    text = values.astype(str).str.strip().astype(object)
    text[values.isna().to_numpy() | (text == "").to_numpy()] = None
    return text


def _known(ids: Iterable[Any]) -> frozenset[str]:
    return frozenset(str(i) for i in ids)


def _unknown_id_hint(unknown: Iterable[str], known: frozenset[str], what: str) -> str:
    """Hint for unknown ids; spots ids that lost their leading zeros."""
    widths = {len(k) for k in known}
    for value in list(unknown)[:100]:
        if any(value.zfill(w) in known for w in widths if w > len(value)):
            return (
                f"ids look like they lost leading zeros (e.g. '{value}'); store "
                f"{what} as text in the file (quote it in CSV, use a string column elsewhere)"
            )
    return f"every {what} must appear in the units file; fix the ids or add the missing units"


# --------------------------------------------------------------------------- #
# pandera glue
# --------------------------------------------------------------------------- #


def _validate(
    schema: pa.DataFrameSchema,
    parsed: pd.DataFrame,
    original: pd.DataFrame,
    source: str,
    rules: dict[str, _Rule],
    context: Sequence[str],
) -> pd.DataFrame:
    """Validate ``parsed`` lazily; turn the first failing check into an :class:`InputError`.

    ``parsed`` must have a ``RangeIndex`` so that pandera's failure index is a
    row position in ``original``, whose values are shown in the message.
    ``rules`` maps a check name (``not_nullable``, ``field_uniqueness``,
    ``multiple_fields_uniqueness``, ``coerce_dtype``, or the ``error`` text of
    a custom check) to the rule in words and a hint.
    """
    try:
        return schema.validate(parsed, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        summary = str(exc).splitlines()[0] if str(exc) else "schema validation failed"
    cases = cases[cases["index"].notna()].copy()
    if cases.empty:  # a failure that is not about rows (should not happen)
        raise InputError(source, summary)
    cases["kind"] = cases["check"].astype(str).str.replace(r"\(.*\)$", "", regex=True)
    # Parse failures first, then nulls, then value checks, then uniqueness.
    rank = {"coerce_dtype": 0, "dtype": 0, "not_nullable": 1, "field_uniqueness": 3}
    cases["rank"] = cases["kind"].map(rank).fillna(2)
    cases.loc[cases["kind"] == "multiple_fields_uniqueness", "rank"] = 4
    order = {c: i for i, c in enumerate(schema.columns)}
    cases["col_order"] = cases["column"].map(order).fillna(len(order))
    first = cases.sort_values(["rank", "col_order"], kind="stable").iloc[0]
    if first["kind"] == "multiple_fields_uniqueness":
        group = cases[cases["kind"] == first["kind"]]
        column = ", ".join(schema.unique)
    else:
        group = cases[(cases["kind"] == first["kind"]) & (cases["column"] == first["column"])]
        column = str(first["column"])
    rule = rules.get(first["kind"]) or rules.get(str(first["check"]))
    if rule is None:
        rule = _Rule(f"check {first['check']} failed", "fix the offending rows")
    rule = _Rule(rule.text.format(column=column), rule.hint.format(column=column))
    _raise_rows(source, original, group["index"].astype(int), column, rule, context)


def _base_rules(table: str) -> dict[str, _Rule]:
    """Rules for pandera's built-in checks, worded for ``table``."""
    return {
        "not_nullable": _Rule(
            "{column} must not be empty", f"fill in the missing values or drop those {table} rows"
        ),
        "field_uniqueness": _Rule(
            "{column} must be unique", f"keep one row per {{column}} in the {table} file"
        ),
        "multiple_fields_uniqueness": _Rule(
            "({column}) must be unique",
            f"keep one row per ({{column}}) in the {table} file; remove the duplicates",
        ),
        "coerce_dtype": _Rule(
            "{column} must be numeric",
            "remove text such as 'n/a', units or thousands separators from the column",
        ),
        "dtype": _Rule(
            "{column} must be numeric",
            "remove text such as 'n/a', units or thousands separators from the column",
        ),
    }


def _coerce_numeric(
    frame: pd.DataFrame,
    numeric_cols: Sequence[str],
    source: str,
    context: Sequence[str],
    rules: dict[str, _Rule],
) -> pd.DataFrame:
    """Parse stage: coerce ``numeric_cols`` to float64 with pandera."""
    schema = pa.DataFrameSchema(
        {c: pa.Column("float64", coerce=True, nullable=True) for c in numeric_cols},
        strict=False,
    )
    return _validate(schema, frame, frame, source, rules, context)


def _positional(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy with a RangeIndex, so pandera reports row positions."""
    out = frame.copy()
    out.index = pd.RangeIndex(len(out))
    return out


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Output hygiene: fresh RangeIndex and no provenance attrs."""
    frame = frame.reset_index(drop=True)
    frame.attrs.pop(FIRST_ROW_ATTR, None)
    frame.attrs.pop(FIRST_ROW_KIND_ATTR, None)
    return frame


def _check_frequency(frequency: str) -> str:
    if frequency not in PERIOD_ALIAS:
        raise InputError(
            "features config",
            f"frequency must be one of {', '.join(PERIOD_ALIAS)}, got '{frequency}'",
            column="frequency",
            hint="set features.frequency to MS (monthly), W-MON (weekly) or QS (quarterly)",
        )
    return frequency


# --------------------------------------------------------------------------- #
# Schemas
# --------------------------------------------------------------------------- #


def _known_check(ids: frozenset[str], column: str, what: str) -> pa.Check:
    return pa.Check.isin(ids, error=f"{column} must be a known {what}")


def units_schema(columns: ColumnsConfig, with_coordinates: bool = False) -> pa.DataFrameSchema:
    """Schema of the units table, identifier and coordinates (geometry is checked apart).

    Parameters
    ----------
    columns
        Contract column names.
    with_coordinates
        Whether ``lat`` and ``lon`` locate the units (no geometry column).

    Returns
    -------
    pandera.pandas.DataFrameSchema
        ``unit_id`` text, non-null and unique; optional ``lat`` in [-90, 90]
        and ``lon`` in [-180, 180], numeric and non-null.
    """
    schema_columns = {columns.unit_col: pa.Column(object, nullable=False, unique=True)}
    if with_coordinates:
        for col, limit in ((LAT_COL, 90), (LON_COL, 180)):
            schema_columns[col] = pa.Column(
                "float64",
                nullable=False,
                checks=pa.Check.in_range(
                    -limit, limit, error=f"{col} must be between -{limit} and {limit}"
                ),
            )
    return pa.DataFrameSchema(schema_columns, strict=False, report_duplicates="all")


def demographics_schema(
    columns: ColumnsConfig, unit_ids: Iterable[str], value_columns: Sequence[str], has_year: bool
) -> pa.DataFrameSchema:
    """Schema of the demographics table.

    Parameters
    ----------
    columns
        Contract column names.
    unit_ids
        Known unit identifiers.
    value_columns
        The numeric columns (every column other than unit and year).
    has_year
        Whether a year column is present; uniqueness is then per (unit, year).

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    unit = columns.unit_col
    schema_columns: dict[str, pa.Column] = {
        unit: pa.Column(
            object, nullable=False, checks=_known_check(_known(unit_ids), unit, "unit")
        ),
    }
    if has_year:
        schema_columns[columns.year_col] = pa.Column(
            "float64",
            nullable=False,
            checks=pa.Check(
                lambda s: s % 1 == 0, error=f"{columns.year_col} must be a whole number"
            ),
        )
    for col in value_columns:
        schema_columns[col] = pa.Column("float64", nullable=True)
    return pa.DataFrameSchema(
        schema_columns,
        strict=False,
        unique=[unit, columns.year_col] if has_year else [unit],
        report_duplicates="all",
    )


def sales_schema(
    columns: ColumnsConfig, unit_ids: Iterable[str], driver_columns: Sequence[str]
) -> pa.DataFrameSchema:
    """Schema of the sales table, before aggregation.

    Parameters
    ----------
    columns
        Contract column names.
    unit_ids
        Known unit identifiers.
    driver_columns
        Workload columns present (``accounts``, ``orders``, ``visits``).

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Known non-null units, parsed non-null periods, sales >= 0, drivers >= 0,
        and (unit, period) unique.
    """
    unit, time, target = columns.unit_col, columns.time_col, columns.target_col
    schema_columns = {
        unit: pa.Column(
            object, nullable=False, checks=_known_check(_known(unit_ids), unit, "unit")
        ),
        time: pa.Column("datetime64[ns]", nullable=False),
        target: pa.Column(
            "float64", nullable=False, checks=pa.Check.ge(0, error=f"{target} must be >= 0")
        ),
    }
    for col in driver_columns:
        schema_columns[col] = pa.Column(
            "float64", nullable=True, checks=pa.Check.ge(0, error=f"{col} must be >= 0")
        )
    return pa.DataFrameSchema(
        schema_columns, strict=False, unique=[unit, time], report_duplicates="all"
    )


def alignment_schema(columns: ColumnsConfig, unit_ids: Iterable[str]) -> pa.DataFrameSchema:
    """Schema of the alignment table: each known unit assigned at most once.

    Parameters
    ----------
    columns
        Contract column names.
    unit_ids
        Known unit identifiers.

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    unit = columns.unit_col
    return pa.DataFrameSchema(
        {
            unit: pa.Column(
                object,
                nullable=False,
                unique=True,
                checks=_known_check(_known(unit_ids), unit, "unit"),
            ),
            columns.territory_col: pa.Column(object, nullable=False),
        },
        strict=False,
        report_duplicates="all",
    )


def reps_schema(
    columns: ColumnsConfig,
    unit_ids: Iterable[str],
    territory_ids: Iterable[str] | None = None,
) -> pa.DataFrameSchema:
    """Schema of the reps table.

    Parameters
    ----------
    columns
        Contract column names.
    unit_ids
        Known unit identifiers (for ``home_unit_id``).
    territory_ids
        Known territory identifiers; ``None`` accepts any territory.

    Returns
    -------
    pandera.pandas.DataFrameSchema
    """
    territory = columns.territory_col
    territory_checks = (
        [_known_check(_known(territory_ids), territory, "territory")]
        if territory_ids is not None
        else []
    )
    return pa.DataFrameSchema(
        {
            territory: pa.Column(object, nullable=False, checks=territory_checks),
            columns.rep_col: pa.Column(object, nullable=False),
            HOME_UNIT_COL: pa.Column(
                object,
                nullable=True,
                required=False,
                checks=_known_check(_known(unit_ids), HOME_UNIT_COL, "unit"),
            ),
            CAPACITY_COL: pa.Column(
                "float64",
                nullable=True,
                required=False,
                checks=pa.Check.gt(0, error=f"{CAPACITY_COL} must be > 0"),
            ),
        },
        strict=False,
    )


# --------------------------------------------------------------------------- #
# Units
# --------------------------------------------------------------------------- #


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry | None:
    """Polygonal part of a repaired geometry, or ``None`` when it has none."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in _POLYGONAL and not p.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def _check_geometry(
    gdf: gpd.GeoDataFrame, original: pd.DataFrame, source: str, unit: str
) -> gpd.GeoDataFrame:
    """CRS, emptiness, type and validity of unit geometry; repairs invalid polygons."""
    geom_col = gdf.geometry.name
    if gdf.crs is None:
        raise InputError(
            source,
            "geometry has no coordinate reference system (CRS)",
            column=geom_col,
            hint=(
                "save the file with its CRS (a .prj next to a Shapefile, or "
                "GeoDataFrame.set_crs before writing), or give lat and lon columns in WGS84"
            ),
        )
    geoms = gdf.geometry.values
    empty = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(empty):
        _raise_rows(
            source,
            original,
            empty,
            geom_col,
            _Rule(
                "geometry must not be empty",
                "draw the unit's boundary (or give its point), or drop the unit",
            ),
            context=[unit],
        )
    types = gdf.geom_type.to_numpy()
    is_point = types == "Point"
    is_polygonal = np.isin(types, [*_POLYGONAL, "GeometryCollection"])
    bad_type = np.flatnonzero(~(is_point | is_polygonal))
    if len(bad_type):
        _raise_rows(
            source,
            original,
            bad_type,
            geom_col,
            _Rule(
                "geometry must be a Polygon, MultiPolygon or Point",
                "export the units as areas (polygons) or as centre points",
            ),
            context=[unit],
        )
    if is_point.any() and is_polygonal.any():
        _raise_rows(
            source,
            original,
            np.flatnonzero(is_point),
            geom_col,
            _Rule(
                "geometry must be all polygons or all points, not a mix",
                "give every unit an area, or every unit a point",
            ),
            context=[unit],
        )
    needs_repair = np.flatnonzero(~shapely.is_valid(geoms) | (types == "GeometryCollection"))
    if len(needs_repair) == 0:
        return gdf
    repaired = [_polygonal_part(g) for g in shapely.make_valid(geoms[needs_repair])]
    broken = [pos for pos, g in zip(needs_repair, repaired, strict=True) if g is None]
    if broken:
        _raise_rows(
            source,
            original,
            broken,
            geom_col,
            _Rule(
                "geometry is invalid and has no area left after repair",
                "fix the boundary in a GIS tool (it collapses to a line or point)",
            ),
            context=[unit],
        )
    gdf = gdf.copy()
    new_geoms = gdf.geometry.values.copy()
    new_geoms[needs_repair] = repaired
    gdf[geom_col] = gpd.GeoSeries(new_geoms, index=gdf.index, crs=gdf.crs)
    rows = _describe_rows(original, needs_repair, [unit])
    more = len(needs_repair) - len(rows)
    warnings.warn(
        f"{source}: repaired {len(needs_repair)} invalid geometr"
        f"{'y' if len(needs_repair) == 1 else 'ies'} with shapely.make_valid "
        f"(kept polygonal parts): {', '.join(rows)}" + (f" (and {more} more)" if more else ""),
        GeometryRepairWarning,
        stacklevel=3,
    )
    return gdf


def validate_units(
    gdf: pd.DataFrame, source: str, columns: ColumnsConfig | None = None
) -> gpd.GeoDataFrame:
    """Validate the units table and return it as a GeoDataFrame.

    Parameters
    ----------
    gdf
        Units, either a GeoDataFrame (Polygon/MultiPolygon or Point geometry
        with a CRS) or a table with numeric ``lat`` and ``lon`` columns.
    source
        File (or table) name used in error messages.
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.

    Returns
    -------
    geopandas.GeoDataFrame
        ``unit_id`` as ``str`` first, ``name``/``region`` as text when present,
        other columns kept, geometry in column ``geometry`` (points in
        EPSG:4326 when built from lat/lon). Invalid polygons are repaired with
        :func:`shapely.make_valid` and a :class:`GeometryRepairWarning`.

    Raises
    ------
    InputError
        Missing column, null or duplicate ``unit_id``, missing CRS, empty,
        unsupported or unrepairable geometry, or lat/lon out of range.
    """
    columns = columns or ColumnsConfig()
    unit = columns.unit_col
    _require_columns(gdf, source, [unit], "units")
    geom_name = _active_geometry_name(gdf)
    has_coordinates = {LAT_COL, LON_COL} <= set(gdf.columns)
    if geom_name is not None and gdf[geom_name].isna().all() and has_coordinates:
        geom_name = None  # a spatial file without shapes but with coordinates
    has_geometry = geom_name is not None
    if not has_geometry and not has_coordinates:
        if GEOMETRY_COL in gdf.columns:  # shapes stored without spatial metadata
            raise InputError(
                source,
                "geometry has no coordinate reference system (CRS)",
                column=GEOMETRY_COL,
                hint=(
                    "store units as GeoPackage, GeoParquet, GeoJSON or Shapefile with a CRS, "
                    "or give lat and lon columns in WGS84"
                ),
            )
        missing = LAT_COL if LAT_COL not in gdf.columns else LON_COL
        raise InputError(
            source,
            f"the units table needs a geometry or both '{LAT_COL}' and '{LON_COL}' "
            f"(columns found: {_found(gdf)})",
            column=missing,
            hint="give unit shapes in a spatial file, or lat and lon columns in WGS84",
        )

    original = gdf
    frame = _positional(pd.DataFrame(gdf))
    frame[unit] = _to_text_ids(frame[unit])
    for col in UNIT_TEXT_COLS:
        if col in frame.columns:
            frame[col] = _to_text_ids(frame[col])
    context = [unit]
    rules = _base_rules("units")
    if not has_geometry:
        rules["coerce_dtype"] = rules["dtype"] = _Rule(
            "{column} must be numeric (decimal degrees)",
            "give coordinates as decimal degrees in WGS84, e.g. 40.71 and -74.0",
        )
        frame = _coerce_numeric(frame, [LAT_COL, LON_COL], source, context, rules)
    for check in ("lat must be between -90 and 90", "lon must be between -180 and 180"):
        rules[check] = _Rule(check, "check that lat and lon are not swapped or projected")
    schema = units_schema(columns, with_coordinates=not has_geometry)
    frame = _validate(schema, frame, original, source, rules, context)

    if has_geometry:
        out = gpd.GeoDataFrame(frame, geometry=geom_name, crs=gdf.crs)
        out = _check_geometry(out, original, source, unit)
        if geom_name != GEOMETRY_COL and GEOMETRY_COL not in out.columns:
            out = out.rename_geometry(GEOMETRY_COL)
    else:
        points = gpd.points_from_xy(frame[LON_COL], frame[LAT_COL], crs="EPSG:4326")
        frame = frame.drop(columns=[GEOMETRY_COL], errors="ignore")
        out = gpd.GeoDataFrame(frame, geometry=points)
    ordered = [unit, *[c for c in out.columns if c != unit]]
    return _finish(out[ordered])


# --------------------------------------------------------------------------- #
# Tables keyed by unit
# --------------------------------------------------------------------------- #


def _unknown_rules(
    table: str, frame: pd.DataFrame, column: str, known: frozenset[str], what: str = "unit"
) -> dict[str, _Rule]:
    unknown = frame.loc[frame[column].notna() & ~frame[column].isin(known), column]
    hint = (
        _unknown_id_hint(unknown.unique(), known, column)
        if what == "unit"
        else f"use territory ids that exist in the alignment; check the {table} file"
    )
    return {f"{column} must be a known {what}": _Rule(f"{column} must be a known {what}", hint)}


def validate_demographics(
    df: pd.DataFrame,
    source: str,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Validate the demographics table.

    Parameters
    ----------
    df
        One row per unit (or per unit and year), numeric value columns.
    source
        File (or table) name used in error messages.
    unit_ids
        Known unit identifiers (from the units table).
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.

    Returns
    -------
    pandas.DataFrame
        ``unit_id`` as ``str``, ``year`` as int64 when present, every other
        column as float64.

    Raises
    ------
    InputError
        Missing ``unit_id``, unknown unit, text in a value column, non-whole
        year, or duplicate unit (or unit and year).
    """
    columns = columns or ColumnsConfig()
    unit, year = columns.unit_col, columns.year_col
    df = _as_plain_frame(df)
    _require_columns(df, source, [unit], "demographics")
    has_year = year in df.columns
    value_cols = [c for c in df.columns if c not in (unit, year)]

    known = _known(unit_ids)
    frame = _positional(df)
    frame[unit] = _to_text_ids(frame[unit])
    context = [unit, year] if has_year else [unit]
    rules = _base_rules("demographics")
    rules["coerce_dtype"] = rules["dtype"] = _Rule(
        "{column} must be numeric (it holds text)",
        "fix or blank the text values, or drop the column (names and regions belong "
        "in the units file)",
    )
    frame = _coerce_numeric(
        frame, [*([year] if has_year else []), *value_cols], source, context, rules
    )
    rules |= _unknown_rules("demographics", frame, unit, known)
    rules[f"{year} must be a whole number"] = _Rule(
        f"{year} must be a whole number", "give years as e.g. 2023"
    )
    schema = demographics_schema(columns, known, value_cols, has_year)
    frame = _validate(schema, frame, df, source, rules, context)
    if has_year:
        frame[year] = frame[year].astype("int64")
    return _finish(frame)


def _parse_periods(
    frame: pd.DataFrame, original: pd.DataFrame, column: str, source: str, context: list[str]
) -> pd.Series:
    """Parse dates (ISO first, then mixed formats); raise on unparseable values."""
    values = frame[column]
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.start_time
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        if pd.api.types.is_numeric_dtype(values):  # e.g. 20240131, never epoch offsets
            values = values.astype("Int64").astype(str).where(values.notna(), None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' "could not infer format" chatter
            parsed = pd.to_datetime(values, errors="coerce", utc=True)
            retry = parsed.isna() & values.notna()
            if retry.any():
                parsed[retry] = pd.to_datetime(
                    values[retry], errors="coerce", utc=True, format="mixed"
                )
        bad = np.flatnonzero((parsed.isna() & values.notna()).to_numpy())
        if len(bad):
            _raise_rows(
                source,
                original,
                bad,
                column,
                _Rule(
                    f"{column} must be a date (e.g. 2024-01-31)",
                    "write dates as YYYY-MM-DD; remove text such as 'total' or 'n/a'",
                ),
                context,
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def validate_sales(
    df: pd.DataFrame,
    source: str,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    frequency: str = "MS",
) -> pd.DataFrame:
    """Validate the sales history and aggregate it to the configured frequency.

    Parameters
    ----------
    df
        Sales rows: ``unit_id``, ``period`` (dates), ``sales``; optional
        ``accounts``, ``orders``, ``visits``. Other columns are dropped.
    source
        File (or table) name used in error messages.
    unit_ids
        Known unit identifiers (from the units table).
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.
    frequency
        ``"MS"`` (month start), ``"W-MON"`` (weeks starting Monday) or ``"QS"``
        (quarter start).

    Returns
    -------
    pandas.DataFrame
        One row per (unit, period): ``unit_id`` (str), ``period``
        (datetime64[ns], the start of its period), ``sales`` (float64, summed),
        ``orders``/``visits`` summed and ``accounts`` averaged when present;
        sorted by unit and period.

    Raises
    ------
    InputError
        Missing column, unknown unit, unparseable date, non-numeric or
        negative sales or driver, or the same (unit, period) twice in the file.
    """
    columns = columns or ColumnsConfig()
    frequency = _check_frequency(frequency)
    unit, time, target = columns.unit_col, columns.time_col, columns.target_col
    df = _as_plain_frame(df)
    _require_columns(df, source, [unit, time, target], "sales")
    drivers = [c for c in (*SALES_DRIVER_MEAN_COLS, *SALES_DRIVER_SUM_COLS) if c in df.columns]

    known = _known(unit_ids)
    frame = _positional(df[[unit, time, target, *drivers]])
    context = [unit, time]
    frame[unit] = _to_text_ids(frame[unit])
    rules = _base_rules("sales")
    rules["not_nullable"] = _Rule(
        "{column} must not be empty", "fill in the value, or drop the row if there was no sale"
    )
    frame = _coerce_numeric(frame, [target, *drivers], source, context, rules)
    parsed_times = _parse_periods(frame, df, time, source, context)
    frame[time] = parsed_times
    rules |= _unknown_rules("sales", frame, unit, known)
    for col in (target, *drivers):
        rules[f"{col} must be >= 0"] = _Rule(
            f"{col} must be >= 0",
            "record returns or credits apart; sales history must not be negative",
        )
    rules["multiple_fields_uniqueness"] = _Rule(
        "({column}) must be unique: the same unit and date appear more than once",
        "remove the duplicate rows, or sum them before loading",
    )
    frame = _validate(sales_schema(columns, known, drivers), frame, df, source, rules, context)

    frame[time] = frame[time].dt.to_period(PERIOD_ALIAS[frequency]).dt.start_time
    grouped = frame.groupby([unit, time], sort=True)
    summed = [target, *(c for c in drivers if c in SALES_DRIVER_SUM_COLS)]
    averaged = [c for c in drivers if c in SALES_DRIVER_MEAN_COLS]
    out = grouped[summed].sum(min_count=1)  # a period with no recorded visits stays NaN
    out[averaged] = grouped[averaged].mean()
    out = out.reset_index()[[unit, time, target, *drivers]]
    out[unit] = out[unit].astype(str)
    out[time] = out[time].astype("datetime64[ns]")
    out[[target, *drivers]] = out[[target, *drivers]].astype("float64")
    return _finish(out.sort_values([unit, time], kind="stable"))


def validate_alignment(
    df: pd.DataFrame,
    source: str,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Validate a unit-to-territory alignment.

    Parameters
    ----------
    df
        ``unit_id`` and ``territory_id``; other columns are kept.
    source
        File (or table) name used in error messages.
    unit_ids
        Known unit identifiers (from the units table).
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.

    Returns
    -------
    pandas.DataFrame
        ``unit_id`` and ``territory_id`` as ``str``, each unit at most once.

    Raises
    ------
    InputError
        Missing column, empty id, unknown unit, or a unit assigned twice.
    """
    columns = columns or ColumnsConfig()
    unit, territory = columns.unit_col, columns.territory_col
    df = _as_plain_frame(df)
    _require_columns(df, source, [unit, territory], "alignment")
    known = _known(unit_ids)
    frame = _positional(df)
    frame[unit] = _to_text_ids(frame[unit])
    frame[territory] = _to_text_ids(frame[territory])
    context = [unit, territory]
    rules = _base_rules("alignment")
    rules["field_uniqueness"] = _Rule(
        "each unit may be assigned at most once ({column} must be unique)",
        "keep one territory per unit; remove the extra assignments",
    )
    rules |= _unknown_rules("alignment", frame, unit, known)
    frame = _validate(alignment_schema(columns, known), frame, df, source, rules, context)
    return _finish(frame)


def validate_reps(
    df: pd.DataFrame,
    source: str,
    unit_ids: Iterable[str],
    territory_ids: Iterable[str] | None = None,
    columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Validate the reps table.

    Parameters
    ----------
    df
        ``territory_id`` and ``rep_id``; optional ``home_unit_id`` and
        ``capacity``; other columns are kept.
    source
        File (or table) name used in error messages.
    unit_ids
        Known unit identifiers (for ``home_unit_id``).
    territory_ids
        Known territory identifiers; ``None`` skips that check.
    columns
        Contract column names; defaults to :class:`ColumnsConfig`.

    Returns
    -------
    pandas.DataFrame
        Ids as ``str`` (``home_unit_id`` may be missing), ``capacity`` as
        float64 when present.

    Raises
    ------
    InputError
        Missing column, empty id, unknown territory or home unit, or a
        capacity that is not a positive number.
    """
    columns = columns or ColumnsConfig()
    territory, rep = columns.territory_col, columns.rep_col
    df = _as_plain_frame(df)
    _require_columns(df, source, [territory, rep], "reps")
    known_units = _known(unit_ids)
    known_territories = _known(territory_ids) if territory_ids is not None else None
    frame = _positional(df)
    for col in (territory, rep, HOME_UNIT_COL):
        if col in frame.columns:
            frame[col] = _to_text_ids(frame[col])
    context = [rep, territory]
    rules = _base_rules("reps")
    numeric = [CAPACITY_COL] if CAPACITY_COL in frame.columns else []
    frame = _coerce_numeric(frame, numeric, source, context, rules)
    if HOME_UNIT_COL in frame.columns:
        rules |= _unknown_rules("reps", frame, HOME_UNIT_COL, known_units)
    if known_territories is not None:
        rules |= _unknown_rules("reps", frame, territory, known_territories, what="territory")
    rules[f"{CAPACITY_COL} must be > 0"] = _Rule(
        f"{CAPACITY_COL} must be > 0", "give capacity as a positive number, or leave it blank"
    )
    schema = reps_schema(columns, known_units, known_territories)
    frame = _validate(schema, frame, df, source, rules, context)
    return _finish(frame)
