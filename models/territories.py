"""Territory design: balanced, contiguous, compact alignments.

Algorithm
---------
A multistart heuristic: a balanced start partition, then a contiguity-aware
local search that polishes it, in the spirit of the commercial districting
literature:

1. **Start A: multi-attribute recursive bisection** (default for even-numbered
   starts; :mod:`territory.models._territory_bisect`). The units are split by a cut
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
5. **Ejection chains** (Glover, 1996; :mod:`territory.models._territory_chains`).
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
   violated; :mod:`territory.models._territory_flow`). A min-cost flow of every
   territory's deviation over the territory adjacency graph (one commodity per
   attribute, HiGHS LP, border capacities from the units on each border) says
   how much of each attribute must cross each border, so that the
   intermediate territories stay balanced; boundary units are moved border by
   border to realise it (never a cut vertex), then the local search and the
   chains polish. Four rounds; the best alignment seen is kept. This carries a
   regional surplus across several territories, which one-unit-per-hop chains
   through saturated territories cannot.
   **Destroy and repair** follows while violations remain
   (:mod:`territory.models._territory_lns`): a group of 2-8 adjacent territories
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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from territory.models._territory_bisect import bisect_partition
from territory.models._territory_chains import chain_repair, undo_moves
from territory.models._territory_flow import execute_flows, plan_flows
from territory.models._territory_lns import lns_polish, territory_neighbours
from territory.models._territory_search import (
    Graph,
    SearchState,
    compact_search,
    components_by_label,
    kmeanspp_seeds,
    lagrangian_search,
    price_allocate,
    radius_repair,
    repair_contiguity,
    violation,
    weighted_medoids,
    within_reach,
)
from territory.models._territory_shape import (
    largest_span_m,
    shape_lns,
    shape_repair,
    span_descent,
    span_m,
    territory_elongations,
)

#: Location-allocation start: nearest centres a unit may be priced towards, and the
#: alternations of allocation and medoid update.
_NEAREST_CENTRES, _ALLOCATION_ROUNDS = 10, 3

__all__ = [
    "DesignResult",
    "TerritoryDesigner",
    "TerritoryReport",
    "default_territory_names",
    "design_territories",
    "evaluate_alignment",
    "rebalance_lower_bound",
    "territory_elongation",
]


@dataclass
class TerritoryReport:
    """Quality of an alignment.

    Attributes
    ----------
    territories
        One row per territory: ``territory``, ``name``, ``n_units``, ``centre``,
        for each attribute ``<a>_total``, ``<a>_target``, ``<a>_deviation``
        (signed fraction of the target), ``n_components``, ``contiguous``,
        ``dispersion`` (sum w_i d(i, centre), metres x first attribute),
        ``diameter_km``, ``moved_in``, ``moved_out`` (vs the current alignment),
        and ``polsby_popper`` when polygons were given.
    overall
        ``max_abs_deviation_<a>``, ``mean_abs_deviation_<a>``, ``balance_index``
        (0-100), ``contiguous``, ``n_noncontiguous``, ``total_dispersion``,
        ``disruption_units_pct``, ``disruption_<first attribute>_pct``,
        ``run_time_s``, ``n_violations``.
    violations
        Plain-word problems, empty when the alignment meets every constraint.
    diagnosis
        Why balance violations remain (:func:`imbalance_blocks`): blocks of
        violated territories, what their neighbours could absorb, and the
        tolerance their own units would need.
    """

    territories: pd.DataFrame
    overall: dict
    violations: list[str] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)


@dataclass
class DesignResult:
    """Output of :func:`design_territories`."""

    labels: np.ndarray
    centres: np.ndarray
    report: TerritoryReport


# ---------------------------------------------------------------- validation


def _validate_inputs(
    xy, adjacency, attributes, unit_ids=None
) -> tuple[np.ndarray, sp.csr_matrix, pd.DataFrame, np.ndarray]:
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("xy contains non-finite coordinates")
    n = len(xy)
    if n == 0:
        raise ValueError("xy is empty: at least one unit is needed")
    if not sp.issparse(adjacency):
        adjacency = sp.csr_matrix(np.asarray(adjacency))
    adjacency = sp.csr_matrix(adjacency)
    if adjacency.shape != (n, n):
        raise ValueError(f"adjacency must have shape ({n}, {n}), got {adjacency.shape}")
    if (abs(adjacency - adjacency.T) > 1e-12).nnz:
        raise ValueError("adjacency must be symmetric")
    if isinstance(attributes, pd.Series):
        attributes = attributes.to_frame()
    if not isinstance(attributes, pd.DataFrame):
        raise ValueError("attributes must be a pandas DataFrame with numeric columns")
    if len(attributes) != n:
        raise ValueError(f"attributes has {len(attributes)} rows, expected {n} (one per unit)")
    if attributes.shape[1] == 0:
        raise ValueError("attributes needs at least one numeric column")
    for col in attributes.columns:
        if not pd.api.types.is_numeric_dtype(attributes[col]):
            raise ValueError(f"attributes column {col!r} is not numeric")
    vals = attributes.to_numpy(dtype=float)
    if not np.isfinite(vals).all():
        raise ValueError("attributes contains missing or non-finite values")
    if (vals < 0).any():
        bad = attributes.columns[(vals < 0).any(axis=0)].tolist()
        raise ValueError(f"attributes must be non-negative; negative values in {bad}")
    if unit_ids is None:
        ids = np.array([str(i) for i in range(n)], dtype=object)
    else:
        ids = np.asarray(unit_ids, dtype=object)
        if len(ids) != n:
            raise ValueError(f"unit_ids has {len(ids)} entries, expected {n}")
    return xy, adjacency, attributes, ids


def _tolerance_vector(tolerance, tolerances, columns) -> np.ndarray:
    tol = float(tolerance)
    if not 0 <= tol < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    out = np.full(len(columns), tol)
    for name, value in (tolerances or {}).items():
        if name not in list(columns):
            raise ValueError(f"tolerances names unknown attribute {name!r}")
        if not 0 <= float(value) < 1:
            raise ValueError(f"tolerances[{name!r}] must be in [0, 1), got {value}")
        out[list(columns).index(name)] = float(value)
    return out


def _target_matrix(targets, values: np.ndarray, k: int) -> np.ndarray:
    if targets is None:
        return np.tile(values.sum(0) / k, (k, 1))
    t = np.asarray(targets, dtype=float)
    if t.shape != (k, values.shape[1]):
        raise ValueError(f"targets must have shape ({k}, {values.shape[1]}), got {t.shape}")
    if not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError("targets must be finite and positive")
    return t


def default_territory_names(k: int) -> list[str]:
    """The names of K unnamed territories: ``T01..TK`` (never the 0-based index)."""
    width = max(2, len(str(k)))
    return [f"T{t + 1:0{width}d}" for t in range(k)]


def _territory_names(territory_names, labels: np.ndarray, k: int) -> list[str]:
    """K names: ``territory_names`` (K names, or a function of the final labels and K
    returning them), else :func:`default_territory_names`."""
    if territory_names is None:
        return default_territory_names(k)
    names = territory_names(labels, k) if callable(territory_names) else territory_names
    names = [str(name) for name in names]
    if len(names) != k:
        raise ValueError(f"territory_names has {len(names)} names, expected {k}")
    if len(set(names)) != k:
        raise ValueError("territory_names must be distinct: two territories share a name")
    return names


def pct_text(x: float) -> str:
    """A fraction as a percentage for messages: 0.05 -> "5%", 0.123 -> "12.3%"."""
    return f"{100 * x:.1f}%".replace(".0%", "%")


def _beyond_text(x: float, tau: float) -> str:
    """``x`` as a percentage with enough digits to differ from the tolerance ``tau``."""
    for digits in (1, 2, 3, 4):
        text = f"{100 * x:.{digits}f}%"
        if text != f"{100 * tau:.{digits}f}%":
            return text.replace(".0%", "%") if digits == 1 else text
    return f"{100 * x:.6f}%"


# ---------------------------------------------------------------- evaluation


def imbalance_blocks(
    labels: np.ndarray,
    totals: np.ndarray,
    targets: np.ndarray,
    tau: np.ndarray,
    graph: Graph,
    names: list[str],
    columns: list[str],
) -> list[str]:
    """Plain-word diagnosis of violated territories that have nobody to trade with.

    Territories near their limits (``|dev| >= tau / 2``) with the same signs
    on every attribute that touch each other form a *block*. A block holding
    a violated territory is reported when its own units cannot balance it:
    its joint deviation is beyond a tolerance, or it is over on one attribute
    and under on another by more than a reshuffle inside it can fix, which
    is when ``(r - 1) / (r + 1)`` exceeds the tolerance, with ``r`` the ratio
    of the two joint totals to their targets. The message names the block,
    its joint deviation, that tolerance, and the neighbours that deviate the
    other way (the only ones a trade can go through). Pure function of the
    alignment.
    """
    k, m = totals.shape
    dev = totals / np.maximum(targets, 1e-300) - 1
    violated = np.abs(dev) > tau + 1e-9
    if not violated.any():
        return []
    pattern = np.where(np.abs(dev) >= 0.5 * tau, np.sign(dev), 0.0)
    nbrs = territory_neighbours(graph, labels, k)
    key = [tuple(r) for r in pattern.tolist()]
    seen = np.zeros(k, dtype=bool)
    out: list[str] = []
    for t0 in np.flatnonzero(violated.any(axis=1)).tolist():
        if seen[t0]:
            continue
        block, stack = [t0], [t0]
        seen[t0] = True
        while stack:  # grow over neighbours with the same saturation signs
            t = stack.pop()
            for u in nbrs[t]:
                if not seen[u] and key[u] == key[t0]:
                    seen[u] = True
                    block.append(u)
                    stack.append(u)
        block.sort()
        joint = totals[block].sum(0) / targets[block].sum(0) - 1
        hi, lo = int(np.argmax(joint)), int(np.argmin(joint))
        ratio = (1 + joint[hi]) / (1 + joint[lo]) if joint[hi] > 0 > joint[lo] else 1.0
        need = (ratio - 1) / (ratio + 1)  # tolerance at which the block balances alone
        mixed = need > min(tau[hi], tau[lo]) + 1e-9
        bad = violated[block].any(axis=0)
        sign = np.sign(dev[block][:, bad].sum(axis=0))
        around = sorted(set().union(*(nbrs[t] for t in block)) - set(block))
        helpers = [names[u] for u in around if (np.sign(dev[u, bad]) != sign).any()]
        if not mixed and (helpers or (np.abs(joint) <= tau + 1e-9).all()):
            continue  # an ordinary surplus or shortfall with somewhere to go
        parts = [f"{c} {'+' if d >= 0 else '-'}{pct_text(abs(d))}"
                 for c, d in zip(columns, joint, strict=True)]
        shown = ", ".join(names[t] for t in block[:8]) + (
            f" and {len(block) - 8} more" if len(block) > 8 else "")
        one = len(block) == 1
        text = (f"{shown} ({len(block)} {'territory' if one else 'territories'}, "
                f"{int(np.isin(labels, block).sum())} units): {'' if one else 'together '}"
                f"{', '.join(parts)} of target")
        if mixed:
            text += (f"; {'its' if one else 'their'} own units balance {columns[hi]} and "
                     f"{columns[lo]} together only at a tolerance of ±{pct_text(need)} or more, "
                     "so part of the imbalance must be traded away")
        if helpers:
            text += (f"; {len(helpers)} of the {len(around)} territories around "
                     f"{'it' if one else 'them'} deviate the other way "
                     f"({', '.join(helpers[:5])}{', ...' if len(helpers) > 5 else ''}) and can "
                     "take it")
        else:
            text += (f"; none of the {len(around)} territories around "
                     f"{'it' if one else 'them'} deviates the other way")
        text += (". If this persists: widen a tolerance, change the number of territories, "
                 "or balance fewer attributes")
        out.append(text)
    return out


def _diameter_km(pts: np.ndarray) -> float:
    return span_m(pts) / 1000.0


def territory_elongation(diameter_km, areas, lab: np.ndarray, k: int):
    """Territory area (km²) and span over the diameter of the circle with that area."""
    diameter_km = np.asarray(diameter_km, dtype=float)
    unit_area = np.asarray(areas, dtype=float)
    if unit_area.shape != lab.shape or not np.isfinite(unit_area).all() or (unit_area < 0).any():
        raise ValueError(f"areas must be {len(lab)} finite, non-negative unit areas (km²)")
    area = np.bincount(lab, weights=unit_area, minlength=k + 1)[:k]
    circle = 2.0 * np.sqrt(area / np.pi)
    return area, np.where(circle > 0, diameter_km / np.maximum(circle, 1e-300), 1.0)


def evaluate_alignment(
    labels,
    xy,
    adjacency,
    attributes: pd.DataFrame,
    tolerance: float = 0.05,
    tolerances: Mapping[str, float] | None = None,
    current_labels=None,
    polygons=None,
    *,
    targets: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    unit_ids=None,
    n_territories: int | None = None,
    run_time_s: float | None = None,
    max_radius_km: float | None = None,
    areas=None,
    max_elongation: float | None = None,
    territory_names: Sequence[str] | None = None,
) -> TerritoryReport:
    """Quality report for any alignment (designed or the company's current one).

    Parameters
    ----------
    labels
        Territory of each unit, ``0..K-1``; ``-1`` marks an unassigned unit.
    xy
        (n, 2) unit coordinates in metres.
    adjacency
        Symmetric (n, n) 0/1 adjacency, sparse or dense.
    attributes
        (n, m) non-negative numeric attributes; the first one weights dispersion
        and medoids and measures disruption.
    tolerance
        Tolerance of every attribute not named in ``tolerances``.
    tolerances
        Per-attribute tolerances ``{attribute: tau}`` that override ``tolerance``.
    current_labels
        Current alignment, to count moves and disruption.
    polygons
        Optional shapely geometries (sequence or GeoSeries) in a projected CRS,
        one per unit, to report Polsby-Popper compactness per territory.
    targets
        (K, m) per-territory targets; default the mean over territories.
    centres
        Unit index of each territory's centre; default the weighted medoid.
    unit_ids
        Names used in violation messages; default the unit index.
    n_territories
        K; default ``labels.max() + 1``.
    run_time_s
        Stored in ``overall["run_time_s"]``.
    max_radius_km
        Maximum allowed distance (km) from a unit to its territory's centre;
        territories with units farther away are listed in the violations.
    areas
        Optional area of each unit (km²): adds each territory's ``area_km2``
        and ``elongation``, its span (``diameter_km``) over the diameter of a
        circle of the same area (1 for a disc, about 1.13 for a square;
        snakes score high), and their median and maximum to ``overall``.
    max_elongation
        With ``areas``: territories more elongated than this are listed in the
        violations (``overall["shape_over_limit"]`` counts them).
    territory_names
        K distinct names, used in the table's ``name`` column, the violations
        and the diagnosis; default ``T01..TK``.

    Returns
    -------
    TerritoryReport
    """
    xy, adjacency, attributes, ids = _validate_inputs(xy, adjacency, attributes, unit_ids)
    n = len(xy)
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({n},)")
    k = int(n_territories if n_territories is not None else labels.max() + 1)
    if k < 1 or labels.max() >= k or labels.min() < -1:
        raise ValueError(f"labels must lie in 0..{k - 1} (or -1 for unassigned)")
    cols = list(attributes.columns)
    tau = _tolerance_vector(tolerance, tolerances, cols)
    values = attributes.to_numpy(dtype=float)
    tgt = _target_matrix(targets, values, k)
    cur = None
    if current_labels is not None:
        cur = np.asarray(current_labels)
        if cur.shape != (n,):
            raise ValueError(f"current_labels must have shape ({n},)")
    assigned = labels >= 0
    lab = np.where(assigned, labels, k)  # k = "unassigned" bucket
    totals = np.zeros((k + 1, len(cols)))
    np.add.at(totals, lab, values)
    totals = totals[:k]
    dev = totals / tgt - 1
    counts = np.bincount(lab, minlength=k + 1)[:k]
    graph = Graph.from_csr(adjacency)
    _, comp = components_by_label(graph, lab)
    n_comp = np.array([len(np.unique(comp[lab == t])) for t in range(k)])
    if centres is None:
        centres = weighted_medoids(xy, values[:, 0], lab, k + 1, {})[:k]
    else:
        centres = np.asarray(centres, dtype=np.int64)
        if centres.shape != (k,):
            raise ValueError(f"centres must have shape ({k},)")
    w0 = values[:, 0]
    disp = np.zeros(k)
    diam = np.zeros(k)
    reach = np.zeros(k)
    travel = np.zeros(k)  # mean distance from the centre, weighted by workload (else w0)
    travel_w = values[:, cols.index("workload")] if "workload" in cols else w0
    n_far = np.zeros(k, dtype=np.int64)
    for t in range(k):
        members = np.flatnonzero(lab == t)
        if len(members) == 0 or centres[t] < 0:
            continue
        dist = np.linalg.norm(xy[members] - xy[centres[t]], axis=1)
        disp[t] = float(w0[members] @ dist)
        w = travel_w[members]
        travel[t] = float(w @ dist / w.sum() if w.sum() > 0 else dist.mean()) / 1000.0
        diam[t] = _diameter_km(xy[members])
        reach[t] = float(dist.max()) / 1000.0
        if max_radius_km is not None:
            n_far[t] = int((dist > 1000.0 * float(max_radius_km) + 1e-6).sum())
    names = _territory_names(territory_names, labels, k)
    frame = {"territory": np.arange(k), "name": names, "n_units": counts}
    frame["centre"] = [ids[c] if c >= 0 else None for c in centres]
    for j, col in enumerate(cols):
        frame[f"{col}_total"] = totals[:, j]
        frame[f"{col}_target"] = tgt[:, j]
        frame[f"{col}_deviation"] = dev[:, j]
    frame["n_components"] = n_comp
    frame["contiguous"] = n_comp <= 1
    frame["dispersion"] = disp
    frame["diameter_km"] = diam
    frame["radius_km"] = reach
    frame["mean_distance_km"] = travel
    if areas is not None:
        frame["area_km2"], frame["elongation"] = territory_elongation(diam, areas, lab, k)
    if cur is not None:
        moved = (cur != labels) & assigned
        frame["moved_in"] = np.bincount(lab[moved], minlength=k + 1)[:k]
        cur_ok = moved & (cur >= 0) & (cur < k)
        frame["moved_out"] = np.bincount(cur[cur_ok], minlength=k)[:k]
    else:
        frame["moved_in"] = np.zeros(k, dtype=int)
        frame["moved_out"] = np.zeros(k, dtype=int)
    if polygons is not None:
        frame["polsby_popper"] = _polsby_popper(polygons, lab, k)
    table = pd.DataFrame(frame)

    overall: dict = {}
    absdev = np.abs(dev)
    for j, col in enumerate(cols):
        overall[f"max_abs_deviation_{col}"] = float(absdev[:, j].max())
        overall[f"mean_abs_deviation_{col}"] = float(absdev[:, j].mean())
    overall["balance_index"] = float(np.clip(100 * (1 - absdev.mean()), 0, 100))
    overall["contiguous"] = bool((n_comp <= 1).all())
    overall["n_noncontiguous"] = int((n_comp > 1).sum())
    overall["total_dispersion"] = float(disp.sum())
    overall["max_radius_km"] = float(reach.max()) if k else 0.0
    if areas is not None:
        overall["median_elongation"] = float(np.median(frame["elongation"]))
        overall["max_elongation"] = float(np.max(frame["elongation"]))
        if max_elongation is not None:
            overall["shape_over_limit"] = int((frame["elongation"] > max_elongation + 1e-9).sum())
    if cur is not None:
        moved = cur != labels
        overall["disruption_units_pct"] = float(100 * moved.mean())
        overall[f"disruption_{cols[0]}_pct"] = float(
            100 * w0[moved].sum() / max(w0.sum(), 1e-300)
        )
    else:
        overall["disruption_units_pct"] = 0.0
        overall[f"disruption_{cols[0]}_pct"] = 0.0
    overall["run_time_s"] = None if run_time_s is None else float(run_time_s)

    violations: list[str] = []
    tau_txt = [f"τ={pct_text(t)}" for t in tau]
    upper_max = (1 + tau) * tgt.max(axis=0)
    for j, col in enumerate(cols):
        for i in np.flatnonzero(values[:, j] > upper_max[j]).tolist():
            over = values[i, j] / tgt[:, j].max() - 1
            violations.append(
                f"unit {ids[i]} alone exceeds the {col} target by {pct_text(over)}: "
                f"{tau_txt[j]} cannot be met"
            )
    if (~assigned).any():
        violations.append(f"{int((~assigned).sum())} units are not assigned to any territory")
    for t in range(k):
        if counts[t] == 0:
            violations.append(f"{names[t]}: empty territory")
            continue
        for j, col in enumerate(cols):
            if absdev[t, j] > tau[j] + 1e-9:
                side = "over" if dev[t, j] > 0 else "under"
                violations.append(
                    f"{names[t]}: {col} {_beyond_text(abs(dev[t, j]), tau[j])} {side} target "
                    f"({tau_txt[j]})"
                )
        if n_comp[t] > 1:
            violations.append(f"{names[t]}: not contiguous ({n_comp[t]} separate pieces)")
        if max_elongation is not None and areas is not None \
                and frame["elongation"][t] > max_elongation + 1e-9:
            violations.append(
                f"{names[t]}: elongation {frame['elongation'][t]:.2f} over the shape limit of "
                f"{max_elongation:g} (span {diam[t]:,.0f} km)")
        if n_far[t]:
            violations.append(
                f"{names[t]}: {n_far[t]} units farther than {max_radius_km:g} km from the "
                f"centre (up to {reach[t]:.1f} km)"
            )
    overall["n_violations"] = len(violations)
    diagnosis = imbalance_blocks(np.where(assigned, labels, -1), totals, tgt, tau, graph, names,
                                 cols)
    return TerritoryReport(territories=table, overall=overall, violations=violations,
                           diagnosis=diagnosis)


def _polsby_popper(polygons, lab: np.ndarray, k: int) -> np.ndarray:
    import shapely

    geoms = np.asarray(getattr(polygons, "values", polygons), dtype=object)
    out = np.full(k, np.nan)
    for t in range(k):
        members = geoms[lab == t]
        if len(members) == 0:
            continue
        shape = shapely.union_all(members)
        if shape.length > 0:
            out[t] = 4 * np.pi * shape.area / shape.length**2
    return out


# ---------------------------------------------------------------- bounds


def rebalance_lower_bound(
    current_labels,
    attributes: pd.DataFrame,
    n_territories: int | None = None,
    tolerance: float = 0.05,
    tolerances: Mapping[str, float] | None = None,
    *,
    targets: np.ndarray | None = None,
    movable=None,
) -> dict:
    """Provable lower bounds on the disruption of any balanced rebalance.

    Every unit that changes territory leaves exactly one territory and enters
    exactly one. A territory over its upper bound ``(1 + tau) T`` on attribute
    ``a`` must lose units carrying at least its surplus of ``a``, so at least
    as many units as its largest units (of ``a``) needed to cover the surplus;
    a territory under ``(1 - tau) T`` must gain at least as many units as the
    largest units outside it needed to cover its deficit. Hence

    ``moved >= max(sum_k max_a out_ka, sum_k max_a in_ka)``,

    and the moved amount of attribute ``a`` is at least
    ``max(sum_k surplus_ka, sum_k deficit_ka)``. The bounds ignore contiguity
    and geography, so they hold for every alignment that meets the balance
    (contiguous or not); the true minimum can be higher.

    Parameters
    ----------
    current_labels
        Current territory of each unit, ``0..K-1``.
    attributes
        (n, m) non-negative attributes.
    n_territories
        K; default ``current_labels.max() + 1``.
    tolerance, tolerances
        One tau for all attributes, and ``{attribute: tau}`` overrides.
    targets
        (K, m) targets; default the mean.
    movable
        Optional boolean mask of units allowed to move (locked units and fixed
        centres cannot, which makes the bound tighter).

    Returns
    -------
    dict
        ``units`` (count), ``units_pct``, ``<a>_pct`` for every attribute (share of
        its total that must move), and ``per_territory`` (a DataFrame with
        ``out_units`` and ``in_units`` per territory).
    """
    cur = np.asarray(current_labels)
    values = attributes.to_numpy(dtype=float)
    n, m = values.shape
    k = int(n_territories if n_territories is not None else cur.max() + 1)
    if cur.shape != (n,) or cur.min() < 0 or cur.max() >= k:
        raise ValueError(f"current_labels must be integers in 0..{k - 1}, one per unit")
    cols = list(attributes.columns)
    tau = _tolerance_vector(tolerance, tolerances, cols)
    tgt = _target_matrix(targets, values, k)
    mov = np.ones(n, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
    totals = np.zeros((k, m))
    np.add.at(totals, cur, values)
    surplus = np.maximum(totals - (1 + tau) * tgt, 0.0)
    deficit = np.maximum((1 - tau) * tgt - totals, 0.0)
    out_units = np.zeros(k, dtype=np.int64)
    in_units = np.zeros(k, dtype=np.int64)

    def cover(pool: np.ndarray, need: float) -> int:
        if need <= 0:
            return 0
        c = np.cumsum(np.sort(pool)[::-1])
        j = int(np.searchsorted(c, need * (1 - 1e-12)))
        return j + 1 if j < len(c) else n + 1  # n + 1: cannot be covered at all

    for t in range(k):
        own = (cur == t) & mov
        other = (cur != t) & mov
        for a in range(m):
            out_units[t] = max(out_units[t], cover(values[own, a], surplus[t, a]))
            in_units[t] = max(in_units[t], cover(values[other, a], deficit[t, a]))
    units = int(min(max(out_units.sum(), in_units.sum()), n))
    result = {"units": units, "units_pct": 100.0 * units / n}
    for a, col in enumerate(cols):
        moved = max(surplus[:, a].sum(), deficit[:, a].sum())
        result[f"{col}_pct"] = float(100.0 * moved / max(values[:, a].sum(), 1e-300))
    result["per_territory"] = pd.DataFrame({"out_units": out_units, "in_units": in_units})
    return result


# ---------------------------------------------------------------- design


def giant_territories(values: np.ndarray, tgt: np.ndarray, tau: np.ndarray, hard: np.ndarray,
                      fixed: Mapping[int, int], lock: Mapping[int, int]
                      ) -> tuple[dict[int, int], np.ndarray]:
    """Units that alone exceed a territory's upper bound on a hard attribute, each given a
    territory of its own; and the targets with the rest shared by the other territories.

    No transfer can bring such a unit's territory within tolerance, so its
    territory's target becomes the unit's own value and the other K - g
    territories share what remains. The cut repeats while the lower shares make
    new giants. A giant locked elsewhere, or left without a free territory, is
    left as it is. Returns ``{unit: territory}`` and the (K, m) targets.
    """
    k = tgt.shape[0]
    taken = set(fixed) | set(lock.values())
    free = [t for t in range(k - 1, -1, -1) if t not in taken]
    giants: dict[int, int] = {}
    shares = tgt.copy()
    while True:
        rest = [t for t in range(k) if t not in giants.values()]
        upper = (1 + tau) * shares[rest].max(axis=0)
        over = np.flatnonzero((values[:, hard] > upper[hard]).any(axis=1))
        new = [int(u) for u in over[np.argsort(-(values[over][:, hard] / upper[hard]).max(1),
                                               kind="stable")] if int(u) not in giants]
        new = [u for u in new if u not in lock]
        if not new or len(rest) - len(new) < 1 or len(free) < len(new):
            return giants, shares
        for u in new:
            giants[u] = free.pop(0)
        cut = np.array(list(giants.values()))
        others = np.setdiff1d(np.arange(k), cut)
        held = values[list(giants)].sum(axis=0)
        floor = 1e-9 * np.maximum(tgt.mean(axis=0), 1e-300)
        shares = tgt.copy()
        shares[cut] = np.maximum(values[list(giants)], floor)
        shares[others] = np.maximum((tgt.sum(axis=0) - held) / len(others), floor)


def enclave_territories(adjacency, values: np.ndarray, tgt: np.ndarray, shares: np.ndarray,
                        tau: np.ndarray, hard: np.ndarray, giants: Mapping[int, int],
                        fixed: Mapping[int, int], lock: Mapping[int, int]
                        ) -> tuple[dict[int, np.ndarray], dict[int, int], np.ndarray]:
    """Pockets of units cut off behind giant units that cannot be balanced, each made a
    territory of its own; and the targets with the rest shared by the other territories.

    With the giant units taken out, the units behind them (Long Island behind
    New York City) form a component of the graph of their own. One short of a
    territory's lower bound on a hard attribute, yet worth one territory (half a
    share or more), can only be one territory below its share: its target becomes
    its own total, and the territories left share what remains. A smaller pocket
    joins a giant's territory beside it, whose target grows by the pocket's
    total. One worth two territories or more, or one with locked units, is left
    to the search. Returns ``{territory: units}`` of the pockets made territories,
    ``{unit: territory}`` for every unit placed, and the targets.
    """
    from scipy.sparse.csgraph import connected_components

    k, n = tgt.shape[0], values.shape[0]
    if not giants:
        return {}, {}, shares
    keep = np.ones(n, dtype=bool)
    keep[list(giants)] = False
    idx = np.flatnonzero(keep)
    csr = sp.csr_matrix(adjacency)
    n_comp, comp = connected_components(csr[idx][:, idx], directed=False)
    totals = np.zeros((n_comp, values.shape[1]))
    np.add.at(totals, comp, values[idx])
    main = int(np.argmax(totals[:, hard].sum(axis=1)))
    taken = set(fixed) | set(lock.values())
    free = [t for t in range(k - 1, -1, -1) if t not in taken]
    rest = [t for t in range(k) if t not in giants.values()]
    share = shares[rest].max(axis=0)
    out = shares.copy()
    enclaves: dict[int, np.ndarray] = {}
    attached: dict[int, int] = {}
    for c in range(n_comp):
        units = idx[comp == c]
        worth = totals[c][hard] / np.maximum(share[hard], 1e-300)  # territories' worth
        if c == main or not (worth < 1 - tau[hard]).any() or any(u in lock for u in units):
            continue
        if round(worth.max()) == 0:  # under half a territory: it joins a giant beside it
            beside = sorted(giants[int(g)] for g in csr[units].indices if int(g) in giants)
            attached.update({int(u): beside[0] for u in units})
            out[beside[0]] += totals[c]
        elif round(worth.max()) == 1 and free and len(rest) - len(enclaves) > 1:
            enclaves[free.pop(0)] = units
        # worth two territories or more: the search has to find them
    if not enclaves and not attached:
        return {}, {}, shares
    cut = list(giants.values()) + list(enclaves)
    others = np.setdiff1d(np.arange(k), cut)
    floor = 1e-9 * np.maximum(tgt.mean(axis=0), 1e-300)
    for t, units in enclaves.items():
        out[t] = np.maximum(values[units].sum(axis=0), floor)
        attached.update({int(u): t for u in units})
    held = out[cut].sum(axis=0)
    out[others] = np.maximum((tgt.sum(axis=0) - held) / len(others), floor)
    return enclaves, attached, out


def _enclave_lines(graph, labels, giants, enclaves, values, tgt, hard, ids, cols, names
                   ) -> list[str]:
    """One diagnosis line per pocket cut off behind giant units (:func:`enclave_territories`)."""
    if not enclaves:
        return []
    giant_of = {t: u for u, t in giants.items()}
    nbrs = territory_neighbours(graph, labels, tgt.shape[0])
    ordinary = [t for t in range(tgt.shape[0]) if t not in giant_of and t not in enclaves]
    lines = []
    for t, units in sorted(enclaves.items()):
        via = ", ".join(str(ids[giant_of[b]]) for b in sorted(nbrs[t]) if b in giant_of)
        ratio = values[units].sum(axis=0) / np.maximum(tgt[ordinary[0]], 1e-300)
        j = int(np.flatnonzero(hard)[np.argmin(ratio[hard])])
        lines.append(
            f"{names[t]} ({len(units)} unit{'s' * (len(units) > 1)}) is cut off behind "
            f"giant unit {via}: it "
            f"holds {ratio[j]:.2f}× a territory's share of {cols[j]}, so it is a territory of "
            "its own (its target is its own total) and the other territories share the rest")
    return lines


def _behind_giants(graph, labels, k, giants, ids, table, cols, tau, hard
                   ) -> dict[int, tuple[str, list[str]]]:
    """Out-of-balance territories whose only neighbours are giant territories:
    ``{territory: (the giants' ids, the hard attributes out of tolerance)}``."""
    giant_of = {t: u for u, t in giants.items()}
    nbrs = territory_neighbours(graph, labels, k) if giants else []
    out = {}
    for t in range(k if giants else 0):
        if t in giant_of or not nbrs[t] or not nbrs[t] <= set(giant_of):
            continue
        off = [c for j, c in enumerate(cols)
               if hard[j] and abs(table[f"{c}_deviation"].iloc[t]) > tau[j] + 1e-9]
        if off:
            out[t] = (", ".join(str(ids[giant_of[b]]) for b in sorted(nbrs[t])), off)
    return out


def _check_mapping(name: str, mapping, n: int, k: int, key_is_territory: bool) -> dict[int, int]:
    out: dict[int, int] = {}
    for key, value in (mapping or {}).items():
        t, u = (key, value) if key_is_territory else (value, key)
        if not (0 <= int(t) < k):
            raise ValueError(f"{name}: territory {t} is outside 0..{k - 1}")
        if not (0 <= int(u) < n):
            raise ValueError(f"{name}: unit index {u} is outside 0..{n - 1}")
        if key_is_territory:
            out[int(t)] = int(u)
        else:
            out[int(u)] = int(t)
    return out


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
        Wall-clock budget over all starts; the best alignment so far is returned.
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
        (:mod:`territory.models._territory_flow`) followed by the local search and the
        chains, run while the balance is still violated; the best alignment
        seen is kept (0 = off).
    lns_tries
        At most this many destroy-and-repair tries on groups of 2-8 adjacent
        territories while the balance is still violated
        (:mod:`territory.models._territory_lns`; 0 = off). In a rebalance (without
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
        units are moved or swapped (:func:`_territory_shape.shape_repair`) and
        the worst territories re-designed with a neighbour or two
        (:func:`_territory_shape.shape_lns`, at most ``shape_tries`` groups),
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
    t0 = time.perf_counter()
    xy, adjacency, attributes, ids = _validate_inputs(xy, adjacency, attributes, unit_ids)
    n = len(xy)
    if isinstance(n_territories, bool) or not isinstance(n_territories, int | np.integer):
        raise ValueError(f"n_territories must be an integer, got {n_territories!r}")
    k = int(n_territories)
    if not 1 <= k <= n:
        raise ValueError(f"n_territories must be between 1 and the number of units ({n}), got {k}")
    if int(n_starts) < 1:
        raise ValueError(f"n_starts must be at least 1, got {n_starts}")
    if move_budget is not None and not 0 <= float(move_budget) <= 1:
        raise ValueError(f"move_budget must be in [0, 1], got {move_budget}")
    if time_limit_s is not None and time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
    if max_radius_km is not None and not float(max_radius_km) > 0:
        raise ValueError(f"max_radius_km must be positive, got {max_radius_km}")
    if max_elongation is not None and not float(max_elongation) >= 1.0:
        raise ValueError(f"max_elongation must be at least 1, got {max_elongation}")
    unknown_soft = sorted(set(soft_attributes) - set(attributes.columns))
    if unknown_soft:
        raise ValueError(f"soft_attributes {unknown_soft} are not columns of attributes")
    if areas is not None:
        areas = np.asarray(areas, dtype=float)
        if areas.shape != (len(xy),) or not np.isfinite(areas).all() or (areas < 0).any():
            raise ValueError(f"areas must be {len(xy)} finite, non-negative unit areas (km²)")
    shaped = areas is not None and max_elongation is not None
    radius = None if max_radius_km is None else 1000.0 * float(max_radius_km)
    cols = list(attributes.columns)
    tau = _tolerance_vector(tolerance, tolerances, cols)
    values = attributes.to_numpy(dtype=float)
    tgt = _target_matrix(targets, values, k)
    fixed = _check_mapping("fixed_centres", fixed_centres, n, k, True)
    lock = _check_mapping("locked", locked, n, k, False)
    if len(set(fixed.values())) < len(fixed):
        raise ValueError("fixed_centres: the same unit is the centre of two territories")
    for t, u in fixed.items():
        if u in lock and lock[u] != t:
            raise ValueError(
                f"fixed_centres/locked: unit {u} is locked to {lock[u]} but is the centre of {t}"
            )
        lock[u] = t
    cur = None
    if current_labels is not None:
        cur = np.asarray(current_labels)
        if cur.shape != (n,) or not np.issubdtype(cur.dtype, np.integer):
            raise ValueError(f"current_labels must be an integer array of shape ({n},)")
        if cur.min() < 0 or cur.max() >= k:
            raise ValueError(f"current_labels must lie in 0..{k - 1}")
    hard = np.array([c not in set(soft_attributes) for c in cols])
    giants: dict[int, int] = {}
    enclaves: dict[int, np.ndarray] = {}
    if targets is None and cur is None:
        giants, tgt = giant_territories(values, tgt, tau, hard, fixed, lock)
        for u, t in giants.items():
            fixed[t], lock[u] = u, t
        enclaves, placed, tgt = enclave_territories(
            adjacency, values, _target_matrix(targets, values, k), tgt, tau, hard, giants,
            fixed, lock)
        lock.update(placed)

    graph = Graph.from_csr(adjacency)
    forced = np.full(n, -1, dtype=np.int64)
    for u, t in lock.items():
        forced[u] = t
    movable = forced < 0
    anchors = np.full(k, -1, dtype=np.int64)
    for t, u in fixed.items():
        anchors[t] = u
    presets = dict(fixed)  # territories with locked units start from one of them
    for t in sorted(set(lock.values()) - set(fixed)):
        units = np.array(sorted(u for u, tt in lock.items() if tt == t))
        mid = xy[units].mean(0)
        presets[t] = int(units[np.argmin(((xy[units] - mid) ** 2).sum(1))])
    deadline = t0 + (time_limit_s if time_limit_s is not None else np.inf)
    max_chains = n // 2 if max_chains is None else int(max_chains)
    theta_design = np.zeros_like(tau)
    root = np.random.default_rng(seed)
    max_restarts = 0 if cur is not None else int(max_restarts)
    # a unit alone above every upper bound: no transfer can remove that violation
    giant = bool((values > (1 + tau) * tgt.max(axis=0)).any())
    start_seeds = root.integers(0, 2**32 - 1, size=int(n_starts) + max_restarts)

    def score(state: SearchState) -> tuple[float, float, float, float]:
        """(hard violation, shape excess, soft violation, dispersion), compared in order."""
        excess = np.maximum(np.abs(state.totals / tgt - 1) - tau, 0.0)
        v = float(excess[:, hard].sum())
        c = state.centres
        d = np.linalg.norm(xy - xy[np.maximum(c[state.labels], 0)], axis=1)
        if radius is not None:  # units out of reach count like a balance violation
            v += float((d > radius).sum())
        shape = 0.0
        if shaped:
            elong = territory_elongations(state.labels, xy, areas, k)
            shape = float(np.maximum(elong - max_elongation, 0.0).sum())
        return (v, shape, float(excess[:, ~hard].sum()), float(values[:, 0] @ d))

    def choice(state: SearchState) -> tuple[float, float, float, float]:
        """A start's rank: :func:`score`, with ties broken on the largest span times the
        dispersion (compact on average and without one long territory)."""
        v, shape, soft, dispersion = score(state)
        return (v, shape, soft, dispersion * largest_span_m(state.labels, xy, k))

    def repairable(state: SearchState) -> bool:
        """A hard violation remains outside the territories cut off behind giant units."""
        if score(state)[0] <= 1e-12:
            return False
        if not giants:
            return True
        excess = np.maximum(np.abs(state.totals / tgt - 1) - tau, 0.0)[:, hard].sum(axis=1)
        bad = set(np.flatnonzero(excess > 1e-12).tolist()) - set(giants.values())
        nbrs = territory_neighbours(graph, state.labels, k)
        return radius is not None or any(not nbrs[t] <= set(giants.values()) for t in bad)

    def solvers(rng):
        """The group re-designers for balance and for shape, drawing seeds from ``rng``."""
        common = (xy, adjacency, values, tgt, tau, cols, fixed, lock, rng, deadline, max_chains,
                  max_radius_km)
        soft = tuple(soft_attributes)
        return (_group_solver(*common, home=cur, soft=soft),
                _group_solver(*common, areas=areas, max_elongation=max_elongation, soft=soft))

    best: SearchState | None = None
    best_score = (np.inf, np.inf)
    if cur is not None:
        base = cur.copy()
        base[forced >= 0] = forced[forced >= 0]
        rng = np.random.default_rng(start_seeds[0])
        centres = weighted_medoids(xy, values[:, 0], base, k, fixed)
        state = SearchState.build(base, values, k, centres)
        w0 = values[:, 0]
        budget = np.inf if move_budget is None else float(move_budget) * w0.sum()
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

        if move_budget is None:
            # ejection chains only, ranked by violation then units away from home;
            # rounds of at most max_chains each, while a round still lowers the violation
            v_prev = np.inf
            while time.perf_counter() < deadline:
                stats = chain_repair(
                    state, graph, values, tgt, tau, movable, home=cur, deadline=deadline,
                    max_chains=max_chains, move_weight=move_cost * 20, xy=xy, radius=radius,
                )
                if stats["violation"] > v_prev - 1e-9 or stats["violation"] <= 1e-12:
                    break
                v_prev = stats["violation"]
            undo_moves(state, graph, values, tgt, tau, movable, cur)
            if lns_tries and not giant and score(state)[0] > 1e-12:
                state = _group_repair(state, graph, xy, values, tgt, tau, fixed, rng, deadline,
                                      lns_tries, solvers(rng)[0], score)
                undo_moves(state, graph, values, tgt, tau, movable, cur)
        else:
            lagrangian_search(
                state, graph, values, tgt, tau, xy, movable, rng,
                theta_frac=0.5, compact_weight=0.0, home=cur, move_cost=move_cost,
                max_iter=max_iter, deadline=deadline, budget_ok=budget_ok, max_radius=radius,
            )
        state.centres = weighted_medoids(xy, values[:, 0], state.labels, k, fixed)
        if radius is not None:
            radius_repair(state, graph, values, tgt, tau, xy, movable, radius)
        best = state
    else:
        def budget_ok(units: list[int], b: int) -> bool:
            return True

        def construct(start_no: int) -> tuple[SearchState, np.random.Generator]:
            """One start: seeds, allocation, contiguity, local search and chains."""
            s = start_seeds[start_no]
            rng = np.random.default_rng(s)
            if start_no % 2 == 0:  # even starts bisect, odd ones allocate
                labels = bisect_partition(
                    xy, values, tgt, adjacency, fixed, rotation=float(rng.uniform(0, np.pi)),
                )
                labels[forced >= 0] = forced[forced >= 0]
                centres = _valid_centres(
                    xy, values, labels, k, fixed, np.zeros(k, dtype=np.int64)
                )
                lp_iter = 0
            else:
                centres = kmeanspp_seeds(xy, values[:, 0], k, rng, presets, forced >= 0)
                labels = None
                lp_iter = _ALLOCATION_ROUNDS
            for _ in range(lp_iter):
                pin = forced.copy()
                pin[centres] = np.arange(k)
                pin[forced >= 0] = forced[forced >= 0]
                labels = price_allocate(xy, values, tgt, centres, pin, _NEAREST_CENTRES)
                new_centres = weighted_medoids(xy, values[:, 0], labels, k, fixed)
                new_centres = np.where(new_centres >= 0, new_centres, centres)
                if np.array_equal(new_centres, centres):
                    break
                centres = new_centres
            anchor_now = np.where(anchors >= 0, anchors, centres)
            labels = repair_contiguity(
                graph, labels, values, tgt, theta_design, anchor_now, forced >= 0
            )
            centres = _valid_centres(xy, values, labels, k, fixed, centres)
            state = SearchState.build(labels, values, k, centres)
            stuck_at = np.inf  # the violation at which ejection chains last made no headway
            for _round in range(3):
                for _alt in range(2):  # local search, then ejection chains, alternated
                    lagrangian_search(
                        state, graph, values, tgt, tau, xy, movable, rng,
                        theta_frac=0.0, compact_weight=compactness_weight,
                        max_iter=max_iter, deadline=deadline, recentre=25, recentre_keep=fixed,
                        max_radius=radius,
                    )
                    v_before = float(violation(state.totals / tgt - 1, tau).sum())
                    if v_before <= 1e-12 or v_before > stuck_at - 1e-3:
                        break  # balanced, or chains already failed from here
                    stats = chain_repair(
                        state, graph, values, tgt, tau, movable, deadline=deadline,
                        max_chains=max_chains, xy=xy, radius=radius,
                    )
                    if stats["violation"] <= 1e-12 or stats["violation"] > v_before - 1e-3:
                        stuck_at = stats["violation"]
                        break
                compact_search(
                    state, graph, values, tgt, tau, xy, movable, rng,
                    max_iter=max_iter, deadline=deadline, budget_ok=budget_ok, max_radius=radius,
                )
                new_centres = _valid_centres(xy, values, state.labels, k, fixed, state.centres)
                if np.array_equal(new_centres, state.centres) or time.perf_counter() > deadline:
                    break
                state.centres = new_centres
            return state, rng

        def polish(state: SearchState, rng: np.random.Generator) -> SearchState:
            """The costly phases: flows and group re-designs while a hard violation is
            left, then the shape limit and the radius."""
            if flow_rounds and not giant and repairable(state):
                state = _flow_polish(
                    state, graph, values, tgt, tau, xy, movable, rng, fixed, radius, deadline,
                    flow_rounds, max_iter, max_chains, compactness_weight, score,
                )
            solve, shape_solve = solvers(rng)
            if lns_tries and not giant and repairable(state):
                state = _group_repair(state, graph, xy, values, tgt, tau, fixed, rng, deadline,
                                      lns_tries, solve, score)
            if shaped:
                state = _shape_polish(state, graph, values, tgt, tau, hard, xy, areas, movable,
                                      max_elongation, shape_solve, shape_tries, fixed, score)
            span_descent(state, graph, values, tgt, tau, xy, movable, hard, areas=areas,
                         max_elongation=max_elongation if shaped else None)
            if radius is not None:
                radius_repair(state, graph, values, tgt, tau, xy, movable, radius)
            return state

        # every start is built; the costly phases run on the best-ranked one, and on the
        # second when the first still breaks a hard rule or the shape limit
        built = []
        for start_no in range(int(n_starts)):
            if built and time.perf_counter() > deadline:
                break
            state, rng = construct(start_no)
            built.append((choice(state), start_no, state, rng))
        built.sort(key=lambda c: (c[0], c[1]))
        for rank, (_key, _no, state, rng) in enumerate(built[:2]):
            held = best_score[0] <= 1e-12 and best_score[1] <= 1e-12
            if rank and (held or time.perf_counter() > deadline):
                break
            state = polish(state, rng)
            sc = choice(state)
            if sc < best_score:
                best, best_score = state, sc
        for start_no in range(int(n_starts), int(n_starts) + max_restarts):
            if best_score[0] <= 1e-12 or time.perf_counter() > deadline:
                break  # extra restarts only while the balance is violated
            state = polish(*construct(start_no))
            sc = choice(state)
            if sc < best_score:
                best, best_score = state, sc

    assert best is not None
    labels = best.labels.astype(np.int64)
    centres = best.centres
    names = _territory_names(territory_names, labels, k)
    report = evaluate_alignment(
        labels, xy, adjacency, attributes, tolerances=dict(zip(cols, tau, strict=True)),
        current_labels=cur, targets=tgt, centres=centres, unit_ids=ids, n_territories=k,
        max_radius_km=max_radius_km, areas=areas, max_elongation=max_elongation,
        territory_names=names,
    )
    extra = [
        f"unit {ids[u]} is locked to {names[t]} but ended in {names[labels[u]]}"
        for u, t in lock.items()
        if labels[u] != t
    ]
    noncontig = report.territories.loc[~report.territories["contiguous"], "territory"].tolist()
    for t in noncontig:
        locked_here = [ids[u] for u, tt in lock.items() if tt == t]
        if locked_here:
            extra.append(
                f"{names[t]}: its locked units ({', '.join(map(str, locked_here[:5]))}) "
                "cannot be joined into one contiguous territory"
            )
    if cur is not None:
        bound = rebalance_lower_bound(cur, attributes, k,
                                      tolerances=dict(zip(cols, tau, strict=True)),
                                      targets=tgt, movable=movable)
        report.overall["disruption_units_lower_bound_pct"] = bound["units_pct"]
        report.overall[f"disruption_{cols[0]}_lower_bound_pct"] = bound[f"{cols[0]}_pct"]
    if cur is not None and move_budget is not None and report.overall.get("n_violations"):
        extra.append(f"move budget of {pct_text(move_budget)} of {cols[0]} limited the rebalance")
    report.violations.extend(extra)
    report.overall["n_violations"] = len(report.violations)
    report.overall["giant_units"] = [str(ids[u]) for u in giants]
    share = values.sum(axis=0) / k
    for u in giants:
        j = int(np.argmax(np.where(hard, values[u] / np.maximum(share, 1e-300), -np.inf)))
        ratio = values[u, j] / max(share[j], 1e-300)
        reps = int(np.ceil(ratio / (1 + tau[j]) - 1e-9))
        others = int((labels == labels[u]).sum()) - 1
        where = (f"it is {names[labels[u]]} on its own" if others == 0 else
                 f"its territory {names[labels[u]]} also holds {others} other units")
        report.diagnosis.insert(0, (
            f"unit {ids[u]} alone holds {ratio:.1f}× a territory's share of {cols[j]}: {where}, "
            f"and the other territories share the rest "
            f"(give it {reps} rep{'s' * (reps > 1)}, or split the unit)"))
    behind = _behind_giants(graph, labels, k, giants, ids, report.territories, cols, tau, hard)
    report.overall["cut_off_behind_giants"] = sorted(set(behind) | set(enclaves))  # indices
    report.diagnosis[len(giants):len(giants)] = [
        *_enclave_lines(graph, labels, giants, enclaves, values, tgt, hard, ids, cols, names),
        *(f"{names[t]} is cut off behind giant unit {via}: it borders no other "
          f"territory, so its {', '.join(off)} cannot be balanced"
          for t, (via, off) in sorted(behind.items()))]
    report.overall["run_time_s"] = time.perf_counter() - t0
    return DesignResult(labels=labels, centres=centres, report=report)


def _flow_polish(state, graph, values, tgt, tau, xy, movable, rng, fixed, radius, deadline,
                 rounds, max_iter, max_chains, compactness_weight, score):
    """Rounds of flow-planned transfers, local search and chains; the best state wins."""
    k = tgt.shape[0]
    best_labels, best_sc = state.labels.copy(), score(state)
    allowed = None
    if radius is not None:
        def allowed(units, a, b):
            return within_reach(xy, state.centres, units, np.full(len(units), a),
                                np.full(len(units), b), radius)
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            break
        flows = plan_flows(state, graph, values, tgt, cap_scale=0.5)
        if not flows or execute_flows(state, graph, values, tgt, movable, flows,
                                      allowed=allowed) == 0:
            break
        lagrangian_search(
            state, graph, values, tgt, tau, xy, movable, rng, theta_frac=0.0,
            compact_weight=compactness_weight, max_iter=max_iter, deadline=deadline,
            recentre=25, recentre_keep=fixed, max_radius=radius,
        )
        chain_repair(state, graph, values, tgt, tau, movable, deadline=deadline,
                     max_chains=max_chains, xy=xy, radius=radius)
        sc = score(state)
        if sc >= best_sc:  # a round that does not help ends the polish
            break
        best_labels, best_sc = state.labels.copy(), sc
        if sc[0] <= 1e-12:
            break
    if not np.array_equal(best_labels, state.labels):
        state = SearchState.build(best_labels, values, k, state.centres)
    state.centres = _valid_centres(xy, values, state.labels, k, fixed, state.centres)
    return state


def _group_solver(xy, adjacency, values, tgt, tau, cols, fixed, lock, rng, deadline, max_chains,
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
            time_limit_s=max(0.5, min(10.0, deadline - time.perf_counter())),
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


def _shape_polish(state, graph, values, tgt, tau, hard, xy, areas, movable, limit, solve,
                  tries, fixed, score):
    """Moves and swaps, then group re-designs, towards the shape limit; best state kept."""
    k = tgt.shape[0]
    trial = SearchState.build(state.labels, values, k, state.centres)
    shape_repair(trial, graph, values, tgt, tau, xy, areas, movable, limit, hard)
    if tries:
        labels, _ = shape_lns(trial.labels, graph, values, tgt, tau, xy, areas, limit, solve,
                              hard, max_tries=tries)
        trial = SearchState.build(labels, values, k, trial.centres)
        shape_repair(trial, graph, values, tgt, tau, xy, areas, movable, limit, hard)
    trial.centres = _valid_centres(xy, values, trial.labels, k, fixed, trial.centres)
    return trial if score(trial) < score(state) else state


def _group_repair(state, graph, xy, values, tgt, tau, fixed, rng, deadline, tries, solve,
                  score):
    """Destroy-and-repair groups of territories (:func:`lns_polish`) with ``solve``."""
    k = tgt.shape[0]
    labels, _stats = lns_polish(state.labels, graph, values, tgt, tau, solve, rng,
                                max_tries=tries, deadline=deadline)
    if np.array_equal(labels, state.labels):
        return state
    new = SearchState.build(labels, values, k, state.centres)
    new.centres = _valid_centres(xy, values, labels, k, fixed, state.centres)
    return new if score(new) < score(state) else state


def _valid_centres(xy, values, labels, k, fixed, old) -> np.ndarray:
    new = weighted_medoids(xy, values[:, 0], labels, k, fixed)
    return np.where(new >= 0, new, old)


class TerritoryDesigner:
    """Balanced, contiguous, compact territory design (scikit-learn style).

    The defaults are :class:`territory.models.config.TerritoryConfig`'s, so the
    Python API and a YAML config design the same territories.

    Parameters
    ----------
    n_territories
        Number of territories K.
    tolerance
        Default balance tolerance tau (fraction, e.g. 0.05).
    seed
        Seed for every random step (same seed, same alignment).
    max_iter
        Iteration cap of each local-search phase.
    time_limit_s
        Wall-clock budget of one fit.
    n_starts
        Independent starts; the best is kept.
    compactness_weight
        Weight of compactness in the balance phase.
    move_budget
        Rebalance mode: maximum share of the first attribute that may move.
    max_restarts
        Extra starts while the balance is violated (fresh design only).
    max_chains
        Ejection chains per repair call; default half the units.
    max_radius_km
        Optional maximum distance (km) from a unit to its territory's centre.
    flow_rounds
        Rounds of flow-planned transfers while a fresh design is still out of
        balance (0 = off).
    soft_attributes
        Attributes balanced as goals, not constraints (see :func:`design_territories`).
    max_elongation
        Shape limit, used when ``fit`` is given unit ``areas``.

    Attributes
    ----------
    labels_ : np.ndarray
        Territory of each unit, ``0..K-1``.
    centres_ : np.ndarray
        Unit index of each territory's centre.
    report_ : TerritoryReport
        Quality metrics and plain-word violations.
    """

    def __init__(
        self,
        n_territories: int = 50,
        tolerance: float = 0.05,
        seed: int = 42,
        max_iter: int = 1500,
        time_limit_s: float = 120.0,
        n_starts: int = 1,
        compactness_weight: float = 5.0,
        move_budget: float | None = None,
        max_restarts: int = 0,
        max_chains: int | None = None,
        max_radius_km: float | None = None,
        flow_rounds: int = 4,
        soft_attributes: Sequence[str] = (),
        max_elongation: float | None = 2.0,
    ) -> None:
        self.n_territories = n_territories
        self.tolerance = tolerance
        self.seed = seed
        self.max_iter = max_iter
        self.time_limit_s = time_limit_s
        self.n_starts = n_starts
        self.compactness_weight = compactness_weight
        self.move_budget = move_budget
        self.max_restarts = max_restarts
        self.max_chains = max_chains
        self.max_radius_km = max_radius_km
        self.flow_rounds = flow_rounds
        self.soft_attributes = soft_attributes
        self.max_elongation = max_elongation

    def fit(
        self,
        xy,
        adjacency,
        attributes: pd.DataFrame,
        *,
        unit_ids=None,
        current_labels=None,
        fixed_centres: Mapping[int, int] | None = None,
        locked: Mapping[int, int] | None = None,
        tolerances: Mapping[str, float] | None = None,
        targets: np.ndarray | None = None,
        areas=None,
        territory_names=None,
    ) -> TerritoryDesigner:
        """Design territories for the given units; see :func:`design_territories`."""
        result = design_territories(
            xy, adjacency, attributes, self.n_territories, self.tolerance, self.seed,
            unit_ids=unit_ids, current_labels=current_labels, fixed_centres=fixed_centres,
            locked=locked, tolerances=tolerances, targets=targets, max_iter=self.max_iter,
            time_limit_s=self.time_limit_s, n_starts=self.n_starts,
            compactness_weight=self.compactness_weight, move_budget=self.move_budget,
            max_restarts=self.max_restarts, max_chains=self.max_chains,
            max_radius_km=self.max_radius_km, flow_rounds=self.flow_rounds,
            soft_attributes=tuple(self.soft_attributes), areas=areas,
            max_elongation=self.max_elongation, territory_names=territory_names,
        )
        self.labels_ = result.labels
        self.centres_ = result.centres
        self.report_ = result.report
        return self
