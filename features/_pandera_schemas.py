"""Pandera schemas of the input tables, built from a :class:`ColumnsConfig`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandera.pandas as pa

from territory.features._contract import (
    CAPACITY_COL,
    HOME_UNIT_COL,
    LAT_COL,
    LON_COL,
    MAX_MAGNITUDE,
    _known,
    magnitude_error,
)
from territory.features.config import ColumnsConfig


def _known_check(ids: frozenset[str], column: str, what: str) -> pa.Check:
    return pa.Check.isin(ids, error=f"{column} must be a known {what}")


def _magnitude_check(column: str) -> pa.Check:
    """Finite and at most :data:`MAX_MAGNITUDE` in size (missing values pass)."""
    return pa.Check(
        lambda s: s.isna() | (s.abs() <= MAX_MAGNITUDE), error=magnitude_error(column)
    )


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
        schema_columns[col] = pa.Column("float64", nullable=True, checks=_magnitude_check(col))
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
            "float64",
            nullable=False,
            checks=[_magnitude_check(target), pa.Check.ge(0, error=f"{target} must be >= 0")],
        ),
    }
    for col in driver_columns:
        schema_columns[col] = pa.Column(
            "float64",
            nullable=True,
            checks=[_magnitude_check(col), pa.Check.ge(0, error=f"{col} must be >= 0")],
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
            # a rep without a territory (a blank) is a warning, not an error
            territory: pa.Column(object, nullable=True, checks=territory_checks),
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
