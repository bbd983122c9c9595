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

:func:`fit_from_parts` does the same when the training rows never came to
the driver: they stay on the workers, one table per partition of units (the
Dask runner's feature build leaves them there). The workers find the usable
rows and their order, the driver draws the seeded sample from counts per
unit, the workers build the selected rows' design matrices, and the driver
pulls them (in the local fit's row order) only for the early-stopping fit and
the calibration, which are therefore bitwise the local ones. The refit runs
on ``lightgbm.dask`` from the design matrices where the workers built them;
the partitions' training tables are released before it. The tables may
also be files the workers wrote (:class:`SpilledTable`), read back per task,
and a row filter (``until``) gives the fit at a backtest origin
(:mod:`territory.models.distributed_backtest`).

Data-parallel LightGBM bins features and bags rows per worker, so the
distributed refit is not bitwise equal to the local one; the parity test
(``tests/test_dask_parity.py``) holds its validation WAPE and its forecasts
to the local model's within a stated tolerance.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from territory.features.errors import InputError
from territory.models.forecast import NON_FEATURES, SalesForecaster, _FitData


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


# -- the final fit from training rows that stay on the workers ------------------------------
@dataclass(frozen=True)
class SpilledTable:
    """A partition's training table written to a file by the worker that holds it.

    Tasks that read it run on that worker (its local directory need not be shared);
    ``worker`` None: the file is in a folder every worker reads (the feature cache).
    """

    path: str
    worker: str | None  # the address of the worker that wrote it
    n_rows: int


def _table(part, columns: list[str] | None = None) -> pd.DataFrame:
    """A partition's training table: itself, or read back from its file (``columns`` only)."""
    if isinstance(part, SpilledTable):
        if columns is not None:
            import pyarrow as pa

            with pa.memory_map(part.path) as source:
                names = set(pa.ipc.open_file(source).schema.names)
            columns = [c for c in columns if c in names]
        return pd.read_feather(part.path, columns=columns)
    return part


def _per_part(client, fn, parts: list, *others: list, **kwargs) -> list:
    """``client.map(fn, parts, *others, **kwargs)``, each task of a spilled table pinned to
    the worker that holds its file."""
    return [client.submit(fn, part, *(o[i] for o in others), pure=False,
                          workers=([part.worker] if isinstance(part, SpilledTable)
                                   and part.worker else None),
                          **kwargs)
            for i, part in enumerate(parts)]


@dataclass
class _PartKeys:
    """A partition's usable rows in the fit's order (unit, origin, horizon), and its units."""

    rows: np.ndarray  # positions in the partition's table
    periods: np.ndarray  # their target periods
    units: np.ndarray  # the partition's units in that order; each unit's rows are one run
    run_lengths: np.ndarray


@dataclass
class _FitPart:
    """A partition's selected rows, as ``SalesForecaster._prepare`` makes them."""

    design: pd.DataFrame
    target: pd.Series
    weight: pd.Series
    y: np.ndarray
    scale: np.ndarray
    periods: np.ndarray
    slim: pd.DataFrame  # unit, horizon and seasonal-naive columns (the validation table's)


def _part_keys(part, est: SalesForecaster, until=None) -> _PartKeys:
    """The usable rows and their order, found as ``SalesForecaster._prepare`` finds them;
    with ``until``, only the rows whose target period is at or before it (a backtest's)."""
    table = _table(part, list(dict.fromkeys(
        ["target", est.scale_col, est.unit_col, "origin", "horizon", est.time_col,
         "target_period"])))
    y = table["target"].to_numpy(dtype=float)
    usable = ~np.isnan(y) & ~np.isnan(table[est.scale_col].to_numpy(dtype=float))
    if until is not None:
        usable &= table["target_period"].to_numpy() <= np.datetime64(until)  # as the backtest
    usable_idx = np.flatnonzero(usable)
    keys = [c for c in (est.unit_col, "origin", "horizon") if c in table.columns]
    order = (table[keys].iloc[usable_idx].reset_index(drop=True)
             .sort_values(keys, kind="stable").index.to_numpy())
    rows = usable_idx[order]
    units = table[est.unit_col].to_numpy()[rows]
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]]) if len(rows) else rows[:0]
    return _PartKeys(rows, table[est.time_col].to_numpy()[rows], units[starts],
                     np.diff(np.r_[starts, len(rows)]))


