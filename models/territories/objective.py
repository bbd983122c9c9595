"""The one objective of the territory engine.

Balance is measured by the *excess* of each (territory, attribute) pair over its
tolerance: ``max(0, |W_ka / T_ka - 1| - tau_a)``. Every phase uses these
functions: the violation ``V`` (the summed excess), the escalated penalty of the
ejection chains (``V`` plus a squared-deviation pull), the squared excess of the
contiguity repair, and the ranking of whole alignments (:func:`score`), which
compares hard violations, then the shape limit, then soft excess, then
dispersion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from territory.models.territories.geometry import largest_span_m, territory_elongations

if TYPE_CHECKING:
    from territory.models.territories.problem import Problem
    from territory.models.territories.search import SearchState

#: Summed excess below this counts as balanced (floating-point noise).
BALANCED = 1e-12


def excess(dev: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Per pair: how far the deviation ``dev`` (signed fraction) is beyond ``tau``."""
    return np.maximum(np.abs(dev) - tau, 0.0)


def violation(dev: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Per territory (last axis summed): ``sum_a max(0, |dev_a| - tau_a)``."""
    return excess(dev, tau).sum(axis=-1)


def totals_violation(totals: np.ndarray, targets: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """:func:`violation` of totals against their targets."""
    return violation(totals / targets - 1.0, tau)


def violated_pairs(totals: np.ndarray, targets: np.ndarray, tau: np.ndarray
                   ) -> tuple[int, float]:
    """(violated territory-attribute pairs, summed excess over the tolerance)."""
    over = excess(totals / targets - 1, tau)
    return int((over > 1e-9).sum()), float(over.sum())


def penalty(totals: np.ndarray, targets: np.ndarray, tau: np.ndarray, quad: float = 0.0
            ) -> np.ndarray:
    """The chains' search objective: ``V``, plus ``quad x sum dev^2`` while escalating."""
    dev = np.abs(totals / targets - 1.0)
    out = np.maximum(dev - tau, 0.0).sum(axis=-1)
    if quad:
        out = out + quad * (dev**2).sum(axis=-1)
    return out


def squared_excess(dev: np.ndarray, theta: np.ndarray) -> float:
    """``sum max(0, |dev| - theta)^2``: the contiguity repair's cost of a deviation."""
    return float((excess(dev, theta) ** 2).sum())


def score(problem: Problem, state: SearchState) -> tuple[float, float, float, float]:
    """(hard violation, shape excess, soft violation, dispersion), compared in order.

    Units out of the maximum radius count like a balance violation.
    """
    over = excess(state.totals / problem.targets - 1, problem.tau)
    v = float(over[:, problem.hard].sum())
    xy = problem.xy
    d = np.linalg.norm(xy - xy[np.maximum(state.centres[state.labels], 0)], axis=1)
    if problem.radius is not None:
        v += float((d > problem.radius).sum())
    shape = 0.0
    if problem.shaped:
        elong = territory_elongations(state.labels, xy, problem.areas, problem.k)
        shape = float(np.maximum(elong - problem.max_elongation, 0.0).sum())
    return (v, shape, float(over[:, ~problem.hard].sum()), float(problem.values[:, 0] @ d))


def start_rank(problem: Problem, state: SearchState) -> tuple[float, float, float, float]:
    """A start's rank: :func:`score`, with ties broken on the largest span times the
    dispersion (compact on average and without one long territory)."""
    v, shape, soft, dispersion = score(problem, state)
    return (v, shape, soft, dispersion * largest_span_m(state.labels, problem.xy, problem.k))


def held(rank: tuple[float, ...]) -> bool:
    """Whether a rank holds every hard rule and the shape limit."""
    return rank[0] <= BALANCED and rank[1] <= BALANCED
