"""Two-step ejection chains out of the widest territory.

The span descent (:func:`~territory.models.territories.shape.span_descent`)
stops when no single move or swap of the widest territory's outlying units
keeps the balance. Often a unit could still leave it, but only if a third
territory takes part:

- **push**: ``u`` goes from the widest territory ``t`` to ``b``, which is
  then over its upper bound, and ``b`` passes a unit ``v`` on to ``c``;
- **pull**: ``u`` goes from ``t`` to ``b``, which leaves ``t`` under its
  lower bound, and ``t`` takes a unit ``w`` from another neighbour ``d``.

A chain qualifies under the same rules as a single move: every territory
it touches stays contiguous, no hard territory-attribute pair leaves (or
moves further outside) its tolerance, every territory touched ends narrower
than ``t`` was, ``t`` gets narrower, and (with a shape limit) none goes over
it. Among the chains that qualify, the one adding the least soft excess, then
the narrowest result, is made. Deterministic: candidates are ranked by
distance, ties by unit index.
"""

from __future__ import annotations

import numpy as np

from territory.models.territories.geometry import elongation, farthest_m, span_m
from territory.models.territories.search import removal_keeps_pieces

_PARTNERS = 16  # units of the second territory tried per first step


class _Chain:
    """What one search for a chain out of ``t`` shares."""

    def __init__(self, state, graph, values, xy, movable, balance, span, area, areas, limit,
                 t: int) -> None:
        self.state, self.nbrs, self.values, self.xy = state, graph.nbrs, values, xy
        self.movable, self.balance, self.span = movable, balance, span
        self.area, self.areas, self.limit, self.t = area, areas, limit, t
        self.centres = set(state.centres.tolist())
        self.shaped = area is not None and limit is not None

    def shape_ok(self, s: int, new_span: float, area_delta: float) -> bool:
        """``s`` stays under the shape limit (or no worse than it was)."""
        if not self.shaped:
            return True
        return elongation(new_span, self.area[s] + area_delta) <= max(
            self.limit, elongation(self.span[s], self.area[s])) + 1e-9

    def may_leave(self, v: int, s: int) -> bool:
        return bool(self.movable[v]) and v not in self.centres and removal_keeps_pieces(
            v, self.state.lab, self.nbrs)

    def push(self, u: int, b: int, span_b: float):
        """Best (key, chain) where ``b``, holding ``u``, passes a unit on to a third
        territory; None if none."""
        state, lab, xy, values, t = self.state, self.state.lab, self.xy, self.values, self.t
        limit_span = self.span[t] - 1e-6
        lab[u] = b
        try:
            in_b = np.flatnonzero(state.labels == b)
            pool = [(v, sorted({lab[j] for j in self.nbrs[v]} - {t, b})) for v in in_b.tolist()
                    if v != u]
            pool = [(v, cs) for v, cs in pool if cs]
            pool.sort(key=lambda vc: (-float(np.hypot(*(xy[vc[0]] - xy[u]))), vc[0]))
            found, found_key = None, None
            for v, cs in pool[:_PARTNERS]:
                delta_b = values[u] - values[v]
                if not self.balance.ok(state, b, delta_b) or not self.may_leave(v, b):
                    continue
                for c in cs:
                    if not self.balance.ok(state, c, values[v]):
                        continue
                    span_c = max(self.span[c], farthest_m(xy[v], xy[state.labels == c]))
                    if span_c >= limit_span or not self.shape_ok(c, span_c, self._a(v)):
                        continue
                    if not self.shape_ok(b, span_b, self._a(u) - self._a(v)):
                        continue
                    key = (self.balance.soft_cost(state, b, delta_b)
                           + self.balance.soft_cost(state, c, values[v]), max(span_b, span_c),
                           v, c)
                    if found_key is None or key < found_key:
                        found, found_key = (v, b, c, span_c), key
            return None if found is None else (found_key, found)
        finally:
            lab[u] = t

    def pull(self, u: int, b: int, rest: np.ndarray):
        """Best (key, chain) where ``t``, without ``u``, takes a unit from a neighbour
        other than ``b``; None if none."""
        state, lab, xy, values, t = self.state, self.state.lab, self.xy, self.values, self.t
        limit_span = self.span[t] - 1e-6
        lab[u] = b
        try:
            pool = sorted({j for i in rest.tolist() for j in self.nbrs[i]
                           if lab[j] not in (t, b)})
            middle = xy[rest].mean(0)
            pool.sort(key=lambda w: (float(np.hypot(*(xy[w] - middle))), w))
            found, found_key = None, None
            for w in pool[:_PARTNERS]:
                d = lab[w]
                delta_t = values[w] - values[u]
                if not (self.balance.ok(state, t, delta_t) and self.balance.ok(
                        state, d, -values[w])):
                    continue
                span_t = max(span_m(xy[rest]), farthest_m(xy[w], xy[rest]))
                if span_t >= limit_span or not self.shape_ok(t, span_t, self._a(w) - self._a(u)):
                    continue
                if not self.may_leave(w, d):
                    continue
                key = (self.balance.soft_cost(state, t, delta_t)
                       + self.balance.soft_cost(state, d, -values[w]), span_t, w, d)
                if found_key is None or key < found_key:
                    found, found_key = (w, d, t, span_t), key
            return None if found is None else (found_key, found)
        finally:
            lab[u] = t

    def _a(self, v: int) -> float:
        return 0.0 if self.areas is None else float(self.areas[v])


def span_chain(state, graph, values, xy, movable, balance, span, area, areas, limit, t: int,
               edge_units):
    """The best two-step chain out of ``t``, as ``[(unit, src, dst), ...]``; None if none
    qualifies. ``edge_units`` yields the
    outlying units of ``t`` that may leave it, with the territories they border."""
    members = np.flatnonzero(state.labels == t)
    if len(members) < 3:
        return None
    chain = _Chain(state, graph, values, xy, movable, balance, span, area, areas, limit, t)
    best, best_key = None, None
    for u, outside in edge_units:
        rest = members[members != u]
        span_t = span_m(xy[rest])
        if span_t >= span[t] - 1e-6:
            continue
        t_ok = balance.ok(state, t, -values[u])
        for b in outside:
            span_b = max(span[b], farthest_m(xy[u], xy[state.labels == b]))
            if span_b >= span[t] - 1e-6:
                continue
            b_ok = balance.ok(state, b, values[u])
            if t_ok and not b_ok and chain.shape_ok(t, span_t, -chain._a(u)):
                found = chain.push(u, b, span_b)
                if found is not None:
                    key, (v, _b, c, _span_c) = found
                    key = (key[0] + balance.soft_cost(state, t, -values[u]),
                           max(key[1], span_t), u, b)
                    if best_key is None or key < best_key:
                        best_key = key
                        best = ([(u, t, b), (v, b, c)],)
            elif b_ok and not t_ok and chain.shape_ok(b, span_b, chain._a(u)):
                found = chain.pull(u, b, rest)
                if found is not None:
                    key, (w, d, _t, _span_t) = found
                    key = (key[0] + balance.soft_cost(state, b, values[u]),
                           max(key[1], span_b), u, b)
                    if best_key is None or key < best_key:
                        best_key = key
                        best = ([(u, t, b), (w, d, t)],)
    return None if best is None else best[0]