def _unique_periods(keys: _PartKeys) -> np.ndarray:
    return np.unique(keys.periods)


def _run_counts(keys: _PartKeys, cut) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The partition's units with their numbers of training and validation rows."""
    valid = keys.periods >= cut
    run = np.repeat(np.arange(len(keys.units)), keys.run_lengths)
    n_valid = np.bincount(run, weights=valid, minlength=len(keys.units)).astype(np.int64)
    return keys.units, keys.run_lengths - n_valid, n_valid


def _kept(keys: _PartKeys, cut, train_ranks: np.ndarray) -> np.ndarray:
    """Positions (into ``keys.rows``) of the fit's rows: the sampled training rows, every
    validation row, in the fit's order."""
    valid = keys.periods >= cut
    return np.sort(np.concatenate([np.flatnonzero(~valid)[train_ranks], np.flatnonzero(valid)]))


def _kept_scale(part, keys: _PartKeys, kept: np.ndarray, scale_col: str) -> np.ndarray:
    return _table(part, [scale_col])[scale_col].to_numpy(dtype=float)[keys.rows[kept]]


def _fit_part(part, keys: _PartKeys, kept: np.ndarray, est: SalesForecaster,
              latest: pd.Timestamp) -> _FitPart:
    """The selected rows' design matrix, target and weights: ``_prepare``'s, for these rows
    (``latest``: the fit's last target period, which recency weights count back from)."""
    X = _table(part).iloc[keys.rows[kept]].reset_index(drop=True)
    y = X["target"].to_numpy(dtype=float)
    scale = est._scale(X)
    weight = est._weights(scale, pd.DatetimeIndex(X[est.time_col]), latest)
    naive = est.level_prefix + ("lag_1" if est.season == 1 else "same_period_1y")
    slim = X[[c for c in (est.unit_col, "horizon", naive) if c in X.columns]]
    return _FitPart(est._design(X, scale), pd.Series(est._to_target(y, scale), name="target"),
                    pd.Series(weight, name="weight"), y, scale,
                    X[est.time_col].to_numpy(), slim)


def _validation_cut(periods: np.ndarray, n_periods: int):
    """The first validation period, as ``_prepare`` picks it; an error if none is left over."""
    if len(periods) == 0 or (periods[-n_periods] if len(periods) > n_periods
                             else periods[-1]) <= periods[0]:
        raise InputError(
            "forecast table", "too few target periods to hold out a validation window",
            column="target_period",
            hint="lower forecast.validation_periods or supply a longer history")
    return periods[-n_periods] if len(periods) > n_periods else periods[-1]


def _sample_ranks(est: SalesForecaster, n_train: int) -> np.ndarray:
    """Ranks (in the fit's order) of the training rows drawn, as ``_prepare`` draws them."""
    if n_train <= est.max_train_rows:
        return np.arange(n_train)
    rng = np.random.default_rng(est.random_state)
    # ``rng.choice(positions, k)`` is ``positions[rng.choice(len(positions), k)]``
    return np.sort(rng.choice(n_train, est.max_train_rows, replace=False))


def _check_template(est: SalesForecaster, template: pd.DataFrame) -> None:
    if est.scale_col not in template.columns:
        raise InputError(
            "forecast table", f"scale column '{est.scale_col}' is missing", column=est.scale_col,
            hint="keep the widest rolling mean in features.rolling_windows")


