"""The boundary-unit local search of the territory engine (internal).

The Lagrangian move/swap search, the compactness phase and the radius repair.
See :mod:`territory.models.territories.design` for the algorithm overview and
references; everything here works on plain numpy arrays with integer unit
indices ``0..n-1`` and territory labels ``0..K-1``.
"""

from __future__ import annotations

import numpy as np

from territory.models.territories.clock import clock
from territory.models.territories.graph import (  # noqa: F401 (re-exported)
    Graph,
    SearchState,
    articulation_points,
    components_by_label,
    removal_keeps_pieces,
)
from territory.models.territories.objective import violation
from territory.models.territories.start import (  # noqa: F401 (re-exported)
    kmeanspp_seeds,
    price_allocate,
    repair_contiguity,
    weighted_medoids,
)

_EPS = 1e-12


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
    while it < max_iter and clock() < deadline:
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

    it = 0
    while it < max_iter and clock() < deadline:
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
        p_now = _weighted_pen(dev, lam, theta)
        kind, delta, cp, cq = _scored_moves(
            state, values, xy, cu, a, b, dev, lam, theta, inv_t, p_now, cw, radius, home,
            move_cost, swaps, k)
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


def _weighted_pen(d: np.ndarray, lm: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per row: ``sum_a lam_a max(0, |d_a| - theta_a)^2``."""
    return (lm * np.maximum(np.abs(d) - theta, 0.0) ** 2).sum(axis=-1)


def _scored_moves(state, values, xy, cu, a, b, dev, lam, theta, inv_t, p_now, cw, radius,
                  home, move_cost, swaps, k):
    """Every boundary move ``cu: a -> b`` and every swap that beats both its plain moves,
    with the change of the penalty: ``(kind, delta, p, q)``, kind 0 = move ``p``,
    1 = swap of moves ``p`` and ``q``."""
    x = values[cu]
    da = dev[a] - x * inv_t[a]
    db = dev[b] + x * inv_t[b]
    base = (_weighted_pen(da, lam[a], theta) + _weighted_pen(db, lam[b], theta)
            - p_now[a] - p_now[b])
    ca, cb = state.centres[a], state.centres[b]
    side = cw * (((xy[cu] - xy[cb]) ** 2).sum(1) - ((xy[cu] - xy[ca]) ** 2).sum(1)) / radius**2
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
                _weighted_pen(dev[ap] - xs * inv_t[ap], lam[ap], theta)
                + _weighted_pen(dev[bp] + xs * inv_t[bp], lam[bp], theta)
                - p_now[ap] - p_now[bp]
            ) + side[p] + side[q]
            keep = dsw < delta_mv[p] - 1e-15  # only swaps that beat the plain move
            keep &= dsw < delta_mv[q] - 1e-15
            cand_kind.append(np.ones(int(keep.sum()), dtype=np.int8))
            cand_delta.append(dsw[keep])
            cand_p.append(p[keep])
            cand_q.append(q[keep])
    return (np.concatenate(cand_kind), np.concatenate(cand_delta), np.concatenate(cand_p),
            np.concatenate(cand_q))


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

