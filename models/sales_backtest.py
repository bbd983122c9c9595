"""``territory backtest``: every forecast member and their combination on a sales panel alone.

:func:`backtest_sales` is pure: a validated sales frame (``unit_id``,
``period``, ``sales``) in, a :class:`SalesBacktest` out. It runs the
rolling-origin backtest of :mod:`territory.models.backtest` with LightGBM
(``lightgbm``: the project's :class:`~territory.models.forecast.SalesForecaster`
with the frequency's default features), seasonal naive and the statsforecast
members, adds the combination ``territory``
(:mod:`territory.models.combination`, weights from earlier origins only) and
scores every method per horizon.

Origins: the last window ends at the last period; the ``windows`` scored
origins are ``step`` periods apart (default: the horizon, so windows do not
overlap). ``calibration`` more origins before them are run but not scored:
they give the combination its weights at the first scored origin (fewer
when the history is short; with none, its first weights are equal).

MASE is the mean over series and origins of MAE ÷ the series' in-sample
seasonal-naive MAE before the origin; WAPE is Σ|error| ÷ Σ actual;
coverage is the share of actuals inside the 80% interval. Every method is
scored on the same rows: those with an actual, a scale and a forecast from
every method. A series left out of a window is listed in ``skipped`` with
the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.features.build import training_origins
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.errors import InputError
from territory.features.frequency import frequency_spec
from territory.features.panel import make_panel, to_wide
from territory.models import backtest, combination
from territory.models.config import ForecastConfig
from territory.models.forecast import forecaster_from_config
from territory.models.statistical import DEFAULT_MEMBERS

LIGHTGBM = "lightgbm"
SEASONAL_NAIVE = "seasonal_naive"
SHORT_YEARS = combination.SHORT_YEARS


@dataclass
class SalesBacktest:
    """What :func:`backtest_sales` measured.

    ``forecasts`` has one row per unit, origin, target period and method:
    ``unit_id``, ``origin``, ``period``, ``horizon``, ``method``,
    ``forecast``, ``lo``, ``hi``, ``actual`` and ``scale`` (the series'
    in-sample seasonal-naive MAE before the origin: MASE's denominator), on
    the scored rows. ``table`` has one row per
    method and horizon (``all`` first): ``mase``, ``wape``, ``coverage``
    and ``rows``. ``skipped`` lists (``unit_id``, ``origin``, ``reason``).
    ``coverage_by_length`` gives each interval's coverage on series with
    fewer than :data:`SHORT_YEARS` years of history at the origin and on the
    others. The combination's interval is conformal per horizon (errors of
    the origins before, short and long series apart; see
    :func:`territory.models.combination.conformal_table`).
    """

    forecasts: pd.DataFrame
    table: pd.DataFrame
    skipped: pd.DataFrame
    origins: list[pd.Timestamp]
    calibration_origins: list[pd.Timestamp]
    methods: list[str]
    gate: dict[str, object]
    weights: dict[pd.Timestamp, pd.DataFrame]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    coverage_by_length: pd.DataFrame | None = None


def _origins(periods: pd.DatetimeIndex, windows: int, calibration: int, step: int,
             horizon: int, earliest: int) -> tuple[list[pd.Timestamp], list[pd.Timestamp]]:
    """Scored origins and the calibration origins before them (none before ``earliest``)."""
    scored = backtest.backtest_origins(periods, windows, step, horizon)
    first = periods.get_loc(scored[0])
    room = max(first - earliest, 0) // step
    extra = [periods[first - k * step] for k in range(min(calibration, room), 0, -1)]
    return scored, extra


def _reason(row: np.ndarray, t: int, horizon: int, season: int, periods) -> str | None:
    """Why a unit cannot be scored at the origin in column ``t``, or None."""
    before = row[: t + 1]
    observed = np.flatnonzero(~np.isnan(before))
    after = row[t + 1: t + 1 + horizon]
    if not len(observed):
        return "no sales before the origin"
    if np.isnan(after).all():
        last = np.flatnonzero(~np.isnan(row))[-1]
        return f"no actuals in the window (the series ends {periods[last]:%Y-%m-%d})"
    if np.isnan(before[-1]):
        return "no value at the origin (the series has a gap there)"
    span = t + 1 - observed[0]
    if span <= season:
        return (f"{span} periods of history before the origin; the MASE scale needs more "
                f"than {season}")
    return None


def _skipped(values: np.ndarray, units: pd.Index, periods: pd.DatetimeIndex,
             origins: list[pd.Timestamp], horizon: int, season: int) -> pd.DataFrame:
    rows = []
    for origin in origins:
        t = periods.get_loc(origin)
        for i, unit in enumerate(units):
            reason = _reason(values[i], t, horizon, season, periods)
            if reason:
                rows.append({"unit_id": unit, "origin": origin, "reason": reason})
    frame = pd.DataFrame(rows, columns=["unit_id", "origin", "reason"])
    return frame.astype({"unit_id": str, "origin": "datetime64[ns]", "reason": str})


def _table(scored: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    rows = []
    groups = [("all", scored), *[(str(int(h)), g) for h, g in scored.groupby("horizon")]]
    for key, grp in groups:
        for method in methods:
            lo, hi = combination.bounds(method)
            rows.append({
                "method": method, "horizon": key,
                "mase": backtest.mase(grp["actual"], grp[method], grp["scale"]),
                "wape": backtest.wape(grp["actual"], grp[method]),
                "coverage": (backtest.coverage(grp["actual"], grp[lo], grp[hi])
                             if lo in grp else float("nan")),
                "rows": len(grp),
            })
    return pd.DataFrame(rows)


def coverage_by_length(scored: pd.DataFrame, methods: list[str], short_periods: int,
                       unit: str = "periods") -> pd.DataFrame:
    """Coverage of each method's interval on short series (fewer than ``short_periods`` of
    history at the origin) and the others: ``method``, ``history``, ``coverage``, ``rows``."""
    is_short = scored["history_periods"] < short_periods
    rows = []
    for label, grp in ((f"< {short_periods} {unit}", scored[is_short]),
                       (f">= {short_periods} {unit}", scored[~is_short]), ("all", scored)):
        for method in methods:
            lo, hi = combination.bounds(method)
            if lo not in grp:
                continue
            rows.append({"method": LIGHTGBM if method == "forecast" else method,
                         "history": label,
                         "coverage": backtest.coverage(grp["actual"], grp[lo], grp[hi]),
                         "rows": len(grp)})
    return pd.DataFrame(rows, columns=["method", "history", "coverage", "rows"])


def _long(predictions: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    parts = []
    for method in methods:
        lo, hi = combination.bounds(method)
        parts.append(pd.DataFrame({
            "unit_id": predictions["unit_id"].to_numpy(),
            "origin": predictions["origin"].to_numpy(),
            "period": predictions["target_period"].to_numpy(),
            "horizon": predictions["horizon"].to_numpy(),
            "method": LIGHTGBM if method == "forecast" else method,
            "forecast": predictions[method].to_numpy(),
            "lo": predictions[lo].to_numpy() if lo in predictions else np.nan,
            "hi": predictions[hi].to_numpy() if hi in predictions else np.nan,
            "actual": predictions["actual"].to_numpy(),
            "scale": predictions["scale"].to_numpy(),
            "history_periods": predictions["history_periods"].to_numpy(),
        }))
    return pd.concat(parts, ignore_index=True).sort_values(
        ["method", "unit_id", "origin", "period"], ignore_index=True)


def backtest_sales(
    sales: pd.DataFrame,
    frequency: str,
    horizon: int,
    windows: int = 4,
    step: int | None = None,
    calibration: int = 2,
    members: tuple[str, ...] | None = None,
    seed: int = 42,
    n_jobs: int = 1,
    progress=None,
    features: dict | None = None,
    forecast: dict | None = None,
) -> SalesBacktest:
    """Backtest LightGBM, the statistical members and their combination on ``sales``.

    Parameters
    ----------
    sales
        Validated sales (``unit_id``, ``period``, ``sales``), one row per unit and period.
    frequency
        ``YS``, ``QS``, ``MS`` or ``W-MON``.
    horizon, windows, step
        Periods forecast from each origin, scored origins, periods between
        them (default ``horizon``).
    calibration
        Origins before the scored ones that only train the combination's weights.
    members
        Statistical members (default: AutoETS and AutoTheta, plus AutoARIMA
        for annual and quarterly data, where its search is cheap).
    seed
        LightGBM's seed.
    n_jobs
        Processes for the statistical members.
    progress
        Called with a line of text at each step (e.g. a rich status), or None.
    features, forecast
        Settings that replace the frequency's defaults (``FeaturesConfig`` and
        ``ForecastConfig`` fields, e.g. ``{"lags": [1, 2, 3, 4, 5]}``), for
        benchmarks that compare settings on early origins.
    """
    spec = frequency_spec(frequency)
    step = horizon if step is None else step
    if members is None:
        members = DEFAULT_MEMBERS if spec.season <= 4 else ("auto_ets", "auto_theta")
    cols = ColumnsConfig()
    units = sorted(sales[cols.unit_col].unique())
    panel = make_panel(sales, units, frequency, cols)
    wide = to_wide(panel, cols.target_col, cols)
    periods = pd.DatetimeIndex(wide.columns)
    if len(periods) - 1 - horizon - (windows - 1) * step < 1:
        raise InputError(
            "sales", f"{len(periods)} {spec.plural} are too few for {windows} windows of "
            f"horizon {horizon}, {step} apart (the first origin needs history before it)",
            hint="use fewer --windows, a shorter --horizon or --step, or a longer history")
    features = FeaturesConfig(**{"frequency": frequency, "spatial_lag_columns": [],
                                 **(features or {})})
    config = ForecastConfig(**{"horizon": horizon,
                               "validation_periods": max(horizon, spec.season),
                               "min_history": 1, "seed": seed, **(forecast or {})})
    # a calibration origin needs the features' history, training rows and the validation window
    first_training = len(periods) - len(training_origins(periods, features))
    earliest = first_training + config.validation_periods + max(spec.season, 2)
    scored_origins, extra = _origins(periods, windows, calibration, step, horizon, earliest)
    scale_col = features.level_column(cols.target_col)

    def make_forecaster():
        return forecaster_from_config(config, scale_col, cols.unit_col, f"{cols.target_col}_",
                                      season=features.season)

    notes = []
    if len(extra) < calibration:
        notes.append(f"{len(extra)} of {calibration} calibration origins fit before the first "
                     "scored origin" + ("; the first weights are equal" if not extra else ""))
    if progress:
        progress(f"fitting {len(extra) + windows} origins: LightGBM and "
                 f"{', '.join(members)}")
    started = time.process_time()
    try:
        result = backtest.rolling_origin_backtest(
            panel, features, horizon, make_forecaster, n_windows=len(extra) + windows, step=step,
            columns=cols, baselines=(SEASONAL_NAIVE, *members), n_jobs=n_jobs)
    except InputError as exc:
        raise InputError("sales", exc.rule,
                         hint=f"use fewer --windows, a shorter --horizon or --step, or a "
                              f"longer history ({len(periods)} {spec.plural} given)") from None
    seconds = {"backtest_cpu": time.process_time() - started}
    combined_members = ["forecast", *members]
    short = SHORT_YEARS * max(spec.season, 1)
    predictions, weights = combination.add_combination(
        result.predictions, combined_members, horizon, level=config.interval_level,
        short_periods=short)
    methods = [combination.COMBINED, "forecast", *members, SEASONAL_NAIVE]
    scored = predictions[predictions["origin"].isin(scored_origins)]
    complete = scored[["actual", "scale", *methods]].notna().all(axis=1) & (scored["scale"] > 0)
    skipped = _skipped(wide.to_numpy(dtype=float), wide.index, periods, scored_origins,
                       horizon, spec.season)
    missing = scored.loc[~complete & scored["actual"].notna(), ["unit_id", "origin"]]
    missing = missing.drop_duplicates().merge(skipped, how="left", on=["unit_id", "origin"])
    missing = missing[missing["reason"].isna()].assign(
        reason="a method gave no forecast (history too short for its features)")
    skipped = pd.concat([skipped, missing], ignore_index=True)
    table = _table(scored[complete], methods).replace({"method": {"forecast": LIGHTGBM}})
    by_length = coverage_by_length(scored[complete], methods, short, spec.plural)
    gate = combination.promotion_gate(scored[complete], ["forecast", *members])
    gate["best_member"] = LIGHTGBM if gate["best_member"] == "forecast" else gate["best_member"]
    return SalesBacktest(
        forecasts=_long(scored[complete], methods), table=table, skipped=skipped,
        origins=scored_origins, calibration_origins=extra,
        methods=[LIGHTGBM if m == "forecast" else m for m in methods], gate=gate,
        weights={o: w.rename(columns={"forecast": LIGHTGBM}) for o, w in weights.items()},
        seconds=seconds, notes=notes, coverage_by_length=by_length)
