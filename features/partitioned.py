"""Feature tables built one partition of units at a time, equal to the whole-table build.

Temporal features only look along a unit's own history, so they can be built
for any subset of units. Spatial lags (``<feature>_nbr_mean``) also need the
unit's neighbours, which may sit in another partition. Each partition is
therefore built on its **core** units plus a one-ring **halo** (the core's
neighbours outside it), over a local adjacency whose rows for core units are
the global rows, with the neighbours in the same order; halo rows are dropped
afterwards. Because every sum runs over the same values in the same order,
the result is bitwise equal to :func:`territory.features.build.build_forecast_table`
on all units (``tests/test_dask_parity.py`` checks it).

The calendar (first period to the as-of date) is fixed by the caller for all
partitions, so ``time_index`` and the origins mean the same everywhere.

Pure functions: no file access, no Dask; :mod:`territory.pipelines.dask_runner` runs
them on workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from territory.features.build import build_forecast_table
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.feature_set import annual_and_workload, annual_split_log_ratio
from territory.features.panel import panel_on_calendar
from territory.features.spatial import AdjacencyGraph


@dataclass
class PartitionFeatures:
    """The feature rows of one partition's core units."""

    train_table: pd.DataFrame
    score_table: pd.DataFrame
    annual_sales: pd.Series
    workload: pd.Series
    annual_split: pd.Series | None = None


def partition_labels(
    n_units: int, xy: np.ndarray, values: np.ndarray | None = None, n_partitions: int = 8
) -> np.ndarray:
    """Partition number of every unit.

    By the distinct ``values`` (e.g. a region column) when given, else
    ``n_partitions`` bands of equal unit count from west to east (compact
    bands keep the halo small).
    """
    if values is not None:
        codes, _ = pd.factorize(pd.Series(values).astype(str), sort=True)
        return codes.astype(np.int64)
    labels = np.empty(n_units, dtype=np.int64)
    order = np.argsort(xy[:, 0], kind="stable")
    for k, part in enumerate(np.array_split(order, max(1, min(n_partitions, n_units)))):
        labels[part] = k
    return labels


def local_graph(graph: AdjacencyGraph, core: np.ndarray) -> tuple[np.ndarray, AdjacencyGraph]:
    """Core units plus their one-ring halo, and the adjacency rows of the core.

    Parameters
    ----------
    graph
        Adjacency of all units.
    core
        Positions (in ``graph`` order) of the partition's units.

    Returns
    -------
    local
        Sorted positions of core and halo units.
    graph
        Adjacency over ``local``: a core unit's row lists exactly its global
        neighbours, in the global order; halo rows are empty.
    """
    m = graph.matrix
    n = graph.n_units
    is_core = np.zeros(n, dtype=bool)
    is_core[core] = True
    row_of_nz = np.repeat(np.arange(n), np.diff(m.indptr))
    in_core_rows = is_core[row_of_nz]
    local = np.union1d(np.flatnonzero(is_core), m.indices[in_core_rows])
    position = np.full(n, -1, dtype=np.int64)
    position[local] = np.arange(len(local))
    counts = np.where(is_core[local], np.diff(m.indptr)[local], 0)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    # Non-zeros are stored row by row and the map to local positions is
    # increasing, so every core row keeps its neighbours in the global order.
    matrix = sp.csr_matrix(
        (m.data[in_core_rows], position[m.indices[in_core_rows]], indptr),
        shape=(len(local), len(local)),
    )
    return local, AdjacencyGraph(unit_ids=graph.unit_ids[local], matrix=matrix)


def build_partition(
    sales: pd.DataFrame,
    graph: AdjacencyGraph,
    core_ids: np.ndarray,
    periods: pd.DatetimeIndex,
    origins: list[pd.Timestamp],
    config: FeaturesConfig,
    horizon: int,
    demographics: pd.DataFrame | None,
    periods_per_year: int,
    workload_column: str | None,
    columns: ColumnsConfig | None = None,
) -> PartitionFeatures:
    """Training and scoring tables of one partition's core units.

    Parameters
    ----------
    sales
        Sales rows of the core and halo units (others are ignored).
    graph
        Local adjacency from :func:`local_graph`.
    core_ids
        Unit ids whose rows are returned.
    periods
        The common calendar, first period to the as-of date.
    origins
        Training origins (:func:`territory.features.build.training_origins` of ``periods``).
    demographics
        Demographics of (at least) the core units, or None.
    """
    cols = columns or ColumnsConfig()
    panel = panel_on_calendar(sales, graph.unit_ids, periods, cols)
    train = build_forecast_table(panel, config, horizon, origins, demographics, graph, cols)
    score = build_forecast_table(panel, config, horizon, [periods[-1]], demographics, graph, cols)
    core = pd.Index(np.asarray(core_ids, dtype=str))
    train = train[train[cols.unit_col].isin(core)]
    score = score[score[cols.unit_col].isin(core)]
    core_panel = panel[panel[cols.unit_col].isin(core)]
    annual, workload = annual_and_workload(
        core_panel, periods, config, periods_per_year, workload_column, cols
    )
    split = annual_split_log_ratio(core_panel, periods, periods_per_year, cols)
    return PartitionFeatures(train, score, annual, workload, split)


def whole_table_order(table: pd.DataFrame, unit_col: str) -> pd.DataFrame:
    """``table``'s rows in the whole-table build's order: by origin, horizon and unit."""
    unit_codes, _ = pd.factorize(table[unit_col], sort=True)
    order = np.lexsort((unit_codes, table["horizon"].to_numpy(), table["origin"].to_numpy()))
    return table.take(order).reset_index(drop=True)


def concat_partitions(
    parts: list[PartitionFeatures], columns: ColumnsConfig | None = None
) -> PartitionFeatures:
    """One table from the partitions' tables, rows in the whole-table build's order.

    The whole-table build orders rows by origin, horizon and unit.
    """
    cols = columns or ColumnsConfig()

    def ordered(tables: list[pd.DataFrame]) -> pd.DataFrame:
        return whole_table_order(pd.concat(tables, ignore_index=True), cols.unit_col)

    return PartitionFeatures(
        train_table=ordered([p.train_table for p in parts]),
        score_table=ordered([p.score_table for p in parts]),
        annual_sales=pd.concat([p.annual_sales for p in parts]).sort_index(),
        workload=pd.concat([p.workload for p in parts]).sort_index(),
        annual_split=(None if any(p.annual_split is None for p in parts)
                      else pd.concat([p.annual_split for p in parts]).sort_index()),
    )


def stack_tables(tables: Iterable[pd.DataFrame], n_rows: int, template: pd.DataFrame
                 ) -> pd.DataFrame:
    """Rows of ``tables`` one after the other, holding one input table at a time.

    ``pd.concat`` needs every input in memory next to its result; this fills
    preallocated columns as the tables arrive (e.g. gathered one by one from
    Dask workers), so the peak is the result plus one input.

    Parameters
    ----------
    tables
        Frames with ``template``'s columns and dtypes, consumed once.
    n_rows
        Their total number of rows.
    template
        A frame (or empty slice) giving the columns and dtypes.
    """
    columns = {name: np.empty(n_rows, dtype=template[name].dtype) for name in template.columns}
    start = 0
    for table in tables:
        stop = start + len(table)
        for name, values in columns.items():
            values[start:stop] = table[name].to_numpy()
        start = stop
    if start != n_rows:
        raise ValueError(f"expected {n_rows} rows, got {start}")
    return pd.DataFrame(columns, copy=False)
