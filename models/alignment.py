"""Turn a territory configuration into a named, summarised alignment.

Pure: the pipeline's design stage gathers what each unit can be balanced on
(:func:`unit_measures`) and calls :func:`propose_alignment`; the nightly
stage describes the company's current alignment with
:func:`describe_current_alignment`. Both return a :class:`Design`.

:func:`propose_alignment` chooses K (a given number or the smallest
feasible one, :func:`territory_planning.choose_n_territories`), pins each
rep's home unit as a territory centre when every rep has one, starts a
rebalance from the current alignment, runs the
:class:`~territory.models.territories.TerritoryDesigner`, names the
territories (the reps' territory ids, else the current ids matched on shared
potential, else ``T01..TK``), compares with the current alignment and
optionally nests the territories into regions. A manager's :class:`Locks`
(``territory run --edits``) keep their units in the territories they name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.models import recommend as rec
from territory.models.config import TerritoryConfig
from territory.models.territories import (
    TerritoryDesigner,
    Violation,
    default_territory_names,
    evaluate_alignment,
    territory_elongation,
)
from territory.models.territory_planning import choose_n_territories, design_regions


@dataclass
class Design:
    proposed: pd.Series
    current: pd.Series | None
    summary: pd.DataFrame
    overall: dict
    current_overall: dict | None
    current_summary: pd.DataFrame | None
    violations: list[str]
    n_territories: int | None = None  # K used (resolved when the config says auto)
    auto_k: str | None = None  # why that K, when chosen automatically
    region: pd.Series | None = None  # unit -> region, when territories.regions is set
    region_summary: pd.DataFrame | None = None
    diagnosis: list[str] = field(default_factory=list)  # why balance violations remain
    plans: pd.DataFrame | None = None  # the price of balance (territory.models.plans)
    records: list[Violation] = field(default_factory=list)  # violations[:len(records)]
    locked: pd.Series | None = None  # territory a manager locked, by unit id (``--edits``)
    comparison: pd.DataFrame | None = None  # current, minimal change and plans (``plans``)


@dataclass(frozen=True)
class Locks:
    """Units a manager locked to a territory (``territory run --edits``)."""

    territory: pd.Series  # territory id by unit id
    source: str = "edits"  # the file they came from, named in errors
    column: str = "territory_id"  # its territory column, named in errors


@dataclass
class Geography:
    """Where the units are: ids, projected coordinates and the contiguity matrix."""

    unit_ids: np.ndarray
    xy: np.ndarray
    adjacency: object  # scipy.sparse matrix
    areas: np.ndarray | None = None  # km² per unit: adds each territory's elongation


def unit_measures(unit_totals: pd.DataFrame, workload: pd.Series, unit_ids: np.ndarray,
                  index: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """What a territory can be balanced on, per unit in ``unit_ids`` order; with ``index``
    (``territories.index``) also the composite :func:`composite_index` as ``index``."""
    totals = unit_totals.reindex(unit_ids)
    measures = {
        "potential": totals["potential"].fillna(0.0).to_numpy(),
        "forecast": totals["forecast"].fillna(0.0).to_numpy(),
        "workload": workload.reindex(unit_ids).fillna(0.0).to_numpy(),
        "units": np.ones(len(unit_ids)),
    }
    if index:
        measures["index"] = composite_index(measures, index)
    return measures


def composite_index(measures: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """A weighted sum of normalised measures: each measure over its mean across the units,
    weights scaled to sum to 1, so an average unit scores 1 (a workload index)."""
    total = sum(weights.values())
    out = np.zeros(len(next(iter(measures.values()))))
    for name, weight in weights.items():
        values = np.asarray(measures[name], dtype=float)
        mean = values.mean()
        if not mean > 0:
            raise InputError("territories.index", f"the measure {name} is zero for every unit",
                             column=name, hint=f"drop {name} from territories.index")
        out += (weight / total) * values / mean
    return out


def current_territories(alignment: pd.DataFrame | None, unit_ids: np.ndarray,
                        columns: ColumnsConfig) -> pd.Series | None:
    """Territory id per unit of the company's alignment, in ``unit_ids`` order (NaN: none)."""
    if alignment is None:
        return None
    return alignment.set_index(columns.unit_col)[columns.territory_col].reindex(unit_ids)


def rep_capacity(config: TerritoryConfig, reps: pd.DataFrame | None) -> float:
    """Workload one rep carries: ``territories.rep_capacity``, else the mean ``capacity``
    of the reps file (checked before the run, in ``check_run_inputs``)."""
    if config.rep_capacity is not None:
        return float(config.rep_capacity)
    return float(pd.to_numeric(reps["capacity"]).mean())


