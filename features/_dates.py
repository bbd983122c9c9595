"""Reading the period column without guessing: ISO dates as is, anything else by a format.

Day-first and month-first dates (``03/04/2019``) cannot be told apart from the
text alone, and pandas' inference quietly picks month-first. So only ISO 8601
dates (``2024-01-31``, ``2024-01``, ``2024``, ``20240131``, with an optional
time) are read without help; every other spelling needs ``data.date_format``
(a :func:`time.strptime` format). When the format is missing, the error says
which one fits when the file shows it (a first field above 12 means
day-first), and that it cannot be known when every field could be either.
Quarters written ``1998 Q1``, ``1998Q1``, ``1998-Q1`` or ``Q1 1998`` are
unambiguous too (strptime has no quarter directive, so no format could
read them): they are read as the quarter's first day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

ISO_PATTERN = (
    r"\d{4}(?:-\d{1,2}(?:-\d{1,2})?)?"  # 2024, 2024-01, 2024-01-31
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"  # optional time
    r"|\d{8}"  # 20240131
)
_ISO = re.compile(ISO_PATTERN)
#: Quarter notation: 1998 Q1, 1998Q1, 1998-Q1, 1998 q1, Q1 1998, Q1-1998.
QUARTER_PATTERN = r"(\d{4})[ \-]?[Qq]([1-4])|[Qq]([1-4])[ \-]?(\d{4})"
# Numeric day/month/year in either order: 03/04/2019, 3.4.19, 03-04-2019.
_NUMERIC_DMY = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})")
SET_FORMAT = "set data.date_format, e.g. '%d/%m/%Y'"


@dataclass(frozen=True)
class DateProblem:
    """Why a period column cannot be read: rows to show, the rule and what to do."""

    positions: np.ndarray
    rule: str
    hint: str


def _numeric_format(first_is_day: bool, separator: str, year_digits: int) -> str:
    first, second = ("%d", "%m") if first_is_day else ("%m", "%d")
    year = "%Y" if year_digits == 4 else "%y"
    return f"{first}{separator}{second}{separator}{year}"


def _numeric_order(text: pd.Series, column: str) -> DateProblem:
    """The problem with numeric d/m/y-like dates: which order fits, or that none can be told."""
    parts = text.str.extract(_NUMERIC_DMY.pattern)
    first, second = parts[0].astype(int), parts[2].astype(int)
    shapes = (parts[1] + parts[3].str.len().astype(str)).unique()
    if len(shapes) > 1:
        return _mixed(text.index.to_numpy(), column)
    separator, year_digits = parts[1].iloc[0], len(parts[3].iloc[0])
    day_first, month_first = (first > 12).to_numpy(), (second > 12).to_numpy()
    if day_first.any() and month_first.any():
        rows = np.concatenate([np.flatnonzero(day_first)[:3], np.flatnonzero(month_first)[:3]])
        return DateProblem(
            text.index.to_numpy()[rows],
            f"{column} mixes day-first and month-first dates (some have a first number "
            "above 12, others a second number above 12)",
            f"write every date the same way (best: YYYY-MM-DD), then {SET_FORMAT}",
        )
    positions = text.index.to_numpy()
    if day_first.any() or month_first.any():
        fmt = _numeric_format(bool(day_first.any()), separator, year_digits)
        telling = positions[np.flatnonzero(day_first | month_first)]
        order = "day-first" if day_first.any() else "month-first"
        return DateProblem(
            np.concatenate([telling[:3], positions[:2]]),
            f"{column} is not in ISO format (YYYY-MM-DD), and dates are never guessed",
            f"the dates look {order}; set data.date_format: '{fmt}'",
        )
    day, month = (_numeric_format(d, separator, year_digits) for d in (True, False))
    return DateProblem(
        positions,
        f"{column} is ambiguous: every date (e.g. {text.iloc[0]}) reads as day-first and as "
        "month-first, and dates are never guessed",
        f"set data.date_format, e.g. '{day}' (day first) or '{month}' (month first)",
    )


def _mixed(positions: np.ndarray, column: str) -> DateProblem:
    return DateProblem(
        positions,
        f"{column} mixes date formats, and dates are never guessed",
        f"write every date the same way (best: YYYY-MM-DD), or {SET_FORMAT}",
    )


def _not_a_date(positions: np.ndarray, column: str) -> DateProblem:
    return DateProblem(
        positions,
        f"{column} must be a date (e.g. 2024-01-31)",
        "write dates as YYYY-MM-DD (or set data.date_format to the file's format, e.g. "
        "'%d/%m/%Y'); remove text such as 'total' or 'n/a'",
    )


#: Unambiguous spellings tried when suggesting a format (numeric d/m orders are handled apart).
_CANDIDATES = ("%Y/%m/%d", "%Y.%m.%d", "%Y/%m", "%b %Y", "%B %Y", "%b-%Y", "%b-%y", "%b %d, %Y",
               "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%b-%y", "%Y-%m-%d %H:%M")


def _fitting_format(text: pd.Series) -> str | None:
    """A format that reads every one of (a sample of) ``text``, or pandas' guess, or None."""
    sample = text.iloc[:200]
    for fmt in _CANDIDATES:
        if pd.to_datetime(sample, format=fmt, errors="coerce").notna().all():
            return fmt
    from pandas.tseries.api import guess_datetime_format

    return guess_datetime_format(str(text.iloc[0]))


