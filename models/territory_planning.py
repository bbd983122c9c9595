"""Territory planning around the design engine: how many reps, and regions.

Two pure functions, each returning a small dataclass, built on
:class:`territory.models.territories.TerritoryDesigner`:

* :func:`choose_n_territories` (**auto-K**). From a workload capacity per rep
  (and optionally the potential one rep can cover, or the least potential a
  territory needs) it derives the smallest number of territories the capacity
  allows, ``K0 = ceil(total workload / capacity)``, then designs K0, K0+1, ...
  and keeps the smallest K whose design meets every constraint (balance within
  tau on every attribute, contiguity) with the average rep at or under
  capacity, and explains the choice in words. Without a candidate that meets
  the balance, the one with the fewest violations is returned, and said so.
* :func:`design_regions` (**hierarchy**). Territories are nested into regions
  (or districts) that are themselves balanced and contiguous: the territory
  graph (two territories touch when any of their units do) with summed
  attributes, and by default the territory count (span of control), is
  partitioned by the same designer with ``K = n_regions``. Regions are unions
  of whole territories, so nesting is exact by construction; the region
  report is evaluated at unit level (contiguity on the unit graph, balance of
  unit totals). Territories are coarse units, so the default region tolerance
  is looser (±10%). Chain calls for more levels (territories -> districts ->
  regions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from territory.features.spatial import link_islands
from territory.models.territories import (
    TerritoryDesigner,
    TerritoryReport,
    Violation,
    evaluate_alignment,
    pct_text,
)

__all__ = [
    "AutoKResult",
    "HierarchyResult",
    "aggregate_attributes",
    "capacity_bounds",
    "choose_n_territories",
    "design_regions",
    "territory_graph",
    "territory_points",
]


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- auto-K


@dataclass
class AutoKResult:
    """Outcome of :func:`choose_n_territories`.

    Attributes
    ----------
    n_territories
        The chosen K.
    lower_bound
        Smallest K the capacities allow (``ceil(total / capacity)``).
    feasible
        Whether the chosen design meets every constraint.
    candidates
        One row per K designed: ``n_territories``, ``mean_utilisation`` and
        ``max_utilisation`` (territory workload / capacity), for each balanced
        attribute ``max_abs_deviation_<a>``, ``contiguous``, ``n_violations``,
        ``feasible``, ``run_time_s``.
    explanation
        The choice in plain words.
    labels, centres, report
        The chosen design (as :class:`~models.territories.TerritoryDesigner` sets them).
    """

    n_territories: int
    lower_bound: int
    feasible: bool
    candidates: pd.DataFrame
    explanation: str
    labels: np.ndarray
    centres: np.ndarray
    report: TerritoryReport


def capacity_bounds(
    total_workload: float,
    rep_capacity: float,
    *,
    total_potential: float | None = None,
    potential_per_rep: float | None = None,
    min_potential: float | None = None,
) -> tuple[int, int | None]:
    """Range of K the capacities allow.

    Parameters
    ----------
    total_workload
        Sum of the workload over all units (e.g. accounts).
    rep_capacity
        Workload one rep can carry.
    total_potential
        Sum of the potential; needed with ``potential_per_rep`` or ``min_potential``.
    potential_per_rep
        Potential one rep can cover: ``K >= total_potential / potential_per_rep``.
    min_potential
        Least potential a territory needs to be viable: ``K <= total_potential / min_potential``.

    Returns
    -------
    (lower, upper)
        ``lower >= 1``; ``upper`` is None without ``min_potential``.
    """
    if not rep_capacity > 0:
        raise ValueError(f"rep_capacity must be positive, got {rep_capacity}")
    if total_workload < 0:
        raise ValueError(f"total workload must be non-negative, got {total_workload}")
    lower = max(1, math.ceil(total_workload / rep_capacity - 1e-9))
    upper = None
    if potential_per_rep is not None or min_potential is not None:
        if total_potential is None:
            raise ValueError("potential_per_rep/min_potential need the potential")
    if potential_per_rep is not None:
        if not potential_per_rep > 0:
            raise ValueError(f"potential_per_rep must be positive, got {potential_per_rep}")
        lower = max(lower, math.ceil(total_potential / potential_per_rep - 1e-9))
    if min_potential is not None:
        if not min_potential > 0:
            raise ValueError(f"min_potential must be positive, got {min_potential}")
        upper = max(1, math.floor(total_potential / min_potential + 1e-9))
    return lower, upper


def _column(values, attributes: pd.DataFrame, n: int, name: str) -> tuple[np.ndarray, str]:
    if isinstance(values, str):
        if values not in attributes.columns:
            raise ValueError(f"{name}: {values!r} is not a column of attributes")
        return attributes[values].to_numpy(dtype=float), values
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a column name or an array of length {n}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return arr, getattr(values, "name", None) or name


def choose_n_territories(
    xy,
    adjacency,
    attributes: pd.DataFrame,
    *,
    workload,
    rep_capacity: float,
    potential=None,
    potential_per_rep: float | None = None,
    min_potential: float | None = None,
    tolerance: float = 0.05,
    tolerances: Mapping[str, float] | None = None,
    max_extra: int = 5,
    seed: int = 0,
    designer_params: Mapping | None = None,
    unit_ids=None,
    workload_label: str | None = None,
    territory_names=None,
) -> AutoKResult:
    """Choose the number of territories from rep capacity, and explain it.

    Parameters
    ----------
    xy, adjacency, attributes
        As for :meth:`TerritoryDesigner.fit`; ``attributes`` are balanced.
    workload
        Column of ``attributes``, or an array of length n: each unit's workload.
    rep_capacity
        Workload one rep can carry, in the same unit as ``workload``.
    potential
        Column name or array; needed with ``potential_per_rep``/``min_potential``
        (default: the ``potential`` column of ``attributes``).
    potential_per_rep
        Potential one rep can cover (raises the lower bound).
    min_potential
        Least potential a viable territory needs (caps K).
    tolerance, tolerances
        Balance tolerance tau, default and per attribute.
    max_extra
        Candidates tried above the lower bound: K0 .. K0 + max_extra.
    seed
        Seed of every design (same seed, same answer).
    designer_params
        Further :class:`TerritoryDesigner` parameters (``time_limit_s``,
        ``max_restarts``, ``max_chains``, ...).
    unit_ids
        Names used in the reports.
    workload_label
        Word for the workload in the explanation (default the column name).
    territory_names
        A function ``(labels, K) -> K names`` for each candidate's report; default T01..TK.

    Returns
    -------
    AutoKResult
    """
    wl, wl_name, total_wl, total_pot, lower, upper = _resolve_capacity(
        attributes, workload, workload_label, rep_capacity, potential, potential_per_rep,
        min_potential, max_extra)
    params = {key: v for key, v in (designer_params or {}).items() if key != "n_territories"}
    taus = {c: float((tolerances or {}).get(c, tolerance)) for c in attributes.columns}
    text, notes, lower, last = _capacity_story(
        total_wl, total_pot, rep_capacity, potential_per_rep, min_potential, lower, upper,
        len(attributes), wl_name, int(max_extra))
    table, chosen, best = _try_candidates(
        range(lower, last + 1), xy, adjacency, attributes, wl, total_wl, total_pot,
        rep_capacity, potential_per_rep, tolerance, tolerances, seed, params, unit_ids,
        territory_names)
    k, designer = chosen or best
    rep = designer.report_
    text = _verdict(text, table, k, rep, taus, chosen is not None, lower, last, notes)
    return AutoKResult(
        n_territories=k, lower_bound=lower, feasible=chosen is not None, candidates=table,
        explanation=text, labels=designer.labels_, centres=designer.centres_, report=rep,
    )


def _resolve_capacity(attributes, workload, workload_label, rep_capacity, potential,
                      potential_per_rep, min_potential, max_extra):
    """Check the inputs; workload (values, name, total), potential total, K bounds."""
    n = len(attributes)
    if n == 0:
        raise ValueError("attributes is empty: at least one unit is needed")
    if int(max_extra) < 0:
        raise ValueError(f"max_extra must be >= 0, got {max_extra}")
    wl, wl_name = _column(workload, attributes, n, "workload")
    wl_name = workload_label or wl_name
    total_pot = None
    if potential_per_rep is not None or min_potential is not None:
        if potential is None:
            if "potential" not in attributes.columns:
                raise ValueError("potential_per_rep/min_potential need potential= (no column)")
            potential = "potential"
        total_pot = float(_column(potential, attributes, n, "potential")[0].sum())
    total_wl = float(wl.sum())
    bounds = capacity_bounds(total_wl, rep_capacity, total_potential=total_pot,
                             potential_per_rep=potential_per_rep, min_potential=min_potential)
    return wl, wl_name, total_wl, total_pot, *bounds


def _capacity_story(total_wl, total_pot, rep_capacity, potential_per_rep, min_potential,
                    lower: int, upper, n: int, wl_name: str, max_extra: int):
    """The capacity arithmetic in words, notes on conflicts, and the K range to try."""
    why = [f"Total {wl_name} {_num(total_wl)} / capacity {_num(rep_capacity)} per rep "
           f"⇒ at least {math.ceil(total_wl / rep_capacity - 1e-9)} reps"]
    if potential_per_rep is not None:  # then the potential was resolved: total_pot is set
        why.append(f"total potential {_num(total_pot)} / {_num(potential_per_rep)} per rep "
                   f"⇒ at least {math.ceil(total_pot / potential_per_rep - 1e-9)}")
    text = "; ".join(why)
    if lower > 1:
        below = lower - 1
        parts = [f"the average rep at {pct_text(total_wl / below / rep_capacity)} of capacity"]
        if potential_per_rep is not None:
            parts.append(f"{pct_text(total_pot / below / potential_per_rep)} of the potential "
                         "one rep can cover")
        text += f" (K={below} would put {_and(parts)})"
    text += "."
    notes: list[str] = []
    if upper is not None:
        text += f" Each territory needs at least {_num(min_potential)} potential, so K <= {upper}."
        if upper < lower:
            notes.append(f"The capacity and the minimum potential conflict (K >= {lower} but "
                         f"K <= {upper}); K={lower} is kept for capacity.")
    if lower > n:
        notes.append(f"There are only {n} units, so K is capped at {n}: "
                     f"the average rep is at {pct_text(total_wl / n / rep_capacity)} of capacity.")
        lower = n
    last = min(n, lower + int(max_extra))
    if upper is not None and upper >= lower:
        last = min(last, upper)
    return text, notes, lower, last


def _try_candidates(candidates, xy, adjacency, attributes, wl, total_wl, total_pot,
                    rep_capacity, potential_per_rep, tolerance, tolerances, seed, params,
                    unit_ids, territory_names=None):
    """Design each K in turn until one is feasible: (table of tries, feasible, closest)."""
    cols = list(attributes.columns)
    rows: list[dict] = []
    best = best_key = chosen = None
    for k in candidates:
        t0 = time.perf_counter()
        designer = TerritoryDesigner(n_territories=k, tolerance=tolerance, seed=seed, **params)
        designer.fit(xy, adjacency, attributes, unit_ids=unit_ids, tolerances=tolerances,
                     territory_names=territory_names)
        rep = designer.report_
        terr_wl = np.bincount(designer.labels_, weights=wl, minlength=k)
        mean_util = total_wl / k / rep_capacity
        row = {"n_territories": k, "mean_utilisation": mean_util,
               "max_utilisation": float(terr_wl.max() / rep_capacity)}
        for c in cols:
            row[f"max_abs_deviation_{c}"] = rep.overall[f"max_abs_deviation_{c}"]
        feasible = rep.overall["n_violations"] == 0 and mean_util <= 1 + 1e-9
        if potential_per_rep is not None:
            feasible = feasible and total_pot / k <= potential_per_rep * (1 + 1e-9)
        row.update(contiguous=rep.overall["contiguous"], n_violations=rep.overall["n_violations"],
                   feasible=bool(feasible), run_time_s=time.perf_counter() - t0)
        rows.append(row)
        key = (not feasible, row["n_violations"], k)
        if best_key is None or key < best_key:
            best, best_key = (k, designer), key
        if feasible:
            chosen = (k, designer)
            break
    return pd.DataFrame(rows), chosen, best


def _verdict(text: str, table: pd.DataFrame, k: int, rep, taus, feasible: bool,
             lower: int, last: int, notes: list[str]) -> str:
    """The explanation's end: what the tried K left, and why K was chosen."""
    cols = list(taus)  # the attribute columns, in order
    devs = [rep.overall[f"max_abs_deviation_{c}"] for c in cols]
    tau_txt = (f"±{pct_text(taus[cols[0]])}" if len(set(taus.values())) == 1
               else _and([f"±{pct_text(taus[c])} on {c}" for c in cols]))
    on = f" on {_and(cols)}" if len(set(taus.values())) == 1 else ""
    row = table.set_index("n_territories").loc[k]
    util = (f"the average rep is at {pct_text(row['mean_utilisation'])} of capacity, "
            f"the busiest at {pct_text(row['max_utilisation'])}")
    failed = table[~table["feasible"] & (table["n_territories"] < k)]
    if len(failed):
        text += " " + " ".join(
            f"K={int(r.n_territories)} left {int(r.n_violations)} violation(s) "
            f"(max deviation "
            f"{_and([pct_text(getattr(r, f'max_abs_deviation_{c}')) for c in cols])})."
            for r in failed.itertuples()
        )
    if feasible:
        text += (f" K={k} holds {tau_txt}{on} (max deviation {_and([pct_text(d) for d in devs])}) "
                 f"with contiguous territories; {util}.")
    else:
        text += (f" No K from {lower} to {last} met {tau_txt}{on} on every territory; K={k} came "
                 f"closest with {int(row['n_violations'])} violation(s) (max deviation "
                 f"{_and([pct_text(d) for d in devs])}); {util}. See the report's violations.")
    if notes:
        text += " " + " ".join(notes)
    return text


