"""Fit a :class:`~models.forecast.SalesForecaster` with ``lightgbm.dask`` when it is large.

:meth:`SalesForecaster.fit` does three things: it picks and scales the rows
(every validation row plus at most ``max_train_rows`` training rows), finds
the number of boosting rounds by early stopping on the validation window and
calibrates the intervals there, then refits on all the rows with that many
rounds. The refit is the largest step: it sees every validation row, which
grows with the number of units (units × validation periods × horizons).

:func:`fit_distributed` does the same, with the same helpers of the
estimator, but runs the refit as data-parallel LightGBM on the Dask workers
when it has at least ``min_rows`` rows. ``lightgbm.dask`` has no early
stopping, so the rounds still come from the local early-stopping fit, which
is identical to the local path's. Below ``min_rows`` it is
``estimator.fit``. The result is a plain fitted ``SalesForecaster`` (its
``booster_`` is an ordinary LightGBM booster), so tracking, serving and
scoring do not change.

Data-parallel LightGBM bins features and bags rows per worker, so the
distributed refit is not bitwise equal to the local one; the parity test
(``tests/test_dask_parity.py``) holds its validation WAPE and its forecasts
to the local model's within a stated tolerance.
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.errors import InputError
from models.forecast import NON_FEATURES, SalesForecaster


def _selected_rows(est: SalesForecaster, X: pd.DataFrame, y: np.ndarray):
    """Rows the estimator fits on, in its order, and which of them are validation rows."""
    if est.scale_col not in X.columns:
        raise InputError(
            "forecast table", f"scale column '{est.scale_col}' is missing",
            column=est.scale_col,
            hint="keep the widest rolling mean in features.rolling_windows",
        )
    raw_scale = X[est.scale_col].to_numpy(dtype=float)
    usable = ~np.isnan(y) & ~np.isnan(raw_scale)
    keys = [c for c in (est.unit_col, "origin", "horizon") if c in X.columns]
    usable_idx = np.flatnonzero(usable)
    order = (
        X[keys].iloc[usable_idx].reset_index(drop=True)
        .sort_values(keys, kind="stable").index.to_numpy()
    )
    rows = usable_idx[order]
    periods = pd.DatetimeIndex(X[est.time_col].to_numpy()[rows])
    n_periods = periods.nunique()
    cut = (np.sort(periods.unique())[-est.validation_periods]
           if n_periods > est.validation_periods else periods.max())
    valid = np.asarray(periods >= cut)
    rng = np.random.default_rng(est.random_state)
    train_pos = np.flatnonzero(~valid)
    if len(train_pos) > est.max_train_rows:
        train_pos = np.sort(rng.choice(train_pos, est.max_train_rows, replace=False))
    keep = np.sort(np.concatenate([train_pos, np.flatnonzero(valid)]))
    return rows[keep], periods[keep], valid[keep]


def n_fit_rows(est: SalesForecaster, X: pd.DataFrame) -> int:
    """Rows of the forecaster's final fit on table ``X`` (no sorting, so cheap)."""
    y = X["target"].to_numpy(dtype=float)
    usable = ~np.isnan(y)
    if est.scale_col in X.columns:
        usable &= ~np.isnan(X[est.scale_col].to_numpy(dtype=float))
    periods = pd.DatetimeIndex(X[est.time_col].to_numpy()[usable])
    if len(periods) == 0:
        return 0
    unique = np.sort(periods.unique())
    cut = unique[-est.validation_periods] if len(unique) > est.validation_periods else unique[-1]
    n_valid = int((periods >= cut).sum())
    return n_valid + min(len(periods) - n_valid, est.max_train_rows)


def _dask_frames(client, frames: list, n_parts: int) -> list:
    """Dask collections of ``frames``, co-partitioned and held on the workers.

    Each is cut into ``n_parts`` row ranges and persisted; if the scheduler
    put them all on one worker, they are rebalanced, so that every worker
    trains on a share of the rows.
    """
    import dask.dataframe as dd
    import distributed

    collections = client.persist(
        [dd.from_pandas(frame, npartitions=n_parts, sort=False) for frame in frames])
    futures = distributed.futures_of(collections)
    distributed.wait(futures)
    holders = {w for ws in client.who_has(futures).values() for w in ws}
    if len(holders) < min(n_parts, len(client.scheduler_info()["workers"])):
        client.rebalance(futures)
    return collections


