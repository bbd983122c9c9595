"""The ``runner: dask`` path: the same stages, run on a Dask cluster.

* :func:`task_runner` gives the flows prefect-dask's ``DaskTaskRunner``,
  connected to ``dask.address`` or starting a ``LocalCluster``.
* :func:`dask_client` yields a client for the stages: the flow's cluster when
  a flow runs with that task runner, a worker client inside a Dask task, or
  a cluster made from the config otherwise.
* :class:`DaskBackend` runs the heavy stages on that cluster:
  ``features`` builds the feature tables one partition of units at a time on
  the workers (:mod:`territory.features.partitioned`); the tables are equal,
  bit for bit, to the local backend's (the training rows come grouped by
  partition, in another order, which no stage depends on). ``train`` trains
  as the local backend does, except that the forecaster's final fit runs on
  ``lightgbm.dask`` once it has at least ``dask.lightgbm_min_rows`` rows
  (:mod:`territory.models.distributed`).

  :func:`worker_features` and ``distributed_training(..., parts)`` go one
  step further: the training rows (18.6 M at 42,000 units, about 4 GiB) never
  come to the driver. They stay on the workers, the forecaster's fit rows
  and design matrices are built there, the driver pulls only the fit's rows
  for early stopping and calibration, and the refit runs from the workers'
  design matrices (``benchmarks/scale.py`` measures this path). With backtest
  windows every fit reads the rows again, so the workers write their tables
  to files first, and the backtest's fits and forecasts at each origin run
  from them too (:mod:`territory.models.distributed_backtest`). The flows'
  feature build is a cached, persisted Prefect task: there the workers write
  the rows to files beside the cache entry and the feature set keeps only
  their names (``FeatureSet.train_files``; ``benchmarks/scale_flow.py``
  measures the flow). ``score`` scores each partition on
  a worker with the local scoring code; the scores equal the local ones.

The driver reads and validates the inputs, as with the local runner, and
sends each worker its partition, so workers need the package installed but
not the input files.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from territory.features.build import training_origins
from territory.features.errors import InputError
from territory.features.feature_set import PERIODS_PER_YEAR, FeatureSet, sales_panel
from territory.features.panel import regular_periods
from territory.features.partitioned import (
    PartitionFeatures,
    build_partition,
    concat_partitions,
    local_graph,
    partition_labels,
    stack_tables,
)
from territory.features.spatial import build_adjacency, projected_xy
from territory.models import scoring
from territory.models.scoring import Scores
from territory.models.training import Trained
from territory.pipelines import stages
from territory.pipelines.config import DaskConfig, RunConfig


def cluster_kwargs(dask: DaskConfig) -> dict:
    """Keyword arguments of the ``LocalCluster`` the config describes."""
    return {
        "n_workers": dask.n_workers,
        "threads_per_worker": dask.threads_per_worker,
        "memory_limit": dask.memory_limit,
        "processes": True,
        "dashboard_address": None,
    }


def task_runner(config: RunConfig):
    """prefect-dask's ``DaskTaskRunner`` for ``config.dask``."""
    from prefect_dask import DaskTaskRunner

    if config.dask.address:
        return DaskTaskRunner(address=config.dask.address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs=cluster_kwargs(config.dask))


