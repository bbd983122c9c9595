"""Recommendations from scores and alignments: pure functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


def match_territory_ids(
    proposed: np.ndarray, current: np.ndarray, weight: np.ndarray, prefix: str = "N"
) -> np.ndarray:
    """Name proposed territories after the current ones they overlap most.

    Overlap is measured in ``weight`` (potential), matched one to one with the
    Hungarian algorithm; proposed territories left over get fresh ids.

    Parameters
    ----------
    proposed
        Integer labels ``0..K-1`` per unit.
    current
        Current territory id per unit (str, or None where unassigned).
    weight
        Per-unit weight for the overlap.
    """
    current = pd.Series(current, dtype="object")
    current_ids = sorted(current.dropna().unique())
    k = int(proposed.max()) + 1
    overlap = np.zeros((k, len(current_ids)))
    col = {t: j for j, t in enumerate(current_ids)}
    for lab, cur, w in zip(proposed, current, weight, strict=True):
        if cur is not None and cur == cur:
            overlap[lab, col[cur]] += w
    names = [f"{prefix}{i + 1:02d}" for i in range(k)]
    if current_ids:
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols, strict=True):
            names[r] = current_ids[c]
    return np.asarray(names, dtype=object)[proposed]


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


def unit_recommendations(
    scores_total: pd.DataFrame,
    current: pd.Series,
    proposed: pd.Series,
    under_served_ratio: float = 0.7,
) -> pd.DataFrame:
    """One row per unit: totals over the horizon, territories and an action with a reason.

    ``scores_total`` is indexed by unit with ``forecast``, ``potential`` and
    ``drivers``. A unit is *under-served* when its penetration is below
    ``under_served_ratio`` × the median penetration of units with similar
    potential (same potential decile).
    """
    out = scores_total.copy()
    out["white_space"] = out["potential"] - out["forecast"]
    out["penetration"] = np.where(out["potential"] > 0, out["forecast"] / out["potential"], np.nan)
    decile = pd.qcut(out["potential"].rank(method="first"), 10, labels=False, duplicates="drop")
    peer = out.groupby(decile)["penetration"].transform("median")
    out["current_territory"] = current.reindex(out.index)
    out["proposed_territory"] = proposed.reindex(out.index)
    actions, reasons = [], []
    for pen, peer_pen, cur, new in zip(
        out["penetration"], peer, out["current_territory"], out["proposed_territory"], strict=True
    ):
        if str(cur) != str(new):
            actions.append("move")
            reasons.append(f"move from {cur} to {new} to balance potential and workload")
        elif pen == pen and peer_pen == peer_pen and pen < under_served_ratio * peer_pen:
            actions.append("grow")
            reasons.append(
                f"under-served: penetration {pen:.0%} vs {peer_pen:.0%} for comparable units"
            )
        else:
            actions.append("keep")
            reasons.append("")
    out["action"] = actions
    out["reason"] = reasons
    return out.sort_values("white_space", ascending=False)
