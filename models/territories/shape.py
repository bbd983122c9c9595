"""Shape repair: bring every territory's elongation under a limit.

Elongation is a territory's span (the largest distance between two of its
unit centres) over the diameter of a circle with the territory's area; a
disc scores about 1 and a snake much more. The repair takes the worst
territory above the limit and moves one of its outlying boundary units to a
neighbour, or swaps it for a neighbour's unit nearer the territory's
middle. A move is made only when it

- keeps both territories contiguous,
- adds no violation of a hard attribute (a territory-attribute pair already
  outside its tolerance may not move further out),
- lowers the territory's elongation and leaves the neighbour's at most at
  the limit (or where it already was).

Shape ranks above the soft attributes: a change may push a soft attribute
out of its tolerance, but among the changes that qualify the one adding the
least soft excess is made (then the one lowering the elongation most).

Territories that no such move improves are left as they are and reported
by the caller. Deterministic: candidates are ranked by distance, ties by
unit index.
"""

from __future__ import annotations

import numpy as np

from territory.models.territories.geometry import (  # noqa: F401 (re-exported)
    elongation,
    farthest_m,
    largest_span_m,
    span_m,
    territory_elongations,
)
from territory.models.territories.lns import territory_neighbours
from territory.models.territories.objective import violated_pairs
from territory.models.territories.search import Graph, SearchState, removal_keeps_pieces
from territory.models.territories.span_chain import span_chain

_CANDIDATES = 12  # outlying units of the worst territory tried per step
_PARTNERS = 16  # units of the neighbour tried in a swap


class _Balance:
    """Per-pair balance test: no hard territory-attribute pair may leave, or move
    further outside, its tolerance; ``soft_cost`` is the soft excess a change adds."""

    def __init__(self, targets: np.ndarray, tau: np.ndarray, hard: np.ndarray) -> None:
        self.targets, self.tau, self.hard = targets, tau, hard

    def ok(self, state: SearchState, t: int, delta: np.ndarray) -> bool:
        old = np.abs(state.totals[t] / self.targets[t] - 1)[self.hard]
        new = np.abs((state.totals[t] + delta) / self.targets[t] - 1)[self.hard]
        return bool((new <= np.maximum(old, self.tau[self.hard]) + 1e-12).all())

    def soft_cost(self, state: SearchState, t: int, delta: np.ndarray) -> float:
        soft = ~self.hard
        if not soft.any():
            return 0.0
        tgt, tau = self.targets[t][soft], self.tau[soft]
        old = np.maximum(np.abs(state.totals[t][soft] / tgt - 1) - tau, 0.0)
        new = np.maximum(np.abs((state.totals[t][soft] + delta[soft]) / tgt - 1) - tau, 0.0)
        return float(np.maximum(new - old, 0.0).sum())


def shape_repair(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    areas: np.ndarray,
    movable: np.ndarray,
    max_elongation: float,
    hard: np.ndarray | None = None,
    *,
    max_steps: int = 2000,
) -> int:
    """Lower every territory's elongation to ``max_elongation`` where moves allow (see the
    module doc). Mutates ``state``; returns the number of moves and swaps made."""
    k = targets.shape[0]
    hard = np.ones(len(tau), dtype=bool) if hard is None else np.asarray(hard, dtype=bool)
    balance = _Balance(targets, tau, hard)
    area = np.bincount(state.labels, weights=areas, minlength=k)
    span = np.array([span_m(xy[state.labels == t]) for t in range(k)])
    shape = np.array([elongation(span[t], area[t]) for t in range(k)])
    stuck: set[int] = set()
    steps = 0
    while steps < max_steps:
        over = [t for t in np.argsort(-shape, kind="stable").tolist()
                if shape[t] > max_elongation + 1e-9 and t not in stuck]
        if not over:
            break
        t = over[0]
        best = _best_change(state, graph, values, xy, areas, movable, balance, area, span,
                            shape, t, max_elongation)
        if best is None:
            stuck.add(t)
            continue
        u, b, v, span_t, span_b = best
        _apply(state, values, areas, area, u, t, b)
        if v >= 0:
            _apply(state, values, areas, area, v, b, t)
        span[t], span[b] = span_t, span_b
        shape[t], shape[b] = elongation(span_t, area[t]), elongation(span_b, area[b])
        stuck.discard(b)
        steps += 1
    return steps


def _apply(state, values, areas, area, unit: int, src: int, dst: int) -> None:
    state.move(unit, src, dst, values[unit])
    area[src] -= areas[unit]
    area[dst] += areas[unit]


