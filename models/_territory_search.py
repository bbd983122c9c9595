"""Building blocks of the territory design engine (internal).

Seeding, price-adjusted location-allocation, contiguity
repair and the boundary-unit local search. See :mod:`territory.models.territories` for
the algorithm overview and references; everything here works on plain numpy
arrays with integer unit indices ``0..n-1`` and territory labels ``0..K-1``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

_EPS = 1e-12



@dataclass
class Graph:
    """Adjacency in the three shapes the engine needs."""

    n: int
    src: np.ndarray  # directed edge tails (both directions of every edge)
    dst: np.ndarray  # directed edge heads
    nbrs: list[list[int]]  # python adjacency lists for the BFS hot loops

    @classmethod
    def from_csr(cls, adjacency: sp.csr_matrix) -> Graph:
        a = sp.csr_matrix(adjacency)
        a.eliminate_zeros()
        n = a.shape[0]
        indptr, indices = a.indptr, a.indices.astype(np.int64)
        src = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        keep = src != indices
        nbr_all = indices.tolist()
        bounds = indptr.tolist()
        nbrs = [[j for j in nbr_all[bounds[i] : bounds[i + 1]] if j != i] for i in range(n)]
        return cls(n=n, src=src[keep], dst=indices[keep], nbrs=nbrs)


def components_by_label(graph: Graph, labels: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the graph restricted to same-label edges."""
    same = labels[graph.src] == labels[graph.dst]
    mat = sp.csr_matrix(
        (np.ones(int(same.sum()), dtype=np.int8), (graph.src[same], graph.dst[same])),
        shape=(graph.n, graph.n),
    )
    return connected_components(mat, directed=False)


# --------------------------------------------------------------------------- seeds


def kmeanspp_seeds(
    xy: np.ndarray,
    weight: np.ndarray,
    k: int,
    rng: np.random.Generator,
    fixed: dict[int, int],
    excluded: np.ndarray,
) -> np.ndarray:
    """Weighted k-means++ seeding; fixed centres are kept at their territory.

    Parameters
    ----------
    excluded
        Boolean mask of units that may not become a free centre (locked units).
    """
    n = len(xy)
    w = weight.astype(float) + 1e-9 * (weight.mean() + 1.0)
    allowed = ~excluded
    if allowed.sum() < k - len(fixed):
        allowed = np.ones(n, dtype=bool)
    centres = np.full(k, -1, dtype=np.int64)
    for t, u in fixed.items():
        centres[t] = u
    chosen = [u for u in fixed.values()]
    if not chosen:
        p = w * allowed
        chosen.append(int(rng.choice(n, p=p / p.sum())))
    d2 = np.full(n, np.inf)
    for u in chosen:
        d2 = np.minimum(d2, ((xy - xy[u]) ** 2).sum(1))
    free_slots = [t for t in range(k) if centres[t] < 0]
    picks = chosen[len(fixed) :]  # the random first pick, if any
    while len(picks) < len(free_slots):
        p = w * d2 * allowed
        p[np.asarray(chosen)] = 0.0
        if p.sum() <= 0:
            p = allowed.astype(float)
            p[np.asarray(chosen)] = 0.0
            if p.sum() <= 0:
                p = np.ones(n)
                p[np.asarray(chosen)] = 0.0
        u = int(rng.choice(n, p=p / p.sum()))
        picks.append(u)
        chosen.append(u)
        d2 = np.minimum(d2, ((xy - xy[u]) ** 2).sum(1))
    for t, u in zip(free_slots, picks, strict=True):
        centres[t] = u
    return centres