def _non_iso_problem(text: pd.Series, column: str) -> DateProblem:
    """The problem with non-ISO text dates (``text`` holds only those, indexed by position)."""
    numeric = text.str.fullmatch(_NUMERIC_DMY.pattern)
    if numeric.all():
        return _numeric_order(text, column)
    if numeric.any():
        return _mixed(np.concatenate([text.index[numeric][:2], text.index[~numeric][:3]]), column)
    guess = _fitting_format(text)
    hint = f"set data.date_format: '{guess}'" if guess else SET_FORMAT
    return DateProblem(
        text.index.to_numpy(),
        f"{column} is not in ISO format (YYYY-MM-DD), and dates are never guessed",
        hint + " (or write the dates as YYYY-MM-DD)",
    )


def _quarters_as_iso(text: pd.Series) -> pd.Series:
    """``text`` with quarter notation (:data:`QUARTER_PATTERN`) rewritten as the quarter's
    first day (``1998 Q2`` -> ``1998-04-01``); every other value unchanged."""
    if not text.str.fullmatch(QUARTER_PATTERN, na=False).any():
        return text
    found = text.str.extract(f"^(?:{QUARTER_PATTERN})$")
    year = found[0].fillna(found[3])
    month = (found[1].fillna(found[2]).astype(float) - 1) * 3 + 1
    iso = year + "-" + month.map(lambda m: f"{m:02.0f}" if m == m else None) + "-01"
    return text.where(year.isna(), iso)


def parse_dates(
    values: pd.Series, column: str, date_format: str | None = None
) -> tuple[pd.Series, DateProblem | None]:
    """Parse ``values`` as dates; the parsed series (UTC-naive) and the first problem found.

    Parameters
    ----------
    values
        Text (or numbers such as ``20240131``) with a positional index.
    column
        Column name, for the rule in words.
    date_format
        A strptime format; when given, every value must match it. ``None``
        reads ISO 8601 only.

    Returns
    -------
    tuple
        The dates (``NaT`` where missing or not parsed) and ``None``, or the
        problem: offending row positions, the rule and a hint.
    """
    if pd.api.types.is_numeric_dtype(values):  # e.g. 20240131 or 2019, never epoch offsets
        values = values.astype("Int64").astype(str).where(values.notna(), None)
    present = values.notna().to_numpy()
    text = values.astype(str).str.strip().where(present, None)
    if date_format is not None:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy() & present)
        if len(bad):
            return parsed, DateProblem(
                bad,
                f"{column} does not match data.date_format '{date_format}'",
                "fix those rows, or set data.date_format to the format the file uses "
                "(e.g. '%d/%m/%Y' or '%Y-%m-%d')",
            )
        return parsed, None
    text = _quarters_as_iso(text)
    iso = text.str.fullmatch(ISO_PATTERN, na=False).to_numpy(dtype=bool)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if iso.any():
        parsed[iso] = pd.to_datetime(text[iso], format="ISO8601", errors="coerce", utc=True)
    non_iso = present & ~iso
    garbage = np.flatnonzero(iso & parsed.isna().to_numpy())
    if non_iso.any():
        readable = pd.to_datetime(text[non_iso], errors="coerce", format="mixed").notna()
        garbage = np.union1d(garbage, np.flatnonzero(non_iso)[~readable.to_numpy()])
    if len(garbage):
        return parsed, _not_a_date(garbage, column)
    if non_iso.any() and iso.any():
        shown = np.concatenate([np.flatnonzero(iso)[:2], np.flatnonzero(non_iso)[:3]])
        return parsed, _mixed(shown, column)
    if non_iso.any():
        return parsed, _non_iso_problem(text[non_iso], column)
    return parsed.dt.tz_localize(None), None
