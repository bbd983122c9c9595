"""Validation of the units table: identifiers, coordinates and geometry."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from territory.features._contract import (
    GEOMETRY_COL,
    LAT_COL,
    LON_COL,
    UNIT_TEXT_COLS,
    _active_geometry_name,
    _base_rules,
    _coerce_numeric,
    _describe_rows,
    _finish,
    _found,
    _raise_rows,
    _require_columns,
    _Rule,
    _validate,
    _with_text_ids,
)
from territory.features._pandera_schemas import units_schema
from territory.features.config import ColumnsConfig
from territory.features.errors import InputError

_POLYGONAL = ("Polygon", "MultiPolygon")


class GeometryRepairWarning(UserWarning):
    """Invalid unit geometry was repaired with ``shapely.make_valid``."""


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
    frame = _with_text_ids(pd.DataFrame(gdf), [unit, *UNIT_TEXT_COLS])
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
