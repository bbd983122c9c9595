"""Demo data with a history of rep changes: an earlier alignment and the sales it made.

The simulator (:mod:`territory.features.demo`) has one alignment for all its
months. Real companies realign, and the units whose rep changed are the
real-data check of the potential (``data.previous_alignment``,
:mod:`territory.models.potential_rep_change`). :func:`earlier_alignment`
writes that history into a simulated company:

* ``share`` of the units on a territory boundary (a queen neighbour in
  another territory; chosen with ``seed``) belonged, before ``changed_at``,
  to one of those neighbouring territories (each picks one at random);
* before ``changed_at`` their sales were made by that territory's rep: the
  simulated sales of those months are multiplied by the earlier rep's
  penetration over the current one's (the simulator's sales are demand times
  penetration, so the expectation is exact; the compound Poisson noise is
  scaled with it rather than drawn again). Accounts and visits are kept.

From ``changed_at`` on, nothing changes: the current alignment, the reps and
the truth file are those of the company as simulated.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from territory.features.demo import PROJECTED_CRS, DemoData
from territory.features.errors import InputError
from territory.features.spatial import AdjacencyGraph, build_adjacency


def boundary_options(labels: np.ndarray, graph: AdjacencyGraph) -> dict[int, list[str]]:
    """Per unit (graph position) on a territory boundary, the other territories among its
    neighbours, sorted."""
    matrix = graph.matrix.tocsr()
    options = {}
    for i, own in enumerate(labels):
        nbrs = matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]]
        other = sorted({str(labels[j]) for j in nbrs} - {str(own)})
        if other:
            options[i] = other
    return options


def earlier_alignment(
    alignment: pd.DataFrame,
    sales: pd.DataFrame,
    penetration: pd.Series,
    graph: AdjacencyGraph,
    changed_at: pd.Timestamp,
    share: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The alignment before ``changed_at`` and the sales it made (see the module doc).

    Parameters
    ----------
    alignment
        ``unit_id``, ``territory_id``: the current alignment (every unit of ``graph``).
    sales
        ``unit_id``, ``period``, ``sales`` (and workload columns, kept).
    penetration
        Each territory's rep penetration, by territory id (the truth's ``rep_penetration``).
    graph
        Queen contiguity of the units.
    changed_at
        First period of the current alignment.
    share
        Share of the boundary units that had another territory before ``changed_at``
        (0 < share <= 1).
    seed
        Seed of the ``numpy.random.default_rng`` that chooses the units and territories.

    Returns
    -------
    earlier, sales
        ``unit_id``, ``territory_id`` before the change (same rows as ``alignment``), and
        ``sales`` with the moved units' sales before ``changed_at`` at the earlier rep.
    """
    if not 0.0 < share <= 1.0:
        raise InputError("rep changes", f"the share of boundary units that moved must be in "
                         f"(0, 1]; got {share}", hint="give e.g. --rep-changes 0.3")
    current = alignment.set_index("unit_id")["territory_id"].astype(str)
    labels = current.reindex(graph.unit_ids).to_numpy()
    if pd.isna(labels).any():
        missing = list(np.asarray(graph.unit_ids)[pd.isna(labels)][:5])
        raise ValueError(f"units without a territory in the alignment: {missing}")
    options = boundary_options(labels, graph)
    rng = np.random.default_rng(seed)
    boundary = np.array(sorted(options))
    chosen = np.sort(rng.choice(boundary, int(round(share * len(boundary))), replace=False))
    before = labels.copy()
    for i in chosen:
        before[i] = options[i][rng.integers(len(options[i]))]
    before = pd.Series(before, index=pd.Index(graph.unit_ids, name="unit_id"))
    moved = before.index[before.to_numpy() != labels]
    ratio = (before.reindex(moved).map(penetration)
             / current.reindex(moved).map(penetration)).astype(float)
    if ratio.isna().any():
        raise ValueError("territories without a rep penetration: "
                         f"{sorted(set(before.reindex(moved)[ratio.isna()]))[:5]}")
    out = sales.copy()
    earlier_rows = (pd.to_datetime(out["period"]) < changed_at).to_numpy()
    factor = out["unit_id"].astype(str).map(ratio).fillna(1.0).to_numpy()
    factor = np.where(earlier_rows, factor, 1.0)
    out["sales"] = np.round(out["sales"].to_numpy(dtype=float) * factor, 2)
    earlier = alignment[["unit_id"]].assign(
        territory_id=before.reindex(alignment["unit_id"].astype(str)).to_numpy())
    return earlier.reset_index(drop=True), out


def with_rep_changes(data: DemoData, share: float, seed: int, months_after: int = 12
                     ) -> tuple[DemoData, pd.DataFrame, str]:
    """The simulated company with an earlier alignment that ended ``months_after`` months
    before the end of its sales (:func:`earlier_alignment`).

    Returns the company (its sales before the change at the earlier reps), the earlier
    alignment and ``changed_at`` (``YYYY-MM``, as ``data.previous_alignment`` takes it).
    """
    periods = pd.DatetimeIndex(sorted(pd.to_datetime(data.sales["period"]).unique()))
    if len(periods) < months_after + 12:
        raise ValueError(f"{len(periods)} months of sales cannot hold a year before a change "
                         f"and {months_after} months after it")
    changed_at = periods[-months_after]
    graph = build_adjacency(data.counties, "unit_id", "queen", PROJECTED_CRS)
    penetration = data.truth.groupby("territory_id")["rep_penetration"].first()
    earlier, sales = earlier_alignment(data.alignment, data.sales, penetration, graph,
                                       changed_at, share, seed)
    return replace(data, sales=sales), earlier, f"{changed_at:%Y-%m}"
