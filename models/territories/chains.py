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
chain improves, with a breadth-first check of the donor. When no chain lowers
``V`` either, the search escalates to the smooth objective
``V + quad x sum_k,a dev_ka^2`` (``quad = 5``): its slope grows with the
deviation, so it carries surplus from far-off territories into ones with
slack even where ``V`` is flat; it returns to plain ``V`` as soon as the best
``V`` seen has improved, and the alignment with the lowest ``V`` is kept.
Each applied chain strictly lowers the objective of its level, and a return
to ``V`` needs a strictly better ``V``, so the loop terminates (``max_chains``
caps it anyway).

``undo_moves`` (rebalance mode) then sends moved units back to their current
territory whenever that adds no violation and splits nothing.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from territory.models.territories.clock import clock
from territory.models.territories.objective import penalty, totals_violation
from territory.models.territories.search import Graph, SearchState, articulation_points

_EPS = 1e-12


def _ring_connected(ring: list[int], nbrs: list[list[int]]) -> bool:
    """The units of ``ring`` are connected through each other alone (a sufficient test that
    removing what they surround keeps their territory in one piece)."""
    members = set(ring)
    seen = {ring[0]}
    stack = [ring[0]]
    while stack:
        for v in nbrs[stack.pop()]:
            if v in members and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) == len(members)