def _edge_units(state, graph, xy, movable, centres, members, middle, t: int):
    """The first :data:`_CANDIDATES` outlying units of ``t`` (farthest from ``middle``)
    that may leave it, each with the territories it borders: movable, not a centre, and
    leaving ``t`` in one piece."""
    lab, nbrs = state.lab, graph.nbrs
    far = members[np.argsort(-np.linalg.norm(xy[members] - middle, axis=1), kind="stable")]
    tried = 0
    for u in far.tolist():
        if tried >= _CANDIDATES:
            return
        outside = sorted({lab[j] for j in nbrs[u] if lab[j] != t})
        if not outside or not movable[u] or u in centres:
            continue
        if not removal_keeps_pieces(u, lab, nbrs):
            continue
        tried += 1
        yield u, outside


def _best_change(state, graph, values, xy, areas, movable, balance, area, span, shape,
                 t: int, limit: float):
    """(u, b, v, new span of t, new span of b) of the move or swap that lowers ``t``'s
    elongation most, v = -1 for a move; None when none qualifies."""
    members = np.flatnonzero(state.labels == t)
    if len(members) < 2:
        return None
    middle = xy[members].mean(0)
    centres = set(state.centres.tolist())
    best, best_key = None, (np.inf, shape[t] - 1e-6)
    for u, outside in _edge_units(state, graph, xy, movable, centres, members, middle, t):
        rest = members[members != u]
        span_t = span_m(xy[rest])
        for b in outside:
            span_b = max(span[b], farthest_m(xy[u], xy[state.labels == b]))
            shape_b = elongation(span_b, area[b] + areas[u])
            if shape_b > max(limit, shape[b]) + 1e-9:
                continue
            shape_t = elongation(span_t, area[t] - areas[u])
            if shape_t < shape[t] - 1e-6 and balance.ok(state, t, -values[u]) \
                    and balance.ok(state, b, values[u]):
                key = (balance.soft_cost(state, t, -values[u])
                       + balance.soft_cost(state, b, values[u]), shape_t)
                if key < best_key:
                    best, best_key = (u, b, -1, span_t, span_b), key
                if key[0] == 0.0:
                    continue
            swap = _best_swap(state, graph, values, xy, areas, balance, area, shape, movable,
                              centres, t, b, u, rest, span_t, middle, limit, best_key)
            if swap is not None:
                best, best_key = swap
    return best


def _best_swap(state, graph, values, xy, areas, balance, area, shape, movable, centres,
               t, b, u, rest, span_rest, middle, limit, best_key):
    """The swap of ``u`` (t → b) with a unit of ``b`` (b → t) near ``t``'s middle."""
    lab, nbrs = state.lab, graph.nbrs
    lab[u] = b  # tentatively, so the partner's contiguity is judged with u in b
    try:
        pool = [v for v in np.flatnonzero(state.labels == b).tolist()
                if v != u and movable[v] and v not in centres
                and any(lab[j] == t for j in nbrs[v])]
        pool.sort(key=lambda v: (float(np.hypot(*(xy[v] - middle))), v))
        found = None
        for v in pool[:_PARTNERS]:
            delta = values[v] - values[u]
            if not (balance.ok(state, t, delta) and balance.ok(state, b, -delta)):
                continue
            span_t = max(span_rest, farthest_m(xy[v], xy[rest]))
            shape_t = elongation(span_t, area[t] - areas[u] + areas[v])
            if shape_t >= shape[t] - 1e-6:
                continue
            key = (balance.soft_cost(state, t, delta) + balance.soft_cost(state, b, -delta),
                   shape_t)
            if key >= best_key:
                continue
            in_b = np.flatnonzero(state.labels == b)
            in_b = np.append(in_b[in_b != v], u)
            span_b = span_m(xy[in_b])
            shape_b = elongation(span_b, area[b] + areas[u] - areas[v])
            if shape_b > max(limit, shape[b]) + 1e-9:
                continue
            if not removal_keeps_pieces(v, lab, nbrs):
                continue
            found, best_key = ((u, b, v, span_t, span_b), key), key
        return found
    finally:
        lab[u] = t


