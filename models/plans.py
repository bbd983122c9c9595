"""The price of balance: a small set of plans, and the one a run publishes.

Hard attributes (``balance`` rules with ``role: hard``) keep their
tolerance in every plan. Soft attributes are tried at the tolerances of
``frontier``, from loose to tight, starting unconstrained; each plan is a
full design (:func:`territory.models.alignment.propose_alignment`). The
ladder stops at the first plan that breaks a hard attribute: tighter soft
tolerances only trade more of the hard attribute away, at a higher cost.

The published plan is the one ``plan`` names (a soft tolerance), or with
``plan: best`` the tightest plan that holds every hard attribute and the
shape limit (``max_elongation``); failing that, the tightest that holds the
hard attributes with the fewest territories over the shape limit; failing
that, the one with the fewest hard violations. :func:`plans_table` puts
each plan's balance per attribute, shape, disruption and time side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.models import alignment
from territory.models.alignment import Design, Geography, Locks
from territory.models.config import BalanceRule, TerritoryConfig

UNCONSTRAINED = 0.99  # the loosest rung: a soft attribute is only measured


@dataclass
class Plan:
    soft_tolerance: float | None  # None: no soft attribute
    design: Design
    seconds: float
    hard_violations: int
    shape_over_limit: int = 0  # territories more elongated than max_elongation
    label: str | None = None  # a name beyond the soft tolerance (a robust candidate)


def soft_ladder(config: TerritoryConfig) -> list[float | None]:
    """Soft tolerances to try, loose to tight: unconstrained, then ``frontier`` down to each
    soft rule's own tolerance. ``[None]`` without a soft attribute."""
    if not config.soft_attributes:
        return [None]
    floor = min(r.tolerance for r in config.balance if r.role == "soft")
    tried = sorted({t for t in config.frontier if t >= floor} | {floor}, reverse=True)
    return [UNCONSTRAINED, *tried]


def with_soft_tolerance(config: TerritoryConfig, tolerance: float | None) -> TerritoryConfig:
    """``config`` with every soft attribute at ``tolerance`` (unchanged for None)."""
    if tolerance is None:
        return config
    rules = [BalanceRule(attribute=r.attribute, tolerance=tolerance, role="soft")
             if r.role == "soft" else r for r in config.balance]
    return config.model_copy(update={"balance": rules})


def hard_violations(design: Design, config: TerritoryConfig) -> int:
    """Territory-attribute pairs outside their tolerance, on the hard attributes; a
    territory cut off behind a giant unit is excused (the diagnosis names it)."""
    excused = design.overall.get("cut_off_behind_giants") or []
    summary = design.summary.drop(index=design.summary.index[excused])
    return int(sum((summary[f"{a}_deviation"].abs() > config.tolerances[a] + 1e-9).sum()
                   for a in config.hard_attributes))


def shape_over_limit(design: Design, config: TerritoryConfig) -> int:
    """Territories more elongated than ``config.max_elongation`` (0 without areas or limit)."""
    if config.max_elongation is None or "elongation" not in design.summary:
        return 0
    return int((design.summary["elongation"] > config.max_elongation + 1e-9).sum())


