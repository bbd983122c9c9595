"""Multi-attribute balanced start by recursive bisection (internal).

A set of units that must hold ``k`` territories is split by a straight line
into two parts holding ``k1 = k // 2`` and ``k - k1`` territories, such that
the first part gets its share of *every* attribute at once (for two
attributes and an even split this is the discrete ham-sandwich cut). For each
of ``n_dirs`` sweep directions the units are sorted by their projection (and,
for ``n_geo`` extreme units, by path length from that unit along the
adjacency graph, whose prefixes are connected), the cumulative attribute
shares give the error of every cut position, and the best position of each
order is kept; the ``n_eval`` best orders are made connected and re-scored,
and among those whose error is
close to the best one, the cut crossing the fewest adjacency edges wins (a
short cut keeps territories compact). Both sides are then made connected
(stray pieces go to the other side) and the balance of the cut is refined by
greedy boundary moves that never split a side (cut vertices by Hopcroft &
Tarjan). Each side is split again until one territory is left.

With fixed centres, each side must receive exactly as many fixed units as it
has territories with a fixed centre, so every leaf holds its own centre.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from territory.models.territories.search import articulation_points

_EPS = 1e-12


def _local_graph(adjacency: sp.csr_matrix, units: np.ndarray):
    sub = adjacency[units][:, units].tocsr()
    sub.setdiag(0)
    sub.eliminate_zeros()
    ind = sub.indices.tolist()
    ptr = sub.indptr.tolist()
    nbrs = [ind[ptr[i] : ptr[i + 1]] for i in range(len(units))]
    row = np.repeat(np.arange(len(units)), np.diff(sub.indptr))
    col = sub.indices.astype(np.int64)
    return sub, nbrs, row, col


def _fix_pieces(row, col, side, weight, pinned):
    """Keep the heaviest piece of each side; move stray, unpinned pieces across.

    ``row``/``col`` are the directed edges (row-sorted) of the induced subgraph.
    """
    n = len(side)
    for it in range(8):
        same = side[row] == side[col]
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(row[same], minlength=n), out=indptr[1:])
        g = sp.csr_matrix((np.ones(len(indptr) and int(indptr[-1]), dtype=np.int8),
                           col[same].astype(np.int32), indptr), shape=(n, n))
        n_c, comp = connected_components(g, directed=False)
        if n_c <= 2:
            break
        cw = np.bincount(comp, weights=weight, minlength=n_c)
        cside = np.zeros(n_c, dtype=np.int64)
        cside[comp] = side
        has_pin = np.bincount(comp, weights=pinned.astype(float), minlength=n_c) > 0
        flip = np.zeros(n_c, dtype=bool)
        for s in (it % 2,):
            ids = np.flatnonzero(cside == s)
            if len(ids) > 1:
                main = ids[np.argmax(cw[ids])]
                flip[ids] = ids != main
        flip &= ~has_pin
        if not flip.any() and it > 0:
            break
        side = np.where(flip[comp], 1 - side, side)
    return side


def _err_score(err: np.ndarray) -> np.ndarray:
    a = np.abs(err)
    return a.max(axis=-1) + 0.05 * a.sum(axis=-1)


def _sq_score(err: np.ndarray) -> np.ndarray:
    return (err**2).sum(axis=-1)


def _refine(side, vals, nbrs, goal_a, unit, pinned, min_size, max_moves):
    """Greedy moves and swaps across the cut lowering the relative error of side A.

    A unit may cross only if it is not a cut vertex of its side; in a swap,
    each unit must still touch its new side without the other one.
    """
    n = len(side)
    tot_a = vals[side == 0].sum(0)
    is_ap = np.zeros(n, dtype=bool)
    src = np.repeat(np.arange(n), [len(x) for x in nbrs])
    dst = np.fromiter((j for x in nbrs for j in x), dtype=np.int64, count=len(src))
    deg = np.maximum(np.bincount(src, minlength=n), 1)
    for _ in range(max_moves):
        err = (tot_a - goal_a) / unit
        cur = float(_sq_score(err))
        if cur < 1e-8:
            break
        cross = side[src] != side[dst]
        cand = np.unique(src[cross])
        cand = cand[~pinned[cand]]
        if len(cand) == 0:
            break
        articulation_points(side, nbrs, (0, 1), is_ap)
        cand = cand[~is_ap[cand]]
        sizes = np.bincount(side, minlength=2)
        cand = cand[sizes[side[cand]] > min_size[side[cand]]]
        if len(cand) == 0:
            break
        sign = np.where(side[cand] == 0, -1.0, 1.0)
        step = sign[:, None] * vals[cand] / unit
        sc = _sq_score(err[None, :] + step)
        # prefer units mostly surrounded by the other side: keeps the cut smooth
        other = np.bincount(src[cross], minlength=n)[cand] / deg[cand]
        sc_pick = np.where(other >= 0.5, sc, sc + 0.5 * (cur - sc).clip(0))
        j = int(np.argmin(sc_pick))
        best, move = float(sc[j]), (int(cand[j]),)
        ca, cb = np.flatnonzero(sign < 0), np.flatnonzero(sign > 0)
        if len(ca) and len(cb):
            ca = ca[np.argsort(sc_pick[ca], kind="stable")[:60]]
            cb = cb[np.argsort(sc_pick[cb], kind="stable")[:60]]
            sw = err[None, None, :] + step[ca][:, None, :] + step[cb][None, :, :]
            ssc = _sq_score(sw)
            for flat in np.argsort(ssc, axis=None, kind="stable")[:20].tolist():
                p, q = divmod(flat, len(cb))
                if ssc[p, q] >= best - 1e-12:
                    break
                i, o = int(cand[ca[p]]), int(cand[cb[q]])
                if any(v != o and side[v] == 1 for v in nbrs[i]) and any(
                    v != i and side[v] == 0 for v in nbrs[o]
                ):
                    best, move = float(ssc[p, q]), (i, o)
                    break
        if best >= cur - 1e-12:
            break
        for i in move:
            tot_a = tot_a + (vals[i] if side[i] == 1 else -vals[i])
            side[i] = 1 - side[i]
    return side


def bisect_partition(
    xy: np.ndarray,
    values: np.ndarray,
    targets: np.ndarray,
    adjacency: sp.csr_matrix,
    fixed: dict[int, int],
    *,
    n_dirs: int = 144,
    n_eval: int = 12,
    n_geo: int = 16,
    slack: float = 0.1,
    rotation: float = 0.0,
    max_moves: int = 60,
) -> np.ndarray:
    """Labels ``0..K-1`` of a balanced, mostly contiguous start partition.

    Parameters
    ----------
    targets
        (K, m) per-territory targets; a side's share of each attribute is the
        share of its territories' targets.
    fixed
        ``{territory: unit}``: the unit ends in that territory.
    n_dirs
        Sweep directions over the full circle.
    n_eval
        Directions (best raw sweep error first) whose cut is made connected
        and scored.
    slack
        Among directions whose cut error (in mean-territory-target units) is
        within ``slack`` of the best, the one cutting fewest edges is taken.
    rotation
        Angle offset of the sweep directions (radians), for diverse starts.
    max_moves
        Greedy balance moves per cut.
    """
    adjacency = sp.csr_matrix(adjacency)
    n, m = values.shape
    k_all = targets.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    fixed_unit = {int(t): int(u) for t, u in fixed.items()}
    pin_all = np.zeros(n, dtype=bool)
    pin_all[list(fixed_unit.values())] = True
    angles = rotation + 2 * np.pi * np.arange(n_dirs) / n_dirs
    dirs = np.column_stack([np.cos(angles), np.sin(angles)])
    vscale = values.sum(0) / max(k_all, 1) + _EPS
    wsum = (values / vscale).sum(1) + 1e-9
    stack = [(np.arange(n), list(range(k_all)))]
    while stack:
        units, terrs = stack.pop()
        k = len(terrs)
        if k == 1:
            labels[units] = terrs[0]
            continue
        k1 = k // 2
        k2 = k - k1
        ns = len(units)
        vals = values[units]
        stot = vals.sum(0)
        ft = [t for t in terrs if t in fixed_unit]
        free = [t for t in terrs if t not in fixed_unit]
        nf = len(ft)
        pin_local = pin_all[units]
        f_star = int(np.clip(round(nf * k1 / k), max(0, nf - k2), min(nf, k1)))
        sub, nbrs, row, col = _local_graph(adjacency, units)
        pos_f = {t: int(np.flatnonzero(units == fixed_unit[t])[0]) for t in ft}
        cands = []
        raw = []
        proj_all = xy[units] @ dirs.T  # (ns, n_dirs)
        if n_geo:
            # geodesic sweeps: prefixes by path length from an extreme unit are connected
            ext = np.unique(np.argmax(proj_all[:, :: max(1, n_dirs // n_geo)], axis=0))
            lens = np.linalg.norm(xy[units][row] - xy[units][col], axis=1) + 1e-6
            gw = sp.csr_matrix((lens, col, sub.indptr), shape=(ns, ns))
            geo = dijkstra(gw, directed=False, indices=ext)
            geo[~np.isfinite(geo)] = geo[np.isfinite(geo)].max() * 2
            sweeps = np.column_stack([proj_all, geo.T])
        else:
            sweeps = proj_all
        for d in range(sweeps.shape[1]):
            order = np.argsort(sweeps[:, d], kind="stable")
            rank = np.empty(ns, dtype=np.int64)
            rank[order] = np.arange(ns)
            lo, hi = k1 - 1, ns - k2 - 1  # A = order[: i + 1]
            if ft:
                fr = sorted(ft, key=lambda t: (rank[pos_f[t]], t))
                franks = np.array([rank[pos_f[t]] for t in fr])
                if f_star > 0:
                    lo = max(lo, int(franks[f_star - 1]))
                if f_star < nf:
                    hi = min(hi, int(franks[f_star]) - 1)
                t1 = fr[:f_star] + free[: k1 - f_star]
            else:
                t1 = terrs[:k1]
            if lo > hi:
                continue
            share = targets[t1].sum(0) / (targets[terrs].sum(0) + _EPS)
            unit_t = targets[terrs].sum(0) / k + _EPS
            err = (np.cumsum(vals[order], axis=0)[lo : hi + 1] - share * stot) / unit_t
            raw.append((float(_err_score(err).min()), d, lo, order, err, t1, share, unit_t))
        raw.sort(key=lambda c: (c[0], c[1]))
        for _raw_sc, d, lo, order, err, t1, share, unit_t in raw[:n_eval]:
            offset = np.zeros(m)
            best_c = None
            for _ in range(3):
                i = lo + int(np.argmin(_err_score(err + offset)))
                side = np.ones(ns, dtype=np.int64)
                side[order[: i + 1]] = 0
                side = _fix_pieces(row, col, side, wsum[units], pin_local)
                real = (vals[side == 0].sum(0) - share * stot) / unit_t
                offset = real - err[i - lo]
                sc = float(_err_score(real))
                if best_c is None or sc < best_c[0]:
                    best_c = (sc, int((side[row] != side[col]).sum()) // 2, d, side, t1)
            cands.append(best_c)
        if not cands:  # cannot honour the fixed counts with a line: split by index
            side = np.ones(ns, dtype=np.int64)
            side[:k1] = 0
            cands.append((np.inf, 0, 0, side, terrs[:k1]))
        best_sc = min(c[0] for c in cands)
        ok = [c for c in cands if c[0] <= best_sc + slack]
        sc, _cut, d, side, t1 = min(ok, key=lambda c: (c[1], c[0], c[2]))
        t2 = [t for t in terrs if t not in t1]
        share = targets[t1].sum(0) / (targets[terrs].sum(0) + _EPS)
        unit_t = targets[terrs].sum(0) / k + _EPS
        side = _refine(
            side, vals, nbrs, share * stot, unit_t, pin_local,
            np.array([k1, k2]), max_moves,
        )
        stack.append((units[side == 1], t2))
        stack.append((units[side == 0], t1))
    return labels
