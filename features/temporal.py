"""Lags, rolling windows, seasonality and trend, computed as of each origin.

Convention: the features of origin ``t`` (the as-of period) use values up to
and including ``t`` and nothing after it. ``sales_lag_k`` is the value ``k``
periods before the first forecast period, i.e. ``y[t + 1 - k]``, so
``sales_lag_1`` is the last observed value. ``sales_roll_mean_w3`` is the mean
of ``y[t-2..t]``; a window with a missing period is NaN, as in pandas'
``rolling(w)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from territory.features.config import FeaturesConfig


def lag_name(target: str, lag: int) -> str:
    return f"{target}_lag_{lag}"


def rolling_name(target: str, stat: str, window: int) -> str:
    return f"{target}_roll_{stat}_w{window}"


def _shift_right(values: np.ndarray, k: int) -> np.ndarray:
    """Shift columns right by ``k`` (column t gets column t-k), NaN-padded."""
    out = np.full_like(values, np.nan)
    if k < values.shape[1]:
        out[:, k:] = values[:, : values.shape[1] - k] if k > 0 else values
    return out


def _rolling(values: np.ndarray, window: int, stat: str) -> np.ndarray:
    """Trailing-window statistic over columns; NaN if any value in the window is NaN."""
    n_units, n_periods = values.shape
    out = np.full((n_units, n_periods), np.nan)
    if window > n_periods:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=1)
    if stat == "mean":
        res = windows.mean(axis=2)
    elif stat == "std":
        res = windows.std(axis=2, ddof=1) if window > 1 else np.zeros(windows.shape[:2])
    elif stat == "min":
        res = windows.min(axis=2)
    elif stat == "max":
        res = windows.max(axis=2)
    else:
        raise ValueError(f"unknown rolling statistic '{stat}'")
    out[:, window - 1 :] = res
    return out


def origin_features(
    wide: pd.DataFrame, config: FeaturesConfig, target: str = "sales"
) -> dict[str, np.ndarray]:
    """Temporal features for every (unit, origin) cell of a wide panel.

    Parameters
    ----------
    wide
        Units × periods, NaN where a period is missing.
    config
        Which lags, windows and statistics to build.
    target
        Prefix of the feature names.

    Returns
    -------
    dict
        Feature name to an array of the same shape as ``wide``.
    """
    values = wide.to_numpy(dtype=float)
    feats: dict[str, np.ndarray] = {}
    for lag in config.lags:
        feats[lag_name(target, lag)] = _shift_right(values, lag - 1)
    for window in config.rolling_windows:
        for stat in config.rolling_stats:
            feats[rolling_name(target, stat, window)] = _rolling(values, window, stat)
    if config.trend:
        w = max(config.rolling_windows)
        level = feats.get(rolling_name(target, "mean", w), _rolling(values, w, "mean"))
        previous = _shift_right(level, w)
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(previous > 0, level / previous - 1.0, np.nan)
        feats[f"{target}_growth_w{w}"] = growth
    return feats


def seasonal_values(
    values: np.ndarray, origin: int, horizons: np.ndarray, season: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Same-season values one and two seasons before each target period.

    For origin ``t`` and horizon ``h`` the target period is ``t + h``; the
    values returned are ``y[t + h - s·m]`` with ``m`` the smallest number of
    seasons that keeps the index at or before ``t`` (and the one after it).
    """
    n_units = values.shape[0]
    first = np.full((n_units, len(horizons)), np.nan)
    second = np.full((n_units, len(horizons)), np.nan)
    for j, h in enumerate(horizons):
        back = season * int(np.ceil(h / season))
        for out, offset in ((first, back), (second, back + season)):
            idx = origin + h - offset
            if 0 <= idx <= origin:
                out[:, j] = values[:, idx]
    return first, second


def calendar_features(periods: pd.DatetimeIndex, frequency: str = "MS") -> pd.DataFrame:
    """The target period's place in the year: month (and its cyclical encoding) for
    monthly and quarterly data, week of year as well for weekly data, nothing for
    annual data."""
    if frequency == "YS":
        return pd.DataFrame(index=periods)
    month = periods.month.to_numpy()
    calendar = {
        "month": month,
        "month_sin": np.sin(2 * np.pi * month / 12),
        "month_cos": np.cos(2 * np.pi * month / 12),
    }
    if frequency == "W-MON":
        week = periods.isocalendar().week.to_numpy(dtype=float)
        calendar |= {"week_sin": np.sin(2 * np.pi * week / 52.18),
                     "week_cos": np.cos(2 * np.pi * week / 52.18)}
    return pd.DataFrame(calendar, index=periods)
