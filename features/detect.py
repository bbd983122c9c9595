"""Detect what a config needs from the user's own tables: ids, dates, target, frequency, CRS.

Used by ``territory init``. Every function is pure: it takes DataFrames
(read as text where the file is CSV, so ids keep their leading zeros and
dates their spelling) and returns a small record with the value found and
the evidence, in words. Nothing is guessed silently: a detection that the
data does not prove carries ``confirm=True`` and says why.

- :func:`detect_unit_column`: the column whose values are the units' ids;
  :func:`detect_id_columns` pairs the units file with the sales file.
- :func:`detect_time_column` and :func:`detect_date_format`: the period column
  and its spelling (ISO, years, or day-first / month-first, proven only by a
  first field above 12).
- :func:`detect_frequency`: ``YS``, ``QS``, ``MS`` or ``W-MON`` from the modal spacing.
- :func:`detect_target` and :func:`detect_workload`: the numeric columns.
- :func:`detect_crs`: the units' CRS and a projected CRS in metres.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from territory.features._dates import ISO_PATTERN
from territory.features.errors import InputError

#: Names that make a numeric column the target, best first.
TARGET_NAMES = ("sales", "revenue", "turnover", "value", "income", "amount", "volume",
                "quantity", "units_sold", "orders")
#: Sales columns that measure the effort to serve a unit (the contract's workload drivers).
WORKLOAD_NAMES = ("accounts", "visits", "orders", "customers", "calls")
_TIME_NAMES = ("period", "date", "month", "year", "week", "quarter", "time", "day")
_NUMERIC_DMY = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})")
_MIN_ID_OVERLAP = 0.5  # a pair of id columns shares at least half of its distinct values


@dataclass(frozen=True)
class UnitColumn:
    """The column of one table that holds unit ids, and how well it matches the units."""

    column: str
    n_ids: int        # distinct ids in this table
    n_matched: int    # of those, known units
    n_units: int      # units in the units file

    @property
    def match_rate(self) -> float:
        """Share of this table's distinct ids that are known units."""
        return self.n_matched / self.n_ids if self.n_ids else 0.0

    @property
    def evidence(self) -> str:
        return (f"{self.n_matched:,} of {self.n_ids:,} distinct ids ({self.match_rate:.0%}) "
                f"are units; {self.n_matched:,} of {self.n_units:,} units appear")


@dataclass(frozen=True)
class IdColumns:
    """The unit id column of the units file and of the sales file."""

    units: str
    sales: UnitColumn


@dataclass(frozen=True)
class DateFormat:
    """How the period column is spelled. ``format`` None: ISO dates or years."""

    format: str | None
    evidence: str
    confirm: bool = False


@dataclass(frozen=True)
class TimeColumn:
    """The period column, its spelling and the parsed distinct periods."""

    column: str
    date_format: DateFormat
    periods: pd.DatetimeIndex  # distinct, sorted


@dataclass(frozen=True)
class Frequency:
    """A pandas offset code and the spacing that shows it."""

    code: str
    n_periods: int
    evidence: str
    confirm: bool = False


@dataclass(frozen=True)
class Target:
    """The target column and the other numeric columns it was chosen from."""

    column: str
    candidates: tuple[str, ...]
    evidence: str
    confirm: bool = False


@dataclass(frozen=True)
class CrsChoice:
    """The units' CRS and the projected CRS (metres) for distances and areas."""

    source: str | None
    projected: str | None
    evidence: str
    confirm: bool = False


# --- ids -----------------------------------------------------------------------------------


def id_text(values: pd.Series) -> pd.Series:
    """Ids as stripped text; whole floats lose their ``.0`` (``1001.0`` -> ``"1001"``)."""
    values = values.dropna()
    if pd.api.types.is_float_dtype(values):
        whole = np.isfinite(values) & (values == np.round(values))
        if whole.all():
            values = values.astype("int64")
    return values.astype(str).str.strip()


def _id_like(frame: pd.DataFrame) -> list[str]:
    """Columns that can hold ids: text or whole numbers, never geometry or dates."""
    out = []
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, gpd.array.GeometryDtype) or name == "geometry":
            continue
        if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_float_dtype(series) and not (
                series.dropna() == np.round(series.dropna())).all():
            continue
        out.append(str(name))
    return out


def detect_unit_column(table: pd.DataFrame, unit_ids: pd.Series,
                       exclude: Sequence[str] = ()) -> UnitColumn | None:
    """The column of ``table`` that best matches ``unit_ids``, or None when none shares half.

    Candidates are ranked by the Jaccard overlap of distinct values, so a small
    integer column (``accounts``) that happens to fall inside numeric ids never wins.
    """
    known = set(id_text(unit_ids))
    best, best_score = None, 0.0
    for name in _id_like(table):
        if name in exclude:
            continue
        distinct = set(id_text(table[name]))
        shared = len(distinct & known)
        score = shared / len(distinct | known) if distinct | known else 0.0
        if score > best_score and shared >= _MIN_ID_OVERLAP * min(len(distinct), len(known)):
            best, best_score = UnitColumn(name, len(distinct), shared, len(known)), score
    return best