def propose_alignment(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    columns: ColumnsConfig | None = None,
    locks: Locks | None = None,
) -> Design:
    """Propose an alignment balanced on ``config.balance_attributes`` (see the module doc).

    ``locks`` keeps the units a manager locked in their territory (:func:`lock_territories`
    says which territory ids they may name) and redesigns the rest.
    """
    cols = columns or ColumnsConfig()
    tc, unit_ids = config, geography.unit_ids
    attributes = pd.DataFrame({a: measures[a] for a in tc.balance_attributes})
    auto = None
    n_terr = tc.n_territories
    if n_terr == "auto":
        auto = choose_n_territories(
            geography.xy, geography.adjacency, attributes, workload=measures["workload"],
            rep_capacity=rep_capacity(tc, reps), potential=measures["potential"],
            potential_per_rep=tc.potential_per_rep, tolerance=tc.tolerance,
            tolerances=tc.tolerances, max_extra=tc.auto_max_extra, seed=tc.seed, unit_ids=unit_ids,
            workload_label=tc.workload_column or "workload",
            designer_params={"time_limit_s": tc.time_limit_s, "max_restarts": tc.max_restarts,
                             "max_chains": tc.max_chains},
            territory_names=_namer(None, current, measures["potential"]),
        )
        n_terr = auto.n_territories
    current_codes = None
    if current is not None:
        current_codes = pd.Categorical(current, categories=sorted(current.dropna().unique())).codes
    fixed, rep_territory_ids = _rep_homes(reps, unit_ids, n_terr, tc.keep_rep_homes, cols)
    start_labels = None
    if tc.mode == "rebalance":
        start_labels, rep_territory_ids, fixed = _rebalance_start(
            current, current_codes, tc.n_territories, reps, fixed, unit_ids, cols)

    namer = _namer(rep_territory_ids, current, measures["potential"])
    locked = None
    if locks is not None and len(locks.territory):
        locked, namer = lock_territories(locks, unit_ids, n_terr, namer, current)
    if auto is not None and fixed is None and locked is None:  # the auto-K design is this one
        labels, centres, report = auto.labels, auto.centres, auto.report
    else:
        designer = TerritoryDesigner(
            n_territories=n_terr, tolerance=tc.tolerance, seed=tc.seed,
            time_limit_s=tc.time_limit_s, n_starts=tc.n_starts, max_restarts=tc.max_restarts,
            max_chains=tc.max_chains,
            compactness_weight=tc.compactness_weight, max_radius_km=tc.max_radius_km,
            soft_attributes=tc.soft_attributes, max_elongation=tc.max_elongation,
        ).fit(geography.xy, geography.adjacency, attributes, unit_ids=unit_ids,
              current_labels=start_labels, fixed_centres=fixed, locked=locked,
              tolerances=tc.tolerances, areas=geography.areas, territory_names=namer)
        labels, centres, report = designer.labels_, designer.centres_, designer.report_
    territory_names = report.territories["name"].to_numpy(dtype=object)
    proposed = pd.Series(territory_names[labels], index=unit_ids, name="proposed_territory")

    current_overall = current_summary = None
    if current_codes is not None and (current_codes >= 0).all():
        rep_current = evaluate_alignment(
            current_codes, geography.xy, geography.adjacency, attributes,
            tolerances=tc.tolerances, areas=geography.areas,
            territory_names=list(pd.Categorical(current).categories))
        current_overall, current_summary = rep_current.overall, _named(rep_current.territories)
    summary = _named(report.territories)
    overall = dict(report.overall)
    if geography.areas is not None:
        _add_elongation(summary, overall, geography.areas, labels, len(summary))
    if current is not None:
        summary, moved = _with_movement(summary, current, proposed, measures["potential"])
        overall.update(moved)
    else:  # a first design: nothing moved from an alignment that does not exist
        summary = summary.assign(moved_in=pd.NA, moved_out=pd.NA).astype(
            {"moved_in": "Int64", "moved_out": "Int64"})
    violations = list(report.violations)
    region = region_summary = None
    if tc.regions is not None:
        region, region_summary = _nest_regions(geography, attributes, labels, centres, n_terr,
                                               tc, summary, overall, violations)
    overall["n_territories"] = n_terr
    design = Design(proposed, current, summary, overall, current_overall,
                    current_summary, violations, n_terr, auto.explanation if auto else None,
                    region, region_summary, list(report.diagnosis),
                    records=list(report.records))
    if locked is not None:
        design.locked = locks.territory.astype(str)
        overall["units_locked"] = len(locked)
    return design


