"""Shared machinery of the input contracts (:mod:`territory.features.schemas`).

Column names, the rule-in-words record, row descriptions and error
construction, the *parse* stage (text ids, dates, numbers) and the glue that
turns the first failing pandera check into one :class:`InputError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import geopandas as gpd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import shapely
from pandera.errors import SchemaErrors

from territory.features._dates import parse_dates
from territory.features.errors import MAX_ROWS_SHOWN, InputError
from territory.features.frequency import FREQUENCIES, FREQUENCY_CHOICES

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
PERIOD_ALIAS = {code: spec.period_alias for code, spec in FREQUENCIES.items()}

_MAX_VALUE_CHARS = 40
#: Largest magnitude accepted in sales and numeric demographics. Beyond it a
#: value is a unit mix-up or a corrupt export (1e308, inf), never a real count.
MAX_MAGNITUDE = 1e15


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


def _plain_table(
    df: pd.DataFrame, source: str, required: Sequence[str], table: str
) -> pd.DataFrame:
    """A tabular input without geometry, once its required columns are checked."""
    df = _as_plain_frame(df)
    _require_columns(df, source, required, table)
    return df


def _with_text_ids(frame: pd.DataFrame, id_cols: Iterable[str]) -> pd.DataFrame:
    """Positional copy of ``frame`` with those of ``id_cols`` it has as text ids."""
    out = _positional(frame)
    for col in id_cols:
        if col in out.columns:
            out[col] = _to_text_ids(out[col])
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
            hint=f"set features.frequency to {FREQUENCY_CHOICES}",
        )
    return frequency


def magnitude_error(column: str) -> str:
    """Text of the pandera check that refuses inf, -inf and values beyond :data:`MAX_MAGNITUDE`."""
    return f"{column} must be a finite number no larger than 1e15 in size"


def _magnitude_rules(columns: Iterable[str]) -> dict[str, _Rule]:
    return {
        magnitude_error(c): _Rule(
            f"{magnitude_error(c)} (inf, -inf and values such as 1e308 are refused)",
            "fix the export: blank the cell if the value is unknown, and check units "
            "(e.g. cents or a missing decimal point)",
        )
        for c in columns
    }


def _unknown_rules(
    table: str, frame: pd.DataFrame, column: str, known: frozenset[str], what: str = "unit"
) -> dict[str, _Rule]:
    unknown = frame.loc[frame[column].notna() & ~frame[column].isin(known), column]
    hint = (
        _unknown_id_hint(unknown.unique(), known, column)
        if what == "unit"
        else f"use territory ids that exist in the alignment; check the {table} file"
    )
    where = "units" if what == "unit" else "alignment"
    text = f"{column} must be a known {what}; " + listed_ids(unknown, f"not in the {where} file")
    text = text.replace("{", "{{").replace("}", "}}")  # the rule is formatted with {column}
    return {f"{column} must be a known {what}": _Rule(text, hint)}


#: How many distinct unknown ids an error or warning lists.
MAX_IDS_LISTED = 20


def listed_ids(ids: Iterable[Any], what: str) -> str:
    """``3 distinct ids are <what>: XX, YY, ZZ`` (the first :data:`MAX_IDS_LISTED`, sorted)."""
    distinct = sorted({str(i) for i in ids})
    shown = ", ".join(_format_value(i) for i in distinct[:MAX_IDS_LISTED])
    first = f" (the first {MAX_IDS_LISTED})" if len(distinct) > MAX_IDS_LISTED else ""
    noun = "id is" if len(distinct) == 1 else "distinct ids are"
    return f"{len(distinct)} {noun} {what}{first}: {shown}"


def _parse_periods(
    frame: pd.DataFrame,
    original: pd.DataFrame,
    column: str,
    source: str,
    context: list[str],
    date_format: str | None = None,
) -> pd.Series:
    """Parse dates: ISO as is, anything else only by ``date_format``; raise on the rest.

    ``frame`` must have a positional index (row ``i`` is row ``i`` of ``original``).
    Day-first and month-first are never guessed (:mod:`territory.features._dates`).
    """
    values = frame[column]
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.start_time
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed, problem = parse_dates(values, column, date_format)
        if problem is not None:
            _raise_rows(
                source, original, problem.positions, column,
                _Rule(problem.rule, problem.hint), context,
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")
