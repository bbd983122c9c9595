"""Ejection-chain repair of the balance violation (internal).

A chain is a simple path of territories ``t0 -> t1 -> ... -> tL`` with one
unit moved per hop (Glover, 1996, "Ejection chains, reference structures and
alternating path methods for traveling salesman problems", *Discrete Applied
Mathematics* 65). Every intermediate territory gains one unit and loses one,
so it changes only by the difference of two attribute vectors, while the
surplus (or deficit) *vector* of ``t0`` is carried across many territories to
one that needs it. This is what single moves and swaps cannot do when a
cluster of like territories (a city: potential-heavy; a rural area:
workload-heavy) is over on one attribute and under on the other.

Two directions are searched from a violated territory ``t0``:

* **forward** (ejection): ``t0`` gives ``u1`` to ``t1``, which gives ``u2``
  to ``t2`` ... and ``tL`` keeps ``uL``;
* **reverse** (attraction): ``t0`` receives ``v1`` from ``t1``, which
  receives ``v2`` from ``t2`` ... and ``tL`` only loses ``vL``;

and either may close into a cycle back to ``t0`` (``t0`` then trades a unit
for one that suits it better). The search is a beam search over hops (beam
``beam`` partial chains, at most two per open territory, ``per_pair`` units
per territory pair); each hop's change of the violation

``V = sum_k sum_a max(0, |W_ka - T_ka| - tau_a T_ka) / T_ka``

is exact and accumulated incrementally, and the best complete chain with
``dV < 0`` is applied (ties: fewer moves, then, in rebalance mode, fewer
units away from their current territory).

Contiguity: a territory may lose a unit only if that unit is not a cut vertex
of the territory (Hopcroft & Tarjan, 1973; recomputed only for territories a
chain touched), and a unit entering a territory that also loses one must
touch it through another unit. Because chains are simple paths, every
territory changes at most once per chain, so these local checks are exact.
Pair hops (two adjacent units moved together) are tried when no single-unit
chain improves, with a breadth-first check of the donor.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from models._territory_search import Graph, SearchState, articulation_points

_EPS = 1e-12


def _vio(w: np.ndarray, t: np.ndarray, tau: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(w / t - 1.0) - tau, 0.0).sum(axis=-1)


class ChainSearch:
    """Ejection-chain repair on a :class:`SearchState` (mutated in place).

    Parameters
    ----------
    movable
        Units that may change territory (not locked, not a fixed centre).
    home
        Rebalance mode: the current territory of each unit; chains are then
        ranked by ``dV + move_weight x (units newly away from home)``.
    """

    def __init__(
        self,
        state: SearchState,
        graph: Graph,
        values: np.ndarray,
        targets: np.ndarray,
        tau: np.ndarray,
        movable: np.ndarray,
        *,
        home: np.ndarray | None = None,
        move_weight: float = 2e-3,
        max_len: int = 7,
        beam: int = 8,
        per_pair: int = 4,
        pairs: bool = True,
    ) -> None:
        self.s = state
        self.g = graph
        self.x = values
        self.t = targets
        self.tau = tau
        self.k, self.m = targets.shape
        self.home = home
        self.move_weight = float(move_weight)
        self.max_len = int(max_len)
        self.beam = int(beam)
        self.per_pair = int(per_pair)
        self.pairs = pairs
        self.movable = movable.copy()
        cen = state.centres[state.centres >= 0]
        self.movable[cen] = False
        self.is_ap = np.zeros(len(values), dtype=bool)
        articulation_points(state.labels, graph.nbrs, range(self.k), self.is_ap)
        self.members: list[set[int]] = [set() for _ in range(self.k)]
        for i, t in enumerate(state.lab):
            self.members[t].add(i)
        self.bnd: list[dict[int, list[int]] | None] = [None] * self.k
        self.stats = {"chains": 0, "moves": 0, "searches": 0}

    # ------------------------------------------------------------ bookkeeping

    def boundary(self, t: int) -> dict[int, list[int]]:
        """Units of ``t`` adjacent to each neighbouring territory (cached)."""
        b = self.bnd[t]
        if b is None:
            lab, nbrs = self.s.lab, self.g.nbrs
            b = {}
            for u in sorted(self.members[t]):
                seen = set()
                for v in nbrs[u]:
                    lv = lab[v]
                    if lv != t and lv not in seen:
                        seen.add(lv)
                        b.setdefault(lv, []).append(u)
            self.bnd[t] = b
        return b

    def viol(self) -> np.ndarray:
        return _vio(self.s.totals, self.t, self.tau)

    def _apply(self, moves: list[tuple[int, int, int]]) -> None:
        touched = set()
        lab, nbrs = self.s.lab, self.g.nbrs
        for u, a, b in moves:
            self.s.move(u, a, b, self.x[u])
            self.members[a].discard(u)
            self.members[b].add(u)
            touched.add(a)
            touched.add(b)
        stale = set(touched)
        for u, _a, _b in moves:
            for v in nbrs[u]:
                stale.add(lab[v])
        for t in stale:
            self.bnd[t] = None
        articulation_points(self.s.labels, nbrs, sorted(touched), self.is_ap)
        self.stats["chains"] += 1
        self.stats["moves"] += len(moves)

    # ------------------------------------------------------------ one search

    def _away(self, u: int, a: int, b: int) -> int:
        h = self.home
        if h is None:
            return 0
        return int(a == h[u]) - int(b == h[u])

    def _touches(self, u: int, t: int, skip) -> bool:
        lab = self.s.lab
        return any(lab[v] == t and v not in skip for v in self.g.nbrs[u])

    def _donor_ok(self, group: tuple[int, ...], t: int) -> bool:
        """The donor ``t`` stays connected (and non-empty) without ``group``."""
        if len(group) == 1:
            return not self.is_ap[group[0]] and self.s.counts[t] > 1
        if self.s.counts[t] <= len(group):
            return False
        lab, nbrs = self.s.lab, self.g.nbrs
        gs = set(group)
        inner = [v for u in group for v in nbrs[u] if lab[v] == t and v not in gs]
        if not inner:
            return False
        todo = set(inner)
        seen = set(gs) | {inner[0]}
        todo.discard(inner[0])
        queue = deque([inner[0]])
        while queue and todo:
            u = queue.popleft()
            for v in nbrs[u]:
                if v not in seen and lab[v] == t:
                    seen.add(v)
                    todo.discard(v)
                    queue.append(v)
        return not todo

    def _groups(self, t: int, s: int, pairs: bool) -> list[tuple[int, ...]]:
        """Movable units (or adjacent pairs) of ``t`` that touch ``s`` and may leave."""
        units = [u for u in self.boundary(t).get(s, []) if self.movable[u]]
        out: list[tuple[int, ...]] = [(u,) for u in units if not self.is_ap[u]]
        if pairs:
            lab, nbrs = self.s.lab, self.g.nbrs
            for u in units:
                for v in nbrs[u]:
                    if v > u or lab[v] != t or not self.movable[v]:
                        continue
                    out.append((v, u))
        return out

    def search(self, t0: int, forward: bool, pairs: bool = False):
        """Best improving chain from ``t0``; returns (key, moves) or None."""
        self.stats["searches"] += 1
        x, tg, tau, tot = self.x, self.t, self.tau, self.s.totals
        v_now = _vio(tot, tg, tau)
        # state: (rank, fin, path, units(list of groups), open_w, away)
        root = (0.0, 0.0, (t0,), (), tot[t0].copy(), 0)
        beam = [root]
        best = None  # (key, moves)
        for depth in range(self.max_len):
            children = []
            for _rank, fin, path, groups, open_w, away in beam:
                t = path[-1]
                last = groups[-1] if groups else ()
                if forward:
                    nbr_terrs = sorted(self.boundary(t))
                else:
                    nbr_terrs = sorted(self.boundary(t))
                for s in nbr_terrs:
                    closing = s == t0 and len(path) >= 2
                    if s in path and not closing:
                        continue
                    if forward:
                        cand = self._groups(t, s, pairs)
                        if last:
                            cand = [c for c in cand if not set(c) & set(last)]
                    else:
                        cand = self._groups(s, t, pairs)
                    good = []
                    donor = t if forward else s
                    for c in cand:
                        if not self._donor_ok(c, donor):
                            continue
                        if forward:
                            if last and not any(self._touches(u, t, set(c)) for u in last):
                                continue
                            if closing and not any(
                                self._touches(u, t0, set(groups[0])) for u in c
                            ):
                                continue
                        else:
                            if last and not any(self._touches(u, t, set(last)) for u in c):
                                continue
                            if closing and not any(
                                self._touches(u, t0, set(c)) for u in groups[0]
                            ):
                                continue
                        good.append(c)
                    if not good:
                        continue
                    xs = np.array([x[list(c)].sum(0) for c in good])
                    sign = -1.0 if forward else 1.0
                    fin_t = fin + _vio(open_w[None, :] + sign * xs, tg[t], tau) - v_now[t]
                    if closing:
                        # t0 already changed by groups[0]; change it again
                        w0 = tot[t0] + (-1.0 if forward else 1.0) * x[list(groups[0])].sum(0)
                        v0 = _vio(w0, tg[t0], tau)
                        total = fin_t + _vio(w0[None, :] - sign * xs, tg[t0], tau) - v0
                        # t0 was finalized as w0 inside fin; ok
                        open_s = None
                    else:
                        open_s = tot[s][None, :] - sign * xs
                        stop = _vio(open_s, tg[s], tau) - v_now[s]
                        total = fin_t + stop
                    n_mv = len(groups) + 1
                    for j, c in enumerate(good):
                        a_terr, b_terr = (t, s) if forward else (s, t)
                        aw = away + sum(self._away(u, a_terr, b_terr) for u in c)
                        tv = float(total[j])
                        if tv < -1e-9:
                            size = sum(len(g) for g in groups) + len(c)
                            key = (tv + self.move_weight * aw * (self.home is not None)
                                   + 1e-6 * size, size, n_mv)
                            if best is None or key < best[0]:
                                best = (key, tv, path + (s,), groups + (c,), forward)
                    if closing:
                        continue
                    rank = fin_t + 0.5 * stop
                    if self.home is not None:
                        rank = rank + self.move_weight * np.array(
                            [away + sum(self._away(u, *((t, s) if forward else (s, t)))
                                        for u in c) for c in good]
                        )
                    order = np.argsort(rank, kind="stable")[: self.per_pair]
                    for j in order.tolist():
                        c = good[j]
                        a_terr, b_terr = (t, s) if forward else (s, t)
                        aw = away + sum(self._away(u, a_terr, b_terr) for u in c)
                        children.append(
                            (float(rank[j]), float(fin_t[j]), path + (s,), groups + (c,),
                             open_s[j].copy(), aw)
                        )
            if not children:
                break
            children.sort(key=lambda ch: (ch[0], ch[2], ch[3]))
            beam = []
            per_terr: dict[int, int] = {}
            for ch in children:
                e = ch[2][-1]
                if per_terr.get(e, 0) >= 2:
                    continue
                per_terr[e] = per_terr.get(e, 0) + 1
                beam.append(ch)
                if len(beam) >= self.beam:
                    break
        return best

    def _moves(self, chain) -> list[tuple[int, int, int]]:
        _key, _tv, path, groups, forward = chain
        moves = []
        for i, c in enumerate(groups):
            a, b = (path[i], path[i + 1]) if forward else (path[i + 1], path[i])
            moves.extend((u, a, b) for u in c)
        return moves

    # ------------------------------------------------------------ main loop

    def run(self, *, max_chains: int = 5000, deadline: float = np.inf) -> dict:
        """Apply improving chains, most violated territory first, until none is left."""
        stuck: set[int] = set()
        n = 0
        use_pairs = False
        while n < max_chains and time.perf_counter() < deadline:
            v = self.viol()
            if v.sum() <= 1e-12:
                break
            order = [int(t) for t in np.argsort(-v, kind="stable") if v[t] > 1e-12]
            found = None
            for t0 in order:
                if t0 in stuck:
                    continue
                c1 = self.search(t0, True, use_pairs)
                c2 = self.search(t0, False, use_pairs)
                cands = [c for c in (c1, c2) if c is not None]
                if cands:
                    found = min(cands, key=lambda c: c[0])
                    break
                stuck.add(t0)
                if time.perf_counter() > deadline:
                    break
            if found is None:
                if self.pairs and not use_pairs:
                    use_pairs = True
                    stuck.clear()
                    continue
                break
            self._apply(self._moves(found))
            n += 1
            stuck.clear()
            use_pairs = False
        self.stats["violation"] = float(self.viol().sum())
        return self.stats


def chain_repair(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    movable: np.ndarray,
    *,
    home: np.ndarray | None = None,
    deadline: float = np.inf,
    max_chains: int = 5000,
    **kw,
) -> dict:
    """Run :class:`ChainSearch` on ``state`` (in place); returns counters."""
    cs = ChainSearch(state, graph, values, targets, tau, movable, home=home, **kw)
    return cs.run(max_chains=max_chains, deadline=deadline)


def undo_moves(
    state: SearchState,
    graph: Graph,
    values: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    movable: np.ndarray,
    home: np.ndarray,
    *,
    rounds: int = 5,
) -> int:
    """Send moved units back home when that adds no violation and splits nothing."""
    from models._territory_search import removal_keeps_pieces

    lab, nbrs = state.lab, graph.nbrs
    tot = state.totals
    back = 0
    for _ in range(rounds):
        changed = 0
        for u in np.flatnonzero(state.labels != home).tolist():
            a, b = lab[u], int(home[u])
            if not movable[u] or state.counts[a] <= 1:
                continue
            if not any(lab[v] == b for v in nbrs[u]):
                continue
            before = _vio(tot[[a, b]], targets[[a, b]], tau).sum()
            wa = tot[a] - values[u]
            wb = tot[b] + values[u]
            after = _vio(wa, targets[a], tau) + _vio(wb, targets[b], tau)
            if after > before + 1e-12:
                continue
            if not removal_keeps_pieces(u, lab, nbrs):
                continue
            state.move(u, a, b, values[u])
            changed += 1
        back += changed
        if not changed:
            break
    return back