def weighted_medoids(
    xy: np.ndarray, weight: np.ndarray, labels: np.ndarray, k: int, keep: dict[int, int]
) -> np.ndarray:
    """Unit minimising sum_j w_j d(i, j) within each territory (empty -> -1)."""
    centres = np.full(k, -1, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    w = weight.astype(float) + 1e-9 * (weight.mean() + 1.0)
    for t in range(k):
        if t in keep:
            centres[t] = keep[t]
            continue
        members = order[bounds[t] : bounds[t + 1]]
        if len(members) == 0:
            continue
        pts, wm = xy[members], w[members]
        best, best_cost = -1, np.inf
        step = max(1, min(1024, 4_000_000 // len(members)))  # block of <= ~64 MB
        for s in range(0, len(members), step):
            blk = pts[s : s + step]
            d = np.sqrt(((blk[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
            cost = d @ wm
            j = int(np.argmin(cost))
            if cost[j] < best_cost:
                best, best_cost = s + j, cost[j]
        centres[t] = members[best]
    return centres


# ------------------------------------------------------------------ allocation


def price_allocate(
    xy: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray,
    centres: np.ndarray,
    forced: np.ndarray,
    n_candidates: int,
    n_rounds: int = 80,
) -> np.ndarray:
    """Lagrangian (price-adjusted) nearest-centre allocation.

    Each unit goes to the centre minimising ``d^2 - price_k`` (a power
    diagram, so territories come out compact and nearly contiguous); prices
    rise for territories under their target and fall for those over it, on
    the mean of the attribute shares. The most balanced round is returned.
    """
    n = len(xy)
    k = len(centres)
    c = min(k, n_candidates)
    d, idx = cKDTree(xy[centres]).query(xy, k=c)
    d2 = (d.reshape(n, c) ** 2) / (np.median(d.reshape(n, c)[:, 0] ** 2) + _EPS)
    idx = idx.reshape(n, c)
    share = (values / (values.sum(0) + _EPS)).mean(axis=1)
    tshare = (targets / (values.sum(0) + _EPS)).mean(axis=1)
    pinned = np.flatnonzero(forced >= 0)
    price = np.zeros(k)
    best, best_dev = None, np.inf
    rows = np.arange(n)
    step = 2.0
    for _ in range(n_rounds):
        pick = np.argmin(d2 - price[idx], axis=1)
        labels = idx[rows, pick]
        labels[pinned] = forced[pinned]
        load = np.bincount(labels, weights=share, minlength=k) / tshare - 1
        score = float(np.abs(load).max())
        if score < best_dev:
            best, best_dev = labels.copy(), score
        price -= step * np.clip(load, -1, 1)
        step *= 0.95
    return best


# ------------------------------------------------------------------ contiguity


def repair_contiguity(
    graph: Graph,
    labels: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray,
    theta: np.ndarray,
    anchors: np.ndarray,
    locked: np.ndarray,
) -> np.ndarray:
    """Give every detached piece of a territory to the neighbour it suits best.

    The piece kept is the one holding the territory's anchor (fixed centre)
    when there is one, else the heaviest piece. Detached pieces go to an
    adjacent territory, choosing the one whose balance penalty grows least.
    Locked units never move (their pieces stay and are reported).
    """
    labels = labels.copy()
    k, m = targets.shape
    for _round in range(50):
        n_comp, comp = components_by_label(graph, labels)
        comp_label = np.zeros(n_comp, dtype=np.int64)
        comp_label[comp] = labels
        comp_w = np.bincount(comp, weights=values[:, 0] + 1e-9, minlength=n_comp)
        main = np.full(k, -1, dtype=np.int64)
        best_w = np.full(k, -1.0)
        for cid in range(n_comp):
            t = comp_label[cid]
            if comp_w[cid] > best_w[t]:
                best_w[t], main[t] = comp_w[cid], cid
        for t in range(k):
            if anchors[t] >= 0 and labels[anchors[t]] == t:
                main[t] = comp[anchors[t]]
        comp_locked = np.bincount(comp, weights=locked.astype(float), minlength=n_comp) > 0
        if _round < 3:
            joined = False
            for cid in np.flatnonzero(comp_locked).tolist():
                t = int(comp_label[cid])
                if main[t] != cid and main[t] >= 0:
                    joined |= _join_by_path(graph, labels, comp, cid, int(main[t]), t, locked)
            if joined:
                continue
        orphan_comp = np.ones(n_comp, dtype=bool)
        orphan_comp[main[main >= 0]] = False
        orphan_comp &= ~comp_locked
        if not orphan_comp.any():
            break
        is_orphan = orphan_comp[comp]
        totals = np.zeros((k, m))
        np.add.at(totals, labels, values)
        # smallest pieces first
        order = np.argsort(comp_w + np.where(orphan_comp, 0, np.inf), kind="stable")
        members_of: dict[int, list[int]] = {}
        for i in np.flatnonzero(is_orphan).tolist():
            members_of.setdefault(int(comp[i]), []).append(i)
        changed = False
        for cid in order.tolist():
            if not orphan_comp[cid]:
                break
            members = members_of[cid]
            own = int(comp_label[cid])
            cand = {
                int(labels[j])
                for i in members
                for j in graph.nbrs[i]
                if labels[j] != own and not is_orphan[j]
            }
            if not cand:
                continue
            wsum = values[members].sum(0)
            best_t, best_delta = -1, np.inf
            for t in sorted(cand):
                before = _pen(totals[t] / targets[t] - 1, theta)
                after = _pen((totals[t] + wsum) / targets[t] - 1, theta)
                if after - before < best_delta:
                    best_t, best_delta = t, after - before
            labels[members] = best_t
            totals[own] -= wsum
            totals[best_t] += wsum
            is_orphan[members] = False
            changed = True
        if not changed:
            break
    return labels


def _join_by_path(graph, labels, comp, cid, main_cid, t, locked) -> bool:
    """Relabel the shortest free path from piece ``cid`` to piece ``main_cid`` as ``t``."""
    start = np.flatnonzero(comp == cid).tolist()
    parent = {u: -1 for u in start}
    queue = deque(start)
    while queue:
        u = queue.popleft()
        for v in graph.nbrs[u]:
            if v in parent or (locked[v] and labels[v] != t):
                continue
            parent[v] = u
            if comp[v] == main_cid:
                w = u
                while w != -1 and comp[w] != cid:
                    labels[w] = t
                    w = parent[w]
                return True
            queue.append(v)
    return False


def _pen(dev: np.ndarray, theta: np.ndarray) -> float:
    return float((np.maximum(np.abs(dev) - theta, 0.0) ** 2).sum())


def removal_keeps_pieces(i: int, lab: list[int], nbrs: list[list[int]]) -> bool:
    """True when removing unit ``i`` does not split its territory.

    Breadth-first search inside the territory, without ``i``, from one of its
    same-territory neighbours until all the others are reached. Works on
    territories that are already in several pieces (it never adds a piece).
    """
    t = lab[i]
    inner = [j for j in nbrs[i] if lab[j] == t]
    if len(inner) <= 1:
        return True
    todo = set(inner[1:])
    seen = {i, inner[0]}
    queue = deque([inner[0]])
    while queue:
        u = queue.popleft()
        for v in nbrs[u]:
            if v not in seen and lab[v] == t:
                if v in todo:
                    todo.discard(v)
                    if not todo:
                        return True
                seen.add(v)
                queue.append(v)
    return False


# ------------------------------------------------------------------ local search


@dataclass
class SearchState:
    """Mutable state of the local search, updated incrementally."""

    labels: np.ndarray
    lab: list[int]
    totals: np.ndarray  # (K, m)
    counts: np.ndarray  # (K,)
    centres: np.ndarray

    @classmethod
    def build(cls, labels: np.ndarray, values: np.ndarray, k: int, centres: np.ndarray):
        totals = np.zeros((k, values.shape[1]))
        np.add.at(totals, labels, values)
        return cls(
            labels=labels.copy(),
            lab=labels.tolist(),
            totals=totals,
            counts=np.bincount(labels, minlength=k),
            centres=centres.copy(),
        )

    def move(self, i: int, a: int, b: int, w: np.ndarray) -> None:
        self.labels[i] = b
        self.lab[i] = b
        self.totals[a] -= w
        self.totals[b] += w
        self.counts[a] -= 1
        self.counts[b] += 1


def violation(dev: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Per-territory balance violation: sum_a max(0, |dev| - tau_a)."""
    return np.maximum(np.abs(dev) - tau, 0.0).sum(axis=1)


def within_reach(
    xy: np.ndarray, centres: np.ndarray, cu: np.ndarray, a: np.ndarray, b: np.ndarray,
    radius: float | None,
) -> np.ndarray:
    """Moves of unit ``cu`` from ``a`` to ``b`` that respect the maximum radius.

    A move is allowed when the unit lands within ``radius`` of ``b``'s centre,
    or at least nearer to it than to its current centre (so units already out
    of reach can still be brought closer). All true without a radius.
    """
    if radius is None or len(cu) == 0:
        return np.ones(len(cu), dtype=bool)
    db = np.linalg.norm(xy[cu] - xy[np.maximum(centres[b], 0)], axis=1)
    da = np.linalg.norm(xy[cu] - xy[np.maximum(centres[a], 0)], axis=1)
    return (db <= radius) | (db < da)


def radius_repair(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    movable: np.ndarray,
    radius: float,
    *,
    rounds: int = 50,
) -> int:
    """Move units beyond ``radius`` of their centre to an adjacent territory in reach.

    A unit moves only if its new centre is within ``radius``, it is not a cut
    vertex of its territory, and the balance violation does not grow; among
    the admissible territories the one with the lowest violation wins.
    Returns the number of moves.
    """
    lab, nbrs = state.lab, graph.nbrs
    moved = 0
    for _ in range(rounds):
        c = state.centres
        far = np.linalg.norm(xy - xy[np.maximum(c[state.labels], 0)], axis=1) > radius
        far &= movable
        far[c[c >= 0]] = False
        changed = 0
        order = np.flatnonzero(far)
        dist_own = np.linalg.norm(xy[order] - xy[c[state.labels[order]]], axis=1)
        for u in order[np.argsort(-dist_own, kind="stable")].tolist():
            a = lab[u]
            if state.counts[a] <= 1:
                continue
            opts = sorted({lab[v] for v in nbrs[u] if lab[v] != a})
            best_b, best_v = -1, np.inf
            before = float(violation(state.totals[[a]] / targets[[a]] - 1, tau).sum())
            for b in opts:
                if np.linalg.norm(xy[u] - xy[c[b]]) > radius:
                    continue
                vb0 = float(violation(state.totals[[b]] / targets[[b]] - 1, tau).sum())
                wa = (state.totals[a] - values[u]) / targets[a] - 1
                wb = (state.totals[b] + values[u]) / targets[b] - 1
                after = float(violation(np.vstack([wa, wb]), tau).sum())
                if after <= before + vb0 + 1e-12 and after < best_v:
                    best_b, best_v = b, after
            if best_b < 0 or not removal_keeps_pieces(u, lab, nbrs):
                continue
            state.move(u, a, best_b, values[u])
            changed += 1
        moved += changed
        if not changed:
            break
    return moved


def _boundary_candidates(graph: Graph, labels: np.ndarray, movable: np.ndarray, k: int):
    la = labels[graph.src]
    lb = labels[graph.dst]
    mask = (la != lb) & movable[graph.src]
    cu, b = graph.src[mask], lb[mask]
    key, first = np.unique(cu * k + b, return_index=True)
    return cu[first], la[mask][first], b[first]


def _apply_batch(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    order: np.ndarray,
    cu: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    budget_ok,
) -> int:
    """Apply the best non-conflicting moves (each territory touched once).

    A move is skipped when its unit would split the donor territory.
    """
    k = len(state.counts)
    used = np.zeros(k, dtype=bool)
    n_used = 0
    applied = 0
    cu_l, a_l, b_l = cu.tolist(), a.tolist(), b.tolist()
    counts = state.counts
    for j in order.tolist():
        ta, tb = a_l[j], b_l[j]
        if used[ta] or used[tb] or counts[ta] <= 1:
            continue
        i = cu_l[j]
        if not removal_keeps_pieces(i, state.lab, graph.nbrs):
            continue
        if not budget_ok([i], tb):
            continue
        state.move(i, ta, tb, values[i])
        used[ta] = used[tb] = True
        applied += 1
        n_used += 2
        if n_used >= k - 1:
            break
    return applied


def compact_search(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    movable: np.ndarray,
    rng: np.random.Generator,
    *,
    max_iter: int,
    deadline: float,
    budget_ok,
    max_radius: float | None = None,
) -> int:
    """Phase 2: reduce dispersion with moves that never add balance violation."""
    k = targets.shape[0]
    w0 = values[:, 0] + 1e-9
    it = 0
    while it < max_iter and time.perf_counter() < deadline:
        it += 1
        mov = movable.copy()
        mov[state.centres[state.centres >= 0]] = False
        cu, a, b = _boundary_candidates(graph, state.labels, mov, k)
        reach = within_reach(xy, state.centres, cu, a, b, max_radius)
        cu, a, b = cu[reach], a[reach], b[reach]
        if len(cu) == 0:
            break
        ca, cb = state.centres[a], state.centres[b]
        gain = w0[cu] * (
            np.linalg.norm(xy[cu] - xy[cb], axis=1) - np.linalg.norm(xy[cu] - xy[ca], axis=1)
        )
        keep = gain < -1e-9 * (np.abs(gain).mean() + _EPS)
        if not keep.any():
            break
        cu, a, b, gain = cu[keep], a[keep], b[keep], gain[keep]
        dev = state.totals / targets - 1
        viol = violation(dev, tau)
        x = values[cu]
        va = violation(dev[a] - x / targets[a], tau)
        vb = violation(dev[b] + x / targets[b], tau)
        ok = (va <= viol[a] + 1e-12) & (vb <= viol[b] + 1e-12)
        if not ok.any():
            break
        cu, a, b, gain = cu[ok], a[ok], b[ok], gain[ok]
        perm = rng.permutation(len(cu))
        order = perm[np.argsort(gain[perm], kind="stable")]
        if _apply_batch(state, graph, values, order, cu, a, b, budget_ok) == 0:
            break
    return it


def articulation_points(
    labels: np.ndarray, nbrs: list[list[int]], terrs, is_ap: np.ndarray
) -> None:
    """Recompute, in place, the cut vertices of the listed territories.

    Iterative Tarjan (Hopcroft & Tarjan, 1973) on each territory's induced
    subgraph. A unit that is not a cut vertex can leave its territory without
    adding a piece.
    """
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(int(labels.max()) + 2))
    lab = labels.tolist()
    for t in terrs:
        members = order[bounds[t] : bounds[t + 1]].tolist()
        is_ap[members] = False
        disc: dict[int, int] = {}
        low: dict[int, int] = {}
        cut: list[int] = []
        timer = 0
        for r in members:
            if r in disc:
                continue
            disc[r] = low[r] = timer
            timer += 1
            root_children = 0
            stack = [(r, -1, iter(nbrs[r]))]
            while stack:
                u, parent, it = stack[-1]
                pushed = False
                for v in it:
                    if lab[v] != t:
                        continue
                    dv = disc.get(v)
                    if dv is None:
                        disc[v] = low[v] = timer
                        timer += 1
                        stack.append((v, u, iter(nbrs[v])))
                        pushed = True
                        break
                    if v != parent and dv < low[u]:
                        low[u] = dv
                if pushed:
                    continue
                stack.pop()
                if parent >= 0:
                    if low[u] < low[parent]:
                        low[parent] = low[u]
                    if parent == r:
                        root_children += 1
                    elif low[u] >= disc[parent]:
                        cut.append(parent)
            if root_children > 1:
                cut.append(r)
        if cut:
            is_ap[cut] = True


# ------------------------------------------------------- Lagrangian move/swap search


def _swap_pairs(a: np.ndarray, b: np.ndarray, k: int, cap: int = 400_000):
    """Index pairs (p, q) of boundary moves with a[p] = b[q], b[p] = a[q], a[p] < b[p]."""
    key = a * k + b
    order = np.argsort(key, kind="stable")
    uniq, start, cnt = np.unique(key[order], return_index=True, return_counts=True)
    ua, ub = uniq // k, uniq % k
    rev = ub * k + ua
    pos = np.minimum(np.searchsorted(uniq, rev), len(uniq) - 1)
    g1 = np.flatnonzero((ua < ub) & (uniq[pos] == rev))
    if len(g1) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    g2 = pos[g1]
    s1, s2 = cnt[g1], cnt[g2]
    sizes = s1 * s2
    total = int(sizes.sum())
    if total > cap:  # keep the pairs of the smallest groups first (deterministic)
        keep = np.cumsum(sizes[np.argsort(sizes, kind="stable")]) <= cap
        sel = np.sort(np.argsort(sizes, kind="stable")[keep])
        g1, g2, s1, s2, sizes = g1[sel], g2[sel], s1[sel], s2[sel], sizes[sel]
        total = int(sizes.sum())
    grp = np.repeat(np.arange(len(g1)), sizes)
    off = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    p = order[start[g1][grp] + off // s2[grp]]
    q = order[start[g2][grp] + off % s2[grp]]
    return p, q


def _touches_other(u: int, t: int, skip: int, lab: list[int], nbrs: list[list[int]]) -> bool:
    return any(v != skip and lab[v] == t for v in nbrs[u])


def lagrangian_search(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    movable: np.ndarray,
    rng: np.random.Generator,
    *,
    theta_frac: float = 0.0,
    compact_weight: float = 1.0,
    home: np.ndarray | None = None,
    move_cost: float = 0.0,
    max_iter: int = 4000,
    deadline: float = np.inf,
    budget_ok=None,
    swaps: bool = True,
    growth: float = 1.6,
    stop_when_feasible: bool = True,
    recentre: int = 0,
    recentre_keep: dict | None = None,
    max_radius: float | None = None,
) -> dict:
    """Balance the attribute vector with boundary moves and swaps under adaptive weights.

    The penalty is ``sum_k,a lam_ka max(0, |dev_ka| - theta_a)^2`` with
    ``theta = theta_frac x tau``, plus a small compactness term and, with
    ``home``, ``move_cost`` per unit away from its home territory. Each
    iteration evaluates every boundary move (unit to an adjacent territory)
    and every swap (a boundary unit of A into B against one of B into A)
    with numpy, then applies the best improving ones on disjoint territory
    pairs, so the deltas stay exact. Moves never split the donor (the removed
    unit is not a cut vertex of its territory; a swapped-in unit touches the
    rest of the receiver). When no candidate improves while the balance is
    violated, the weights ``lam`` of the violated (territory, attribute) pairs
    grow by ``growth`` (Lagrangian / guided local search), which turns
    trade-offs between attributes and territories into improving moves.
    Returns counters.
    """
    k, m = targets.shape
    theta = theta_frac * tau
    lam = np.ones((k, m))
    radius = np.sqrt(np.ptp(xy[:, 0]) * np.ptp(xy[:, 1]) / k + _EPS) + _EPS
    cw = compact_weight * 1e-3
    lab, nbrs = state.lab, graph.nbrs
    inv_t = 1.0 / targets
    stats = {"iter": 0, "moves": 0, "swaps": 0, "raises": 0}
    best_v = np.inf
    best_labels = state.labels.copy()
    since_best = 0
    is_ap = np.zeros(len(values), dtype=bool)
    dirty = set(range(k))

    def pen_rows(d, lm):
        return (lm * np.maximum(np.abs(d) - theta, 0.0) ** 2).sum(axis=-1)

    it = 0
    while it < max_iter and time.perf_counter() < deadline:
        it += 1
        dev = state.totals * inv_t - 1
        viol = violation(dev, tau)
        v_tot = float(viol.sum())
        if v_tot < best_v - 1e-12:
            best_v, since_best = v_tot, 0
            best_labels = state.labels.copy()
        else:
            since_best += 1
        if v_tot <= _EPS and stop_when_feasible:
            break
        if since_best > max(300, max_iter // 4):
            break
        if recentre and it % recentre == 0:
            new = weighted_medoids(xy, np.ones(len(xy)), state.labels, k, recentre_keep or {})
            new = np.where(new >= 0, new, state.centres)
            dirty |= set(np.flatnonzero(new != state.centres).tolist())
            state.centres = new
        articulation_points(state.labels, nbrs, dirty, is_ap)
        dirty = set()
        mov = movable & ~is_ap
        mov[state.centres[state.centres >= 0]] = False
        cu, a, b = _boundary_candidates(graph, state.labels, mov, k)
        reach = within_reach(xy, state.centres, cu, a, b, max_radius)
        cu, a, b = cu[reach], a[reach], b[reach]
        if len(cu) == 0:
            break
        ok_cnt = state.counts[a] > 1
        cu, a, b = cu[ok_cnt], a[ok_cnt], b[ok_cnt]
        p_now = pen_rows(dev, lam)
        x = values[cu]
        da = dev[a] - x * inv_t[a]
        db = dev[b] + x * inv_t[b]
        base = pen_rows(da, lam[a]) + pen_rows(db, lam[b]) - p_now[a] - p_now[b]
        ca, cb = state.centres[a], state.centres[b]
        side = cw * (
            ((xy[cu] - xy[cb]) ** 2).sum(1) - ((xy[cu] - xy[ca]) ** 2).sum(1)
        ) / radius**2
        if home is not None:
            side = side + move_cost * (
                (b != home[cu]).astype(float) - (a != home[cu]).astype(float)
            )
        delta_mv = base + side
        cand_kind = [np.zeros(len(cu), dtype=np.int8)]
        cand_delta = [delta_mv]
        cand_p = [np.arange(len(cu))]
        cand_q = [np.full(len(cu), -1)]
        if swaps:
            p, q = _swap_pairs(a, b, k)
            if len(p):
                xs = x[p] - x[q]
                ap, bp = a[p], b[p]
                dsw = (
                    pen_rows(dev[ap] - xs * inv_t[ap], lam[ap])
                    + pen_rows(dev[bp] + xs * inv_t[bp], lam[bp])
                    - p_now[ap] - p_now[bp]
                ) + side[p] + side[q]
                keep = dsw < delta_mv[p] - 1e-15  # only swaps that beat the plain move
                keep &= dsw < delta_mv[q] - 1e-15
                cand_kind.append(np.ones(int(keep.sum()), dtype=np.int8))
                cand_delta.append(dsw[keep])
                cand_p.append(p[keep])
                cand_q.append(q[keep])
        kind = np.concatenate(cand_kind)
        delta = np.concatenate(cand_delta)
        cp = np.concatenate(cand_p)
        cq = np.concatenate(cand_q)
        scale = float(p_now.sum()) * 1e-12 + 1e-15
        good = np.flatnonzero(delta < -scale)
        applied = 0
        if len(good):
            perm = rng.permutation(len(good))
            good = good[perm]
            order = good[np.argsort(delta[good], kind="stable")]
            applied = _apply_mixed(
                state, values, order, kind, cp, cq, cu, a, b, lab, nbrs, budget_ok, stats, dirty
            )
        if applied == 0:
            hot = np.abs(dev) > tau + 1e-12
            if not hot.any():
                if stop_when_feasible:
                    break
                hot = np.abs(dev) > theta + 1e-12
                if not hot.any():
                    break
            lam[hot] *= growth
            stats["raises"] += 1
            if lam.max() > 1e12:
                break
    dev = state.totals * inv_t - 1
    if float(violation(dev, tau).sum()) > best_v + 1e-12:
        state.labels[:] = best_labels
        state.lab[:] = best_labels.tolist()
        state.totals[:] = 0
        np.add.at(state.totals, best_labels, values)
        state.counts[:] = np.bincount(best_labels, minlength=k)
    stats["iter"] = it
    return stats


def _apply_mixed(
    state, values, order, kind, cp, cq, cu, a, b, lab, nbrs, budget_ok, stats, dirty
):
    k = len(state.counts)
    used = np.zeros(k, dtype=bool)
    applied = 0
    kind_l, p_l, q_l = kind[order].tolist(), cp[order].tolist(), cq[order].tolist()
    cu_l, a_l, b_l = cu.tolist(), a.tolist(), b.tolist()
    n_used = 0
    for kd, p, q in zip(kind_l, p_l, q_l, strict=True):
        ta, tb = a_l[p], b_l[p]
        if used[ta] or used[tb]:
            continue
        i = cu_l[p]
        if kd == 0:
            if budget_ok is not None and not budget_ok([i], tb):
                continue
            state.move(i, ta, tb, values[i])
            stats["moves"] += 1
        else:
            j = cu_l[q]
            if not _touches_other(j, ta, i, lab, nbrs) or not _touches_other(i, tb, j, lab, nbrs):
                continue
            if budget_ok is not None:
                if not budget_ok([i], tb):
                    continue
                if not budget_ok([j], ta):
                    budget_ok([i], ta)
                    continue
            state.move(i, ta, tb, values[i])
            state.move(j, tb, ta, values[j])
            stats["swaps"] += 1
        used[ta] = used[tb] = True
        dirty.add(ta)
        dirty.add(tb)
        applied += 1
        n_used += 2
        if n_used >= k - 1:
            break
    return applied

