"""Fit the forecaster and the potential model on a feature set, and score them out of sample.

Pure: takes the feature tables and the config sub-models, returns a
:class:`Trained`. The pipeline's train stage calls :func:`train_models`;
a backend may replace the forecaster's main fit (e.g. on ``lightgbm.dask``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.feature_set import FeatureSet
from territory.models import backtest
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
) -> Trained:
    """Fit the forecaster and the potential model; score them out of sample.

    ``fit_forecaster(estimator, table)`` replaces ``estimator.fit(table)`` for
    the main fit (the Dask backend fits on ``lightgbm.dask``).

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

    result = None
    if fc.backtest.windows > 0:
        panel = backtest.panel_from_table(features.train_table, features_config.frequency, cols)
        result = backtest.rolling_origin_backtest(
            panel, features_config, fc.horizon, make_forecaster, n_windows=fc.backtest.windows,
            step=fc.backtest.step, columns=cols, baselines=fc.backtest.baselines,
            table=features.train_table,
        )
        metrics.update(result.summary())
        windows = result.windows_key
    return Trained(forecaster, fitted_potential, metrics, val, windows, result, by_territory)
