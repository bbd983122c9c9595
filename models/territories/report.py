"""How good an alignment is: balance, contiguity, compactness, shape and disruption.

:func:`evaluate_alignment` reports any alignment (designed, or the company's
current one) per territory and overall, with the rules it breaks as
:class:`~territory.models.territories.violations.Violation` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.models.territories.diagnosis import imbalance_blocks
from territory.models.territories.geometry import polsby_popper, span_m, territory_elongation
from territory.models.territories.graph import Graph, components_by_label
from territory.models.territories.problem import (
    resolve_names,
    target_matrix,
    tolerance_vector,
    validate_units,
)
from territory.models.territories.start import weighted_medoids
from territory.models.territories.violations import Violation


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
    records
        What breaks a rule, as :class:`Violation` records (territory index,
        attribute, deviation, tolerance), empty when the alignment meets every
        constraint.
    violations
        The records in words, with the territories' names (read-only).
    diagnosis
        Why balance violations remain (:func:`imbalance_blocks`): blocks of
        violated territories, what their neighbours could absorb, and the
        tolerance their own units would need.
    """

    territories: pd.DataFrame
    overall: dict
    records: list[Violation] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return self.territories["name"].astype(str).tolist()

    @property
    def violations(self) -> list[str]:
        names = self.names
        return [record.text(names) for record in self.records]

    def add(self, records: list[Violation]) -> None:
        """Add violation records and recount ``overall["n_violations"]``."""
        self.records.extend(records)
        self.overall["n_violations"] = len(self.records)


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
    xy, adjacency, attributes, ids = validate_units(xy, adjacency, attributes, unit_ids)
    n = len(xy)
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({n},)")
    k = int(n_territories if n_territories is not None else labels.max() + 1)
    if k < 1 or labels.max() >= k or labels.min() < -1:
        raise ValueError(f"labels must lie in 0..{k - 1} (or -1 for unassigned)")
    cols = list(attributes.columns)
    tau = tolerance_vector(tolerance, tolerances, cols)
    values = attributes.to_numpy(dtype=float)
    tgt = target_matrix(targets, values, k)
    cur = None
    if current_labels is not None:
        cur = np.asarray(current_labels)
        if cur.shape != (n,):
            raise ValueError(f"current_labels must have shape ({n},)")
    if centres is not None:
        centres = np.asarray(centres, dtype=np.int64)
        if centres.shape != (k,):
            raise ValueError(f"centres must have shape ({k},)")
    assigned = labels >= 0
    lab = np.where(assigned, labels, k)  # k = "unassigned" bucket
    totals = np.zeros((k + 1, len(cols)))
    np.add.at(totals, lab, values)
    totals = totals[:k]
    graph = Graph.from_csr(adjacency)
    names = resolve_names(territory_names, labels, k)
    table, n_far = _territory_table(labels, lab, k, xy, graph, values, cols, totals, tgt, ids,
                                    names, centres, cur, polygons, areas, max_radius_km)
    overall = _overall(table, values, cols, totals / tgt - 1, labels, cur, areas,
                       max_elongation)
    overall["run_time_s"] = None if run_time_s is None else float(run_time_s)
    records = _records(table, n_far, values, cols, tgt, tau, ids, assigned, areas,
                       max_elongation, max_radius_km)
    overall["n_violations"] = len(records)
    diagnosis = imbalance_blocks(np.where(assigned, labels, -1), totals, tgt, tau, graph, names,
                                 cols)
    return TerritoryReport(territories=table, overall=overall, records=records,
                           diagnosis=diagnosis)