def detect_id_columns(units: pd.DataFrame, sales: pd.DataFrame, units_source: str,
                      sales_source: str) -> IdColumns:
    """The id column shared by the units and the sales file (the best value match).

    Raises
    ------
    InputError
        No unique column of the units file shares its values with a sales column.
    """
    best: tuple[float, str, UnitColumn] | None = None
    for name in _id_like(units):
        ids = id_text(units[name])
        if len(ids) < len(units) or not ids.is_unique:
            continue  # an id names one unit: unique and never blank
        found = detect_unit_column(sales, ids)
        if found is None:
            continue
        score = found.n_matched / (found.n_ids + found.n_units - found.n_matched)
        score += 1e-6 * (name.lower() == found.column.lower())  # ties: the same name wins
        if best is None or score > best[0]:
            best = (score, name, found)
    if best is None:
        sample = [f"{c}={shorten_value(sales[c].iloc[0])}" for c in list(sales.columns)[:5]]
        raise InputError(
            sales_source,
            f"no column shares its values with a unique column of the units file "
            f"{units_source} (columns there: {', '.join(map(str, units.columns[:10]))})",
            rows=[f"first row: {', '.join(sample)}"],
            hint="give both files the same unit id (e.g. the 5-digit county FIPS code, as text "
                 "with its leading zeros), then run territory init again")
    return IdColumns(best[1], best[2])


def shorten_value(value: object, limit: int = 30) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- time ----------------------------------------------------------------------------------


def _numeric_order(text: pd.Series) -> DateFormat | None:
    """Day-first or month-first for numeric dates such as ``13/01/2021``; None if not numeric."""
    parts = text.str.extract(_NUMERIC_DMY.pattern)
    if parts[0].isna().any() or len((parts[1] + parts[3].str.len().astype(str)).unique()) > 1:
        return None
    separator, year = parts[1].iloc[0], "%Y" if len(parts[3].iloc[0]) == 4 else "%y"
    first, second = parts[0].astype(int), parts[2].astype(int)
    day_first = f"%d{separator}%m{separator}{year}"
    month_first = f"%m{separator}%d{separator}{year}"
    if (first > 12).any() and (second > 12).any():
        return None  # both orders: not one date column
    if (first > 12).any():
        row = text[first > 12].iloc[0]
        return DateFormat(day_first, f"day first: '{row}' has {row.split(separator)[0]} in the "
                                     "first field, above 12, so it is the day")
    if (second > 12).any():
        row = text[second > 12].iloc[0]
        return DateFormat(month_first, f"month first: '{row}' has {row.split(separator)[1]} in "
                                       "the second field, above 12, so it is the day")
    # Unproven. Period-start or period-end dates hold the day fixed and the month varying.
    guess = day_first if first.nunique() < second.nunique() else month_first
    order = "day first" if guess == day_first else "month first"
    return DateFormat(guess, f"ambiguous: every date (e.g. '{text.iloc[0]}') reads both ways; "
                             f"written as {order}: confirm it", confirm=True)


def detect_date_format(values: pd.Series) -> DateFormat | None:
    """How ``values`` spell dates, or None when they are not dates.

    Datetime columns, ISO text (``2021-01-31``, ``2021-01``) and whole years
    (``1929``) need no format. Numeric day/month dates are day-first or
    month-first only when a field above 12 proves it; otherwise the format
    written is flagged ``confirm``.
    """
    values = values.dropna()
    if values.empty:
        return None
    if pd.api.types.is_datetime64_any_dtype(values):
        return DateFormat(None, "stored as dates")
    if pd.api.types.is_numeric_dtype(values):
        if (values == np.round(values)).all() and values.between(1800, 2200).all():
            return DateFormat(None, f"whole years ({int(values.min())}-{int(values.max())})")
        return None
    text = values.astype(str).str.strip()
    if text.str.fullmatch(r"\d{4}").all():
        return DateFormat(None, f"years as text ({text.min()}-{text.max()})")
    if text.str.fullmatch(ISO_PATTERN).all():
        if pd.to_datetime(text, format="ISO8601", errors="coerce").notna().all():
            return DateFormat(None, f"ISO dates (e.g. {text.iloc[0]})")
        return None
    if text.str.fullmatch(_NUMERIC_DMY.pattern).all():
        return _numeric_order(text)
    from pandas.tseries.api import guess_datetime_format

    guess = guess_datetime_format(str(text.iloc[0]))
    if guess and pd.to_datetime(text, format=guess, errors="coerce").notna().all():
        both = "%d" in guess and "%m" in guess
        return DateFormat(guess, f"every value matches '{guess}' (e.g. {text.iloc[0]})"
                          + ("; day and month could swap: confirm it" if both else ""),
                          confirm=both)
    return None


