"""Recommendations from scores and alignments: pure functions.

Every function takes plain frames and arrays and returns a frame a manager
can read: per unit (what to do and why), per territory, per rep (what the
realignment changes for them), and the company's ranked white space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


def territory_ids_by_overlap(
    proposed: np.ndarray, current: np.ndarray, weight: np.ndarray, n_territories: int | None = None,
    prefix: str = "N",
) -> list[str]:
    """One id per proposed territory: the current territory it overlaps most, else a new id.

    Overlap is measured in ``weight`` (potential) and matched one to one with
    the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`).
    Proposed territories left over (more proposed than current territories,
    or sharing nothing with any) get new ids ``<prefix>01``, ``<prefix>02``, ...
    in territory order, skipping any id the current alignment uses.

    Parameters
    ----------
    proposed
        Integer labels ``0..K-1`` per unit (``-1``: unassigned).
    current
        Current territory id per unit (str, or None/NaN where unassigned).
    weight
        Per-unit weight for the overlap.
    n_territories
        K; default ``proposed.max() + 1``.
    """
    proposed = np.asarray(proposed)
    current = pd.Series(current, dtype="object")
    known = current.notna().to_numpy() & (proposed >= 0)
    current_ids = sorted(current[known].astype(str).unique())
    k = int(n_territories if n_territories is not None else proposed.max() + 1)
    overlap = np.zeros((k, len(current_ids)))
    shared = np.zeros((k, len(current_ids)), dtype=np.int64)  # units in common
    col = {t: j for j, t in enumerate(current_ids)}
    cells = (proposed[known], [col[str(c)] for c in current[known]])
    np.add.at(overlap, cells, np.asarray(weight, dtype=float)[known])
    np.add.at(shared, cells, 1)
    names: list[str | None] = [None] * k
    if current_ids:
        for r, c in zip(*linear_sum_assignment(-overlap), strict=True):
            if shared[r, c]:  # never the id of a territory it shares nothing with
                names[r] = current_ids[c]
    taken = set(current_ids)
    fresh = (f"{prefix}{i:02d}" for i in range(1, k + len(taken) + 2))
    for r in range(k):
        if names[r] is None:
            names[r] = next(n for n in fresh if n not in taken)
    return [str(n) for n in names]


def match_territory_ids(
    proposed: np.ndarray, current: np.ndarray, weight: np.ndarray, prefix: str = "N"
) -> np.ndarray:
    """Territory id per unit: :func:`territory_ids_by_overlap` of each unit's territory."""
    names = territory_ids_by_overlap(proposed, current, weight, prefix=prefix)
    return np.asarray(names, dtype=object)[np.asarray(proposed)]


def moves_table(
    unit_ids: np.ndarray,
    current: np.ndarray,
    proposed: np.ndarray,
    potential: np.ndarray,
    unit_col: str = "unit_id",
) -> pd.DataFrame:
    """Units whose territory changes, with the potential that moves with them."""
    frame = pd.DataFrame(
        {unit_col: unit_ids, "from_territory": current, "to_territory": proposed,
         "potential": potential}
    )
    moved = frame["from_territory"].astype(str) != frame["to_territory"].astype(str)
    return frame.loc[moved].sort_values("potential", ascending=False).reset_index(drop=True)


def movement_by_territory(current: pd.Series, proposed: pd.Series) -> pd.DataFrame:
    """Units moved into and out of each territory, by territory name."""
    current = current.reindex(proposed.index).astype(str)
    proposed = proposed.astype(str)
    moved = current != proposed
    names = sorted(set(proposed) | set(current[current != "nan"]))
    return pd.DataFrame({
        "territory": names,
        "moved_in": [int((moved & (proposed == t)).sum()) for t in names],
        "moved_out": [int((moved & (current == t)).sum()) for t in names],
    })


def disruption(current: pd.Series, proposed: pd.Series, weight: pd.Series) -> dict[str, float]:
    """Share of units and of ``weight`` (potential) that change territory, in percent."""
    moved = current.reindex(proposed.index).astype(str) != proposed.astype(str)
    w = weight.reindex(proposed.index).fillna(0.0)
    return {
        "disruption_units_pct": float(100 * moved.mean()),
        "disruption_potential_pct": float(100 * w[moved].sum() / w.sum()) if w.sum() > 0 else 0.0,
    }


def territory_deviation(totals: pd.Series, labels: pd.Series) -> pd.Series:
    """Signed deviation of each territory's total from the mean territory total."""
    per_territory = totals.groupby(labels.reindex(totals.index)).sum()
    return per_territory / per_territory.mean() - 1.0


def peer_penetration(potential: pd.Series, penetration: pd.Series, n_groups: int = 10) -> pd.Series:
    """Median penetration of units in the same potential decile ("comparable units").

    Groups hold at least five units, so small data sets use fewer groups.
    """
    n_groups = max(1, min(n_groups, len(potential) // 5))
    groups = pd.qcut(potential.rank(method="first"), n_groups, labels=False, duplicates="drop")
    return penetration.groupby(groups).transform("median")


def unit_recommendations(
    unit_totals: pd.DataFrame,
    current: pd.Series,
    proposed: pd.Series,
    under_served_ratio: float = 0.7,
    data_gaps: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per unit: scores, territories, drivers, and an action with its reason.

    Parameters
    ----------
    unit_totals
        Indexed by unit: ``forecast``, ``forecast_lo``, ``forecast_hi``,
        ``potential`` (all over the horizon) and ``drivers``; ``name`` optional.
    current, proposed
        Territory per unit.
    under_served_ratio
        A unit is under-served when its penetration is below this share of
        the median penetration of comparable units (same potential decile).
    data_gaps
        By unit, a data gap in words (no sales history, zeros coding a gap):
        such a unit is not judged on penetration; its action is "check data".

    Returns
    -------
    pandas.DataFrame
        Sorted by white space, largest first, with ``action`` in
        {"move", "grow", "keep", "check data"} and a ``reason`` in words.
    """
    out = unit_totals.copy()
    out["white_space"] = out["potential"] - out["forecast"]
    out["penetration"] = np.where(out["potential"] > 0, out["forecast"] / out["potential"], np.nan)
    out["peer_penetration"] = peer_penetration(out["potential"], out["penetration"])
    out["current_territory"] = current.reindex(out.index)
    out["proposed_territory"] = proposed.reindex(out.index)
    current_dev = territory_deviation(out["potential"], out["current_territory"])
    proposed_dev = territory_deviation(out["potential"], out["proposed_territory"])
    gaps = (data_gaps.reindex(out.index) if data_gaps is not None
            else pd.Series(np.nan, index=out.index, dtype=object))
    actions, reasons = [], []
    for pen, peer, cur, new, gap in zip(out["penetration"], out["peer_penetration"],
                                        out["current_territory"], out["proposed_territory"],
                                        gaps, strict=True):
        if str(cur) != str(new) and cur == cur:
            dev = current_dev.get(cur, np.nan)
            side = "over" if dev > 0 else "under"
            after = proposed_dev.get(new, np.nan)
            actions.append("move")
            ends = (f"ends {after:+.0%} from balance" if round(abs(after), 2) >= 0.01
                    else "ends within 1% of balance")
            reasons.append(f"move from {cur} to {new}: {cur} is {abs(dev):.0%} {side} potential "
                           f"balance; {new} {ends}")
        elif isinstance(gap, str):
            actions.append("check data")
            reasons.append(f"{gap}: penetration is not known; check the data before acting")
        elif pen == pen and peer == peer and pen < under_served_ratio * peer:
            actions.append("grow")
            reasons.append(
                f"under-served: penetration {pen:.0%} vs {peer:.0%} for comparable units")
        else:
            actions.append("keep")
            known = pen == pen and peer == peer
            reasons.append(f"keep in {new}: penetration {pen:.0%} vs {peer:.0%} for comparable "
                           "units" if known else f"keep in {new}")
    out["action"] = actions
    out["reason"] = reasons
    return out.sort_values("white_space", ascending=False)


def territory_recommendations(
    recs: pd.DataFrame,
    summary: pd.DataFrame,
    territory_col: str = "proposed_territory",
    top_units: int = 3,
) -> pd.DataFrame:
    """Per proposed territory: totals, balance, compactness, forecast vs potential, white space.

    ``summary`` is the designer's per-territory report with a ``territory``
    column; its balance and compactness columns are kept.
    """
    grouped = recs.groupby(territory_col)
    frame = pd.DataFrame({
        "units": grouped.size(),
        "forecast": grouped["forecast"].sum(),
        "potential": grouped["potential"].sum(),
        "white_space": grouped["white_space"].sum(),
    })
    frame["penetration"] = frame["forecast"] / frame["potential"]
    label = recs["name"] if "name" in recs else pd.Series(recs.index, index=recs.index)
    ranked = recs.assign(_label=label.astype(str)).sort_values("white_space", ascending=False)
    frame["top_white_space_units"] = ranked.groupby(territory_col)["_label"].apply(
        lambda s: "; ".join(s.head(top_units)))  # names may hold commas ("Story, Iowa")
    keep = [c for c in summary.columns if c.endswith("_deviation") or c in
            ("n_components", "mean_distance_km", "diameter_km", "polsby_popper", "moved_in",
             "moved_out", "potential_lo", "potential_hi", "p_within_tolerance")]
    merged = frame.join(summary.set_index("territory")[keep], how="left")
    return merged.rename_axis("territory").reset_index().sort_values("white_space",
                                                                     ascending=False)


def rep_changes(
    reps: pd.DataFrame,
    recs: pd.DataFrame,
    workload: pd.Series,
    xy: pd.DataFrame,
    territory_col: str = "territory_id",
    rep_col: str = "rep_id",
    capacity: float | None = None,
) -> pd.DataFrame:
    """What the realignment changes for each rep, and each rep's load against capacity.

    Parameters
    ----------
    reps
        ``territory_id``, ``rep_id`` and optionally ``rep_name``, ``home_unit_id``
        and ``capacity`` (workload the rep carries: adds ``capacity`` and
        ``load_before``/``load_after``, workload over capacity).
    recs
        Output of :func:`unit_recommendations`.
    workload
        Per-unit workload.
    xy
        Per-unit projected coordinates in metres, columns ``x`` and ``y``.
    capacity
        Workload one rep can carry, for reps without their own ``capacity``:
        with either, ``load_before`` and ``load_after`` are the workload as a
        share of the rep's capacity.
    """
    rows = []
    for _, rep in reps.iterrows():
        terr = rep[territory_col]
        before = recs["current_territory"] == terr
        after = recs["proposed_territory"] == terr
        row = {
            rep_col: rep[rep_col],
            "rep_name": rep.get("rep_name"),
            territory_col: terr,
            "units_before": int(before.sum()),
            "units_after": int(after.sum()),
            "units_gained": int((after & ~before).sum()),
            "units_lost": int((before & ~after).sum()),
            "potential_before": float(recs.loc[before, "potential"].sum()),
            "potential_after": float(recs.loc[after, "potential"].sum()),
            "workload_before": float(workload.reindex(recs.index[before]).sum()),
            "workload_after": float(workload.reindex(recs.index[after]).sum()),
        }
        home = rep.get("home_unit_id")
        if home is not None and home == home and home in xy.index:
            hx, hy = xy.loc[home, "x"], xy.loc[home, "y"]
            for tag, mask in (("before", before), ("after", after)):
                pts = xy.reindex(recs.index[mask])
                dist = np.hypot(pts["x"] - hx, pts["y"] - hy) / 1000.0
                row[f"mean_km_from_home_{tag}"] = float(dist.mean()) if len(dist) else np.nan
                row[f"max_km_from_home_{tag}"] = float(dist.max()) if len(dist) else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["potential_change"] = frame["potential_after"] - frame["potential_before"]
    frame["workload_change"] = frame["workload_after"] - frame["workload_before"]
    own = (pd.to_numeric(reps["capacity"], errors="coerce").to_numpy() if "capacity" in reps
           else np.full(len(reps), np.nan))
    cap = np.where(np.isfinite(own), own, np.nan if capacity is None else float(capacity))
    if np.isfinite(cap).any():
        frame["capacity"] = cap
        frame["load_before"] = frame["workload_before"] / frame["capacity"]
        frame["load_after"] = frame["workload_after"] / frame["capacity"]
    return frame.sort_values("potential_change")


def white_space_opportunities(recs: pd.DataFrame, top: int = 100) -> pd.DataFrame:
    """Company-wide ranking of units by white space (potential − forecast)."""
    ranked = recs[recs["white_space"] > 0].sort_values("white_space", ascending=False).head(top)
    ranked = ranked.reset_index()
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


@dataclass
class Recommendations:
    units: pd.DataFrame
    territories: pd.DataFrame
    reps: pd.DataFrame | None
    opportunities: pd.DataFrame
    moves: pd.DataFrame


def recommend(
    unit_totals: pd.DataFrame,
    proposed: pd.Series,
    current: pd.Series | None,
    territory_summary: pd.DataFrame,
    unit_col: str,
    unit_names: pd.Series | None = None,
    reps: pd.DataFrame | None = None,
    workload: pd.Series | None = None,
    xy: pd.DataFrame | None = None,
    territory_col: str = "territory_id",
    rep_col: str = "rep_id",
    data_gaps: pd.Series | None = None,
    rep_capacity: float | None = None,
) -> Recommendations:
    """Per unit, territory and rep recommendations, white space and moves.

    ``proposed`` and ``current`` give each unit's territory (no current
    alignment: the proposal is compared with itself); ``unit_names`` (by
    unit) labels the units; ``reps`` with ``workload`` and ``xy`` (by unit)
    adds what the realignment changes for each rep, and their load against
    ``rep_capacity`` (or the reps' own ``capacity``); ``data_gaps`` (by unit, in
    words) marks units whose penetration cannot be judged.
    """
    current = current if current is not None else proposed
    totals = unit_totals if unit_names is None else unit_totals.join(unit_names.rename("name"))
    units = unit_recommendations(totals, current, proposed, data_gaps=data_gaps)
    units.index.name = unit_col
    territories = territory_recommendations(units, territory_summary)
    rep_table = None
    if reps is not None:
        rep_table = rep_changes(reps, units, workload, xy, territory_col=territory_col,
                                rep_col=rep_col, capacity=rep_capacity)
    uid = proposed.index.to_numpy()
    moves = moves_table(uid, current.reindex(uid).to_numpy(), proposed.to_numpy(),
                        totals["potential"].reindex(uid).to_numpy(), unit_col)
    if unit_names is not None:
        moves.insert(1, "name", unit_names.reindex(moves[unit_col]).to_numpy())
    return Recommendations(units, territories, rep_table, white_space_opportunities(units), moves)