# ---------------------------------------------------------------- hierarchy


def _labels(labels, n: int | None = None) -> tuple[np.ndarray, int]:
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError("labels must be a 1-d integer array")
    if n is not None and len(lab) != n:
        raise ValueError(f"labels has {len(lab)} entries, expected {n}")
    if len(lab) == 0 or lab.min() < 0:
        raise ValueError("labels must be non-empty and assign every unit (no -1)")
    k = int(lab.max()) + 1
    missing = np.setdiff1d(np.arange(k), lab)
    if len(missing):
        raise ValueError(
            f"labels must use every territory 0..{k - 1}; empty: {missing[:5].tolist()}")
    return lab, k


def territory_graph(labels, adjacency) -> sp.csr_matrix:
    """Territory adjacency: territories touch when any of their units do.

    Parameters
    ----------
    labels
        Territory ``0..K-1`` of each unit.
    adjacency
        Symmetric (n, n) unit adjacency (sparse or dense).

    Returns
    -------
    scipy.sparse.csr_matrix
        Symmetric (K, K) 0/1 matrix with an empty diagonal.
    """
    adjacency = sp.csr_matrix(adjacency)
    lab, k = _labels(labels, adjacency.shape[0])
    coo = adjacency.tocoo()
    a, b = lab[coo.row], lab[coo.col]
    keep = a != b
    g = sp.csr_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(k, k))
    g = ((g + g.T) > 0).astype(np.int8)
    return g.tocsr()


