"""The fresh design path: starts, then the costly polish on the best-ranked start.

Each start (:func:`construct`) is a bisection or a location-allocation
partition, made contiguous and balanced by the local search and ejection
chains; starts are ranked by :func:`objective.start_rank`. :func:`polish` runs
the flow-planned transfers and destroy-and-repair while a hard violation is
left, then the shape limit, the span descent and the radius repair. See
:mod:`territory.models.territories.design` for the algorithm and references.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from territory.models.territories import objective
from territory.models.territories.bisect import bisect_partition
from territory.models.territories.chains import chain_repair
from territory.models.territories.clock import clock
from territory.models.territories.flow import execute_flows, plan_flows
from territory.models.territories.lns import lns_polish, territory_neighbours
from territory.models.territories.problem import Problem, Settings
from territory.models.territories.search import (
    SearchState,
    compact_search,
    lagrangian_search,
    radius_repair,
    within_reach,
)
from territory.models.territories.shape import shape_lns, shape_repair, span_descent
from territory.models.territories.start import (
    kmeanspp_seeds,
    price_allocate,
    repair_contiguity,
    weighted_medoids,
)

#: Location-allocation start: nearest centres a unit may be priced towards, and the
#: alternations of allocation and medoid update.
_NEAREST_CENTRES, _ALLOCATION_ROUNDS = 10, 3

#: ``solvers(rng) -> (balance solver, shape solver)``: the engine on a group of territories.
Solvers = Callable[[np.random.Generator], tuple[Callable, Callable]]


def _any_budget(units: list[int], b: int) -> bool:
    return True


def valid_centres(problem: Problem, labels: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Each territory's weighted medoid (fixed centres kept); ``old`` where it is empty."""
    new = weighted_medoids(problem.xy, problem.values[:, 0], labels, problem.k, problem.fixed)
    return np.where(new >= 0, new, old)


def repairable(problem: Problem, state: SearchState) -> bool:
    """A hard violation remains outside the territories cut off behind giant units."""
    if objective.score(problem, state)[0] <= objective.BALANCED:
        return False
    if not problem.giants:
        return True
    over = objective.excess(state.totals / problem.targets - 1, problem.tau)
    bad = set(np.flatnonzero(over[:, problem.hard].sum(axis=1) > objective.BALANCED).tolist())
    giant_territories = set(problem.giants.values())
    nbrs = territory_neighbours(problem.graph, state.labels, problem.k)
    return problem.radius is not None or any(not nbrs[t] <= giant_territories
                                             for t in bad - giant_territories)


def fresh_design(problem: Problem, settings: Settings, deadline: float, solvers: Solvers,
                 start_seeds: np.ndarray) -> SearchState:
    """Every start is built and ranked; the costly phases run on the best-ranked one, on
    the second when the first still breaks a hard rule or the shape limit, and on extra
    restarts (``max_restarts``) only while a hard rule is broken."""
    built = []
    for start_no in range(int(settings.n_starts)):
        if built and clock() > deadline:
            break
        state, rng = construct(problem, settings, deadline, start_seeds[start_no], start_no)
        built.append((objective.start_rank(problem, state), start_no, state, rng))
    built.sort(key=lambda c: (c[0], c[1]))
    best, best_rank = None, (np.inf, np.inf)
    for rank_no, (_rank, _no, state, rng) in enumerate(built[:2]):
        if rank_no and (objective.held(best_rank) or clock() > deadline):
            break
        state = polish(problem, settings, deadline, solvers, state, rng)
        rank = objective.start_rank(problem, state)
        if rank < best_rank:
            best, best_rank = state, rank
    for start_no in range(int(settings.n_starts), len(start_seeds)):
        if best_rank[0] <= objective.BALANCED or clock() > deadline:
            break  # extra restarts only while the balance is violated
        state, rng = construct(problem, settings, deadline, start_seeds[start_no], start_no)
        state = polish(problem, settings, deadline, solvers, state, rng)
        rank = objective.start_rank(problem, state)
        if rank < best_rank:
            best, best_rank = state, rank
    assert best is not None
    return best


