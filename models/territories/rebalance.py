"""The rebalance path: change the current alignment only where balance needs it.

Ejection chains ranked by violation, then by units newly away from home; moved
units whose return home adds no violation go back; groups of territories are
re-designed (matched to their old territories by the units kept at home) only
while violations remain. With a move budget (a cap on the moved share of the
first attribute) the move/swap search with a cost per moved unit runs instead.
See :mod:`territory.models.territories.design`.
"""

from __future__ import annotations

import numpy as np

from territory.models.territories import objective
from territory.models.territories.chains import chain_repair, undo_moves
from territory.models.territories.clock import clock
from territory.models.territories.fresh import Solvers, group_repair
from territory.models.territories.problem import Problem, Settings
from territory.models.territories.search import SearchState, lagrangian_search, radius_repair
from territory.models.territories.start import weighted_medoids


def rebalance(problem: Problem, settings: Settings, deadline: float, solvers: Solvers,
              seed) -> SearchState:
    """The minimal-disruption rebalance of ``problem.current`` (mutates nothing given)."""
    p, cur = problem, problem.current
    assert cur is not None
    forced = p.forced
    base = cur.copy()
    base[forced >= 0] = forced[forced >= 0]
    rng = np.random.default_rng(seed)
    centres = weighted_medoids(p.xy, p.values[:, 0], base, p.k, p.fixed)
    state = SearchState.build(base, p.values, p.k, centres)
    if settings.move_budget is None:
        state = _chains_then_groups(p, settings, deadline, solvers, state, rng)
    else:
        _budgeted_search(p, settings, deadline, state, base, rng)
    state.centres = weighted_medoids(p.xy, p.values[:, 0], state.labels, p.k, p.fixed)
    if p.radius is not None:
        radius_repair(state, p.graph, p.values, p.targets, p.tau, p.xy, p.movable, p.radius)
    return state


def _chains_then_groups(p: Problem, settings: Settings, deadline: float, solvers: Solvers,
                        state: SearchState, rng: np.random.Generator) -> SearchState:
    """Ejection chains only, ranked by violation then units away from home, in rounds of at
    most ``max_chains`` while a round still lowers the violation; then group re-designs."""
    movable, cur = p.movable, p.current
    max_chains = p.n // 2 if settings.max_chains is None else int(settings.max_chains)
    v_prev = np.inf
    while clock() < deadline:
        stats = chain_repair(
            state, p.graph, p.values, p.targets, p.tau, movable, home=cur, deadline=deadline,
            max_chains=max_chains, move_weight=settings.move_cost * 20, xy=p.xy,
            radius=p.radius,
        )
        if stats["violation"] > v_prev - 1e-9 or stats["violation"] <= objective.BALANCED:
            break
        v_prev = stats["violation"]
    undo_moves(state, p.graph, p.values, p.targets, p.tau, movable, cur)
    if settings.lns_tries and not p.has_giant \
            and objective.score(p, state)[0] > objective.BALANCED:
        state = group_repair(p, state, rng, deadline, settings.lns_tries, solvers(rng)[0])
        undo_moves(state, p.graph, p.values, p.targets, p.tau, movable, cur)
    return state


def _budgeted_search(p: Problem, settings: Settings, deadline: float, state: SearchState,
                     base: np.ndarray, rng: np.random.Generator) -> None:
    """The move/swap search with a cost per moved unit, within the move budget."""
    cur = p.current
    w0 = p.values[:, 0]
    budget = float(settings.move_budget) * w0.sum()
    moved_w = [float(w0[base != cur].sum())]

    def budget_ok(units: list[int], b: int) -> bool:
        change = 0.0
        for i in units:
            if state.lab[i] == cur[i]:  # leaving home: costs budget
                change += w0[i]
            elif b == cur[i]:
                change -= w0[i]
        if change > 0 and moved_w[0] + change > budget + 1e-9:
            return False
        moved_w[0] += change
        return True

    lagrangian_search(
        state, p.graph, p.values, p.targets, p.tau, p.xy, p.movable, rng,
        theta_frac=0.5, compact_weight=0.0, home=cur, move_cost=settings.move_cost,
        max_iter=settings.max_iter, deadline=deadline, budget_ok=budget_ok,
        max_radius=p.radius,
    )
