"""Forecast accuracy metrics, baselines and the rolling-origin backtest.

All metrics take arrays of actuals and forecasts and ignore pairs where
either is NaN.

:func:`rolling_origin_backtest` is a pure function: it takes a panel, the
feature declaration and a factory that returns an unfitted estimator, and for
each of ``n_windows`` origins (``step`` periods apart, the last one
``horizon`` periods before the end of the panel) it fits a fresh estimator on
rows whose *target* period is at or before the origin, then forecasts
horizons ``1..horizon`` from that origin. The same origins give three
baselines, computed from the history up to the origin only:

* seasonal naive: the value one season before the target period (the last
  value, for annual data); the season is the data's (12 months, 4 quarters,
  52 weeks, 1 year);
* moving average: the mean of the last ``ma_window`` observed values;
* the statistical members of :mod:`territory.models.statistical`
  (statsforecast's AutoETS, AutoTheta and AutoARIMA, seasonal with the
  data's season), each with its interval (``<member>_lo``, ``<member>_hi``).
  A unit too short or intermittent for them gets the library's ADIDA or
  CrostonSBA forecast instead; the number of such units is counted and
  reported. ``"ets"`` is read as ``"auto_ets"``.

MASE divides each absolute error by the series' in-sample seasonal-naive MAE
(from the history up to the origin, so it too never looks ahead), so a MASE
of 1 is "as good as seasonal naive was in-sample".
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from territory.features.build import build_forecast_table, training_origins
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.errors import InputError
from territory.features.panel import to_wide
from territory.models.statistical import MEMBERS, statistical_forecasts

BASELINES = ("seasonal_naive", "moving_average", *MEMBERS)
#: Older names of a baseline, still accepted.
BASELINE_ALIASES = {"ets": "auto_ets"}


# -- metrics -----------------------------------------------------------------
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


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error: mean of |a − f| / scale.

    ``scale`` is each row's in-sample seasonal-naive MAE (see
    :func:`seasonal_naive_scale`). Rows with a NaN or non-positive scale are
    ignored. With equally many rows per series this is the mean of the
    per-series MASE.
    """
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    s = np.asarray(scale, dtype=float)
    keep = ~np.isnan(a) & ~np.isnan(f) & np.isfinite(s) & (s > 0)
    return float((np.abs(a[keep] - f[keep]) / s[keep]).mean()) if keep.any() else float("nan")