def shape_lns(
    labels: np.ndarray,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    areas: np.ndarray,
    max_elongation: float,
    solve,
    hard: np.ndarray | None = None,
    *,
    max_tries: int = 40,
    neighbours: int = 4,
) -> tuple[np.ndarray, int]:
    """Re-design the worst-shaped territory together with one or two neighbours.

    For when single moves cannot help (two strips side by side along a coast
    become two bands across it). ``solve(units, group) -> local labels | None`` is
    the engine on the group's units (see :mod:`territory.models.territories.lns`).
    A new group is accepted when its largest elongation falls and its hard
    balance is no worse (no more violated territory-attribute pairs, no larger
    summed excess); of those, the one under the limit with the least soft
    excess is taken. Returns the new labels (a copy) and the number of groups accepted.
    """
    k = targets.shape[0]
    hard = np.ones(len(tau), dtype=bool) if hard is None else np.asarray(hard, dtype=bool)
    labels = labels.copy()
    totals = np.zeros_like(targets)
    np.add.at(totals, labels, values)
    shape = territory_elongations(labels, xy, areas, k)
    stuck: set[int] = set()
    tries = accepted = 0
    while tries < max_tries:
        over = [t for t in np.argsort(-shape, kind="stable").tolist()
                if shape[t] > max_elongation + 1e-9 and t not in stuck]
        if not over:
            break
        t = over[0]
        nbrs = sorted(territory_neighbours(graph, labels, k)[t], key=lambda b: (-shape[b], b))
        groups = [[t, b] for b in nbrs[:neighbours]]
        groups += [[t, *nbrs[i:i + 2]] for i in range(min(len(nbrs) - 1, neighbours - 1))]
        if len(nbrs) >= 3:
            groups.append([t, *nbrs[:3]])
        groups = groups + groups  # each twice: the engine's start is seeded afresh
        best = None
        for group in groups:
            tries += 1
            group_arr = np.asarray(group)
            units = np.flatnonzero(np.isin(labels, group_arr))
            local = solve(units, group_arr)
            if local is None:
                continue
            trial = labels.copy()
            trial[units] = group_arr[local]
            trial_totals = totals.copy()
            trial_totals[group_arr] = 0.0
            np.add.at(trial_totals, trial[units], values[units])
            before, after = totals[group_arr], trial_totals[group_arr]
            if not _no_worse(before[:, hard], after[:, hard], targets[group_arr][:, hard],
                             tau[hard]):
                continue
            new_shape = np.array([_group_shape(trial, xy, areas, g) for g in group])
            if new_shape.max() >= shape[group_arr].max() - 1e-6:
                continue
            soft = violated_pairs(after[:, ~hard], targets[group_arr][:, ~hard], tau[~hard])[1]
            key = (max(new_shape.max(), max_elongation), soft)
            if best is None or key < best[0]:
                best = (key, group_arr, new_shape, trial, trial_totals)
        if best is None:
            stuck.add(t)
            continue
        _, group_arr, new_shape, labels, totals = best
        shape[group_arr] = new_shape
        stuck.difference_update(group_arr.tolist())
        accepted += 1
    return labels, accepted


def _group_shape(labels: np.ndarray, xy: np.ndarray, areas: np.ndarray, t: int) -> float:
    members = labels == t
    return elongation(span_m(xy[members]), float(areas[members].sum()))


def _no_worse(before: np.ndarray, after: np.ndarray, targets: np.ndarray, tau: np.ndarray
              ) -> bool:
    (n0, e0), (n1, e1) = violated_pairs(before, targets, tau), violated_pairs(after, targets, tau)
    return n1 <= n0 and e1 <= e0 + 1e-9


def span_descent(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    xy: np.ndarray,
    movable: np.ndarray,
    hard: np.ndarray | None = None,
    *,
    areas: np.ndarray | None = None,
    max_elongation: float | None = None,
    max_steps: int = 1000,
    chains: bool = True,
) -> int:
    """Lower the largest territory span, one edge unit at a time.

    The widest territory gives one of its outlying boundary units to a
    neighbour (or swaps it for one of the neighbour's units, when a move alone
    would break the balance) when that shortens its span, leaves the neighbour narrower
    than the widest territory was, keeps both contiguous, adds no hard
    violation and (with ``areas`` and ``max_elongation``) puts neither over
    the shape limit; among those, the move adding the least soft excess,
    then the narrowest result, is made. When the widest territory has no such
    move, a two-step chain through a third territory is tried (``chains``, see
    :mod:`~territory.models.territories.span_chain`). Stops when neither
    exists. Mutates ``state``; returns the number of steps.
    """
    k = targets.shape[0]
    hard = np.ones(len(tau), dtype=bool) if hard is None else np.asarray(hard, dtype=bool)
    balance = _Balance(targets, tau, hard)
    span = np.array([span_m(xy[state.labels == t]) for t in range(k)])
    area = None if areas is None else np.bincount(state.labels, weights=areas, minlength=k)
    steps = 0
    while steps < max_steps:
        t = int(np.argmax(span))
        best = _span_move(state, graph, values, xy, movable, balance, span, area, areas,
                          max_elongation, t)
        if best is None:
            if not chains or not _chain_step(state, graph, values, xy, movable, balance, span,
                                             area, areas, max_elongation, t):
                break
            steps += 1
            continue
        u, b, v, span_t, span_b = best
        state.move(u, t, b, values[u])
        if v >= 0:
            state.move(v, b, t, values[v])
        if area is not None:
            area[t] += -areas[u] + (areas[v] if v >= 0 else 0.0)
            area[b] += areas[u] - (areas[v] if v >= 0 else 0.0)
        span[t], span[b] = span_t, span_b
        steps += 1
    return steps