def aggregate_attributes(labels, attributes: pd.DataFrame) -> pd.DataFrame:
    """Attribute totals per territory (rows ``0..K-1``)."""
    lab, k = _labels(labels, len(attributes))
    out = attributes.groupby(lab).sum().reindex(range(k), fill_value=0.0)
    return out.reset_index(drop=True)


def territory_points(labels, xy, weights=None, centres=None) -> np.ndarray:
    """One point per territory: its centre unit, else the weighted centroid of its units."""
    xy = np.asarray(xy, dtype=float)
    lab, k = _labels(labels, len(xy))
    if centres is not None:
        c = np.asarray(centres, dtype=np.int64)
        if c.shape != (k,) or c.min() < 0 or c.max() >= len(xy):
            raise ValueError(f"centres must hold {k} unit indices")
        return xy[c].copy()
    w = np.ones(len(xy)) if weights is None else np.asarray(weights, dtype=float)
    tot = np.bincount(lab, weights=w, minlength=k)
    cnt = np.bincount(lab, minlength=k)
    w = np.where(tot[lab] > 0, w, 1.0)  # a territory with zero weight: plain mean
    tot = np.where(tot > 0, tot, cnt)
    return np.column_stack([np.bincount(lab, weights=w * xy[:, j], minlength=k) / tot
                            for j in range(2)])