def _parse(values: pd.Series, date_format: DateFormat) -> pd.Series:
    values = values.dropna()
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values)
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values.astype("int64").astype(str), format="%Y")
    text = values.astype(str).str.strip()
    if date_format.format is None:
        fmt = "%Y" if text.str.fullmatch(r"\d{4}").all() else "ISO8601"
        return pd.to_datetime(text, format=fmt, utc=True).dt.tz_localize(None)
    return pd.to_datetime(text, format=date_format.format)


def detect_time_column(sales: pd.DataFrame, source: str,
                       exclude: Sequence[str] = ()) -> TimeColumn:
    """The sales column that parses as dates or years (time-like names first).

    Raises
    ------
    InputError
        No column of ``sales`` parses as dates or years.
    """
    names = [str(c) for c in sales.columns if c not in exclude]
    names = sorted(names, key=lambda c: not any(t in c.lower() for t in _TIME_NAMES))
    for name in names:
        if pd.api.types.is_numeric_dtype(sales[name]) and not any(
                t in name.lower() for t in ("year", "period", "date")):
            continue  # a number is a year only when its name says so
        found = detect_date_format(sales[name])
        if found is not None:
            periods = pd.DatetimeIndex(_parse(sales[name], found).unique()).sort_values()
            return TimeColumn(name, found, periods)
    rows = [f"line {2 + i}: " + ", ".join(f"{c}={shorten_value(v)}" for c, v in row.items())
            for i, row in enumerate(sales.drop(columns=list(exclude)).head(3).to_dict("records"))]
    raise InputError(
        source,
        f"no column parses as dates or years (columns: {', '.join(names[:10])})",
        rows=rows,
        hint="add a period column with ISO dates (2021-01-31), DD/MM/YYYY or MM/DD/YYYY dates, "
             "or whole years (1996), then run territory init again")


def detect_frequency(periods: pd.DatetimeIndex) -> Frequency:
    """``YS``, ``QS``, ``MS`` or ``W-MON`` from the modal spacing of distinct periods."""
    periods = pd.DatetimeIndex(periods.unique()).sort_values()
    n = len(periods)
    if n < 2:
        return Frequency("MS", n, f"{n} period: the frequency cannot be seen; MS written",
                         confirm=True)
    days = pd.Series(np.diff(periods.asi8) / 86_400e9)
    months = pd.Series(np.diff(periods.year * 12 + periods.month))
    modal_days = float(days.mode().iloc[0])
    if modal_days < 27.5:
        if round(modal_days) == 7:
            gaps = int((days.round() != 7).sum())
            return Frequency("W-MON", n, f"{n} periods, 1 week apart" + _gaps_text(gaps))
        return Frequency("MS", n, f"{n} periods, {modal_days:g} days apart: finer than weekly, "
                                  "summed to months; or choose W-MON", confirm=True)
    step = int(months.mode().iloc[0])
    codes = {1: ("MS", "1 month"), 3: ("QS", "3 months (a quarter)"), 12: ("YS", "1 year")}
    if step in codes:
        code, words = codes[step]
        return Frequency(code, n, f"{n} periods, {words} apart" + _gaps_text(
            int((months != step).sum())))
    return Frequency("YS" if step > 3 else "QS", n,
                     f"{n} periods, {step} months apart, which is not a supported frequency; "
                     "summed to the next coarser one", confirm=True)


def _gaps_text(n_irregular: int) -> str:
    return f" ({n_irregular} irregular steps)" if n_irregular else ""


# --- numeric columns -----------------------------------------------------------------------


