"""Flow-planned transfers between territories (internal).

When a whole cluster of territories is over on one attribute and under on
another (the metropolitan north-east of the US: potential-heavy, short of
workload), no single move, swap or short ejection chain lowers the
violation: every neighbour of a violated territory is violated the same way,
and the territories with the opposite imbalance are several territories
away. The surplus has to be carried across intermediate territories that are
already within tolerance, each giving as much as it gets.

This module plans that transport first and executes it second:

1. **Plan** (:func:`plan_flows`). A min-cost flow on the territory adjacency
   graph, one commodity per attribute, solved as a linear program with HiGHS:
   supply ``W_ka / T_ka - 1`` at every territory (surplus positive, deficit
   negative), cost one per hop, and a capacity per border of ``cap_scale``
   times the attribute mass (in targets) of the units lying on it. Flow
   conservation keeps the intermediate territories balanced.
2. **Execute** (:func:`execute_flows`). On each border with a planned flow
   (largest first), boundary units are moved one at a time, in either
   direction, while each move brings the border's realised transfer closer
   (L1, in target units) to the planned vector; a unit moves only if it is
   not a cut vertex of its territory (Hopcroft & Tarjan), so every territory
   stays contiguous.

The Lagrangian search and the ejection chains then polish the result, and
the caller keeps the best alignment seen. This is the transportation view of
districting (Hess et al., 1965, "Nonpartisan political redistricting by
computer", *Operations Research* 13(6)) applied to the imbalance left by the
local search, as flow-based balancing is used in graph partitioning
(Meyerhenke, Monien & Sauerwald, 2009, "A new diffusion-based multilevel
algorithm for computing graph partitions", *J. Parallel Distrib. Comput.*
69(9)).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from territory.models.territories.search import Graph, SearchState, articulation_points


def plan_flows(
    state: SearchState, graph: Graph, values: np.ndarray, targets: np.ndarray, cap_scale: float
) -> dict[tuple[int, int], np.ndarray]:
    """Min-cost multi-attribute flow of the deviations over the territory graph.

    Returns
    -------
    dict
        ``{(a, b): f}``: the (m,) net flow from territory ``a`` to ``b``, in
        target units (a negative component flows from ``b`` to ``a``).
    """
    k, m = targets.shape
    lab = state.labels
    n = len(lab)
    la, lb = lab[graph.src], lab[graph.dst]
    cross = la != lb
    if not cross.any():
        return {}
    key = la[cross].astype(np.int64) * k + lb[cross]
    uniq = np.unique(key * n + graph.src[cross])  # (border, unit) pairs, each once
    border, bunit = uniq // n, uniq % n
    ekeys, inv = np.unique(border, return_inverse=True)
    mass = np.zeros((len(ekeys), m))
    np.add.at(mass, inv, values[bunit] / targets[border // k])
    ea, eb = ekeys // k, ekeys % k
    n_e = len(ekeys)
    n_f = n_e * m
    n_var = n_f + 2 * k * m
    rows, cols, vals = [], [], []
    t = np.arange(k)
    for a in range(m):
        fidx = np.arange(n_e) * m + a
        rows += [ea * m + a, eb * m + a, t * m + a, t * m + a]
        cols += [fidx, fidx, n_f + t * m + a, n_f + k * m + t * m + a]
        vals += [np.ones(n_e), -np.ones(n_e), np.ones(k), -np.ones(k)]
    a_eq = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(k * m, n_var),
    )
    b_eq = (state.totals / targets - 1.0).ravel()
    cost = np.concatenate([np.ones(n_f), np.full(2 * k * m, 50.0)])  # unmet supply: 50/unit
    upper = np.concatenate([(cap_scale * mass).ravel(), np.full(2 * k * m, np.inf)])
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([np.zeros(n_var), upper]),
                  method="highs")
    if res.status != 0 or res.x is None:
        return {}
    f = res.x[:n_f].reshape(n_e, m)
    out: dict[tuple[int, int], np.ndarray] = {}
    for e in np.flatnonzero(f.max(axis=1) > 1e-6).tolist():
        a, b = int(ea[e]), int(eb[e])
        if (b, a) in out:  # one entry per border: the net flow
            out[(b, a)] = out[(b, a)] - f[e]
        else:
            out[(a, b)] = f[e].copy()
    return out


def execute_flows(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    movable: np.ndarray,
    flows: dict[tuple[int, int], np.ndarray],
    *,
    max_moves_per_border: int = 60,
    allowed=None,
) -> int:
    """Move boundary units so each border's transfer approaches its planned flow.

    ``allowed(units, src, dst) -> bool mask`` may veto moves (maximum radius).
    Returns the number of units moved.
    """
    lab, nbrs = state.lab, graph.nbrs
    is_ap = np.zeros(len(values), dtype=bool)
    fixed = np.zeros(len(values), dtype=bool)
    fixed[state.centres[state.centres >= 0]] = True
    moved = 0
    for a, b in sorted(flows, key=lambda e: (-float(np.abs(flows[e]).sum()), e)):
        want = flows[(a, b)].copy()  # remaining transfer a -> b, in target units
        for _ in range(max_moves_per_border):
            articulation_points(state.labels, nbrs, (a, b), is_ap)
            us, st, sg = [], [], []
            for src_t, dst_t, sign in ((a, b, 1.0), (b, a, -1.0)):
                if state.counts[src_t] <= 1:
                    continue
                members = np.flatnonzero(state.labels == src_t).tolist()
                on = [u for u in members if any(lab[v] == dst_t for v in nbrs[u])]
                on = [u for u in on if movable[u] and not is_ap[u] and not fixed[u]]
                if on and allowed is not None:
                    arr = np.asarray(on)
                    on = arr[allowed(arr, src_t, dst_t)].tolist()
                us += on
                st += [src_t] * len(on)
                sg += [sign] * len(on)
            if not us:
                break
            us_a, st_a, sg_a = np.asarray(us), np.asarray(st), np.asarray(sg)
            step = sg_a[:, None] * values[us_a] / targets[st_a]
            resid = np.abs(want[None, :] - step).sum(axis=1)
            j = int(np.argmin(resid))
            if resid[j] >= np.abs(want).sum() - 1e-9:
                break
            src_t = int(st_a[j])
            dst_t = b if src_t == a else a
            state.move(int(us_a[j]), src_t, dst_t, values[us_a[j]])
            want = want - step[j]
            moved += 1
    return moved