@dataclass
class HierarchyResult:
    """Outcome of :func:`design_regions`.

    Attributes
    ----------
    unit_territory, unit_region
        Territory and region (``0..R-1``) of each unit.
    territory_region
        Region of each territory; ``unit_region == territory_region[unit_territory]``.
    regions
        One row per region: ``region``, ``name`` (R01...), ``n_territories``,
        ``territories`` (comma-joined territory names).
    report
        Region quality, evaluated at unit level (totals, deviations against the
        region tolerance, contiguity on the unit graph, dispersion, diameter),
        with ``n_territories`` per region; its violations name regions.
    territory_level
        The designer's own report on the territory graph.
    links
        Territory pairs joined because the territory graph was disconnected.
    """

    unit_territory: np.ndarray
    unit_region: np.ndarray
    territory_region: np.ndarray
    regions: pd.DataFrame
    report: TerritoryReport
    territory_level: TerritoryReport
    links: list[tuple[int, int]] = field(default_factory=list)

    def frame(self, unit_ids, territory_names=None) -> pd.DataFrame:
        """``unit_id``, ``territory``, ``region`` per unit."""
        terr = (np.asarray(territory_names, dtype=object)[self.unit_territory]
                if territory_names is not None else self.unit_territory)
        return pd.DataFrame({
            "unit_id": np.asarray(unit_ids),
            "territory": terr,
            "region": self.regions["name"].to_numpy()[self.unit_region],
        })


