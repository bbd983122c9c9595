"""Robust mode: publish the plan whose least sure territory is surest (issue #19).

A plan balanced within ±τ on the *estimated* potential is balanced in truth
only with some probability per territory (``p_within_tolerance``, see
:mod:`territory.models.potential_uncertainty`): a territory at the edge of
the tolerance, or one whose units share the error of one current rep, is
less sure than one at the mean. Robust mode (``territories.robust``) raises
the least sure territory's probability with the engine's public API only:

1. the price-of-balance ladder and its published plan, as without robust mode
   (:func:`territory.models.plans.price_of_balance`);
2. candidate designs of that plan with potential balanced to each of
   ``robust.fractions`` × its tolerance, the soft attributes at the published
   plan's soft tolerance (:func:`territory.models.alignment.propose_alignment`);
3. every plan scored on the same joint draws of potential: the smallest and
   the median probability over its territories of lying within ±τ (the
   configured tolerance, not the tightened one);
4. the candidate with the highest smallest probability is published if it is
   higher than the published plan's, and the candidate holds what that plan
   holds: no more hard violations (at the configured tolerances), no more
   territories over the shape limit and no more soft attributes' territories
   out of the soft tolerance. Otherwise the published plan stays.

The draws that choose are not the draws the report shows (the caller seeds
them apart), so the reported probability is not the one the choice was
fitted to. Pure: arrays and records in, a :class:`Design` out.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.models import alignment, plans
from territory.models.alignment import Design, Geography, Locks
from territory.models.config import BalanceRule, TerritoryConfig
from territory.models.potential_uncertainty import territory_balance


def tightened(config: TerritoryConfig, fraction: float) -> TerritoryConfig:
    """``config`` with potential's tolerance multiplied by ``fraction``."""
    rules = [BalanceRule(attribute=r.attribute, tolerance=r.tolerance * fraction, role=r.role)
             if r.attribute == "potential" else r for r in config.balance]
    return config.model_copy(update={"balance": rules, "tolerance": min(
        r.tolerance for r in rules if r.role == "hard")})


def sureness(draws: np.ndarray, labels: np.ndarray, tolerance: float) -> dict[str, float]:
    """The smallest and the median probability over the plan's territories of lying within
    ±``tolerance`` of the mean territory (``draws``: ``(n_draws, n_units)``, ``labels``:
    one territory per unit, in the draws' order)."""
    p = territory_balance(draws, pd.Series(labels), tolerance)["p_within_tolerance"]
    return {"min_p_within": float(p.min()), "median_p_within": float(p.median())}


def soft_out(design: Design, config: TerritoryConfig, soft_tolerance: float | None) -> int:
    """Territory-attribute pairs outside the soft tolerance, on the soft attributes."""
    if soft_tolerance is None:
        return 0
    return int(sum((design.summary[f"{a}_deviation"].abs() > soft_tolerance + 1e-9).sum()
                   for a in config.soft_attributes))


def at_configured_tolerance(candidate: Design, base: Design, tolerance: float) -> Design:
    """A candidate designed to a tightened potential tolerance, recorded against the
    configured one: potential's balance and giant-unit records within ``tolerance`` are
    dropped (with the diagnosis when no balance record is left), and the current
    alignment's measures are ``base``'s (the same alignment, at the configured tolerance)."""
    def kept(record) -> bool:
        return not (record.kind in ("balance", "giant_unit") and record.attribute == "potential"
                    and abs(record.deviation) <= tolerance + 1e-9)

    keep = [kept(r) for r in candidate.records]
    candidate.violations = [v for i, v in enumerate(candidate.violations)
                            if i >= len(keep) or keep[i]]
    candidate.records = [r for r, k in zip(candidate.records, keep, strict=True) if k]
    candidate.overall["n_violations"] = len(candidate.records)
    if not any(r.kind == "balance" for r in candidate.records):
        candidate.diagnosis = []
    candidate.current_overall, candidate.current_summary = (base.current_overall,
                                                            base.current_summary)
    candidate.auto_k = base.auto_k  # the same K (candidates keep it): the same reason
    return candidate


