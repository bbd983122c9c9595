"""Statistical forecast members from Nixtla's statsforecast, one call per origin.

:func:`statistical_forecasts` takes the history of every unit up to one
origin (units × periods, oldest first, NaN where a unit has no value) and
returns each member's point forecast and interval for horizons
``1..horizon``. It is pure: arrays in, arrays out; statsforecast fits every
series on its own (``n_jobs`` processes).

Members (``MEMBERS``):

* ``auto_ets``: AutoETS (error, trend and season chosen by AICc, damped trend
  allowed);
* ``auto_theta``: AutoTheta (standard, optimised or dynamic theta, by MSE);
* ``auto_arima``: AutoARIMA (stepwise search);
* ``auto_ces``: AutoCES (complex exponential smoothing, the model chosen by AICc);
* ``dynamic_theta``: DynamicOptimizedTheta (theta with its own smoothing of the
  trend line, optimised).

Every member is seasonal with the data's ``season`` (no season for annual
data). A unit whose history cannot carry them gets the per-unit fallback
for every member, from the same library: CrostonSBA for an intermittent
series (at least ``intermittent_share`` of its periods are zero), ADIDA
for a short one (fewer than ``min_periods(season)`` observed periods). Its
interval is a naive one: the spread of the series' one-step changes,
widening with the square root of the horizon. Leading missing periods (a
unit that starts later) are dropped, gaps inside the history are filled by
linear interpolation, and a unit with no value at the origin itself or no
value at all gets no forecast (NaN).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

MEMBERS = ("auto_ets", "auto_theta", "auto_arima", "auto_ces", "dynamic_theta")
#: What ``territory backtest`` combines by default (AutoARIMA only for annual and quarterly
#: data); AutoCES and DynamicOptimizedTheta are there to be named (a study on early origins
#: did not choose them: ``benchmarks/RESULTS.md``).
DEFAULT_MEMBERS = ("auto_ets", "auto_theta", "auto_arima")
FALLBACKS = ("croston_sba", "adida")


def min_periods(season: int) -> int:
    """Observed periods a seasonal member needs: two seasons and two more (8 for annual data)."""
    return 2 * season + 2 if season > 1 else 8


@dataclass
class StatisticalForecast:
    """Forecasts of the members at one origin.

    ``point``, ``lo`` and ``hi`` map each member to a (units × horizon)
    array. ``fallback`` names the fallback model used for each unit that
    got one (empty string otherwise); ``interpolated`` counts units whose
    gaps were filled; ``no_history`` flags units without a forecast.
    """

    point: dict[str, np.ndarray]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]
    fallback: np.ndarray
    interpolated: int = 0
    no_history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _models(members: tuple[str, ...], season: int):
    from statsforecast.models import AutoARIMA, AutoCES, AutoETS, AutoTheta, DynamicOptimizedTheta

    made = {
        "auto_ets": lambda: AutoETS(season_length=season, alias="auto_ets"),
        "auto_theta": lambda: AutoTheta(season_length=season, alias="auto_theta"),
        "auto_arima": lambda: AutoARIMA(season_length=season, alias="auto_arima"),
        "auto_ces": lambda: AutoCES(season_length=season, alias="auto_ces"),
        "dynamic_theta": lambda: DynamicOptimizedTheta(season_length=season,
                                                       alias="dynamic_theta"),
    }
    return [made[m]() for m in members]


def _prepared(row: np.ndarray, max_history: int | None) -> tuple[np.ndarray, bool] | None:
    """The usable history of one unit (trimmed, gaps interpolated), or None."""
    observed = np.flatnonzero(~np.isnan(row))
    if not len(observed) or observed[-1] != len(row) - 1:
        return None
    y = row[observed[0]:]
    if max_history is not None:
        y = y[-max_history:]
    gaps = bool(np.isnan(y).any())
    if gaps:
        idx = np.arange(len(y))
        known = ~np.isnan(y)
        y = np.interp(idx, idx[known], y[known])
    return y, gaps


def _long_frame(series: dict[int, np.ndarray], end: pd.Timestamp, frequency: str) -> pd.DataFrame:
    parts = []
    for unit, y in series.items():
        ds = pd.date_range(end=end, periods=len(y), freq=frequency)
        parts.append(pd.DataFrame({"unique_id": unit, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


def _naive_interval(y: np.ndarray, point: np.ndarray, level: float) -> tuple[np.ndarray, ...]:
    """Point ± z · sd(one-step changes) · sqrt(h), clipped at zero."""
    spread = np.std(np.diff(y)) if len(y) > 2 else np.std(y)
    z = norm.ppf(0.5 + level / 2)
    width = z * spread * np.sqrt(np.arange(1, len(point) + 1))
    return np.maximum(point - width, 0.0), point + width


def statistical_forecasts(
    history: np.ndarray,
    end: pd.Timestamp,
    horizon: int,
    season: int,
    frequency: str,
    members: tuple[str, ...] = MEMBERS,
    level: float = 0.8,
    intermittent_share: float = 0.3,
    max_history: int | None = None,
    n_jobs: int = 1,
) -> StatisticalForecast:
    """Forecast every unit of ``history`` with each statsforecast member.

    Parameters
    ----------
    history
        Units × periods, oldest first; the last column is the origin ``end``.
    end
        The origin's period (the last column's date).
    horizon
        Periods to forecast.
    season
        Periods in a year (1: annual, no season).
    frequency
        Pandas offset code of the periods (``YS``, ``QS``, ``MS``, ``W-MON``).
    members
        Any of :data:`MEMBERS`.
    level
        Nominal coverage of the intervals (0.8: the 10% and 90% quantiles).
    intermittent_share
        A unit with at least this share of zero periods is intermittent.
    max_history
        Fit on at most this many recent periods (None: all).
    n_jobs
        Processes statsforecast uses.

    Returns
    -------
    StatisticalForecast
    """
    from statsforecast import StatsForecast
    from statsforecast.models import ADIDA, CrostonSBA

    unknown = set(members) - set(MEMBERS)
    if unknown:
        raise ValueError(f"unknown statistical members {sorted(unknown)}; choose from {MEMBERS}")
    history = np.asarray(history, dtype=float)
    n_units = history.shape[0]
    shape = (n_units, horizon)
    point = {m: np.full(shape, np.nan) for m in members}
    lo = {m: np.full(shape, np.nan) for m in members}
    hi = {m: np.full(shape, np.nan) for m in members}
    fallback = np.full(n_units, "", dtype=object)
    no_history = np.zeros(n_units, dtype=bool)
    regular: dict[int, np.ndarray] = {}
    interpolated = 0
    for i in range(n_units):
        prepared = _prepared(history[i], max_history)
        if prepared is None:
            no_history[i] = True
            continue
        y, gaps = prepared
        interpolated += int(gaps)
        if np.mean(y == 0) >= intermittent_share:
            fallback[i] = "croston_sba"
        elif len(y) < min_periods(season):
            fallback[i] = "adida"
        else:
            regular[i] = y
    label = f"{round(level * 100)}"
    env = os.environ.get("NIXTLA_ID_AS_COL")
    os.environ["NIXTLA_ID_AS_COL"] = "1"
    try:
        if regular and members:
            sf = StatsForecast(models=_models(tuple(members), season), freq=frequency,
                               n_jobs=n_jobs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = sf.forecast(df=_long_frame(regular, end, frequency), h=horizon,
                                  level=[round(level * 100)])
            units = out["unique_id"].to_numpy().reshape(-1, horizon)[:, 0].astype(int)
            for m in members:
                point[m][units] = out[m].to_numpy().reshape(-1, horizon)
                lo[m][units] = out[f"{m}-lo-{label}"].to_numpy().reshape(-1, horizon)
                hi[m][units] = out[f"{m}-hi-{label}"].to_numpy().reshape(-1, horizon)
        for i in np.flatnonzero(fallback != ""):
            y = _prepared(history[i], max_history)[0]
            model = CrostonSBA() if fallback[i] == "croston_sba" else ADIDA()
            fc = np.asarray(model.forecast(y=y, h=horizon)["mean"], dtype=float)
            low, high = _naive_interval(y, fc, level)
            for m in members:
                point[m][i], lo[m][i], hi[m][i] = fc, low, high
    finally:
        if env is None:
            os.environ.pop("NIXTLA_ID_AS_COL", None)
        else:
            os.environ["NIXTLA_ID_AS_COL"] = env
    _sanitise(history, point, lo, hi)
    return StatisticalForecast(point, lo, hi, fallback, interpolated, no_history)


def _sanitise(history: np.ndarray, point: dict, lo: dict, hi: dict) -> None:
    """Sales are never negative; an absurd or non-finite forecast becomes the last value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        top = 10 * np.nanmax(np.abs(history), axis=1, initial=0.0)[:, None] + 1e-9
    last = history[:, -1:]
    for m in point:
        bad = ~np.isfinite(point[m]) | (np.abs(point[m]) > top)
        bad &= np.isfinite(last)
        point[m] = np.where(bad, last, np.maximum(point[m], 0.0))
        lo[m] = np.where(bad, np.nan, np.maximum(lo[m], 0.0))
        hi[m] = np.where(bad, np.nan, np.maximum(hi[m], 0.0))