def pinball(actual: np.ndarray, forecast: np.ndarray, quantile: float) -> float:
    """Mean pinball (quantile) loss of ``forecast`` as the ``quantile`` of ``actual``."""
    a, f = _pairs(actual, forecast)
    if not len(a):
        return float("nan")
    diff = a - f
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper]."""
    a = np.asarray(actual, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    keep = ~np.isnan(a) & ~np.isnan(lower) & ~np.isnan(upper)
    inside = (a[keep] >= lower[keep]) & (a[keep] <= upper[keep])
    return float(inside.mean()) if keep.any() else float("nan")


def spearman(estimate: np.ndarray, truth: np.ndarray) -> float:
    e, t = _pairs(truth, estimate)
    return float(spearmanr(e, t).statistic) if len(e) > 2 else float("nan")


def accuracy_table(
    frame: pd.DataFrame, forecast_cols: list[str], by: str | None = "horizon"
) -> pd.DataFrame:
    """WAPE, MAE, RMSE and bias of each forecast column, overall and per ``by``.

    With a ``scale`` column in ``frame`` MASE is added too.
    """
    rows = []
    groups = [("all", frame)]
    if by is not None:
        groups += [(key, grp) for key, grp in frame.groupby(by)]
    for key, grp in groups:
        for col in forecast_cols:
            row = {
                by or "group": key,
                "model": col,
                "wape": wape(grp["actual"], grp[col]),
                "mae": mae(grp["actual"], grp[col]),
                "rmse": rmse(grp["actual"], grp[col]),
                "bias": bias(grp["actual"], grp[col]),
            }
            if "scale" in grp:
                row["mase"] = mase(grp["actual"], grp[col], grp["scale"])
            rows.append(row)
    return pd.DataFrame(rows)


# -- baselines -----------------------------------------------------------------
def seasonal_naive_scale(history: np.ndarray, season: int = 12) -> np.ndarray:
    """In-sample MAE of the seasonal naive forecast per row of ``history`` (units × periods)."""
    history = np.asarray(history, dtype=float)
    if history.shape[1] <= season:
        return np.full(history.shape[0], np.nan)
    diff = np.abs(history[:, season:] - history[:, :-season])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
        return np.nanmean(diff, axis=1)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int = 12) -> np.ndarray:
    """``y[T + h − season·ceil(h/season)]`` for h = 1..horizon (units × horizon)."""
    history = np.asarray(history, dtype=float)
    n = history.shape[1]
    out = np.full((history.shape[0], horizon), np.nan)
    for j, h in enumerate(range(1, horizon + 1)):
        idx = n - 1 + h - season * int(np.ceil(h / season))
        if 0 <= idx < n:
            out[:, j] = history[:, idx]
    return out


def moving_average_forecast(history: np.ndarray, horizon: int, window: int = 12) -> np.ndarray:
    """Mean of the last ``window`` observed values, repeated over the horizon."""
    history = np.asarray(history, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmean(history[:, -window:], axis=1)
    return np.repeat(level[:, None], horizon, axis=1)


# -- rolling-origin backtest ---------------------------------------------------------
def backtest_origins(
    periods: pd.DatetimeIndex, n_windows: int, step: int, horizon: int
) -> list[pd.Timestamp]:
    """Origins, oldest first: the last is ``horizon`` periods before the end."""
    periods = pd.DatetimeIndex(periods)
    last = len(periods) - 1 - horizon
    idx = [last - k * step for k in range(n_windows)]
    if n_windows < 1 or idx[-1] < 0:
        raise InputError(
            "sales",
            f"{len(periods)} periods are too few for {n_windows} backtest windows of "
            f"horizon {horizon}, {step} apart",
            hint="lower forecast.backtest.windows or step, or supply a longer history",
        )
    return [periods[i] for i in sorted(idx)]


@dataclass
class BacktestResult:
    """Predictions of a rolling-origin backtest and their scores.

    ``predictions`` has one row per (unit, origin, horizon): ``actual``,
    ``scale`` (the MASE denominator), ``history_periods`` (periods from the
    unit's first sale to the origin), ``forecast``, ``forecast_lo``,
    ``forecast_hi`` and one column per baseline.
    """

    predictions: pd.DataFrame
    origins: list[pd.Timestamp]
    horizon: int
    interval_level: float
    models: list[str]
    member_fallbacks: int = 0
    member_series: int = 0
    fit_seconds: float = 0.0
    baseline_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def windows_key(self) -> str:
        """Identifies the evaluation windows: two runs compare only if these are equal."""
        origins = ",".join(f"{o:%Y-%m-%d}" for o in self.origins)
        return f"backtest[{origins}]h{self.horizon}"

    def table(self, by: str | None = "horizon") -> pd.DataFrame:
        """Point metrics per model, overall (``all``) and per ``by``."""
        return accuracy_table(self.predictions, self.models, by=by)

    def interval_table(self, by: str | None = "horizon") -> pd.DataFrame:
        """Coverage and pinball loss of the interval bounds, overall and per ``by``."""
        alpha = 1.0 - self.interval_level
        p = self.predictions
        groups = [("all", p)] + ([(k, g) for k, g in p.groupby(by)] if by else [])
        rows = []
        for key, grp in groups:
            lo = pinball(grp["actual"], grp["forecast_lo"], alpha / 2)
            hi = pinball(grp["actual"], grp["forecast_hi"], 1 - alpha / 2)
            rows.append({
                by or "group": key,
                "coverage": coverage(grp["actual"], grp["forecast_lo"], grp["forecast_hi"]),
                "pinball_lo": lo,
                "pinball_hi": hi,
                "pinball": (lo + hi) / 2,
                "width_share": float(
                    (grp["forecast_hi"] - grp["forecast_lo"]).sum() / grp["actual"].sum()
                ) if grp["actual"].sum() > 0 else float("nan"),
            })
        return pd.DataFrame(rows)

    def summary(self, prefix: str = "backtest_") -> dict[str, float]:
        """Flat metrics for tracking: ours unsuffixed, baselines suffixed by name."""
        out: dict[str, float] = {}
        table = self.table()
        for _, row in table.iterrows():
            suffix = "" if row["model"] == "forecast" else f"_{row['model']}"
            if row["horizon"] == "all":
                for metric in ("wape", "mae", "rmse", "bias", "mase"):
                    out[f"{prefix}{metric}{suffix}"] = float(row[metric])
            elif row["model"] == "forecast":
                h = int(row["horizon"])
                out[f"{prefix}wape_h{h:02d}"] = float(row["wape"])
                out[f"{prefix}mase_h{h:02d}"] = float(row["mase"])
        intervals = self.interval_table()
        for _, row in intervals.iterrows():
            if row["horizon"] == "all":
                out[f"{prefix}coverage"] = float(row["coverage"])
                out[f"{prefix}pinball"] = float(row["pinball"])
            else:
                out[f"{prefix}coverage_h{int(row['horizon']):02d}"] = float(row["coverage"])
        out[f"{prefix}windows"] = float(len(self.origins))
        if any(m in self.models for m in MEMBERS):
            out[f"{prefix}member_fallbacks"] = float(self.member_fallbacks)
            out[f"{prefix}member_fallback_share"] = (
                self.member_fallbacks / self.member_series if self.member_series
                else float("nan"))
        out[f"{prefix}fit_seconds"] = self.fit_seconds
        return out


#: ``origin_forecasts(estimator, origin)``: the forecasts of ``estimator`` fitted at ``origin``
OriginForecasts = Callable[[Any, pd.Timestamp], pd.DataFrame]
#: the columns of an origin's forecasts, after the unit column
FORECAST_COLUMNS = ("horizon", "target_period", "forecast", "forecast_lo", "forecast_hi")


def origin_rows_forecasts(estimator: Any, test: pd.DataFrame, unit_col: str) -> pd.DataFrame:
    """A fitted estimator's forecasts of the rows ``test`` (one origin's), with their keys."""
    if hasattr(estimator, "predict_interval"):
        point, lo, hi = estimator.predict_interval(test)
    else:
        point = estimator.predict(test)
        lo = hi = np.full(len(test), np.nan)
    return pd.DataFrame({
        unit_col: test[unit_col].to_numpy(), "horizon": test["horizon"].to_numpy(),
        "target_period": test["target_period"].to_numpy(),
        "forecast": point, "forecast_lo": lo, "forecast_hi": hi,
    })


def table_forecasts(table: pd.DataFrame, unit_col: str) -> OriginForecasts:
    """The backtest's fit at an origin on ``table``: the rows whose target period is at or
    before the origin; forecasts of the rows of that origin, in the table's order."""
    def forecasts(estimator: Any, origin: pd.Timestamp) -> pd.DataFrame:
        test = table[table["origin"] == origin]
        if test.empty:  # the backtest says which origin has too little history
            return pd.DataFrame(columns=[unit_col, *FORECAST_COLUMNS])
        estimator.fit(table[table["target_period"] <= origin])
        return origin_rows_forecasts(estimator, test, unit_col)

    return forecasts