def price_of_balance(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> list[Plan]:
    """Design one plan per rung of :func:`soft_ladder` (see the module doc); ``locks``
    holds in every plan."""
    wanted = None if config.plan == "best" else float(config.plan)
    plans: list[Plan] = []
    for tolerance in soft_ladder(config):
        t0 = time.process_time()
        plan_config = with_soft_tolerance(config, tolerance)
        design = alignment.propose_alignment(geography, measures, plan_config, current, reps,
                                             columns, locks)
        broken = hard_violations(design, plan_config)
        plans.append(Plan(tolerance, design, time.process_time() - t0, broken,
                          shape_over_limit(design, plan_config)))
        if wanted is not None and tolerance is not None and tolerance <= wanted:
            break
        if broken and wanted is None:
            break
    return plans


def chosen_plan(plans: list[Plan], config: TerritoryConfig) -> Plan:
    """The plan the run publishes: the one ``config.plan`` names, else the best."""
    if config.plan != "best":
        wanted = float(config.plan)
        return min(plans, key=lambda p: abs((p.soft_tolerance or 0.0) - wanted))
    holding = [p for p in plans if p.hard_violations == 0]
    if not holding:
        return min(plans, key=lambda p: p.hard_violations)
    shaped = [p for p in holding if p.shape_over_limit == 0]
    if shaped:
        return shaped[-1]  # the ladder runs loose to tight
    fewest = min(p.shape_over_limit for p in holding)
    return [p for p in holding if p.shape_over_limit == fewest][-1]


def plans_table(plans: list[Plan], config: TerritoryConfig, published: Plan) -> pd.DataFrame:
    """One row per plan: balance per attribute, shape, disruption and CPU time."""
    rows = []
    for plan in plans:
        overall, summary = plan.design.overall, plan.design.summary
        tolerances = with_soft_tolerance(config, plan.soft_tolerance).tolerances
        soft = plan.soft_tolerance
        row = {"plan": plan_name(plan), "soft_tolerance": soft,
               "published": plan is published, "hard_violations": plan.hard_violations,
               "shape_over_limit": plan.shape_over_limit}
        for rule in config.balance:
            a = rule.attribute
            dev = summary[f"{a}_deviation"].abs()
            row[f"{a}_role"] = rule.role
            row[f"{a}_max_abs_deviation"] = float(dev.max())
            row[f"{a}_within_tolerance"] = float((dev <= tolerances[a] + 1e-9).mean())
        row.update({
            "contiguous": bool(overall.get("contiguous", False)),
            "median_elongation": overall.get("median_elongation", np.nan),
            "max_elongation": overall.get("max_elongation", np.nan),
            "max_span_km": float(summary["diameter_km"].max()),
            "total_dispersion": overall.get("total_dispersion", np.nan),
            "units_moved_pct": overall.get("disruption_units_pct", np.nan),
            "cpu_s": round(plan.seconds, 2),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def publishable_design(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> Design:
    """The published plan's design, carrying the table of every plan tried."""
    plans = price_of_balance(geography, measures, config, current, reps, columns, locks)
    return publish(plans, chosen_plan(plans, config), geography, measures, config, current,
                   reps, columns, locks)


def publish(
    plans: list[Plan],
    published: Plan,
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> Design:
    """``published``'s design as the run publishes it: with the table of ``plans``, the
    comparison (and minimal change), and the soft attributes' lines out of violations."""
    design = published.design
    design.plans = plans_table(plans, config, published)
    minimal = (minimal_change(geography, measures,
                              with_soft_tolerance(config, published.soft_tolerance), current,
                              reps, columns, locks)
               if config.minimal_change else None)
    design.comparison = comparison_table(plans, published, config, minimal)
    design.overall["hard_violations"] = published.hard_violations
    design.overall["shape_over_limit"] = published.shape_over_limit
    soft = set(config.soft_attributes)
    out = {i for i, record in enumerate(design.records)
           if record.kind == "balance" and record.attribute in soft}
    design.violations = [v for i, v in enumerate(design.violations) if i not in out]
    design.records = [r for i, r in enumerate(design.records) if i not in out]
    design.overall["soft_out_of_tolerance"] = len(out)  # reported, not violations
    if published.soft_tolerance is not None:
        design.overall["soft_tolerance"] = published.soft_tolerance
    return design


def minimal_change(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series | None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> Design | None:
    """The smallest change to the current alignment that balances it: a rebalance of
    today's territories (their number and ids), with the locks that name one of them.

    None without a current alignment covering every unit, or when the run already is a
    rebalance (its plans are minimal changes).
    """
    if current is None or current.isna().any() or config.mode == "rebalance":
        return None
    ids = sorted(current.astype(str).unique())
    rebalance = config.model_copy(update={"mode": "rebalance", "n_territories": len(ids),
                                          "regions": None})
    if locks is not None:
        kept = locks.territory[locks.territory.astype(str).isin(ids)]
        locks = Locks(kept, locks.source, locks.column) if len(kept) else None
    return alignment.propose_alignment(geography, measures, rebalance, current, reps, columns,
                                       locks)


def plan_measures(design: Design, config: TerritoryConfig) -> dict:
    """A plan's balance per attribute (against ``config``'s tolerances), compactness, units
    moved and rep travel: the mean over territories of the workload-weighted distance from
    the territory centre to its units."""
    summary = design.summary
    row: dict = {"territories": len(summary)}
    tolerances = config.tolerances
    for rule in config.balance:
        dev = summary[f"{rule.attribute}_deviation"].abs()
        row[f"{rule.attribute}_max_abs_deviation"] = float(dev.max())
        row[f"{rule.attribute}_within_tolerance"] = float(
            (dev <= tolerances[rule.attribute] + 1e-9).mean())
    row["hard_violations"] = hard_violations(design, config)
    row["contiguous"] = bool((summary["n_components"] <= 1).all())
    row["total_dispersion"] = float(summary["dispersion"].sum())
    row["max_span_km"] = float(summary["diameter_km"].max())
    row["median_elongation"] = (float(summary["elongation"].median())
                                if "elongation" in summary else np.nan)
    moved = np.nan  # without a current alignment there is nothing to move from
    if design.current is not None:
        moved = int((design.current.reindex(design.proposed.index).astype(str)
                     != design.proposed.astype(str)).sum())
    row["units_moved"] = moved
    row["units_moved_pct"] = 100.0 * moved / max(len(design.proposed), 1)
    row["rep_travel_km"] = float(summary["mean_distance_km"].mean())
    return row


def comparison_table(plans: list[Plan], published: Plan, config: TerritoryConfig,
                     minimal: Design | None = None) -> pd.DataFrame:
    """The current alignment, the minimal change and every plan tried, side by side
    (:func:`plan_measures`); the current alignment and the minimal change are measured
    against the published plan's tolerances."""
    rows = []
    tolerances = with_soft_tolerance(config, published.soft_tolerance)
    design = published.design
    if design.current_summary is not None:
        current = Design(design.current, design.current, design.current_summary,
                         dict(design.current_overall or {}), None, None, [])
        rows.append({"plan": "current alignment", "published": False,
                     **plan_measures(current, tolerances)})
    if minimal is not None:
        rows.append({"plan": "minimal change", "published": False,
                     **plan_measures(minimal, tolerances)})
    for plan in plans:
        name = plan_name(plan)
        rows.append({"plan": f"proposed ({name})" if plan is published else name,
                     "published": plan is published,
                     **plan_measures(plan.design, with_soft_tolerance(config,
                                                                      plan.soft_tolerance))})
    return pd.DataFrame(rows)


def plan_name(plan: Plan) -> str:
    """A plan's name in the tables: its soft tolerance, and its label when it has one."""
    soft_tolerance = plan.soft_tolerance
    if soft_tolerance is None:
        name = "balanced"
    elif soft_tolerance >= UNCONSTRAINED:
        name = "soft unconstrained"
    else:
        name = f"soft ±{100 * soft_tolerance:g}%"
    return name if plan.label is None else f"{name}, {plan.label}"