def design_regions(
    xy,
    adjacency,
    attributes: pd.DataFrame,
    labels,
    n_regions: int,
    *,
    tolerance: float = 0.10,
    tolerances: Mapping[str, float] | None = None,
    balance_count: bool = True,
    count_tolerance: float | None = None,
    seed: int = 0,
    centres=None,
    unit_ids=None,
    territory_names=None,
    designer_params: Mapping | None = None,
) -> HierarchyResult:
    """Nest territories into ``n_regions`` balanced, contiguous regions.

    Parameters
    ----------
    xy, adjacency, attributes
        The unit-level inputs of the territory design (attributes are summed per
        territory; the first weights the territory points and dispersion).
    labels
        Territory ``0..K-1`` of each unit (every territory non-empty).
    n_regions
        Number of regions R, ``1 <= R <= K``.
    tolerance, tolerances
        Region balance tolerance (default ±10%: territories are coarse units),
        and per attribute.
    balance_count
        Also balance the number of territories per region (span of control).
    count_tolerance
        Tolerance on that count; default ``tolerance``, widened so that both
        ``floor(K/R)`` and ``ceil(K/R)`` territories are allowed.
    seed
        Seed of the region design.
    centres
        Centre unit of each territory (e.g. ``designer.centres_``); default the
        weighted centroid of its units.
    unit_ids, territory_names
        Names used in the report.
    designer_params
        Further :class:`TerritoryDesigner` parameters for the region design.

    Returns
    -------
    HierarchyResult
    """
    xy = np.asarray(xy, dtype=float)
    adjacency = sp.csr_matrix(adjacency)
    lab, k = _labels(labels, len(xy))
    if len(attributes) != len(xy):
        raise ValueError(f"attributes has {len(attributes)} rows, expected {len(xy)}")
    r = int(n_regions)
    if not 1 <= r <= k:
        raise ValueError(f"n_regions must be between 1 and the number of territories ({k}), "
                         f"got {n_regions}")
    names = (np.asarray([f"T{t + 1:02d}" for t in range(k)], dtype=object)
             if territory_names is None else np.asarray(territory_names, dtype=object))
    if len(names) != k:
        raise ValueError(f"territory_names has {len(names)} entries, expected {k}")

    tgraph = territory_graph(lab, adjacency)
    agg = aggregate_attributes(lab, attributes)
    first = attributes.iloc[:, 0].to_numpy(dtype=float)
    pts = territory_points(lab, xy, weights=first, centres=centres)
    tgraph, links = link_islands(tgraph, pts)
    taus = {c: float((tolerances or {}).get(c, tolerance)) for c in attributes.columns}
    count_tau = None
    if balance_count:
        mean = k / r
        need = max(mean - math.floor(mean), math.ceil(mean) - mean) / mean
        count_tau = min(0.99, max(count_tolerance if count_tolerance is not None else tolerance,
                                  need + 1e-9))
        agg = agg.assign(n_territories=1.0)
        taus["n_territories"] = count_tau

    params = {"time_limit_s": 20.0, "n_starts": 2, "max_restarts": 8, **dict(designer_params or {})}
    params.pop("n_territories", None)
    designer = TerritoryDesigner(n_territories=r, tolerance=tolerance, seed=seed, **params)
    rnames = [f"R{i + 1:0{max(2, len(str(r)))}d}" for i in range(r)]
    designer.fit(pts, tgraph, agg, unit_ids=names, tolerances=taus, territory_names=rnames)
    t_region = designer.labels_.astype(np.int64)
    u_region = t_region[lab]

    report, counts = _region_report(u_region, t_region, xy, adjacency, attributes, taus,
                                    unit_ids, rnames, k, count_tau)
    report.overall["run_time_s"] = designer.report_.overall["run_time_s"]
    if links:
        report.overall["territory_links"] = len(links)
    regions = pd.DataFrame({
        "region": np.arange(r),
        "name": rnames,
        "n_territories": counts,
        "territories": [", ".join(map(str, names[t_region == i])) for i in range(r)],
    })
    return HierarchyResult(
        unit_territory=lab.astype(np.int64), unit_region=u_region, territory_region=t_region,
        regions=regions, report=report, territory_level=designer.report_, links=links,
    )


def _region_report(u_region, t_region, xy, adjacency, attributes, taus, unit_ids,
                   rnames: list[str], k: int, count_tau: float | None):
    """The region-level report, with region names in its violations and the count check."""
    r = len(rnames)
    report = evaluate_alignment(
        u_region, xy, adjacency, attributes,
        tolerances={c: taus[c] for c in attributes.columns}, unit_ids=unit_ids, n_territories=r,
        territory_names=rnames,
    )
    counts = np.bincount(t_region, minlength=r)
    table = report.territories.copy()
    table.insert(3, "n_territories", counts)
    report.territories = table
    if count_tau is not None:
        report.add([Violation("region_count", territory=i, count=int(counts[i]),
                              deviation=counts[i] / (k / r) - 1, tolerance=count_tau,
                              value=k / r)
                    for i in range(r) if abs(counts[i] / (k / r) - 1) > count_tau + 1e-9])
    report.overall["n_regions"] = r
    return report, counts