def _chain_step(state, graph, values, xy, movable, balance, span, area, areas, limit,
                t: int) -> bool:
    """Make the best two-step chain out of ``t``; False if there is none."""
    members = np.flatnonzero(state.labels == t)
    centres = set(state.centres.tolist())
    edge = list(_edge_units(state, graph, xy, movable, centres, members, xy[members].mean(0), t))
    moves = span_chain(state, graph, values, xy, movable, balance, span, area, areas, limit, t,
                       edge)
    if moves is None:
        return False
    for unit, src, dst in moves:
        state.move(unit, src, dst, values[unit])
        if area is not None:
            area[src] -= areas[unit]
            area[dst] += areas[unit]
    for s in {m for move in moves for m in move[1:]}:
        span[s] = span_m(xy[state.labels == s])
    return True


def _span_move(state, graph, values, xy, movable, balance, span, area, areas, limit, t):
    """(u, b, v, new span of t, new span of b) of the best edge move (v = -1) or swap out
    of ``t``; None if none."""
    members = np.flatnonzero(state.labels == t)
    if len(members) < 2:
        return None
    middle = xy[members].mean(0)
    centres = set(state.centres.tolist())
    shaped = area is not None and limit is not None
    best, best_key = None, None
    for u, outside in _edge_units(state, graph, xy, movable, centres, members, middle, t):
        span_t = span_m(xy[members[members != u]])
        if span_t >= span[t] - 1e-6:
            continue
        if shaped and elongation(span_t, area[t] - areas[u]) > max(
                limit, elongation(span[t], area[t])) + 1e-9:
            continue
        for b in outside:
            span_b = max(span[b], farthest_m(xy[u], xy[state.labels == b]))
            if span_b >= span[t] - 1e-6:
                continue
            if shaped and elongation(span_b, area[b] + areas[u]) > max(
                    limit, elongation(span[b], area[b])) + 1e-9:
                continue
            if balance.ok(state, t, -values[u]) and balance.ok(state, b, values[u]):
                key = (balance.soft_cost(state, t, -values[u])
                       + balance.soft_cost(state, b, values[u]), max(span_t, span_b), u, b, -1)
                if best_key is None or key < best_key:
                    best, best_key = (u, b, -1, span_t, span_b), key
                continue
            swap = _span_swap(state, graph, values, xy, movable, balance, span, area, areas,
                              limit, t, b, u, members[members != u], middle, centres)
            if swap is not None and (best_key is None or swap[0] < best_key):
                best_key, best = swap
    return best


def _span_swap(state, graph, values, xy, movable, balance, span, area, areas, limit, t, b, u,
               rest, middle, centres):
    """(key, move) of the swap of edge unit ``u`` (t → b) with a unit of ``b`` (b → t) that
    keeps the balance and leaves both narrower than ``t`` was; None if none."""
    lab, nbrs = state.lab, graph.nbrs
    shaped = area is not None and limit is not None
    lab[u] = b  # tentatively, so the partner's contiguity is judged with u in b
    try:
        pool = [v for v in np.flatnonzero(state.labels == b).tolist()
                if v != u and movable[v] and v not in centres
                and any(lab[j] == t for j in nbrs[v])]
        pool.sort(key=lambda v: (float(np.hypot(*(xy[v] - middle))), v))
        found, found_key = None, None
        for v in pool[:_PARTNERS]:
            delta = values[v] - values[u]
            if not (balance.ok(state, t, delta) and balance.ok(state, b, -delta)):
                continue
            span_t = max(span_m(xy[rest]), farthest_m(xy[v], xy[rest]))
            if span_t >= span[t] - 1e-6:
                continue
            in_b = np.flatnonzero(state.labels == b)
            span_b = span_m(xy[np.append(in_b[in_b != v], u)])
            if span_b >= span[t] - 1e-6:
                continue
            if shaped and (
                    elongation(span_t, area[t] - areas[u] + areas[v])
                    > max(limit, elongation(span[t], area[t])) + 1e-9
                    or elongation(span_b, area[b] + areas[u] - areas[v])
                    > max(limit, elongation(span[b], area[b])) + 1e-9):
                continue
            if not removal_keeps_pieces(v, lab, nbrs):
                continue
            key = (balance.soft_cost(state, t, delta) + balance.soft_cost(state, b, -delta),
                   max(span_t, span_b), u, b, v)
            if found_key is None or key < found_key:
                found, found_key = (u, b, v, span_t, span_b), key
        return None if found is None else (found_key, found)
    finally:
        lab[u] = t