def describe_current_alignment(
    geography: Geography,
    measures: dict[str, np.ndarray],
    config: TerritoryConfig,
    current: pd.Series,
) -> Design:
    """The current alignment as a :class:`Design`: proposed equals current, so no moves.

    The summary holds today's balance, compactness and contiguity of each
    territory; ``current`` must give every unit a territory.
    """
    attributes = pd.DataFrame({a: measures[a] for a in config.balance_attributes})
    categories = pd.Categorical(current, categories=sorted(current.unique()))
    report = evaluate_alignment(categories.codes, geography.xy, geography.adjacency, attributes,
                                tolerances=config.tolerances, areas=geography.areas,
                                territory_names=list(categories.categories))
    summary = _named(report.territories)
    summary, moved = _with_movement(summary, current, current, measures["potential"])
    overall = {**report.overall, **moved}
    proposed = current.rename("proposed_territory")
    return Design(proposed, current, summary, overall, dict(report.overall),
                  summary.copy(), list(report.violations), diagnosis=list(report.diagnosis),
                  records=list(report.records))


def _add_elongation(summary: pd.DataFrame, overall: dict, areas, labels, k: int) -> None:
    summary["area_km2"], summary["elongation"] = territory_elongation(
        summary["diameter_km"].to_numpy(), areas, labels, k)
    overall["median_elongation"] = float(summary["elongation"].median())
    overall["max_elongation"] = float(summary["elongation"].max())


def _rep_homes(reps: pd.DataFrame | None, unit_ids: np.ndarray, n_territories: int,
               keep_rep_homes: bool, cols: ColumnsConfig
               ) -> tuple[dict[int, int] | None, list[str] | None]:
    """Centre unit per territory from the reps' homes, when every one of K reps has one.

    Reps without a territory (blank ``territory_id``: a new hire, a vacancy filler;
    ``validate`` warns about them) are not placed: they pin no centre and name no
    territory, and the K reps counted are those with a territory."""
    if reps is not None:
        reps = reps[reps[cols.territory_col].notna()]
    if not (keep_rep_homes and reps is not None and "home_unit_id" in reps
            and reps["home_unit_id"].notna().all() and len(reps) == n_territories):
        return None, None
    position = {u: i for i, u in enumerate(unit_ids)}
    ordered = reps.sort_values(cols.territory_col)
    fixed = {k: position[str(h)] for k, h in enumerate(ordered["home_unit_id"])}
    return fixed, list(ordered[cols.territory_col].astype(str))


def _rebalance_start(current, current_codes, n_territories, reps, fixed, unit_ids,
                     cols: ColumnsConfig):
    """Start labels, territory ids and pinned centres for ``mode: rebalance``."""
    if current_codes is None or (current_codes < 0).any():
        raise InputError("config", "rebalance needs a current alignment that covers every unit",
                         column="territories.mode", hint="set data.alignment or use mode: fresh")
    n_current = len(np.unique(current_codes))
    if n_current != n_territories:
        raise InputError(
            "config",
            f"rebalance keeps the current {n_current} territories "
            f"but n_territories is {n_territories}",
            column="territories.n_territories",
        )
    territory_ids = list(pd.Categorical(current).categories)
    if fixed is not None:
        position = {u: i for i, u in enumerate(unit_ids)}
        homes = reps.dropna(subset=[cols.territory_col]).set_index(cols.territory_col)[
            "home_unit_id"]
        fixed = {k: position[str(homes.loc[t])] for k, t in enumerate(territory_ids)}
    return current_codes, territory_ids, fixed


def _namer(rep_territory_ids, current: pd.Series | None, potential: np.ndarray):
    """How the engine names the territories of its final labels: the reps' territory
    ids, else the current ids matched one to one on shared potential (new ids for the
    others), else None (``T01..TK``)."""
    if rep_territory_ids is not None:
        return list(rep_territory_ids)
    if current is not None:
        values = current.to_numpy()
        return lambda labels, k: rec.territory_ids_by_overlap(labels, values, potential, k)
    return None


def lockable_names(n_territories: int, namer, current: pd.Series | None) -> list[str]:
    """The territory ids a lock may name: the reps' territory ids when they name the
    territories, else the current ids and the new ids a plan can add (``N01``...), else
    ``T01..TK``."""
    if isinstance(namer, list):
        return list(namer)
    if current is None:
        return default_territory_names(n_territories)
    taken = sorted(current.dropna().astype(str).unique())
    m = n_territories + len(taken)  # new ids skip the current ones: draw enough of them
    fresh = rec.territory_ids_by_overlap(np.arange(m), np.full(m, None), np.ones(m), m)
    return taken + [f for f in fresh if f not in taken][:n_territories]