def _draw(est: SalesForecaster, counts: list, cut) -> tuple[list, list]:
    """Each partition's sampled training ranks, and where its fit rows go in the fit's order.

    ``counts`` holds each partition's units (in its own order) with their numbers of
    training and validation rows. The fit's order sorts rows by unit first, so units
    of different partitions interleave; the sample is drawn over all training rows in
    that order, as ``_prepare`` draws it from the whole table.
    """
    units = pd.Series(np.concatenate([c[0] for c in counts]))
    n_train = np.concatenate([c[1] for c in counts])
    n_valid = np.concatenate([c[2] for c in counts])
    part = np.repeat(np.arange(len(counts)), [len(c[0]) for c in counts])
    order = units.sort_values(kind="stable").index.to_numpy()  # position in the fit's order
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    # the sampled ranks, unit by unit (in the fit's order), then per partition
    train_end = np.cumsum(n_train[order])
    ranks = _sample_ranks(est, int(train_end[-1]) if len(train_end) else 0)
    unit_of = order[np.searchsorted(train_end, ranks, side="right")]
    within_unit = ranks - (train_end[rank[unit_of]] - n_train[unit_of])
    part_start = np.zeros(len(units), dtype=np.int64)  # a unit's first rank in its partition
    for k in range(len(counts)):
        mine = part == k
        part_start[mine] = np.cumsum(n_train[mine]) - n_train[mine]
    local_rank = part_start[unit_of] + within_unit
    picked = np.bincount(unit_of, minlength=len(units))
    n_kept = picked + n_valid
    first = np.empty(len(units), dtype=np.int64)  # a unit's first row in the fit's order
    first[order] = np.cumsum(n_kept[order]) - n_kept[order]
    train_ranks, dest = [], []
    for k in range(len(counts)):
        train_ranks.append(local_rank[part[unit_of] == k])
        mine = np.flatnonzero(part == k)
        runs = n_kept[mine]
        starts = np.repeat(first[mine], runs)
        dest.append(starts + np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs, runs))
    return train_ranks, dest