def numeric_columns(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Columns that are numbers, or text that reads as numbers in at least 95% of rows."""
    out = []
    for name in frame.columns:
        if name in exclude or name == "geometry":
            continue
        series = frame[name].dropna()
        if series.empty or pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series):
            out.append(str(name))
        elif series.dtype == object:
            if pd.to_numeric(series, errors="coerce").notna().mean() >= 0.95:
                out.append(str(name))
    return out


def _by_name(candidates: Sequence[str], names: Sequence[str]) -> str | None:
    for wanted in names:
        for name in candidates:
            if name.lower() == wanted:
                return name
    for wanted in names:
        for name in candidates:
            if wanted in name.lower():
                return name
    return None


def detect_target(sales: pd.DataFrame, source: str, exclude: Sequence[str] = (),
                  unit: str | None = None) -> Target:
    """The numeric non-id, non-time column; among several, the most plausible name.

    With ``unit``, a column constant within every unit (a code such as
    ``STATE_FIPS``, an attribute) is not a candidate: a target varies over time.

    Raises
    ------
    InputError
        ``sales`` has no numeric column besides the id and the period.
    """
    candidates = numeric_columns(sales, exclude)
    if unit is not None and len(candidates) > 1:
        varying = [c for c in candidates if sales.groupby(unit)[c].nunique().max() > 1]
        candidates = varying or candidates
    if not candidates:
        raise InputError(source, "no numeric column to forecast besides the id and period "
                                 f"(columns: {', '.join(map(str, sales.columns))})",
                         hint="add the sales amount per unit and period as a number column")
    if len(candidates) == 1:
        return Target(candidates[0], tuple(candidates), "the only numeric column")
    named = _by_name(candidates, TARGET_NAMES)
    others = ", ".join(c for c in candidates if c != named)
    if named is not None:
        return Target(named, tuple(candidates), f"its name, among {', '.join(candidates)}")
    return Target(candidates[0], tuple(candidates),
                  f"the first of several numeric columns ({others}): confirm it", confirm=True)


def detect_workload(sales: pd.DataFrame, exclude: Sequence[str] = ()) -> str | None:
    """A numeric workload driver (accounts, visits, ...) by name, or None."""
    return _by_name(numeric_columns(sales, exclude), WORKLOAD_NAMES)


def detect_named_column(frame: pd.DataFrame, words: Sequence[str],
                        exclude: Sequence[str] = ()) -> str | None:
    """The first column whose name contains one of ``words`` (exact names first)."""
    return _by_name([str(c) for c in frame.columns if c not in exclude], words)


# --- geography -----------------------------------------------------------------------------

_CONUS = (-125.5, 24.0, -66.0, 50.0)   # EPSG:5070, NAD83 / Conus Albers (equal area)
_EUROPE = (-31.0, 27.0, 45.0, 72.0)    # EPSG:3035, ETRS89 / LAEA Europe (equal area)


def _inside(bounds: Sequence[float], box: Sequence[float]) -> bool:
    return bounds[0] >= box[0] and bounds[1] >= box[1] and bounds[2] <= box[2] \
        and bounds[3] <= box[3]


def suggest_projected_crs(units: gpd.GeoDataFrame) -> tuple[str, str, bool]:
    """An equal-area CRS for the extent (US, Europe), else the UTM zone of the centroid.

    ``units`` must have a CRS. Returns the CRS, the reason, and whether to confirm it.
    """
    lonlat = units.to_crs("EPSG:4326")
    bounds = lonlat.total_bounds
    extent = f"extent {bounds[0]:.1f}..{bounds[2]:.1f} E, {bounds[1]:.1f}..{bounds[3]:.1f} N"
    if _inside(bounds, _CONUS):
        return "EPSG:5070", f"{extent} is the contiguous US: US Albers equal area", False
    if _inside(bounds, _EUROPE):
        return "EPSG:3035", f"{extent} is in Europe: LAEA Europe equal area", False
    utm = lonlat.estimate_utm_crs()
    code = f"EPSG:{utm.to_epsg()}"
    wide = bounds[2] - bounds[0] > 12
    why = f"{extent}: the UTM zone of the centroid ({utm.name})"
    if wide:
        why += ("; it spans more than two UTM zones, so distances far from its centre stretch: "
                "confirm, or give your region's equal-area CRS")
    return code, why, wide


def detect_crs(units: pd.DataFrame, lat: str = "lat", lon: str = "lon") -> CrsChoice:
    """The units' CRS and a projected CRS in metres for distances and areas."""
    if not isinstance(units, gpd.GeoDataFrame):
        if {lat, lon} <= set(units.columns):
            points = gpd.GeoDataFrame(units, geometry=gpd.points_from_xy(
                pd.to_numeric(units[lon]), pd.to_numeric(units[lat])), crs="EPSG:4326")
            code, why, confirm = suggest_projected_crs(points)
            return CrsChoice("EPSG:4326", code, f"{lat}/{lon} columns in WGS84; {why}", confirm)
        return CrsChoice(None, None, "no geometry and no lat/lon columns", confirm=True)
    if units.crs is None:
        b = units.total_bounds
        if not (b[0] >= -180 and b[2] <= 180 and b[1] >= -90 and b[3] <= 90):
            return CrsChoice(None, None, "the file has no CRS", confirm=True)
        code, why, _ = suggest_projected_crs(units.set_crs("EPSG:4326"))
        return CrsChoice(None, code, "the file has no CRS; its coordinates look like "
                                     f"longitude/latitude (EPSG:4326); if so, {why}", confirm=True)
    source = units.crs.to_string()
    if units.crs.is_projected:
        return CrsChoice(source, source, f"the file is already projected ({units.crs.name})")
    code, why, confirm = suggest_projected_crs(units)
    return CrsChoice(source, code, f"{units.crs.name} is in degrees; {why}", confirm)