def rolling_origin_backtest(
    panel: pd.DataFrame,
    features: FeaturesConfig,
    horizon: int,
    make_estimator: Callable[[], Any],
    n_windows: int = 4,
    step: int = 3,
    columns: ColumnsConfig | None = None,
    demographics: pd.DataFrame | None = None,
    graph: Any = None,
    baselines: Sequence[str] = ("seasonal_naive", "moving_average"),
    season: int | None = None,
    ma_window: int | None = None,
    interval_level: float | None = None,
    table: pd.DataFrame | None = None,
    member_max_history: int | None = None,
    n_jobs: int = 1,
    origin_forecasts: OriginForecasts | None = None,
) -> BacktestResult:
    """Refit an estimator at each of ``n_windows`` origins and score it against baselines.

    Parameters
    ----------
    panel
        Regular panel (:func:`territory.features.panel.make_panel`) covering the whole history.
    features
        Feature declaration used to build the forecast table.
    horizon
        Periods forecast from each origin.
    make_estimator
        Called once per window; returns an unfitted estimator with ``fit(table)``
        and ``predict(table)`` (and optionally ``predict_interval``).
    n_windows, step
        Number of origins and the periods between them.
    demographics, graph
        Passed to :func:`territory.features.build.build_forecast_table`.
    baselines
        Any of ``"seasonal_naive"``, ``"moving_average"`` and the statistical
        members of :data:`territory.models.statistical.MEMBERS`.
    season, ma_window
        Periods of a season (seasonal naive, its MASE scale and the members) and of the
        moving average; by default the features' season (12 monthly, 4
        quarterly, 52 weekly, 1 annual) and level window.
    interval_level
        Nominal level of the estimator's interval (read from the estimator if None).
    table
        A forecast table built from this panel for every training origin, to
        save rebuilding it. Temporal and spatial features of origin ``t``
        use data up to ``t`` only (tested in ``tests/test_features.py``), so
        slicing it by origin equals rebuilding it on the truncated panel.
    member_max_history
        The statistical members fit on at most this many recent periods
        (default: ten seasons, or all of an annual history).
    n_jobs
        Processes the statistical members use.
    origin_forecasts
        ``origin_forecasts(estimator, origin)`` fits the unfitted ``estimator`` on
        the rows whose target period is at or before ``origin`` and returns its
        forecasts from that origin (see :func:`table_forecasts`, the default on
        ``table``). The Dask runner passes one that fits and forecasts where the
        workers hold the rows (:mod:`territory.models.distributed_backtest`); the
        table is then not read.

    Returns
    -------
    BacktestResult
    """
    cols = columns or ColumnsConfig()
    season = features.season if season is None else season
    ma_window = features.level_window if ma_window is None else ma_window
    baselines = tuple(dict.fromkeys(BASELINE_ALIASES.get(b, b) for b in baselines))
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
    wide = to_wide(panel, cols.target_col, cols)
    periods = pd.DatetimeIndex(wide.columns)
    values = wide.to_numpy(dtype=float)
    origins = backtest_origins(periods, n_windows, step, horizon)
    if origin_forecasts is None and table is None:
        table = build_forecast_table(
            panel, features, horizon,
            [o for o in training_origins(periods, features) if o <= origins[-1]],
            demographics, graph, cols,
        )
    unit = cols.unit_col
    frames = []
    fit_seconds = baseline_seconds = 0.0
    member_fallbacks = member_series = 0
    members = tuple(m for m in MEMBERS if m in baselines)
    if member_max_history is None and season > 1:
        member_max_history = 10 * season
    level = interval_level
    observed = ~np.isnan(values)
    first_seen = np.where(observed.any(axis=1), observed.argmax(axis=1), values.shape[1])
    if origin_forecasts is None:
        origin_forecasts = table_forecasts(table, unit)
    for origin in origins:
        t = periods.get_loc(origin)
        started = time.perf_counter()
        estimator = make_estimator()
        test = origin_forecasts(estimator, origin)
        if test.empty:
            raise InputError(
                "sales", f"origin {origin:%Y-%m} has too little history for the features")
        fit_seconds += time.perf_counter() - started
        if level is None:
            level = float(getattr(estimator, "interval_level", np.nan))

        started = time.perf_counter()
        history = values[:, : t + 1]
        row = wide.index.get_indexer(test[unit])
        hcol = test["horizon"].to_numpy().astype(int) - 1
        frame = pd.DataFrame({
            unit: test[unit].to_numpy(),
            "origin": origin,
            "horizon": test["horizon"].to_numpy(),
            "target_period": test["target_period"].to_numpy(),
            "actual": values[row, t + 1 + hcol],
            "scale": seasonal_naive_scale(history, season)[row],
            "history_periods": np.maximum(t + 1 - first_seen[row], 0),
            "forecast": test["forecast"].to_numpy(),
            "forecast_lo": test["forecast_lo"].to_numpy(),
            "forecast_hi": test["forecast_hi"].to_numpy(),
        })
        if "seasonal_naive" in baselines:
            frame["seasonal_naive"] = seasonal_naive_forecast(history, horizon, season)[row, hcol]
        if "moving_average" in baselines:
            average = moving_average_forecast(history, horizon, ma_window)
            frame["moving_average"] = average[row, hcol]
        if members:
            used = np.unique(row)
            stat = statistical_forecasts(
                history[used], origin, horizon, season, features.frequency, members,
                level=level if level is not None and np.isfinite(level) else 0.8,
                max_history=member_max_history, n_jobs=n_jobs)
            member_fallbacks += int((stat.fallback != "").sum())
            member_series += len(used)
            where = np.searchsorted(used, row)
            for m in members:
                frame[m] = stat.point[m][where, hcol]
                frame[f"{m}_lo"] = stat.lo[m][where, hcol]
                frame[f"{m}_hi"] = stat.hi[m][where, hcol]
        baseline_seconds += time.perf_counter() - started
        frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    models = ["forecast", *[b for b in BASELINES if b in baselines]]
    return BacktestResult(
        predictions=predictions, origins=origins, horizon=horizon,
        interval_level=float(level) if level is not None else float("nan"), models=models,
        member_fallbacks=member_fallbacks, member_series=member_series,
        fit_seconds=fit_seconds, baseline_seconds=baseline_seconds,
    )


