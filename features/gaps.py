"""Data gaps: units with no sales history or no demographics, and zeros that code a gap.

A unit missing from the sales file is not a unit that sold nothing, and a
run must not read it as one. :func:`find_data_gaps` finds, as of a date:

- units with no sales row (or only empty sales) in the history;
- units with no demographics row, or only empty values, when a demographics
  file is given;
- zero-coded gaps: a unit that sold for at least two years and then shows
  exact zeros for a whole year or more (a reporting change, not a market).

``data.gaps`` decides what a run does with the first two kinds (see
:data:`GAP_CHOICES`); zero-coded gaps are always flagged, never changed.
Pure functions over DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig

#: What a run does with units that have no sales history or no demographics.
GAP_CHOICES = {
    "stop": "the run stops and lists them",
    "exclude": "they are left out of the design (no territory, no scores)",
    "estimate": "their potential is estimated from neighbours and market features and "
                "flagged; without sales history their forecast is 0",
}
NO_SALES, NO_DEMOGRAPHICS, ZEROS = "no sales history", "no demographics", "zeros for a year"


@dataclass(frozen=True)
class DataGaps:
    """The gaps of a run's inputs; ids as text, sorted."""

    no_sales: list[str] = field(default_factory=list)
    no_demographics: list[str] = field(default_factory=list)
    #: unit, first and last period of the zero run, and its length in periods
    zero_coded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["unit", "first_zero", "last_zero", "n_periods"]))

    @property
    def missing(self) -> list[str]:
        """Units with no sales history or no demographics (what ``data.gaps`` handles)."""
        return sorted(set(self.no_sales) | set(self.no_demographics))

    def __bool__(self) -> bool:
        return bool(self.no_sales or self.no_demographics or len(self.zero_coded))

    def by_unit(self) -> pd.Series:
        """Per unit with a sales gap (no history, or zeros coding a gap), the gap in words;
        what the recommendations cannot judge on penetration."""
        words = {u: "no sales history (potential estimated)" for u in self.no_sales}
        words |= {r.unit: f"exact zeros {r.first_zero:%Y-%m}..{r.last_zero:%Y-%m} after "
                          "years of sales" for r in self.zero_coded.itertuples()}
        return pd.Series(words, dtype=object)

    def table(self, handling: str, unit_col: str = "unit_id") -> pd.DataFrame:
        """One row per unit and gap: ``unit_col``, ``gap``, ``detail``, ``handling``."""
        done = {"exclude": "left out of the design", "estimate": "potential estimated",
                "stop": "run stopped"}[handling]
        rows = [{unit_col: u, "gap": NO_SALES, "detail": "no sales row in the history",
                 "handling": done} for u in self.no_sales]
        rows += [{unit_col: u, "gap": NO_DEMOGRAPHICS, "detail": "no demographics row",
                  "handling": done} for u in self.no_demographics]
        rows += [{unit_col: r.unit, "gap": ZEROS,
                  "detail": f"{r.n_periods} periods of exact zeros, {r.first_zero:%Y-%m-%d} to "
                            f"{r.last_zero:%Y-%m-%d}, after years of sales",
                  "handling": "flagged; check the reporting"}
                 for r in self.zero_coded.itertuples()]
        return pd.DataFrame(rows, columns=[unit_col, "gap", "detail", "handling"])


def find_data_gaps(
    unit_ids: np.ndarray,
    sales: pd.DataFrame,
    demographics: pd.DataFrame | None,
    columns: ColumnsConfig,
    season: int,
    as_of: pd.Timestamp | None = None,
) -> DataGaps:
    """The gaps of validated inputs as of ``as_of`` (default: the whole history).

    Parameters
    ----------
    unit_ids
        Every unit of the geography.
    sales, demographics
        Validated tables (one row per unit and period; per unit, or unit and year).
    season
        Periods in a year of the data (12 monthly, 4 quarterly, 52 weekly, 1 annual):
        a zero-coded gap is at least a year of zeros after at least two years of sales.
    """
    cols = columns
    ids = pd.Index(np.asarray(unit_ids).astype(str))
    history = sales if as_of is None else sales[sales[cols.time_col] <= as_of]
    sold = history.dropna(subset=[cols.target_col])[cols.unit_col].astype(str).unique()
    no_sales = sorted(ids.difference(pd.Index(sold)))
    no_demographics: list[str] = []
    if demographics is not None:
        values = demographics.drop(columns=[cols.unit_col, cols.year_col], errors="ignore")
        known = demographics.loc[values.notna().any(axis=1), cols.unit_col].astype(str).unique()
        no_demographics = sorted(ids.difference(pd.Index(known)))
    return DataGaps(no_sales, no_demographics, zero_coded_gaps(history, cols, season))


def zero_coded_gaps(sales: pd.DataFrame, columns: ColumnsConfig, season: int) -> pd.DataFrame:
    """Each unit's longest run of exact zeros that lasts a year or more and follows at
    least two years of periods with sales; one row per such unit."""
    cols = columns
    year = max(int(season), 1)
    wide = sales.pivot_table(index=cols.unit_col, columns=cols.time_col,
                             values=cols.target_col, aggfunc="sum", dropna=False)
    periods = pd.DatetimeIndex(wide.columns)
    values = wide.to_numpy(dtype=float)
    rows = []
    for unit, row in zip(wide.index.astype(str), values, strict=True):
        zero = row == 0.0
        if zero.sum() < year:
            continue
        sold_before = np.cumsum(row > 0)  # periods with sales up to each period
        best = None
        start = None
        for t, z in enumerate([*zero, False]):
            if z and start is None:
                start = t
            elif not z and start is not None:
                length = t - start
                if length >= year and sold_before[start] >= 2 * year and (
                        best is None or length > best[1] - best[0]):
                    best = (start, t)
                start = None
        if best is not None:
            rows.append({"unit": unit, "first_zero": periods[best[0]],
                         "last_zero": periods[best[1] - 1], "n_periods": best[1] - best[0]})
    return pd.DataFrame(rows, columns=["unit", "first_zero", "last_zero", "n_periods"])
