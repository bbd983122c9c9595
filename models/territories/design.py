"""Territory design: balanced, contiguous, compact alignments.

Algorithm
---------
A multistart heuristic: a balanced start partition, then a contiguity-aware
local search that polishes it, in the spirit of the commercial districting
literature:

1. **Start A: multi-attribute recursive bisection** (default for even-numbered
   starts; :mod:`territory.models.territories.bisect`). The units are split by a cut
   that gives one side its share ``k1 / k`` of *every* attribute at once
   (for two attributes and ``k1 / k = 1/2`` a ham-sandwich cut exists),
   found by sweeping 144 straight-line directions plus geodesic orders from
   extreme units; the side pieces are made connected, the cut balance is
   refined by moves and swaps of boundary units that never split a side, and
   each side is split again until one territory is left (recursive
   coordinate bisection, Berger & Bokhari, 1987, extended to several
   attributes). With fixed centres each side must get as many fixed units as
   it has territories with a fixed centre.
2. **Start B: seeds and location-allocation** (odd-numbered starts). Weighted
   k-means++ seeds (or the fixed centres), then a price-adjusted
   (Lagrangian) nearest-centre allocation in the spirit of Hess et al.'s
   (1965) location-allocation, alternated with weighted-medoid updates.
3. **Contiguity repair.** In every territory, the piece holding the centre
   (or the heaviest piece) stays; each detached piece goes to the adjacent
   territory whose balance suffers least.
4. **Lagrangian move/swap search** (Ríos-Mercado & Fernández, 2009;
   Gliesch, Ritt & Moreira, 2018). The penalty
   ``sum_k,a lam_ka max(0, |dev_ka| - theta_a)^2`` (``theta = 0`` when
   designing, ``tau/2`` when rebalancing under a move budget) plus a squared-distance compactness
   term is lowered by boundary moves (a unit to a territory it touches) and
   swaps (a boundary unit of A into B against one of B into A), all evaluated
   with numpy each iteration and applied best-first on disjoint territory
   pairs, so the deltas are exact. A unit may leave only if it is not a cut
   vertex of its territory: cut vertices come from an iterative Tarjan
   (Hopcroft & Tarjan, 1973) recomputed only for the territories touched in
   the last batch. When nothing improves while the balance is violated, the
   weights ``lam`` of the violated (territory, attribute) pairs grow (a
   Lagrangian / guided-local-search scheme). Free centres move to the
   geometric medoid every 25 iterations. After the ejection chains (5.) a
   compactness phase lowers ``sum w_i d(i, centre)`` with moves that never
   add violation.
5. **Ejection chains** (Glover, 1996; :mod:`territory.models.territories.chains`).
   When the move/swap search stops with a balance violation
   ``V = sum_k sum_a max(0, |W_ka - T_ka| - tau_a T_ka) / T_ka > 0``, a beam
   search (width 8, at most 7 hops, 4 units per territory pair, at most two
   partial chains per open territory) builds chains ``t0 -> t1 -> ... -> tL``
   from the most violated territory: one boundary unit moves per hop, so each
   intermediate changes only by the difference of two units and the surplus
   *vector* of ``t0`` is carried to a territory that needs it. Forward
   (``t0`` ejects), reverse (``t0`` attracts) and cycles back to ``t0`` are
   searched; the exact ``dV`` of every candidate hop is computed with numpy,
   depth by depth, and the best chain with ``dV < 0`` is applied. A donor may
   lose a unit only if it is not a cut vertex (Tarjan, recomputed for the
   touched territories) and a unit entering a territory that also loses one
   must touch it through another unit, so every territory stays contiguous;
   fixed centres and locked units never move. When no chain lowers ``V`` the
   search escalates to pair hops (two adjacent units), then to the smooth
   objective ``V + 5 sum dev^2``; it returns to plain ``V`` once the best
   ``V`` improved. Chains and the move/swap search alternate (twice per
   round) until ``V = 0`` or neither improves; the compactness phase follows.
6. **Flow-planned transfers** (fresh design, while the balance is still
   violated; :mod:`territory.models.territories.flow`). A min-cost flow of every
   territory's deviation over the territory adjacency graph (one commodity per
   attribute, HiGHS LP, border capacities from the units on each border) says
   how much of each attribute must cross each border, so that the
   intermediate territories stay balanced; boundary units are moved border by
   border to realise it (never a cut vertex), then the local search and the
   chains polish. Four rounds; the best alignment seen is kept. This carries a
   regional surplus across several territories, which one-unit-per-hop chains
   through saturated territories cannot.
   **Destroy and repair** follows while violations remain
   (:mod:`territory.models.territories.lns`): a group of 2-8 adjacent territories
   around a violated one, grown with the neighbours that offset its
   deviation, is re-designed from scratch by this engine (bisection start,
   local search, chains) with the group's own targets, and kept only if the
   total violation falls without more violated pairs (Shaw, 1998; Ropke &
   Pisinger, 2006). At most ``lns_tries`` groups, 15 in a row without gain.
   It fixes what boundary moves cannot reach inside a group.
7. **Minimal disruption.** With ``current_labels`` the search starts from the
   current alignment, skips the start heuristics and the compactness phase,
   and uses ejection chains only, ranked by ``dV / (1 + units newly away)``
   plus ``20 x move_cost`` per unit away from home (a unit moved back home
   counts as not moved); afterwards every moved unit whose return home adds
   no violation and splits nothing goes back. If violations remain, groups
   of territories are re-designed as in the fresh design (destroy and
   repair), each group's new territories matched to its old ones by the
   units they keep at home (Hungarian assignment), and moved units go home
   again where they can; this trades disruption for balance. With
   ``move_budget`` (a cap on the moved share of the first attribute) the
   older move/swap search with ``move_cost`` per moved unit is used instead.
8. **Maximum radius** (optional ``max_radius_km``). A unit may join a
   territory only within the radius of its centre (or nearer to it than to
   its current centre): the filter applies to every move, swap and chain hop.
   After the search, units still out of reach move to an adjacent territory
   whose centre is in reach when that adds no balance violation and splits
   nothing; the remaining ones are reported per territory. A start's
   out-of-reach units count like balance violations when the best start is
   chosen.
9. **Disruption lower bound** (:func:`rebalance_lower_bound`). A territory
   over ``(1 + tau) T`` on an attribute must lose at least as many units as
   its largest units needed to cover the surplus; one under ``(1 - tau) T``
   must gain at least as many as the largest units outside it needed to cover
   the deficit; each moved unit leaves one territory and enters one, so
   ``moved >= max(sum_k out_k, sum_k in_k)``, and the moved amount of each
   attribute is at least ``max(sum surplus, sum deficit)``. It ignores
   contiguity, so it holds for every balanced alignment; rebalance reports
   carry it as ``disruption_units_lower_bound_pct`` and
   ``disruption_<first attribute>_lower_bound_pct``.

Budgets are iteration counts (``max_iter`` per local-search phase,
``max_chains`` = ``n // 2`` chains per repair call, ``max_restarts`` extra
starts while the balance is violated), so the same seed gives the same
labels; ``time_limit_s`` is only a safety net.

Known limit (issue #6): on the US county demo (K=50, two diverging
attributes at ±5%) no design reaches zero violations; measurements and the
variants tried are in benchmarks/RESULTS.md.

Infeasible requests (a unit larger than its target's upper bound, locked
units that cannot be joined) return the best alignment found, with plain-word
entries in ``report.violations`` and, for balance that cannot be reached,
the blocks of territories behind it in ``report.diagnosis``. See Kalcsics &
Ríos-Mercado (2019), "Districting problems", in *Location Science*, for a
review; Berger &
Bokhari (1987), "A partitioning strategy for nonuniform problems on
multiprocessors", IEEE Trans. Computers 36(5), for recursive bisection;
Glover (1996), "Ejection chains, reference structures and alternating path
methods for traveling salesman problems", Discrete Applied Mathematics 65;
Ríos-Mercado & Fernández (2009), "A reactive GRASP for a commercial territory
design problem with multiple balancing requirements", Computers & Operations
Research 36(3); Gliesch, Ritt & Moreira (2018), "A multistart alternating
tabu search for commercial districting", EvoCOP, LNCS 10782; Hopcroft &
Tarjan (1973), "Algorithm 447: efficient algorithms for graph manipulation",
Communications of the ACM 16(6), for cut vertices.

Balance index: ``100 x (1 - mean |deviation|)`` over territories and
attributes, clipped to ``[0, 100]``; 100 means every territory hits its target.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from territory.models.territories.bounds import rebalance_lower_bound
from territory.models.territories.clock import clock
from territory.models.territories.diagnosis import behind_giants, enclave_lines, giant_lines
from territory.models.territories.fresh import fresh_design
from territory.models.territories.problem import Problem, Settings, build_problem, resolve_names
from territory.models.territories.rebalance import rebalance
from territory.models.territories.report import TerritoryReport, evaluate_alignment
from territory.models.territories.search import SearchState
from territory.models.territories.violations import Violation


@dataclass
class DesignResult:
    """Output of :func:`design_territories`."""

    labels: np.ndarray
    centres: np.ndarray
    report: TerritoryReport


def design_territories(
    xy,
    adjacency,
    attributes: pd.DataFrame,
    n_territories: int,
    tolerance: float = 0.05,
    seed: int = 0,
    *,
    unit_ids=None,
    current_labels=None,
    fixed_centres: Mapping[int, int] | None = None,
    locked: Mapping[int, int] | None = None,
    tolerances: Mapping[str, float] | None = None,
    targets: np.ndarray | None = None,
    max_iter: int = 1500,
    time_limit_s: float = 20.0,
    n_starts: int = 1,
    compactness_weight: float = 1.0,
    move_budget: float | None = None,
    max_restarts: int = 4,
    move_cost: float = 1e-4,
    max_chains: int | None = None,
    max_radius_km: float | None = None,
    flow_rounds: int = 4,
    lns_tries: int = 100,
    soft_attributes: Sequence[str] = (),
    areas=None,
    max_elongation: float | None = None,
    shape_tries: int = 120,
    territory_names=None,
) -> DesignResult:
    """Design K balanced, contiguous, compact territories (pure function).

    Parameters
    ----------
    xy
        (n, 2) unit coordinates in metres (projected).
    adjacency
        Symmetric (n, n) 0/1 contiguity, preferably CSR; should be connected
        (see :func:`territory.features.spatial.link_islands`).
    attributes
        (n, m) non-negative numeric attributes to balance (e.g. potential,
        workload). The first weights dispersion and measures disruption.
    n_territories
        K, the number of territories (1 <= K <= n).
    tolerance
        Default tau: allowed relative deviation from the target.
    seed
        Seed of every random step; the same seed gives the same labels.
    unit_ids
        Unit names used in the report.
    current_labels
        Current alignment (``0..K-1``); switches to minimal-disruption rebalancing.
    fixed_centres
        ``{territory: unit index}``: the unit (e.g. a rep's home) stays in that
        territory and is its centre.
    locked
        ``{unit index: territory}``: units that must stay in that territory.
    tolerances
        Per-attribute tau, overriding ``tolerance``.
    targets
        (K, m) per-territory targets (e.g. rep capacity); default the mean.
    max_iter
        Iteration cap of each local-search phase.
    time_limit_s
        Safety net in CPU seconds of the calling thread (machine load does not move
        it; :mod:`.clock`) over all starts; the best alignment so far is returned.
    n_starts
        Independent starts (different seeds drawn from ``seed``); best kept.
        While the best alignment still violates the balance, up to
        ``max_restarts`` further starts run (within ``time_limit_s``).
    compactness_weight
        Weight of the compactness term during the balance phase (0 = none).
    move_budget
        Minimal-disruption mode only: maximum share (0-1) of the first attribute
        that may change territory.
    max_restarts
        Extra starts, fresh design only, while the balance is violated.
    move_cost
        Rebalance mode: penalty per unit away from its current territory, in
        units of the squared relative deviation.
    max_chains
        Ejection chains applied per repair call; default ``n // 2``. A
        rebalance repeats the call while it still lowers the violation.
    max_radius_km
        Maximum distance (km, on the projected coordinates) from a unit to its
        territory's centre. Moves that would put a unit farther away are not
        made, units out of reach are moved back in when that adds no balance
        violation, and whatever remains is reported in ``report.violations``.

    flow_rounds
        Fresh design only: rounds of flow-planned transfers
        (:mod:`territory.models.territories.flow`) followed by the local search and the
        chains, run while the balance is still violated; the best alignment
        seen is kept (0 = off).
    lns_tries
        At most this many destroy-and-repair tries on groups of 2-8 adjacent
        territories while the balance is still violated
        (:mod:`territory.models.territories.lns`; 0 = off). In a rebalance (without
        ``move_budget``) the re-designed group keeps as many units at home as
        its new boundaries allow, but it moves more units than chains do.
    soft_attributes
        Attributes whose tolerance is a goal, not a constraint: the local search
        and the chains pursue it, but only hard violations (of the other
        attributes) start the flow, destroy-and-repair and extra-start phases,
        and starts are compared on hard violations first.
    areas, max_elongation
        Unit areas (km²) and the shape limit: a territory's span over the diameter
        of the circle with its area. Fresh design only: after balancing, outlying
        units are moved or swapped (:func:`shape.shape_repair`) and
        the worst territories re-designed with a neighbour or two
        (:func:`shape.shape_lns`, at most ``shape_tries`` groups),
        never adding a balance violation. Territories left above the limit are
        named in ``report.diagnosis``.
    territory_names
        The territories' names in the report (its ``name`` column, violations
        and diagnosis): K distinct names, or a function ``(labels, K) -> names``
        called on the final labels (e.g. to name each territory after the
        current one it overlaps most); default ``T01..TK``.

    Returns
    -------
    DesignResult
        ``labels``, ``centres`` and the quality ``report``.

    Raises
    ------
    ValueError
        For malformed arguments only (shapes, K, negative attributes, bad
        indices); infeasible requests are reported in ``report.violations``.
    """
    t0, started = clock(), time.perf_counter()
    problem = build_problem(
        xy, adjacency, attributes, n_territories, tolerance, unit_ids=unit_ids,
        current_labels=current_labels, fixed_centres=fixed_centres, locked=locked,
        tolerances=tolerances, targets=targets, max_radius_km=max_radius_km,
        soft_attributes=soft_attributes, areas=areas, max_elongation=max_elongation)
    settings = Settings(seed=seed, max_iter=max_iter, time_limit_s=time_limit_s,
                        n_starts=n_starts, compactness_weight=compactness_weight,
                        move_budget=move_budget, max_restarts=max_restarts, move_cost=move_cost,
                        max_chains=max_chains, flow_rounds=flow_rounds, lns_tries=lns_tries,
                        shape_tries=shape_tries)
    settings.check()
    best = solve_problem(problem, settings, t0)
    return _result(problem, settings, best, (t0, started), territory_names)


def solve_problem(problem: Problem, settings: Settings, t0: float | None = None) -> SearchState:
    """The best alignment found for ``problem``: a rebalance when it has a current
    alignment, else a fresh design. Deterministic for a seed; ``time_limit_s`` (from
    ``t0``) is only a safety net."""
    t0 = clock() if t0 is None else t0
    deadline = t0 + (settings.time_limit_s if settings.time_limit_s is not None else np.inf)
    restarts = 0 if problem.current is not None else int(settings.max_restarts)
    start_seeds = np.random.default_rng(settings.seed).integers(
        0, 2**32 - 1, size=int(settings.n_starts) + restarts)
    max_chains = problem.n // 2 if settings.max_chains is None else int(settings.max_chains)

    def solvers(rng):
        """The group re-designers for balance and for shape, drawing seeds from ``rng``."""
        p = problem
        common = (p.xy, p.adjacency, p.values, p.targets, p.tau, p.columns, p.fixed, p.lock,
                  rng, deadline, max_chains, p.max_radius_km)
        soft = p.soft_attributes
        return (group_solver(*common, home=p.current, soft=soft),
                group_solver(*common, areas=p.areas, max_elongation=p.max_elongation,
                             soft=soft))

    if problem.current is not None:
        return rebalance(problem, settings, deadline, solvers, start_seeds[0])
    return fresh_design(problem, settings, deadline, solvers, start_seeds)


def _result(problem: Problem, settings: Settings, best: SearchState,
            started: tuple[float, float],
            territory_names) -> DesignResult:
    """The labels, centres and report of the best alignment, with the rules that only a
    design knows (locks, the move budget, giant units) added."""
    p = problem
    labels = best.labels.astype(np.int64)
    names = resolve_names(territory_names, labels, p.k)
    report = evaluate_alignment(
        labels, p.xy, p.adjacency, p.attributes, tolerances=p.tolerances,
        current_labels=p.current, targets=p.targets, centres=best.centres, unit_ids=p.ids,
        n_territories=p.k, max_radius_km=p.max_radius_km, areas=p.areas,
        max_elongation=p.max_elongation, territory_names=names,
    )
    budget_hit = (p.current is not None and settings.move_budget is not None
                  and bool(report.records))
    extra = [Violation("lock", territory=t, other=int(labels[u]), unit=str(p.ids[u]))
             for u, t in p.lock.items() if labels[u] != t]
    table = report.territories
    for t in table.loc[~table["contiguous"], "territory"].tolist():
        locked_here = [p.ids[u] for u, tt in p.lock.items() if tt == t]
        if locked_here:
            extra.append(Violation("lock_split", territory=t,
                                   detail=", ".join(map(str, locked_here[:5]))))
    if p.current is not None:
        bound = rebalance_lower_bound(p.current, p.attributes, p.k, tolerances=p.tolerances,
                                      targets=p.targets, movable=p.movable)
        first = p.columns[0]
        report.overall["disruption_units_lower_bound_pct"] = bound["units_pct"]
        report.overall[f"disruption_{first}_lower_bound_pct"] = bound[f"{first}_pct"]
    if budget_hit:
        extra.append(Violation("move_budget", attribute=p.columns[0],
                               limit=float(settings.move_budget)))
    report.add(extra)
    report.overall["giant_units"] = [str(p.ids[u]) for u in p.giants]
    behind = behind_giants(p.graph, labels, p.k, p.giants, p.ids, table, p.columns, p.tau,
                           p.hard)
    report.overall["cut_off_behind_giants"] = sorted(set(behind) | set(p.enclaves))  # indices
    report.diagnosis[0:0] = [
        *giant_lines(p.giants, labels, p.values, p.hard, p.tau, p.ids, p.columns, names)[::-1],
        *enclave_lines(p.graph, labels, p.giants, p.enclaves, p.values, p.targets, p.hard,
                       p.ids, p.columns, names),
        *(f"{names[t]} is cut off behind giant unit {via}: it borders no other "
          f"territory, so its {', '.join(off)} cannot be balanced"
          for t, (via, off) in sorted(behind.items()))]
    cpu = clock() - started[0]
    report.overall["run_time_s"] = time.perf_counter() - started[1]
    report.overall["cpu_time_s"] = cpu
    report.overall["hit_time_limit"] = bool(
        settings.time_limit_s is not None and cpu >= settings.time_limit_s)
    return DesignResult(labels=labels, centres=best.centres, report=report)


def group_solver(xy, adjacency, values, tgt, tau, cols, fixed, lock, rng, deadline, max_chains,
                  max_radius_km, home=None, areas=None, max_elongation=None, soft=()):
    """``solve(units, group) -> local labels | None``: the engine itself on a group of
    territories (for the destroy-and-repair searches).

    With ``home`` (a rebalance), each re-designed group's territories are matched
    to the group's territories by the most units kept at home (Hungarian), so a
    repair moves as few units as its new boundaries allow.
    """
    adjacency = sp.csr_matrix(adjacency)
    tol = dict(zip(cols, tau.tolist(), strict=True))

    def solve(units: np.ndarray, group: np.ndarray) -> np.ndarray | None:
        pos = {int(u): i for i, u in enumerate(units.tolist())}
        gpos = {int(t): j for j, t in enumerate(group.tolist())}
        res = design_territories(
            xy[units], adjacency[units][:, units], pd.DataFrame(values[units], columns=cols),
            len(group), seed=int(rng.integers(2**31 - 1)), tolerances=tol, targets=tgt[group],
            fixed_centres={gpos[t]: pos[u] for t, u in fixed.items() if t in gpos} or None,
            locked={pos[u]: gpos[t] for u, t in lock.items() if u in pos} or None,
            max_restarts=0, flow_rounds=0, lns_tries=0, max_chains=max_chains,
            time_limit_s=max(0.5, min(10.0, deadline - clock())),
            max_radius_km=max_radius_km, soft_attributes=soft,
            areas=None if areas is None else areas[units], max_elongation=max_elongation,
            shape_tries=0,
        )
        if not res.report.overall["contiguous"]:
            return None
        if home is None:
            return res.labels
        g = len(group)
        home_local = np.array([gpos.get(int(t), -1) for t in home[units].tolist()])
        at_home = home_local >= 0
        kept = np.zeros((g, g))
        np.add.at(kept, (res.labels[at_home], home_local[at_home]), 1.0)
        pinned = {gpos[t] for t in fixed if t in gpos} | {gpos[t] for u, t in lock.items()
                                                          if u in pos}
        for j in pinned:  # territories holding fixed or locked units keep their index
            kept[j, j] += units.size + 1.0
        rows, cols_ = linear_sum_assignment(-kept)
        relabel = np.empty(g, dtype=np.int64)
        relabel[rows] = cols_
        return relabel[res.labels]

    return solve


