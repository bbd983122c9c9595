"""Forecast accuracy metrics and the seasonal-naive baseline.

All metrics take arrays of actuals and forecasts and ignore pairs where
either is NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _pairs(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual, forecast = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    keep = ~np.isnan(actual) & ~np.isnan(forecast)
    return actual[keep], forecast[keep]


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Weighted absolute percentage error: Σ|a − f| / Σ|a|."""
    a, f = _pairs(actual, forecast)
    denom = np.abs(a).sum()
    return float(np.abs(a - f).sum() / denom) if denom > 0 else float("nan")


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    a, f = _pairs(actual, forecast)
    return float(np.abs(a - f).mean()) if len(a) else float("nan")


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    a, f = _pairs(actual, forecast)
    return float(np.sqrt(((a - f) ** 2).mean())) if len(a) else float("nan")


def bias(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Σ(f − a) / Σa: positive means over-forecasting."""
    a, f = _pairs(actual, forecast)
    denom = a.sum()
    return float((f - a).sum() / denom) if denom > 0 else float("nan")


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper]."""
    a = np.asarray(actual, dtype=float)
    keep = ~np.isnan(a) & ~np.isnan(lower) & ~np.isnan(upper)
    inside = (a[keep] >= np.asarray(lower)[keep]) & (a[keep] <= np.asarray(upper)[keep])
    return float(inside.mean()) if keep.any() else float("nan")


def spearman(estimate: np.ndarray, truth: np.ndarray) -> float:
    e, t = _pairs(truth, estimate)
    return float(spearmanr(e, t).statistic) if len(e) > 2 else float("nan")


def accuracy_table(frame: pd.DataFrame, forecast_cols: list[str], by: str | None = "horizon") -> pd.DataFrame:
    """WAPE, MAE, RMSE and bias of each forecast column, overall and per ``by``."""
    rows = []
    groups = [("all", frame)]
    if by is not None:
        groups += [(key, grp) for key, grp in frame.groupby(by)]
    for key, grp in groups:
        for col in forecast_cols:
            rows.append(
                {
                    by or "group": key,
                    "model": col,
                    "wape": wape(grp["actual"], grp[col]),
                    "mae": mae(grp["actual"], grp[col]),
                    "rmse": rmse(grp["actual"], grp[col]),
                    "bias": bias(grp["actual"], grp[col]),
                }
            )
    return pd.DataFrame(rows)