def robust_design(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    draws: np.ndarray,
    current: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> Design:
    """The published design in robust mode (see the module doc).

    ``draws`` are joint draws of every unit's potential, ``(n_draws, n_units)`` in
    ``geography.unit_ids``' order (:func:`territory.models.potential_uncertainty.score_draws`).
    The design's ``overall`` records ``balance_mode`` (``robust``: a candidate was
    published; ``estimate``: the plain plan stayed) and ``robust_candidates``: per plan
    scored, its potential tolerance, smallest and median probability, whether it was
    eligible, whether it was published and its CPU seconds.
    """
    if draws.shape[1] != len(geography.unit_ids):
        raise ValueError(f"draws have {draws.shape[1]} units; the geography has "
                         f"{len(geography.unit_ids)}")
    tolerance = config.tolerances["potential"]
    ladder = plans.price_of_balance(geography, measures, config, current, reps, columns, locks)
    base = plans.chosen_plan(ladder, config)
    plan_config = plans.with_soft_tolerance(config, base.soft_tolerance)
    # candidates keep the published plan's K (auto K would choose again at the tighter tolerance)
    fixed_k = plan_config.model_copy(update={"n_territories": base.design.n_territories
                                             or config.n_territories})
    unit_ids = geography.unit_ids

    def record(plan: plans.Plan, potential_tolerance: float) -> dict:
        labels = plan.design.proposed.reindex(unit_ids).to_numpy()
        return {"potential_tolerance": round(potential_tolerance, 9),
                **sureness(draws, labels, tolerance),
                "hard_violations": plan.hard_violations,
                "shape_over_limit": plan.shape_over_limit,
                "soft_out_of_tolerance": soft_out(plan.design, config, plan.soft_tolerance),
                "cpu_s": round(plan.seconds, 2)}

    rows = [{**record(base, tolerance), "eligible": True}]
    candidates = [base]
    for fraction in config.robust.fractions:
        t0 = time.process_time()
        design = at_configured_tolerance(
            alignment.propose_alignment(geography, measures, tightened(fixed_k, fraction),
                                        current, reps, columns, locks), base.design, tolerance)
        plan = plans.Plan(base.soft_tolerance, design, time.process_time() - t0,
                          plans.hard_violations(design, plan_config),
                          plans.shape_over_limit(design, plan_config),
                          label=f"robust (potential ±{100 * tolerance * fraction:.3g}%)")
        row = record(plan, tolerance * fraction)
        row["eligible"] = (row["hard_violations"] <= rows[0]["hard_violations"]
                           and row["shape_over_limit"] <= rows[0]["shape_over_limit"]
                           and row["soft_out_of_tolerance"] <= rows[0]["soft_out_of_tolerance"])
        rows.append(row)
        candidates.append(plan)
    best = max(range(len(rows)), key=lambda i: (rows[i]["eligible"], rows[i]["min_p_within"],
                                                 rows[i]["median_p_within"], -i))
    if rows[best]["min_p_within"] <= rows[0]["min_p_within"]:
        best = 0
    for i, row in enumerate(rows):
        row["published"] = i == best
    published = candidates[best]
    tried = [*ladder, *candidates[1:]]
    design = plans.publish(tried, published, geography, measures, config, current, reps,
                           columns, locks)
    design.overall["balance_mode"] = "robust" if best else "estimate"
    design.overall["robust_candidates"] = rows
    scored = {id(plan): row for plan, row in zip(candidates, rows, strict=True)}
    for name in ("plans", "comparison"):
        table = getattr(design, name)
        if table is not None:
            setattr(design, name, with_sureness(table, tried, scored))
    return design


def with_sureness(table: pd.DataFrame, tried: list[plans.Plan], scored: dict[int, dict]
                  ) -> pd.DataFrame:
    """``table`` (whose last rows are the plans ``tried``, in order) with each scored plan's
    smallest and median probability of lying within the potential tolerance."""
    table = table.copy()
    first = len(table) - len(tried)
    for key in ("min_p_within", "median_p_within"):
        values = [scored[id(plan)][key] if id(plan) in scored else np.nan for plan in tried]
        table[key] = [np.nan] * first + values
    return table