def _assemble(fit_parts: list, dest: list, n_rows: int
              ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """The fit's rows on the driver, in the fit's order, pulled one partition at a time."""
    out: dict = {}
    names: list[str] = []
    for future, where in zip(fit_parts, dest, strict=True):
        part: _FitPart = future.result()
        pieces = {"y": part.y, "scale": part.scale, "periods": part.periods,
                  "target": part.target.to_numpy(), "weight": part.weight.to_numpy(),
                  **{f"design:{c}": part.design[c].to_numpy() for c in part.design.columns},
                  **{f"slim:{c}": part.slim[c].to_numpy() for c in part.slim.columns}}
        if not out:
            names = list(part.design.columns)
            out = {k: np.empty(n_rows, dtype=v.dtype) for k, v in pieces.items()}
        for key, values in pieces.items():
            out[key][where] = values
        del part, pieces
    design = pd.DataFrame({c: out.pop(f"design:{c}") for c in names}, copy=False)
    slim = pd.DataFrame({k.removeprefix("slim:"): out.pop(k) for k in list(out)
                         if k.startswith("slim:")}, copy=False)
    return design, slim, out


def fit_from_parts(
    est: SalesForecaster,
    template: pd.DataFrame,
    *,
    parts: list,
    client,
    min_rows: int = 1_000_000,
    record: dict | None = None,
    until=None,
) -> SalesForecaster:
    """Fit ``est`` on training tables held by the workers; the same fit as on their concat.

    Parameters
    ----------
    est
        An unfitted forecaster; it is fitted in place and returned.
    template
        A frame with the tables' columns and dtypes (no rows needed).
    parts
        Futures of the partitions' training tables (each unit's rows in one
        table), or the :class:`SpilledTable` files the workers wrote them to.
        The list is emptied once the fit's rows are built, so the workers let
        go of the tables before the refit (pass a copy to fit again from files).
    client
        The ``distributed.Client`` the futures belong to.
    min_rows
        Smallest final fit that goes to ``lightgbm.dask``; a smaller one is refit here.
    record
        If given, ``record["fit_rows"]`` is set to the number of rows of the final fit.
    until
        If given, the fit uses only the rows whose target period is at or before
        it: the fit at a backtest origin, equal to the fit on the concatenated
        tables' rows ``target_period <= until``.
    """
    _check_template(est, template)
    keys = _per_part(client, _part_keys, parts, est=est, until=until)
    periods = np.unique(np.concatenate(client.gather(client.map(_unique_periods, keys))))
    cut = _validation_cut(periods, est.validation_periods)
    counts = client.gather(client.map(_run_counts, keys, cut=cut))
    n_usable = sum(int(c[1].sum() + c[2].sum()) for c in counts)
    if n_usable < 100:
        raise InputError(
            "forecast table", f"only {n_usable} rows have both a target and a full history",
            hint="supply a longer sales history or smaller lags and windows")
    train_ranks, dest = _draw(est, counts, cut)
    kept = [client.submit(_kept, k, cut, r, pure=False)
            for k, r in zip(keys, train_ranks, strict=True)]
    # what ``_prepare`` learns from the selected rows: the scale floor and the features
    raw_scale = np.concatenate(client.gather(
        _per_part(client, _kept_scale, parts, keys, kept, scale_col=est.scale_col)))
    positive = raw_scale[raw_scale > 0]
    est.scale_floor_ = float(np.quantile(positive, 0.05)) if len(positive) else 1.0
    est.feature_names_ = [c for c in template.columns if c not in NON_FEATURES
                          and c != est.unit_col and c not in est.exclude_features]
    est.level_features_ = [c for c in est.feature_names_ if c.startswith(est.level_prefix)]
    fit_parts = _per_part(client, _fit_part, parts, keys, kept, est=est,
                          latest=pd.Timestamp(periods.max()))
    del raw_scale, positive
    _release_as_done(client, fit_parts, [parts, keys, kept])
    parts.clear()  # the workers have let go of the training tables

    n_rows = sum(len(d) for d in dest)
    design, slim, cols = _assemble(fit_parts, dest, n_rows)
    est.derived_names_ = [c for c in design.columns if c not in est.feature_names_]
    periods = pd.DatetimeIndex(cols["periods"])
    valid = np.asarray(periods >= cut)
    data = _FitData(X=slim, y=cols["y"], periods=periods, train_idx=np.flatnonzero(~valid),
                    valid_idx=np.flatnonzero(valid), scale=cols["scale"],
                    target=cols["target"], weight=cols["weight"], design=design)
    del design, slim, cols
    est._choose_rounds(data)  # early stopping and calibration, bitwise the local ones
    if record is not None:
        record["fit_rows"] = n_rows
    if n_rows < min_rows:
        full_set = lgb.Dataset(data.design, data.target, weight=data.weight)
        est.booster_ = lgb.train(est._params(), full_set, num_boost_round=est.best_iteration_)
    else:
        del data
        trim_memory()
        _refit_on_workers(est, client, fit_parts)
    est.n_features_in_ = len(est.feature_names_)
    return est


def _release_as_done(client, done: list, inputs: list[list]) -> None:
    """Wait for ``done``; as each finishes, drop the futures of its inputs (the same
    position in each list of ``inputs``), so a worker lets go of a partition's training
    table as soon as its fit rows are built. Then ask the workers to hand freed memory
    back to the system (glibc keeps it otherwise; Dask's advice for unmanaged memory)."""
    import distributed

    position = {f.key: i for i, f in enumerate(done)}
    for finished in distributed.as_completed(done):
        for futures in inputs:
            futures[position[finished.key]] = None
    client.run(trim_memory)


def trim_memory() -> int:
    """``malloc_trim(0)`` where glibc has it: freed heap memory goes back to the system."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return 0


def _refit_on_workers(est: SalesForecaster, client, fit_parts: list) -> None:
    """The refit on ``lightgbm.dask`` from the design matrices where the workers built them."""
    import dask.dataframe as dd
    import lightgbm.dask as lgb_dask

    sizes = client.gather(client.map(_n_rows, fit_parts))
    fit_parts = [f for f, n in zip(fit_parts, sizes, strict=True) if n > 0]
    frames = [client.map(_field, fit_parts, name=name) for name in ("design", "target", "weight")]
    del fit_parts
    holders = {w for ws in client.who_has(frames[0]).values() for w in ws}
    if len(holders) < min(len(frames[0]), len(client.scheduler_info()["workers"])):
        client.rebalance([f for fs in frames for f in fs])
    metas = [client.submit(_no_rows, frames[0][0]).result(), pd.Series(dtype=float, name="target"),
             pd.Series(dtype=float, name="weight")]
    design, label, weight = (dd.from_delayed(fs, meta=meta, verify_meta=False)
                             for fs, meta in zip(frames, metas, strict=True))
    params = {k: v for k, v in est._params().items() if k not in ("num_threads", "seed")}
    model = lgb_dask.DaskLGBMRegressor(
        client=client, n_estimators=est.best_iteration_, random_state=est.random_state, **params)
    with warnings.catch_warnings():  # it drops n_jobs for the workers' own threads, as wanted
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(design, label, sample_weight=weight)
    est.booster_ = model.booster_


def _n_rows(part: _FitPart) -> int:
    return len(part.target)


def _field(part: _FitPart, name: str):
    return getattr(part, name)


def _no_rows(design: pd.DataFrame) -> pd.DataFrame:
    return design.iloc[:0]