class ChainSearch:
    """Ejection-chain repair on a :class:`SearchState` (mutated in place).

    Parameters
    ----------
    movable
        Units that may change territory (not locked, not a fixed centre).
    home
        Rebalance mode: the current territory of each unit; chains are then
        ranked by ``dV / (1 + max(0, away)) + move_weight x away``, where
        ``away`` counts units newly away from home (minus those sent back).
    max_len, beam, per_pair
        Hops per chain, partial chains kept per depth (at most two per open
        territory), units kept per (partial chain, next territory).
    pairs
        Allow pair hops when no single-unit chain improves.
    quad
        Weight of ``sum dev^2`` in the escalation objective (0: no escalation).
    xy, radius
        Maximum radius: a unit may join a territory only within ``radius`` of
        its centre (or nearer to it than to its current centre).
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
        quad: float = 5.0,
        xy: np.ndarray | None = None,
        radius: float | None = None,
    ) -> None:
        self.s = state
        self.g = graph
        self.x = values
        self.t = targets
        self.tau = tau
        self.quad_escalate = float(quad)
        self.quad = 0.0
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
        self.cache: dict[tuple, object] = {}
        # _donor_ok of groups by donor: valid while the donor's members stay the same
        self.donor_memo: list[dict[tuple[int, ...], bool]] = [{} for _ in range(self.k)]
        self.stats = {"chains": 0, "moves": 0, "searches": 0}
        self.xy = xy
        self.radius = None if xy is None else radius

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
                        if self.radius is not None and not self._in_reach(u, t, lv):
                            continue
                        b.setdefault(lv, []).append(u)
            self.bnd[t] = b
        return b

    def _in_reach(self, u: int, a: int, b: int) -> bool:
        """Unit ``u`` may join ``b``: within the radius of its centre, or nearer than now."""
        c = self.s.centres
        db = float(np.hypot(*(self.xy[u] - self.xy[c[b]])))
        return db <= self.radius or db < float(np.hypot(*(self.xy[u] - self.xy[c[a]])))

    def pen(self, w: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Search objective (:func:`objective.penalty`): V, plus ``quad x sum dev^2``."""
        return penalty(w, t, self.tau, self.quad)

    def viol(self) -> np.ndarray:
        return totals_violation(self.s.totals, self.t, self.tau)

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
        self.cache = {key: c for key, c in self.cache.items() if key[0] not in stale}
        for t in touched:
            self.donor_memo[t] = {}
        articulation_points(self.s.labels, nbrs, sorted(touched), self.is_ap)
        self.stats["chains"] += 1
        self.stats["moves"] += len(moves)

    # ------------------------------------------------------------ one search

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
        if _ring_connected(inner, nbrs):
            return True  # any path through the group can go round it instead
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

    def _singles(self, t: int, s: int) -> np.ndarray:
        """Units of ``t`` touching ``s`` that may leave ``t`` alone (cached)."""
        key = (t, s)
        c = self.cache.get(key)
        if c is None:
            if self.s.counts[t] <= 1:
                c = np.zeros(0, dtype=np.int64)
            else:
                u = np.array(self.boundary(t).get(s, []), dtype=np.int64)
                c = u[self.movable[u] & ~self.is_ap[u]] if len(u) else u
            self.cache[key] = c
        return c

    def _pairs(self, t: int, s: int) -> list[tuple[int, ...]]:
        """Adjacent unit pairs of ``t``, one touching ``s``, that may leave together (cached)."""
        key = (t, s, 2)
        out = self.cache.get(key)
        if out is None:
            lab, nbrs = self.s.lab, self.g.nbrs
            seen: set[tuple[int, int]] = set()
            out = []
            for u in self.boundary(t).get(s, []):
                if not self.movable[u]:
                    continue
                for v in nbrs[u]:
                    if lab[v] != t or not self.movable[v]:
                        continue
                    pair = (min(u, v), max(u, v))
                    if pair in seen:
                        continue
                    seen.add(pair)
                    ok = self.donor_memo[t].get(pair)
                    if ok is None:
                        ok = self.donor_memo[t][pair] = self._donor_ok(pair, t)
                    if ok:
                        out.append(pair)
            self.cache[key] = out
        return out

    def search(self, t0: int, forward: bool, pairs: bool = False):
        """Best improving chain from ``t0`` (beam search over hops), or None.

        All candidate hops of one depth are scored together with numpy.
        Returns ``(key, dV, path, groups, forward)``.
        """
        self.stats["searches"] += 1
        x, tg, tot = self.x, self.t, self.s.totals
        m = self.m
        pen = self.pen
        v_now = pen(tot, tg)
        home = self.home
        rebal = home is not None
        sign = -1.0 if forward else 1.0
        # beam entries: (fin, path, groups, open_w, away)
        beam = [(0.0, (t0,), (), tot[t0].copy(), 0.0)]
        best = None
        gtab: list[tuple[int, ...]] = []  # pair groups, referenced as -1 - index
        for _depth in range(self.max_len):
            c_state, c_id, c_s, c_close = self._hops(beam, t0, forward, pairs, gtab)
            if not c_id:
                break
            st_i = np.array(c_state, dtype=np.int64)
            cid = np.array(c_id, dtype=np.int64)
            sv = np.array(c_s, dtype=np.int64)
            close = np.array(c_close, dtype=bool)
            single = cid >= 0
            xs = np.empty((len(cid), m))
            xs[single] = x[cid[single]]
            if not single.all():
                pair_units = np.array(gtab, dtype=np.int64)[-1 - cid[~single]]  # pairs only
                xs[~single] = x[pair_units[:, 0]] + x[pair_units[:, 1]]
            fin_b = np.array([b[0] for b in beam])
            open_b = np.array([b[3] for b in beam])
            away_b = np.array([b[4] for b in beam])
            tb = np.array([b[1][-1] for b in beam])[st_i]
            fin_t = fin_b[st_i] + pen(open_b[st_i] + sign * xs, tg[tb]) - v_now[tb]
            open_s = tot[sv] - sign * xs
            stop = pen(open_s, tg[sv]) - v_now[sv]
            if close.any():
                ci = np.flatnonzero(close)
                g0 = [beam[b][2][0] for b in st_i[ci].tolist()]
                w0 = tot[t0] - sign * np.array([x[list(g)].sum(0) for g in g0])
                stop[ci] = pen(w0 - sign * xs[ci], tg[t0]) - pen(w0, tg[t0])
            total = fin_t + stop
            n_units = np.array([sum(map(len, b[2])) for b in beam], dtype=float)[st_i]
            n_units += np.where(single, 1.0, 2.0)
            if rebal:
                if single.all():
                    hh = home[cid]
                    da = (hh == np.where(forward, tb, sv)).astype(float) - (
                        hh == np.where(forward, sv, tb))
                else:
                    da = np.zeros(len(cid))
                    for j, g in enumerate(cid.tolist()):
                        grp = (g,) if g >= 0 else gtab[-1 - g]
                        a_, b_ = (tb[j], sv[j]) if forward else (sv[j], tb[j])
                        da[j] = sum(int(home[u] == a_) - int(home[u] == b_) for u in grp)
                aw = away_b[st_i] + da
                key = total / (np.maximum(aw, 0.0) + 1.0) + self.move_weight * aw
            else:
                aw = np.zeros(len(cid))
                key = total + 1e-6 * n_units
            key = np.where(total < -1e-9, key, np.inf)
            j = int(np.argmin(key))
            if np.isfinite(key[j]) and (best is None or float(key[j]) < best[0]):
                best = (float(key[j]), float(total[j]), beam[st_i[j]][1] + (int(sv[j]),),
                        beam[st_i[j]][2] + (self._group(int(cid[j]), gtab),), forward)
            rank = fin_t + 0.5 * stop + (self.move_weight * aw if rebal else 0.0)
            rank = np.where(close, np.inf, rank)
            order = np.lexsort((cid, rank))
            new_beam = []
            per_terr: dict[int, int] = {}
            for j in order.tolist():
                if close[j]:
                    break
                e = int(sv[j])
                if per_terr.get(e, 0) >= 2:
                    continue
                per_terr[e] = per_terr.get(e, 0) + 1
                b = beam[st_i[j]]
                new_beam.append((float(fin_t[j]), b[1] + (e,),
                                 b[2] + (self._group(int(cid[j]), gtab),), open_s[j], float(aw[j])))
                if len(new_beam) >= self.beam:
                    break
            if not new_beam:
                break
            beam = new_beam
        return best

    def _hops(self, beam, t0: int, forward: bool, pairs: bool, gtab: list):
        """Every next hop of every beam entry that keeps the territories contiguous:
        ``(beam entry, unit or -1 - pair index, next territory, closes the cycle)``."""
        lab, nbrs = self.s.lab, self.g.nbrs
        c_state: list[int] = []
        c_id: list[int] = []
        c_s: list[int] = []
        c_close: list[bool] = []
        for bi, (_fin, path, groups, _open_w, _away) in enumerate(beam):
            t = path[-1]
            last = groups[-1] if groups else ()
            lastset = set(last)
            first = set(groups[0]) if groups else set()
            anchors: set[int] = set()
            adj_last: set[int] = set()
            anchors0: set[int] = set()
            if last and forward:
                anchors = {v for u in last for v in nbrs[u] if lab[v] == t}
            if last and not forward:
                adj_last = {v for u in last for v in nbrs[u]}
            if len(path) >= 2 and not forward:
                anchors0 = {v for u in first for v in nbrs[u] if lab[v] == t0}
            for s in sorted(self.boundary(t)):
                closing = s == t0 and len(path) >= 2
                if s in path and not closing:
                    continue
                donor, recv = (t, s) if forward else (s, t)
                units = self._singles(donor, recv)
                ids = units.tolist()
                if ids and (last or closing):
                    good = []
                    for u in ids:
                        if forward:
                            if last and len(anchors) == 1 and u in anchors:
                                continue
                            if closing and not any(
                                lab[v] == t0 and v not in first for v in nbrs[u]
                            ):
                                continue
                        else:
                            if last and u in adj_last and not any(
                                lab[v] == t and v not in lastset for v in nbrs[u]
                            ):
                                continue
                            if closing and not (anchors0 - {u}):
                                continue
                        good.append(u)
                    ids = good
                if pairs:
                    for c in self._pairs(donor, recv):
                        cs_ = set(c)
                        if forward:
                            if last and not (anchors - cs_):
                                continue
                            if closing and not any(
                                lab[v] == t0 and v not in first for u in c for v in nbrs[u]
                            ):
                                continue
                        else:
                            if last and not any(
                                lab[v] == t and v not in lastset for u in c for v in nbrs[u]
                            ):
                                continue
                            if closing and not (anchors0 - cs_):
                                continue
                        ids.append(-1 - len(gtab))
                        gtab.append(c)
                if not ids:
                    continue
                nn = len(ids)
                c_state += [bi] * nn
                c_id += ids
                c_s += [s] * nn
                c_close += [closing] * nn
        return c_state, c_id, c_s, c_close

    @staticmethod
    def _group(g: int, gtab) -> tuple[int, ...]:
        return (g,) if g >= 0 else gtab[-1 - g]

    def _moves(self, chain) -> list[tuple[int, int, int]]:
        _key, _tv, path, groups, forward = chain
        moves = []
        for i, c in enumerate(groups):
            a, b = (path[i], path[i + 1]) if forward else (path[i + 1], path[i])
            moves.extend((u, a, b) for u in c)
        return moves

    # ------------------------------------------------------------ main loop

    def run(self, *, max_chains: int = 5000, deadline: float = np.inf) -> dict:
        """Apply improving chains, most violated territory first, until none is left.

        Escalation when no chain lowers V: pair hops, then the objective
        ``V + quad x sum dev^2`` (which moves surplus from far-off territories
        into ones with slack), single then pair hops; after each applied chain
        the search returns to single-unit chains on V. The alignment with the
        lowest V seen is kept.
        """
        levels = [(False, 0.0)]
        if self.pairs:
            levels.append((True, 0.0))
        if self.quad_escalate > 0:
            levels.append((False, self.quad_escalate))
            if self.pairs:
                levels.append((True, self.quad_escalate))
        stuck: set[int] = set()
        stuck_local = False
        level = 0
        n = 0
        best_v = float(self.viol().sum())
        level_v = best_v
        best_labels = self.s.labels.copy()
        while n < max_chains and clock() < deadline:
            v = self.viol()
            if v.sum() <= 1e-12:
                break
            use_pairs, self.quad = levels[level]
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
                if clock() > deadline:
                    break
            if found is None:
                stuck.clear()
                if stuck_local:  # re-check every territory once before escalating
                    stuck_local = False
                    continue
                if levels[level][1] > 0 and best_v < level_v - 1e-12:
                    level = 0  # the smooth objective helped: back to V
                    continue
                if level + 1 < len(levels):
                    level += 1
                    if levels[level][1] > 0 and levels[level - 1][1] == 0:
                        level_v = best_v
                    continue
                break
            self._apply(self._moves(found))
            n += 1
            # territories whose chains may have changed: the path and its neighbours
            near = set(found[2])
            for t in found[2]:
                near.update(self.boundary(t))
            stuck -= near
            stuck_local = True
            if level and levels[level][1] == 0:
                level = 0  # a pair hop lowered V: back to single units
                stuck.clear()
                stuck_local = False
            vs = float(self.viol().sum())
            if vs < best_v - 1e-12:
                best_v = vs
                best_labels = self.s.labels.copy()
        self.quad = 0.0
        if float(self.viol().sum()) > best_v + 1e-12:
            self._reset(best_labels)
        self.stats["violation"] = float(self.viol().sum())
        return self.stats

    def _reset(self, labels: np.ndarray) -> None:
        st = self.s
        st.labels[:] = labels
        st.lab[:] = labels.tolist()
        st.totals[:] = 0
        np.add.at(st.totals, labels, self.x)
        st.counts[:] = np.bincount(labels, minlength=self.k)


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
    from territory.models.territories.search import removal_keeps_pieces

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
            before = totals_violation(tot[[a, b]], targets[[a, b]], tau).sum()
            wa = tot[a] - values[u]
            wb = tot[b] + values[u]
            after = totals_violation(wa, targets[a], tau) + totals_violation(wb, targets[b], tau)
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