def lock_territories(locks: Locks, unit_ids: np.ndarray, n_territories: int, namer,
                     current: pd.Series | None) -> tuple[dict[int, int], object]:
    """The engine's ``locked`` (``{unit index: territory index}``) and a namer that gives
    each territory holding locked units the id they were locked to.

    With the reps' ids the index is the id's place in that list; otherwise the locked ids
    take the first indices and the final names are the usual ones (overlap with the
    current alignment, or ``T01..``) with the locked ids swapped into place.

    Raises
    ------
    InputError
        A lock names a territory the plan cannot have, or more territories than K.
    """
    wanted = locks.territory.astype(str)
    allowed = lockable_names(n_territories, namer, current)
    unknown = wanted[~wanted.isin(allowed)]
    if len(unknown):
        shown = ", ".join(allowed[:12]) + (" ..." if len(allowed) > 12 else "")
        raise InputError(
            locks.source, f"territory ids this plan does not have: "
            f"{', '.join(sorted(set(unknown))[:5])}", column=locks.column,
            rows=list(unknown.index[:5]),
            hint=f"use the territory ids of the report ({shown})")
    names = sorted(set(wanted))
    if len(names) > n_territories:
        raise InputError(locks.source, f"the edits name {len(names)} territories but the plan "
                         f"has {n_territories}", column=locks.column,
                         hint="lock units to at most n_territories territories")
    position = {u: i for i, u in enumerate(unit_ids)}
    outside = [u for u in wanted.index if u not in position]
    if outside:
        raise InputError(locks.source, "locked units that are not in this design (left out "
                         "by data.gaps)", column=locks.column, rows=outside[:5],
                         hint="remove them from the edits, or give them sales and demographics")
    if isinstance(namer, list):
        return {position[u]: namer.index(t) for u, t in wanted.items()}, namer
    index = {t: i for i, t in enumerate(names)}

    def named(labels, k):
        given = namer(labels, k) if callable(namer) else default_territory_names(k)
        given = list(given)
        for t, name in enumerate(names):  # a swap keeps the ids distinct
            if name in given:
                other = given.index(name)
                given[t], given[other] = given[other], given[t]
            else:
                given[t] = name
        return given

    return {position[u]: index[t] for u, t in wanted.items()}, named


def _named(table: pd.DataFrame) -> pd.DataFrame:
    """The engine's territory table keyed by name: ``territory`` is the id a manager
    reads, and the engine's 0-based index is dropped."""
    return table.assign(territory=table["name"].astype(str)).drop(columns="name")


def _with_movement(summary: pd.DataFrame, current: pd.Series, proposed: pd.Series,
                   potential: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """The summary with units moved in and out per territory, and the overall disruption."""
    movement = rec.movement_by_territory(current, proposed).set_index("territory")
    summary = summary.drop(columns=["moved_in", "moved_out"], errors="ignore").join(
        movement, on="territory")
    return summary, rec.disruption(current, proposed,
                                   pd.Series(potential, index=proposed.index))


def _nest_regions(geography: Geography, attributes: pd.DataFrame, labels: np.ndarray,
                  centres, n_territories: int, tc: TerritoryConfig, summary: pd.DataFrame,
                  overall: dict, violations: list[str]):
    """Group the territories into ``tc.regions`` regions; updates summary, overall, violations."""
    if np.bincount(labels, minlength=n_territories).min() == 0:
        violations.append("regions were not designed: the alignment has an empty territory")
        return None, None
    if tc.regions > n_territories:
        raise InputError("config", f"regions ({tc.regions}) exceeds the {n_territories} "
                         "territories", column="territories.regions")
    hier = design_regions(
        geography.xy, geography.adjacency, attributes, labels, tc.regions,
        tolerance=tc.region_tolerance, seed=tc.seed, centres=centres,
        unit_ids=geography.unit_ids, territory_names=summary["territory"].to_numpy(),
    )
    region_names = hier.regions["name"].to_numpy()
    region = pd.Series(region_names[hier.unit_region], index=geography.unit_ids, name="region")
    summary.insert(2, "region", region_names[hier.territory_region])
    region_summary = hier.report.territories.assign(territories=hier.regions["territories"])
    violations += [f"region {v}" for v in hier.report.violations]
    overall["n_regions"] = tc.regions
    overall["region_max_abs_deviation"] = max(
        hier.report.overall[f"max_abs_deviation_{a}"] for a in attributes)
    overall["region_contiguous"] = hier.report.overall["contiguous"]
    return region, region_summary
