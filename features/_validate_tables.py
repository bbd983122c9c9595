"""Validation of the tables keyed by unit: demographics, sales, alignment and reps."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from territory.features._contract import (
    CAPACITY_COL,
    HOME_UNIT_COL,
    PERIOD_ALIAS,
    SALES_DRIVER_MEAN_COLS,
    SALES_DRIVER_SUM_COLS,
    _base_rules,
    _check_frequency,
    _coerce_numeric,
    _finish,
    _known,
    _magnitude_rules,
    _parse_periods,
    _plain_table,
    _Rule,
    _unknown_rules,
    _validate,
    _with_text_ids,
)
from territory.features._pandera_schemas import (
    alignment_schema,
    demographics_schema,
    reps_schema,
    sales_schema,
)
from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.features.frequency import frequency_spec


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
    df = _plain_table(df, source, [unit], "demographics")
    has_year = year in df.columns
    value_cols = [c for c in df.columns if c not in (unit, year)]

    known = _known(unit_ids)
    frame = _with_text_ids(df, [unit])
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
    rules |= _magnitude_rules(value_cols)
    rules[f"{year} must be a whole number"] = _Rule(
        f"{year} must be a whole number", "give years as e.g. 2023"
    )
    schema = demographics_schema(columns, known, value_cols, has_year)
    frame = _validate(schema, frame, df, source, rules, context)
    if has_year:
        frame[year] = frame[year].astype("int64")
    return _finish(frame)


#: Frequencies from the coarsest to the finest.
_COARSE_TO_FINE = ("YS", "QS", "MS", "W-MON")


def _check_data_frequency(times: pd.Series, frequency: str, source: str, column: str) -> None:
    """Refuse dates coarser than the configured frequency (yearly rows under ``MS``):
    most periods of the panel would be missing. Finer dates are summed, as documented."""
    from territory.features.detect import detect_frequency

    found = detect_frequency(pd.DatetimeIndex(times.dropna().unique()))
    if found.confirm or found.n_periods < 3:
        return  # too few or irregular periods to say
    if _COARSE_TO_FINE.index(found.code) < _COARSE_TO_FINE.index(frequency):
        spec, data = frequency_spec(frequency), frequency_spec(found.code)
        raise InputError(
            source,
            f"the dates are {data.plural} apart ({found.evidence}), but features.frequency is "
            f"{frequency} ({spec.plural}): most {spec.plural} would have no row",
            column=column,
            hint=f"set features.frequency: {found.code} in the config (lags, windows and the "
                 f"horizon then count {data.plural}), or run territory init on this file",
        )


def validate_sales(
    df: pd.DataFrame,
    source: str,
    unit_ids: Iterable[str],
    columns: ColumnsConfig | None = None,
    frequency: str = "MS",
    date_format: str | None = None,
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
    date_format
        strptime format of the period column (``data.date_format``); ``None``
        reads ISO dates (YYYY-MM-DD, YYYY-MM) only, and never guesses day-first
        against month-first.

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
        Missing column, unknown unit, unparseable, non-ISO (without
        ``date_format``) or ambiguous date, non-numeric, negative, infinite or
        absurdly large sales or driver, or the same (unit, period) twice in the file.
    """
    columns = columns or ColumnsConfig()
    frequency = _check_frequency(frequency)
    unit, time, target = columns.unit_col, columns.time_col, columns.target_col
    df = _plain_table(df, source, [unit, time, target], "sales")
    drivers = [c for c in (*SALES_DRIVER_MEAN_COLS, *SALES_DRIVER_SUM_COLS) if c in df.columns]

    known = _known(unit_ids)
    frame = _with_text_ids(df[[unit, time, target, *drivers]], [unit])
    context = [unit, time]
    rules = _base_rules("sales")
    rules["not_nullable"] = _Rule(
        "{column} must not be empty", "fill in the value, or drop the row if there was no sale"
    )
    frame = _coerce_numeric(frame, [target, *drivers], source, context, rules)
    parsed_times = _parse_periods(frame, df, time, source, context, date_format)
    frame[time] = parsed_times
    rules |= _unknown_rules("sales", frame, unit, known)
    for col in (target, *drivers):
        rules[f"{col} must be >= 0"] = _Rule(
            f"{col} must be >= 0",
            "record returns or credits apart; sales history must not be negative",
        )
    rules |= _magnitude_rules([target, *drivers])
    rules["multiple_fields_uniqueness"] = _Rule(
        "({column}) must be unique: the same unit and date appear more than once",
        "remove the duplicate rows, or sum them before loading",
    )
    frame = _validate(sales_schema(columns, known, drivers), frame, df, source, rules, context)
    _check_data_frequency(frame[time], frequency, source, time)

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
    df = _plain_table(df, source, [unit, territory], "alignment")
    known = _known(unit_ids)
    frame = _with_text_ids(df, [unit, territory])
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
        Ids as ``str`` (``home_unit_id`` and ``territory_id`` may be missing),
        ``capacity`` as float64 when present. A rep with a blank territory (a
        new hire, a vacancy filler) is kept with ``territory_id`` missing:
        ``validate`` warns about it (:func:`features.input_checks.rep_warnings`),
        it covers no current territory, a design neither pins its home nor names
        a territory after it, and the report lists it with no units.

    Raises
    ------
    InputError
        Missing column, empty rep id, unknown territory or home unit, or a
        capacity that is not a positive number.
    """
    columns = columns or ColumnsConfig()
    territory, rep = columns.territory_col, columns.rep_col
    df = _plain_table(df, source, [territory, rep], "reps")
    known_units = _known(unit_ids)
    known_territories = _known(territory_ids) if territory_ids is not None else None
    frame = _with_text_ids(df, [territory, rep, HOME_UNIT_COL])
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
