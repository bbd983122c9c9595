"""Fit the forecaster and the potential model on a feature set, and score them out of sample.

Pure: takes the feature tables and the config sub-models, returns a
:class:`Trained`. The pipeline's train stage calls :func:`train_models`;
a backend may replace the forecaster's main fit (e.g. on ``lightgbm.dask``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.feature_set import FeatureSet
from territory.models import backtest, combination
from territory.models.config import ForecastConfig, PotentialConfig
from territory.models.forecast import SalesForecaster, forecaster_from_config
from territory.models.potential import PotentialEstimator
from territory.models.potential_rep import RepAdjustedPotential, fit_potential

FitForecaster = Callable[[SalesForecaster, pd.DataFrame], SalesForecaster]


@dataclass
class Trained:
    forecaster: SalesForecaster
    potential: PotentialEstimator | RepAdjustedPotential
    metrics: dict[str, float]
    validation: pd.DataFrame
    evaluation_windows: str
    backtest: backtest.BacktestResult | None = None
    # rep_adjusted potential: per current territory, its rep effect and held-out sales error
    potential_territories: pd.DataFrame | None = None
    # forecast.combination: what the scores publish (None: LightGBM alone)
    published: combination.PublishedForecast | None = None
    # data.previous_alignment: per territory that received moved units, the rep-change
    # share error (territory.models.potential_rep_change); None without one
    rep_change_territories: pd.DataFrame | None = None
    # a scoring run's champion: the reconciliation its training run chose
    # (territory.models.reconcile_runs.ChampionChoice; None for a model trained in this run)
    champion_reconcile: Any = None


def validation_metrics(forecaster: SalesForecaster) -> dict[str, float]:
    """Accuracy of a fitted forecaster on its validation window, overall and per horizon."""
    val = forecaster.validation_
    metrics = {
        "valid_wape": backtest.wape(val["actual"], val["forecast"]),
        "valid_mae": backtest.mae(val["actual"], val["forecast"]),
        "valid_rmse": backtest.rmse(val["actual"], val["forecast"]),
        "valid_bias": backtest.bias(val["actual"], val["forecast"]),
        "valid_wape_seasonal_naive": backtest.wape(val["actual"], val["seasonal_naive"]),
        "valid_coverage": backtest.coverage(val["actual"], val["forecast_lo"],
                                            val["forecast_hi"]),
        "best_iteration": float(forecaster.best_iteration_),
    }
    for h, grp in val.groupby("horizon"):
        metrics[f"valid_wape_h{int(h):02d}"] = backtest.wape(grp["actual"], grp["forecast"])
    return metrics


def train_models(
    features: FeatureSet,
    forecast: ForecastConfig,
    potential: PotentialConfig,
    features_config: FeaturesConfig,
    columns: ColumnsConfig,
    fit_forecaster: FitForecaster | None = None,
    origin_forecasts: backtest.OriginForecasts | None = None,
) -> Trained:
    """Fit the forecaster and the potential model; score them out of sample.

    ``fit_forecaster(estimator, table)`` replaces ``estimator.fit(table)`` for
    the main fit (the Dask backend fits on ``lightgbm.dask``), and
    ``origin_forecasts`` the backtest's fit and forecasts at each origin (the Dask
    backend's run where the workers hold the training rows; see
    :func:`territory.models.backtest.rolling_origin_backtest`).

    The forecaster is scored on its validation window and, unless
    ``forecast.backtest.windows`` is 0, by a rolling-origin backtest that
    refits it at each origin; the backtest windows then define which runs
    the promotion gate may compare.
    """
    fc, cols = forecast, columns
    scale_col = features_config.level_column(cols.target_col)

    def make_forecaster() -> SalesForecaster:
        return forecaster_from_config(fc, scale_col, cols.unit_col, f"{cols.target_col}_",
                                      season=features_config.season)

    forecaster = (fit_forecaster(make_forecaster(), features.train_table) if fit_forecaster
                  else make_forecaster().fit(features.train_table))
    fitted_potential, potential_metrics, by_territory = fit_potential(
        potential, features.market_table, features.annual_sales.to_numpy(),
        features.territory, features.xy, features.annual_split)

    val = forecaster.validation_
    metrics = validation_metrics(forecaster)
    windows = f"{val['target_period'].min():%Y-%m}..{val['target_period'].max():%Y-%m}"
    metrics.update(potential_metrics)

    result = published = None
    if fc.backtest.windows > 0:
        panel = (features.sales_panel if features.sales_panel is not None else
                 backtest.panel_from_table(features.train_table, features_config.frequency, cols))
        members = tuple(fc.combination.members)
        result = backtest.rolling_origin_backtest(
            panel, features_config, fc.horizon, make_forecaster, n_windows=fc.backtest.windows,
            step=fc.backtest.step, columns=cols, baselines=(*fc.backtest.baselines, *members),
            table=features.train_table, n_jobs=fc.combination.n_jobs,
            origin_forecasts=origin_forecasts,
        )
        metrics.update(result.summary())
        windows = result.windows_key
        if members:
            published, result.predictions = combination.choose_published(
                result.predictions, members, fc.horizon, features_config.season,
                features_config.frequency, fc.interval_level, fc.combination.power,
                fc.combination.trim,
                max_history=10 * features_config.season if features_config.season > 1 else None,
                short_periods=combination.SHORT_YEARS * features_config.season)
            metrics.update(published_metrics(result.predictions, published))
    return Trained(forecaster, fitted_potential, metrics, val, windows, result, by_territory,
                   published)


def published_metrics(predictions: pd.DataFrame,
                      published: combination.PublishedForecast) -> dict[str, float]:
    """Backtest scores of the combination and of the published forecast, and the gate.

    ``backtest_<metric>_published`` is what the champion gate compares.
    ``heldout_wape_published`` and ``heldout_wape_lightgbm`` are the WAPE on
    the last backtest window alone (the last ``horizon`` periods, every
    model fitted without them).
    """
    col = published.method
    lo, hi = combination.bounds(col)
    last = predictions[predictions["origin"] == predictions["origin"].max()]
    gate = published.gate
    out = {
        "backtest_wape_territory": backtest.wape(predictions["actual"],
                                                 predictions[combination.COMBINED]),
        "backtest_mase_territory": backtest.mase(predictions["actual"],
                                                 predictions[combination.COMBINED],
                                                 predictions["scale"]),
        "combination_gate_gap": float(gate["gap"]),
        "combination_gate_passed": float(gate["passed"]),
        "heldout_wape_published": backtest.wape(last["actual"], last[col]),
        "heldout_wape_lightgbm": backtest.wape(last["actual"], last["forecast"]),
    }
    for metric in ("wape", "mae", "rmse", "bias"):
        out[f"backtest_{metric}_published"] = getattr(backtest, metric)(
            predictions["actual"], predictions[col])
    out["backtest_mase_published"] = backtest.mase(predictions["actual"], predictions[col],
                                                   predictions["scale"])
    if lo in predictions:
        out["backtest_coverage_published"] = backtest.coverage(
            predictions["actual"], predictions[lo], predictions[hi])
    return out
