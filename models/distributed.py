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
is identical to the local path's. The driver drops the fit's selected rows
before the refit, and its design matrix once the workers hold their shares.
Below ``min_rows`` it is ``estimator.fit``. The result is a plain fitted ``SalesForecaster`` (its
``booster_`` is an ordinary LightGBM booster), so tracking, serving and
scoring do not change.

Data-parallel LightGBM bins features and bags rows per worker, so the
distributed refit is not bitwise equal to the local one; the parity test
(``tests/test_dask_parity.py``) holds its validation WAPE and its forecasts
to the local model's within a stated tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from territory.models.forecast import SalesForecaster


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

    data = est._prepare(X, y)
    est._choose_rounds(data)  # rounds by early stopping, as the local fit does
    params = est._params()

    # The refit on every selected row, data-parallel on the workers.
    n_workers = max(1, len(client.scheduler_info()["workers"]))
    dist_params = {k: v for k, v in params.items() if k not in ("num_threads", "seed")}
    model = lgb_dask.DaskLGBMRegressor(
        client=client, n_estimators=est.best_iteration_, random_state=est.random_state,
        **dist_params,
    )
    frames = [data.design, pd.Series(data.target, name="target"),
              pd.Series(data.weight, name="weight")]
    # The driver lets go of the fit's rows (the selected table, a copy of the training
    # table's selected rows) now, and of their design matrix once the workers hold it:
    # before, both stayed alive through the refit, next to the workers' copies.
    del data
    design, label, sample_weight = _dask_frames(client, frames, n_workers)
    del frames
    with warnings.catch_warnings():  # it drops n_jobs for the workers' own threads, as wanted
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(design, label, sample_weight=sample_weight)
    est.booster_ = model.booster_
    est.n_features_in_ = len(est.feature_names_)
    return est