def panel_from_table(
    table: pd.DataFrame, frequency: str = "MS", columns: ColumnsConfig | None = None
) -> pd.DataFrame:
    """Recover a regular long panel (unit, period, target) from a forecast table.

    Each row's ``target`` gives the value of its target period, and each
    origin's last observed value (``<target>_lag_1``, when declared) the
    value of the origin itself. Periods before the first origin are not in
    the table, so the panel starts there; that is enough for the baselines
    and the MASE scale, which then use the same history for every model.
    """
    cols = columns or ColumnsConfig()
    unit, time_col, target = cols.unit_col, cols.time_col, cols.target_col
    parts = [table[[unit, "target_period", "target"]].set_axis([unit, time_col, target], axis=1)]
    lag1 = f"{target}_lag_1"
    if lag1 in table.columns:
        first = table[table["horizon"] == table["horizon"].min()]
        parts.append(first[[unit, "origin", lag1]].set_axis([unit, time_col, target], axis=1))
    long = pd.concat(parts, ignore_index=True).dropna(subset=[target])
    long = long.drop_duplicates([unit, time_col], keep="first")
    periods = pd.date_range(long[time_col].min(), long[time_col].max(), freq=frequency)
    units = pd.Index(sorted(table[unit].unique()), name=unit)
    index = pd.MultiIndex.from_product([units, pd.Index(periods, name=time_col)])
    panel = long.set_index([unit, time_col])[[target]].astype(float).reindex(index)
    return panel.reset_index()


