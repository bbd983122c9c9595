"""A regular unit × period panel with gaps made explicit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError


def regular_periods(start: pd.Timestamp, end: pd.Timestamp, frequency: str) -> pd.DatetimeIndex:
    """Every period start from ``start`` to ``end`` inclusive."""
    return pd.date_range(start, end, freq=frequency)


def make_panel(
    sales: pd.DataFrame,
    unit_ids: np.ndarray | list[str],
    frequency: str = "MS",
    columns: ColumnsConfig | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Reindex sales onto every (unit, period) pair of a regular calendar.

    Months with no row get NaN values and ``observed = False``; units that
    never sold are kept, so the panel always has ``len(unit_ids) × T`` rows.

    Parameters
    ----------
    sales
        Validated sales, one row per (unit, period).
    unit_ids
        All known units, in the order the panel should use.
    frequency
        Pandas offset alias of the calendar.
    end
        Last period of the panel (the as-of date); rows after it are dropped.
    """
    cols = columns or ColumnsConfig()
    time = cols.time_col
    if end is not None:
        sales = sales[sales[time] <= end]
    if sales.empty:
        raise InputError("sales", "no sales rows on or before the as-of date", column=time)
    periods = regular_periods(sales[time].min(), end or sales[time].max(), frequency)
    return _reindex(sales, unit_ids, periods, cols)


def panel_on_calendar(
    sales: pd.DataFrame,
    unit_ids: np.ndarray | list[str],
    periods: pd.DatetimeIndex,
    columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """The regular panel of :func:`make_panel` on a given calendar.

    Parameters
    ----------
    sales
        Validated sales, one row per (unit, period); rows after the last of
        ``periods`` are dropped.
    unit_ids
        All units of the panel, in its order.
    periods
        The calendar, e.g. fixed once for every partition of units.
    """
    cols = columns or ColumnsConfig()
    sales = sales[sales[cols.time_col] <= periods[-1]]
    return _reindex(sales, unit_ids, periods, cols)


def _reindex(
    sales: pd.DataFrame,
    unit_ids: np.ndarray | list[str],
    periods: pd.DatetimeIndex,
    cols: ColumnsConfig,
) -> pd.DataFrame:
    """Sales on every (unit, period) pair, with ``observed`` marking the rows that exist."""
    unit, time = cols.unit_col, cols.time_col
    index = pd.MultiIndex.from_product(
        [pd.Index(np.asarray(unit_ids, dtype=str), name=unit), pd.Index(periods, name=time)]
    )
    panel = sales.set_index([unit, time]).reindex(index)
    panel["observed"] = panel[cols.target_col].notna()
    return panel.reset_index()


def to_wide(
    panel: pd.DataFrame, value_col: str, columns: ColumnsConfig | None = None
) -> pd.DataFrame:
    """Units as rows, periods as columns."""
    cols = columns or ColumnsConfig()
    return panel.pivot(index=cols.unit_col, columns=cols.time_col, values=value_col)
