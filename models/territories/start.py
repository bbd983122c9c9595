"""Start partitions: weighted k-means++ seeds, medoids, price-adjusted location-allocation
and contiguity repair (see :mod:`territory.models.territories.design`)."""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.spatial import cKDTree

from territory.models.territories.graph import Graph, components_by_label
from territory.models.territories.objective import squared_excess

_EPS = 1e-12


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
                before = squared_excess(totals[t] / targets[t] - 1, theta)
                after = squared_excess((totals[t] + wsum) / targets[t] - 1, theta)
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