def fit_distributed(
    est: SalesForecaster,
    X: pd.DataFrame,
    y: pd.Series | np.ndarray | None = None,
    *,
    client=None,
    min_rows: int = 1_000_000,
) -> SalesForecaster:
    """Fit ``est`` on ``X``; its final refit on ``lightgbm.dask`` at ``min_rows`` rows or more.

    Parameters
    ----------
    est
        An unfitted forecaster; it is fitted in place and returned.
    X, y
        As for :meth:`SalesForecaster.fit`.
    client
        A ``distributed.Client``; None fits locally.
    min_rows
        Smallest final fit that goes to the cluster.
    """
    if client is None or n_fit_rows(est, X) < min_rows:
        return est.fit(X, y)
    import lightgbm.dask as lgb_dask

    y = np.asarray(X["target"] if y is None else y, dtype=float)
    rows, periods, valid = _selected_rows(est, X, y)
    if valid.all() or not valid.any():
        return est.fit(X, y)  # let the estimator raise its own error
    X = X.iloc[rows].reset_index(drop=True)
    y = y[rows]
    train_idx, valid_idx = np.flatnonzero(~valid), np.flatnonzero(valid)

    raw_scale = X[est.scale_col].to_numpy(dtype=float)
    positive = raw_scale[raw_scale > 0]
    est.scale_floor_ = float(np.quantile(positive, 0.05)) if len(positive) else 1.0
    est.feature_names_ = [
        c for c in X.columns
        if c not in NON_FEATURES and c != est.unit_col and c not in est.exclude_features
    ]
    est.level_features_ = [c for c in est.feature_names_ if c.startswith(est.level_prefix)]
    scale = est._scale(X)
    target = est._to_target(y, scale)
    weight = est._weights(scale)
    design = est._design(X, scale)
    params = est._params()

    # Rounds by early stopping, as the local fit does (same rows, same seed).
    train_set = lgb.Dataset(design.iloc[train_idx], target[train_idx], weight=weight[train_idx],
                            free_raw_data=True)
    valid_set = lgb.Dataset(design.iloc[valid_idx], target[valid_idx], weight=weight[valid_idx],
                            reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=est.n_estimators, valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(est.early_stopping_rounds, verbose=False)],
    )
    est.best_iteration_ = int(booster.best_iteration or est.n_estimators)
    pred_valid = est._from_output(
        booster.predict(design.iloc[valid_idx], num_iteration=est.best_iteration_),
        scale[valid_idx],
    )
    horizon = X["horizon"].to_numpy()
    est.interval_quantiles_ = est._calibrate(
        y[valid_idx], pred_valid, horizon[valid_idx], scale[valid_idx])
    naive_col = f"{est.level_prefix}same_period_1y"
    est.validation_ = pd.DataFrame({
        est.unit_col: X[est.unit_col].to_numpy()[valid_idx],
        "horizon": horizon[valid_idx],
        "target_period": periods[valid_idx],
        "actual": y[valid_idx],
        "forecast": pred_valid,
        "forecast_lo": np.nan,
        "forecast_hi": np.nan,
        "seasonal_naive": X[naive_col].to_numpy()[valid_idx] if naive_col in X else np.nan,
    })
    _, lo, hi = est._interval(pred_valid, horizon[valid_idx], scale[valid_idx])
    est.validation_["forecast_lo"], est.validation_["forecast_hi"] = lo, hi
    del booster, train_set, valid_set

    # The refit on every selected row, data-parallel on the workers.
    n_workers = max(1, len(client.scheduler_info()["workers"]))
    dist_params = {k: v for k, v in params.items() if k not in ("num_threads", "seed")}
    model = lgb_dask.DaskLGBMRegressor(
        client=client, n_estimators=est.best_iteration_, random_state=est.random_state,
        **dist_params,
    )
    data, label, sample_weight = _dask_frames(
        client, [design, pd.Series(target, name="target"), pd.Series(weight, name="weight")],
        n_workers)
    with warnings.catch_warnings():  # it drops n_jobs for the workers' own threads, as wanted
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(data, label, sample_weight=sample_weight)
    est.booster_ = model.booster_
    est.n_features_in_ = len(est.feature_names_)
    return est