def _start_partition(problem: Problem, rng: np.random.Generator, start_no: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Even starts bisect; odd ones seed k-means++ centres and price-allocate."""
    xy, values, k, forced = problem.xy, problem.values, problem.k, problem.forced
    if start_no % 2 == 0:
        labels = bisect_partition(xy, values, problem.targets, problem.adjacency, problem.fixed,
                                  rotation=float(rng.uniform(0, np.pi)))
        labels[forced >= 0] = forced[forced >= 0]
        return labels, valid_centres(problem, labels, np.zeros(k, dtype=np.int64))
    centres = kmeanspp_seeds(xy, values[:, 0], k, rng, problem.presets(), forced >= 0)
    labels = None
    for _ in range(_ALLOCATION_ROUNDS):
        pin = forced.copy()
        pin[centres] = np.arange(k)
        pin[forced >= 0] = forced[forced >= 0]
        labels = price_allocate(xy, values, problem.targets, centres, pin, _NEAREST_CENTRES)
        new_centres = weighted_medoids(xy, values[:, 0], labels, k, problem.fixed)
        new_centres = np.where(new_centres >= 0, new_centres, centres)
        if np.array_equal(new_centres, centres):
            break
        centres = new_centres
    return labels, centres


def construct(problem: Problem, settings: Settings, deadline: float, seed, start_no: int
              ) -> tuple[SearchState, np.random.Generator]:
    """One start: seeds, allocation, contiguity, local search and chains."""
    rng = np.random.default_rng(seed)
    p, tgt, tau = problem, problem.targets, problem.tau
    movable = p.movable
    labels, centres = _start_partition(p, rng, start_no)
    anchors = p.anchors
    labels = repair_contiguity(p.graph, labels, p.values, tgt, np.zeros_like(tau),
                               np.where(anchors >= 0, anchors, centres), ~movable)
    state = SearchState.build(labels, p.values, p.k, valid_centres(p, labels, centres))
    max_chains = p.n // 2 if settings.max_chains is None else int(settings.max_chains)
    stuck_at = np.inf  # the violation at which ejection chains last made no headway
    for _round in range(3):
        for _alt in range(2):  # local search, then ejection chains, alternated
            lagrangian_search(
                state, p.graph, p.values, tgt, tau, p.xy, movable, rng,
                theta_frac=0.0, compact_weight=settings.compactness_weight,
                max_iter=settings.max_iter, deadline=deadline, recentre=25,
                recentre_keep=p.fixed, max_radius=p.radius,
            )
            v_before = float(objective.totals_violation(state.totals, tgt, tau).sum())
            if v_before <= objective.BALANCED or v_before > stuck_at - 1e-3:
                break  # balanced, or chains already failed from here
            stats = chain_repair(state, p.graph, p.values, tgt, tau, movable, deadline=deadline,
                                 max_chains=max_chains, xy=p.xy, radius=p.radius)
            if stats["violation"] <= objective.BALANCED or stats["violation"] > v_before - 1e-3:
                stuck_at = stats["violation"]
                break
        compact_search(state, p.graph, p.values, tgt, tau, p.xy, movable, rng,
                       max_iter=settings.max_iter, deadline=deadline, budget_ok=_any_budget,
                       max_radius=p.radius)
        new_centres = valid_centres(p, state.labels, state.centres)
        if np.array_equal(new_centres, state.centres) or clock() > deadline:
            break
        state.centres = new_centres
    return state, rng


def polish(problem: Problem, settings: Settings, deadline: float, solvers: Solvers,
           state: SearchState, rng: np.random.Generator) -> SearchState:
    """The costly phases: flows and group re-designs while a hard violation is left, then
    the shape limit, the span descent and the radius."""
    p = problem
    if settings.flow_rounds and not p.has_giant and repairable(p, state):
        state = flow_polish(p, settings, deadline, state, rng)
    solve, shape_solve = solvers(rng)
    if settings.lns_tries and not p.has_giant and repairable(p, state):
        state = group_repair(p, state, rng, deadline, settings.lns_tries, solve)
    if p.shaped:
        state = shape_polish(p, state, shape_solve, settings.shape_tries)
    span_descent(state, p.graph, p.values, p.targets, p.tau, p.xy, p.movable, p.hard,
                 areas=p.areas, max_elongation=p.max_elongation if p.shaped else None)
    if p.radius is not None:
        radius_repair(state, p.graph, p.values, p.targets, p.tau, p.xy, p.movable, p.radius)
    return state


def flow_polish(problem: Problem, settings: Settings, deadline: float, state: SearchState,
                rng: np.random.Generator) -> SearchState:
    """Rounds of flow-planned transfers, local search and chains; the best state wins."""
    p, tgt, tau = problem, problem.targets, problem.tau
    movable = p.movable
    max_chains = p.n // 2 if settings.max_chains is None else int(settings.max_chains)
    best_labels, best_sc = state.labels.copy(), objective.score(p, state)
    allowed = None
    if p.radius is not None:
        def allowed(units, a, b):
            return within_reach(p.xy, state.centres, units, np.full(len(units), a),
                                np.full(len(units), b), p.radius)
    for _ in range(settings.flow_rounds):
        if clock() > deadline:
            break
        flows = plan_flows(state, p.graph, p.values, tgt, cap_scale=0.5)
        if not flows or execute_flows(state, p.graph, p.values, tgt, movable, flows,
                                      allowed=allowed) == 0:
            break
        lagrangian_search(
            state, p.graph, p.values, tgt, tau, p.xy, movable, rng, theta_frac=0.0,
            compact_weight=settings.compactness_weight, max_iter=settings.max_iter,
            deadline=deadline, recentre=25, recentre_keep=p.fixed, max_radius=p.radius,
        )
        chain_repair(state, p.graph, p.values, tgt, tau, movable, deadline=deadline,
                     max_chains=max_chains, xy=p.xy, radius=p.radius)
        sc = objective.score(p, state)
        if sc >= best_sc:  # a round that does not help ends the polish
            break
        best_labels, best_sc = state.labels.copy(), sc
        if sc[0] <= objective.BALANCED:
            break
    if not np.array_equal(best_labels, state.labels):
        state = SearchState.build(best_labels, p.values, p.k, state.centres)
    state.centres = valid_centres(p, state.labels, state.centres)
    return state


def shape_polish(problem: Problem, state: SearchState, solve, tries: int) -> SearchState:
    """Moves and swaps, then group re-designs, towards the shape limit; best state kept."""
    p = problem
    args = (p.graph, p.values, p.targets, p.tau, p.xy, p.areas)
    trial = SearchState.build(state.labels, p.values, p.k, state.centres)
    shape_repair(trial, *args, p.movable, p.max_elongation, p.hard)
    if tries:
        labels, _ = shape_lns(trial.labels, *args, p.max_elongation, solve, p.hard,
                              max_tries=tries)
        trial = SearchState.build(labels, p.values, p.k, trial.centres)
        shape_repair(trial, *args, p.movable, p.max_elongation, p.hard)
    trial.centres = valid_centres(p, trial.labels, trial.centres)
    return trial if objective.score(p, trial) < objective.score(p, state) else state


def group_repair(problem: Problem, state: SearchState, rng: np.random.Generator,
                 deadline: float, tries: int, solve) -> SearchState:
    """Destroy-and-repair groups of territories (:func:`lns_polish`) with ``solve``."""
    p = problem
    labels, _stats = lns_polish(state.labels, p.graph, p.values, p.targets, p.tau, solve, rng,
                                max_tries=tries, deadline=deadline)
    if np.array_equal(labels, state.labels):
        return state
    new = SearchState.build(labels, p.values, p.k, state.centres)
    new.centres = valid_centres(p, labels, state.centres)
    return new if objective.score(p, new) < objective.score(p, state) else state