@contextmanager
def dask_client(config: RunConfig) -> Iterator:
    """A client of the cluster the stages should use; closes only what it opened."""
    import distributed

    try:
        distributed.get_worker()
        on_worker = True
    except ValueError:
        on_worker = False
    if on_worker:  # inside a Dask task: secede, so waiting does not hold a worker thread
        with distributed.worker_client() as client:
            yield client
        return
    runner_client = _flow_runner_client()
    if runner_client is not None:
        # the current client too: distributed.wait and as_completed look for one
        with runner_client.as_current():
            yield runner_client
        return
    if config.dask.address:
        with distributed.Client(config.dask.address) as client:
            yield client
        return
    with distributed.LocalCluster(**cluster_kwargs(config.dask)) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _flow_runner_client():
    """The client of the running flow's DaskTaskRunner, if there is one."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None) if ctx else None
    # ``client`` starts (or connects to) the runner's cluster on first use
    return runner.client if isinstance(runner, DaskTaskRunner) else None


class DaskBackend:
    """Features, training and scoring on the flow's (or the config's) Dask cluster.

    In a flow, whose feature build is a cached, persisted Prefect task, the
    training rows do not come to the driver: the workers write them to one
    file per partition next to the cache entry (:func:`feature_tables_folder`),
    the feature set keeps the files (``train_files``) and a training table
    without rows, and training reads them where the workers are. Outside a
    flow the rows are gathered into ``train_table``, as the local backend has them.
    """

    def features(self, config: RunConfig, inputs: stages.Inputs) -> FeatureSet:
        folder = feature_tables_folder(config, inputs)
        with dask_client(config) as client:
            if folder is None:
                return partitioned_features(config, inputs, client)
            from territory.models.distributed_backtest import spill_tables

            features, parts = worker_features(config, inputs, client)
            shutil.rmtree(folder, ignore_errors=True)  # an earlier build's files
            files = spill_tables(client, parts.futures, str(folder))
            return dataclasses.replace(features, train_files=files)

    def train(self, config: RunConfig, features: FeatureSet) -> Trained:
        with dask_client(config) as client:
            return distributed_training(config, features, client)

    def score(self, config: RunConfig, features: FeatureSet, trained: Trained) -> Scores:
        with dask_client(config) as client:
            return partitioned_scores(config, features, trained, client)


@dataclass
class TrainParts:
    """The training table left on the workers: one table per partition of units.

    ``futures`` are the partitions' tables in partition order; ``template`` has
    their columns and dtypes and no rows. :meth:`gather` brings them to the
    driver; :func:`distributed_training` fits from them where they are (and
    empties ``futures``, so the workers let go of them before the refit).
    """

    futures: list
    n_rows: int
    template: pd.DataFrame
    stats: dict = dataclasses.field(default_factory=dict)

    def gather(self) -> pd.DataFrame:
        """The whole table, rows grouped by partition; each partition released once here."""
        def arriving():
            while self.futures:
                yield self.futures.pop(0).result()

        return stack_tables(arriving(), self.n_rows, self.template)


def feature_tables_folder(config: RunConfig, inputs: stages.Inputs) -> Path | None:
    """Where a flow's Dask feature build keeps its training rows: ``<entry>.tables`` beside
    the feature cache entry in Prefect's result storage (pruned and cleared with it,
    :mod:`territory.pipelines.cache`); None outside a flow run. The workers must be able
    to read and write it (a ``LocalCluster``, or a shared result storage path)."""
    from prefect.context import FlowRunContext
    from prefect.settings import get_current_settings

    from territory.pipelines import run_keys

    if FlowRunContext.get() is None:
        return None
    key = run_keys.features_cache_key(config, inputs.file_hashes)
    return Path(get_current_settings().results.local_storage_path) / f"{key}.tables"


def partitioned_features(config: RunConfig, inputs: stages.Inputs, client) -> FeatureSet:
    """The local feature set, built one partition of units per Dask task."""
    features, parts = worker_features(config, inputs, client)
    return dataclasses.replace(features, train_table=parts.gather())


def worker_features(config: RunConfig, inputs: stages.Inputs, client
                    ) -> tuple[FeatureSet, TrainParts]:
    """:func:`partitioned_features` with the training rows left on the workers.

    The feature set's ``train_table`` has no rows (only the columns); the rows
    are in the returned :class:`TrainParts`, for :func:`distributed_training`.
    """
    import distributed

    from territory.models.distributed import trim_memory

    cols, feats, dc = config.data.columns, config.features, config.dask
    units = inputs.units
    unit_ids = units[cols.unit_col].to_numpy()
    ids = unit_ids.astype(str)
    as_of = stages.resolved_as_of(config, inputs)
    graph = build_adjacency(units, cols.unit_col, feats.contiguity, config.data.projected_crs)
    xy = projected_xy(units, config.data.projected_crs)
    sales = inputs.sales[inputs.sales[cols.time_col] <= as_of]
    if sales.empty:
        raise InputError("sales", "no sales rows on or before the as-of date", column=cols.time_col)
    periods = regular_periods(sales[cols.time_col].min(), as_of, feats.frequency)
    origins = training_origins(periods, feats)

    if dc.partition_by is not None and dc.partition_by not in units.columns:
        raise InputError(
            "config", f"units have no column '{dc.partition_by}' to partition by",
            column="dask.partition_by", hint="name a units column (e.g. region) or use null",
        )
    by = units[dc.partition_by].to_numpy() if dc.partition_by else None
    labels = partition_labels(len(ids), xy, by, dc.n_partitions)
    sales_pos = pd.Index(ids).get_indexer(sales[cols.unit_col].astype(str))
    demo = inputs.demographics
    demo_pos = (pd.Index(ids).get_indexer(demo[cols.unit_col].astype(str))
                if demo is not None else None)
    per_year = PERIODS_PER_YEAR[feats.frequency]
    build = partial(
        build_partition, periods=periods, origins=origins, config=feats,
        horizon=config.forecast.horizon, periods_per_year=per_year,
        workload_column=config.territories.workload_column, columns=cols,
    )
    futures = []
    for k in np.unique(labels):
        core = np.flatnonzero(labels == k)
        local, graph_k = local_graph(graph, core)
        in_local = np.zeros(len(ids), dtype=bool)
        in_local[local] = True
        in_core = labels == k
        sales_k = sales[in_local[sales_pos]]
        demo_k = demo[in_core[demo_pos]] if demo is not None else None
        [sales_f, demo_f, graph_f] = client.scatter([sales_k, demo_k, graph_k])
        futures.append(client.submit(build, sales_f, graph_f, ids[core], demographics=demo_f))
    # The small tables come here; the training rows stay where they were built.
    small: list[PartitionFeatures] = client.gather(client.map(_without_train_rows, futures))
    n_rows = sum(client.gather(client.map(_n_train_rows, futures)))
    train = TrainParts(client.map(_train_rows, futures), n_rows, small[0].train_table)
    distributed.wait(train.futures)
    del futures
    client.run(trim_memory)  # the builds' scratch memory, freed, back to the system
    merged = concat_partitions(small, cols)
    market = stages.market_table(config, inputs, graph)
    features = FeatureSet(
        graph, xy, as_of, train.template, merged.score_table, market,
        merged.annual_sales.reindex(unit_ids), merged.workload.reindex(unit_ids).fillna(0.0),
        annual_split=(None if merged.annual_split is None
                      else merged.annual_split.reindex(unit_ids)),
        sales_panel=sales_panel(inputs.sales, unit_ids, feats.frequency, cols, as_of),
    )
    return features, train


def distributed_training(config: RunConfig, features: FeatureSet, client,
                         parts: TrainParts | None = None) -> Trained:
    """The local training, with the forecaster's big fit on ``lightgbm.dask``.

    With ``parts`` (from :func:`worker_features`) the forecaster fits from the
    training rows where the workers hold them, and ``parts`` is spent. With
    backtest windows every fit (the final one and one per origin) reads the
    rows again, so the workers first write their tables to files and let go
    of them (:mod:`territory.models.distributed_backtest`); the backtest's fits
    and forecasts run there too, and the files are deleted at the end.
    ``parts.stats`` gets ``fit_rows`` (the final fit's) and ``backtest_fit_rows``.
    """
    from territory.models.distributed import fit_distributed, fit_from_parts

    min_rows = config.dask.lightgbm_min_rows
    if features.train_files is not None:  # a flow's feature build: the rows are in files
        return _train_from_files(config, features, client, features.train_files, {})
    if parts is None:
        fit = partial(fit_distributed, client=client, min_rows=min_rows)
        return stages.LocalBackend().train(config, features, fit_forecaster=fit)
    if config.forecast.backtest.windows == 0:
        fit = partial(fit_from_parts, parts=parts.futures, client=client, min_rows=min_rows,
                      record=parts.stats)
        return stages.LocalBackend().train(config, features, fit_forecaster=fit)
    from territory.models import distributed_backtest

    spilled = distributed_backtest.spill_tables(client, parts.futures)
    try:
        return _train_from_files(config, features, client, spilled, parts.stats)
    finally:
        distributed_backtest.remove_spilled(client, spilled)


def _train_from_files(config: RunConfig, features: FeatureSet, client, files: list,
                      stats: dict) -> Trained:
    """The training, every fit (the final one, the backtest's) reading the rows from
    ``files`` on the workers; ``stats`` gets the fits' numbers of rows."""
    from territory.models import distributed_backtest
    from territory.models.distributed import fit_from_parts

    missing = [f.path for f in files if f.worker is None and not Path(f.path).is_file()]
    if missing:
        raise InputError(
            "feature cache",
            f"{len(missing)} of the {len(files)} training-row files are gone, e.g. {missing[0]}",
            hint="run `territory cache clear` and run again (the features are rebuilt)")
    min_rows = config.dask.lightgbm_min_rows
    fit = partial(fit_from_parts, parts=list(files), client=client, min_rows=min_rows,
                  record=stats)
    at_origin = distributed_backtest.origin_forecasts(
        client, files, features.train_table.iloc[:0], unit_col=config.data.columns.unit_col,
        min_rows=min_rows, record=stats.setdefault("backtest_fit_rows", []))
    # the local training, told that the rows are not in train_table but where the fits read
    return stages.LocalBackend().train(config, dataclasses.replace(features, train_files=None),
                                       fit_forecaster=fit, origin_forecasts=at_origin)


def _without_train_rows(part: PartitionFeatures) -> PartitionFeatures:
    return dataclasses.replace(part, train_table=part.train_table.iloc[:0])


def _n_train_rows(part: PartitionFeatures) -> int:
    return len(part.train_table)


def _train_rows(part: PartitionFeatures) -> pd.DataFrame:
    return part.train_table



def _score_partition(features: FeatureSet, trained: Trained, frequency: str, cols) -> Scores:
    # A named task for the dashboard; the local scoring code, without the truth file.
    return scoring.score_units(features, trained, frequency, cols)


def partitioned_scores(config: RunConfig, features: FeatureSet, trained: Trained, client
                       ) -> Scores:
    """The local scores, one partition of units per Dask task.

    Each worker runs the local scoring code on its units; the rows are put
    back in the local order, and the metrics against the truth file (which
    need every unit) are computed here.
    """
    cols = config.data.columns
    # the published members are refit here once, on every unit's history
    features = scoring.with_member_forecasts(features, trained, config.features.frequency, cols)
    table, market = features.score_table, features.market_table
    n_parts = max(1, min(len(market), config.dask.n_partitions))
    unit_parts = np.array_split(market.index.to_numpy(), n_parts)
    # Ship the models without their (large) validation tables.
    forecaster = copy.copy(trained.forecaster)
    forecaster.__dict__.pop("validation_", None)
    slim = dataclasses.replace(trained, forecaster=forecaster,
                               validation=trained.validation.iloc[:0], backtest=None)
    [trained_f] = client.scatter([slim], broadcast=True)
    empty = features.train_table.iloc[:0]
    part_of_unit = np.repeat(np.arange(len(unit_parts)), [len(u) for u in unit_parts])
    part_of_row = part_of_unit[market.index.get_indexer(table[cols.unit_col])]
    futures = []
    for k, units_k in enumerate(unit_parts):
        part = dataclasses.replace(
            features, graph=None, xy=None, train_table=empty, sales_panel=None,
            score_table=table[part_of_row == k],
            market_table=market.loc[units_k],
            annual_sales=features.annual_sales.iloc[:0], workload=features.workload.iloc[:0],
            annual_split=None,
        )
        futures.append(client.submit(_score_partition, part, trained_f,
                                     config.features.frequency, cols))
    parts: list[Scores] = client.gather(futures)
    scores = pd.concat([p.scores for p in parts], ignore_index=True)
    unit_codes, _ = pd.factorize(scores[cols.unit_col], sort=True)
    order = np.lexsort((unit_codes, scores["horizon"].to_numpy()))
    scores = scores.take(order).reset_index(drop=True)
    totals = pd.concat([p.unit_totals for p in parts]).sort_index()
    potential = scoring.annual_potential(trained, market)
    truth = stages.read_truth(config)
    return Scores(scores, totals, scoring.truth_metrics(potential, truth, features.territory),
                  scoring.territory_truth_table(potential, truth, features.territory))
