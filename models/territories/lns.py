"""Large-neighbourhood search over groups of adjacent territories (internal).

When violations survive the local search, the chains and the flow-planned
transfers, the cause is usually a group of neighbouring territories whose
units are arranged so that no sequence of boundary moves balances them, even
though the group as a whole could be balanced. Destroy-and-repair (Shaw,
1998, "Using constraint programming and local search methods to solve
vehicle routing problems", *CP-98*; Ropke & Pisinger, 2006) fits that case:

1. **Destroy.** Pick a violated territory at random and grow a group of 2 to
   ``max_group`` adjacent territories around it, each time adding the
   neighbour whose deviation best offsets the group's joint deviation (small
   random noise breaks ties and varies the groups).
2. **Repair.** Re-design the group's units from scratch as a small instance
   with the group's own targets (``solve``: the engine itself, with its
   balanced bisection start, local search and chains); fixed centres and
   locked units keep their territory.
3. **Accept** the new group only if the total balance violation falls and
   no more territory-attribute pairs are out of tolerance than before.

The search stops at zero violation, after ``max_tries`` groups, after
``patience`` groups in a row without improvement, or at the deadline. Every
accepted group is contiguous by construction (the repair only returns
contiguous territories, or it is rejected), so the alignment stays valid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from territory.models.territories.clock import clock
from territory.models.territories.objective import violated_pairs
from territory.models.territories.search import Graph

Solver = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


def territory_neighbours(graph: Graph, labels: np.ndarray, k: int) -> list[set[int]]:
    """Territories sharing a border with each territory (label -1: unassigned, skipped)."""
    la, lb = labels[graph.src], labels[graph.dst]
    cross = (la != lb) & (la >= 0) & (lb >= 0)
    nbrs: list[set[int]] = [set() for _ in range(k)]
    for a, b in np.unique(np.column_stack([la[cross], lb[cross]]), axis=0).tolist():
        nbrs[a].add(b)
    return nbrs


def grow_group(
    t0: int, nbrs: list[set[int]], dev: np.ndarray, size: int, rng: np.random.Generator
) -> list[int]:
    """Adjacent territories around ``t0`` whose deviations offset each other."""
    group = [t0]
    joint = dev[t0].copy()
    while len(group) < size:
        cand = sorted(set().union(*(nbrs[t] for t in group)) - set(group))
        if not cand:
            break
        gain = -(dev[cand] * np.sign(joint)).sum(axis=1) + 0.02 * rng.standard_normal(len(cand))
        pick = cand[int(np.argmax(gain))]
        group.append(pick)
        joint = joint + dev[pick]
    return group


def lns_polish(
    labels: np.ndarray,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    solve: Solver,
    rng: np.random.Generator,
    *,
    max_group: int = 8,
    max_tries: int = 100,
    patience: int = 15,
    deadline: float = np.inf,
) -> tuple[np.ndarray, dict]:
    """Destroy-and-repair groups of territories while the violation falls.

    Parameters
    ----------
    solve
        ``solve(units, group) -> local labels`` re-designs ``units`` (global
        indices) into ``len(group)`` territories whose targets are
        ``targets[group]``; local label ``j`` means territory ``group[j]``.
        ``None`` means no valid design (the group is left as it is).

    Returns
    -------
    labels, stats
        The improved labels (a copy) and ``{"tries", "accepted", "violated",
        "violation"}`` (violated pairs and summed excess at the end).
    """
    k = targets.shape[0]
    labels = labels.copy()
    totals = np.zeros_like(targets)
    np.add.at(totals, labels, values)
    best = violated_pairs(totals, targets, tau)
    tries = accepted = stall = 0
    while best[0] > 0 and tries < max_tries and stall < patience:  # so `bad` is not empty
        if clock() > deadline:
            break
        tries += 1
        stall += 1
        dev = totals / targets - 1
        bad = np.flatnonzero((np.abs(dev) - tau > 1e-9).any(axis=1))
        nbrs = territory_neighbours(graph, labels, k)
        group = grow_group(int(rng.choice(bad)), nbrs, dev, int(rng.integers(2, max_group + 1)),
                           rng)
        if len(group) < 2:
            continue
        group_arr = np.asarray(group)
        units = np.flatnonzero(np.isin(labels, group_arr))
        local = solve(units, group_arr)
        if local is None:
            continue
        trial = totals.copy()
        trial[group_arr] = 0.0
        np.add.at(trial, group_arr[local], values[units])
        v = violated_pairs(trial, targets, tau)
        if v[0] <= best[0] and v[1] < best[1] - 1e-9:
            labels[units] = group_arr[local]
            totals, best = trial, v
            accepted += 1
            stall = 0
    return labels, {"tries": tries, "accepted": accepted, "violated": best[0],
                    "violation": best[1]}