# -- potential -----------------------------------------------------------------
def potential_cross_validation(
    make_estimator: Callable[[], Any],
    X: pd.DataFrame,
    y: np.ndarray,
    quantile: float,
    n_folds: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Out-of-fold pinball loss and share of units below the estimated quantile.

    Units are split at random into ``n_folds`` folds (``numpy`` generator
    seeded by ``seed``); each fold is predicted by a model fit on the others.
    A well-calibrated potential has about ``quantile`` of units below it.
    """
    y = np.asarray(y, dtype=float)
    fold = np.random.default_rng(seed).integers(0, n_folds, len(y))
    oof = np.full(len(y), np.nan)
    for k in range(n_folds):
        train, test = fold != k, fold == k
        model = make_estimator().fit(X.iloc[np.flatnonzero(train)], y[train])
        oof[test] = model.predict(X.iloc[np.flatnonzero(test)])
    keep = ~np.isnan(y)
    return {
        "potential_cv_pinball": pinball(y, oof, quantile),
        "potential_cv_pinball_scaled": pinball(y, oof, quantile) / float(np.nanmean(y[keep])),
        "potential_cv_share_below": float(np.mean(y[keep] <= oof[keep])),
    }


# -- figures -----------------------------------------------------------------
def backtest_figures(result: BacktestResult) -> dict[str, Any]:
    """Matplotlib figures of a backtest: totals over time, and error by horizon."""
    import matplotlib.pyplot as plt

    p = result.predictions
    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, (origin, grp) in enumerate(p.groupby("origin")):
        totals = grp.groupby("target_period")[["actual", *result.models]].sum(min_count=1)
        ax.plot(totals.index, totals["actual"], color="black", lw=2,
                label="actual" if k == 0 else None)
        ax.plot(totals.index, totals["forecast"], color="tab:blue",
                label="LightGBM" if k == 0 else None)
        if "seasonal_naive" in totals:
            ax.plot(totals.index, totals["seasonal_naive"], color="tab:orange", ls="--",
                    label="seasonal naive" if k == 0 else None)
        ax.axvline(origin, color="grey", lw=0.5)
    ax.set_title("Backtest: total actual vs forecast from each origin")
    ax.legend()
    fig.tight_layout()
    figs["backtest_actual_vs_forecast.png"] = fig

    table = result.table().query("horizon != 'all'")
    metric = "mase" if "mase" in table else "wape"
    fig, ax = plt.subplots(figsize=(7, 4))
    for model, grp in table.groupby("model"):
        ax.plot(grp["horizon"].astype(int), grp[metric], marker="o", label=model)
    ax.set_xlabel("horizon")
    ax.set_ylabel(metric.upper())
    ax.set_title(f"Backtest {metric.upper()} by horizon ({len(result.origins)} origins)")
    ax.legend()
    fig.tight_layout()
    figs["backtest_error_by_horizon.png"] = fig
    return figs