def _territory_table(labels, lab, k, xy, graph, values, cols, totals, tgt, ids, names, centres,
                     cur, polygons, areas, max_radius_km) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per territory (size, totals and deviations, pieces, compactness, moves),
    and the number of units beyond the radius per territory."""
    counts = np.bincount(lab, minlength=k + 1)[:k]
    _, comp = components_by_label(graph, lab)
    n_comp = np.array([len(np.unique(comp[lab == t])) for t in range(k)])
    if centres is None:
        centres = weighted_medoids(xy, values[:, 0], lab, k + 1, {})[:k]
    w0 = values[:, 0]
    disp, diam, reach, travel = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
    travel_w = values[:, cols.index("workload")] if "workload" in cols else w0
    n_far = np.zeros(k, dtype=np.int64)
    for t in range(k):
        members = np.flatnonzero(lab == t)
        if len(members) == 0 or centres[t] < 0:
            continue
        dist = np.linalg.norm(xy[members] - xy[centres[t]], axis=1)
        disp[t] = float(w0[members] @ dist)
        w = travel_w[members]  # mean distance from the centre, weighted by workload (else w0)
        travel[t] = float(w @ dist / w.sum() if w.sum() > 0 else dist.mean()) / 1000.0
        diam[t] = span_m(xy[members]) / 1000.0
        reach[t] = float(dist.max()) / 1000.0
        if max_radius_km is not None:
            n_far[t] = int((dist > 1000.0 * float(max_radius_km) + 1e-6).sum())
    dev = totals / tgt - 1
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
    assigned = labels >= 0
    if cur is not None:
        moved = (cur != labels) & assigned
        frame["moved_in"] = np.bincount(lab[moved], minlength=k + 1)[:k]
        cur_ok = moved & (cur >= 0) & (cur < k)
        frame["moved_out"] = np.bincount(cur[cur_ok], minlength=k)[:k]
    else:
        frame["moved_in"] = np.zeros(k, dtype=int)
        frame["moved_out"] = np.zeros(k, dtype=int)
    if polygons is not None:
        frame["polsby_popper"] = polsby_popper(polygons, lab, k)
    return pd.DataFrame(frame), n_far


def _overall(table, values, cols, dev, labels, cur, areas, max_elongation) -> dict:
    """Whole-alignment figures: worst and mean deviation, balance index, contiguity,
    dispersion, shape and disruption."""
    overall: dict = {}
    absdev = np.abs(dev)
    for j, col in enumerate(cols):
        overall[f"max_abs_deviation_{col}"] = float(absdev[:, j].max())
        overall[f"mean_abs_deviation_{col}"] = float(absdev[:, j].mean())
    overall["balance_index"] = float(np.clip(100 * (1 - absdev.mean()), 0, 100))
    n_comp = table["n_components"].to_numpy()
    overall["contiguous"] = bool((n_comp <= 1).all())
    overall["n_noncontiguous"] = int((n_comp > 1).sum())
    overall["total_dispersion"] = float(table["dispersion"].sum())
    overall["max_radius_km"] = float(table["radius_km"].max()) if len(table) else 0.0
    if areas is not None:
        overall["median_elongation"] = float(np.median(table["elongation"]))
        overall["max_elongation"] = float(np.max(table["elongation"]))
        if max_elongation is not None:
            overall["shape_over_limit"] = int((table["elongation"] > max_elongation + 1e-9).sum())
    w0 = values[:, 0]
    if cur is not None:
        moved = cur != labels
        overall["disruption_units_pct"] = float(100 * moved.mean())
        overall[f"disruption_{cols[0]}_pct"] = float(
            100 * w0[moved].sum() / max(w0.sum(), 1e-300)
        )
    else:
        overall["disruption_units_pct"] = 0.0
        overall[f"disruption_{cols[0]}_pct"] = 0.0
    return overall


def _records(table, n_far, values, cols, tgt, tau, ids, assigned, areas, max_elongation,
             max_radius_km) -> list[Violation]:
    """Every broken rule: giant units, unassigned units, then per territory empty,
    balance, pieces, shape and radius."""
    records: list[Violation] = []
    upper_max = (1 + tau) * tgt.max(axis=0)
    for j, col in enumerate(cols):
        for i in np.flatnonzero(values[:, j] > upper_max[j]).tolist():
            records.append(Violation("giant_unit", attribute=col, unit=str(ids[i]),
                                     deviation=values[i, j] / tgt[:, j].max() - 1,
                                     tolerance=tau[j]))
    if (~assigned).any():
        records.append(Violation("unassigned", count=int((~assigned).sum())))
    counts = table["n_units"].to_numpy()
    shaped = max_elongation is not None and areas is not None
    for t in range(len(table)):
        if counts[t] == 0:
            records.append(Violation("empty", territory=t))
            continue
        for j, col in enumerate(cols):
            dev = float(table[f"{col}_deviation"].iloc[t])
            if abs(dev) > tau[j] + 1e-9:
                records.append(Violation("balance", territory=t, attribute=col, deviation=dev,
                                         tolerance=float(tau[j])))
        pieces = int(table["n_components"].iloc[t])
        if pieces > 1:
            records.append(Violation("noncontiguous", territory=t, count=pieces))
        if shaped and table["elongation"].iloc[t] > max_elongation + 1e-9:
            records.append(Violation("shape", territory=t, value=float(table["elongation"].iloc[t]),
                                     limit=float(max_elongation),
                                     detail=f"{table['diameter_km'].iloc[t]:,.0f}"))
        if n_far[t]:
            records.append(Violation("radius", territory=t, count=int(n_far[t]),
                                     limit=float(max_radius_km),
                                     value=float(table["radius_km"].iloc[t])))
    return records
