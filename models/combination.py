"""The published forecast: LightGBM and the statistical members, combined per horizon.

Weights are learned on backtest windows only, and never on the window they
are scored on: the combination at origin ``t`` uses the members' errors at
origins before ``t`` (calibration origins, run before the scored ones, give
the first scored origin its weights). For each horizon ``h`` a member's
weight is proportional to ``1 / MASE`` of that member at horizon ``h`` on the
earlier origins, raised to ``power``; members more than ``trim`` times worse
than the best at that horizon get no weight. With no earlier origin every
member has the same weight. Intervals combine the members' bounds with the
same weights (quantile averaging).

:func:`combination_weights` gives the weights, :func:`add_combination` adds
the combined column to backtest predictions, :func:`promotion_gate` compares
the combination with the best single member on the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from territory.models.backtest import mase

COMBINED = "territory"


def bounds(member: str) -> tuple[str, str]:
    """Column names of a member's interval bounds in backtest predictions."""
    if member == "forecast":
        return "forecast_lo", "forecast_hi"
    return f"{member}_lo", f"{member}_hi"


def combination_weights(
    history: pd.DataFrame,
    members: Sequence[str],
    horizon: int,
    power: float = 1.0,
    trim: float = 1.5,
) -> pd.DataFrame:
    """Weights per horizon (rows ``1..horizon``) and member (columns), each row summing to 1.

    ``history`` holds backtest predictions of earlier origins: ``horizon``,
    ``actual``, ``scale`` and one column per member. A horizon without
    scored rows takes the weights of all horizons together; with no rows at
    all every member weighs the same.
    """
    members = list(members)
    equal = np.full(len(members), 1.0 / len(members))

    def weights_of(rows: pd.DataFrame) -> np.ndarray | None:
        scores = np.array([mase(rows["actual"], rows[m], rows["scale"]) for m in members])
        if not np.isfinite(scores).any():
            return None
        scores = np.where(np.isfinite(scores), scores, np.inf)
        keep = scores <= trim * scores.min()
        raw = np.where(keep, 1.0 / np.maximum(scores, 1e-9) ** power, 0.0)
        return raw / raw.sum()

    overall = weights_of(history) if len(history) else None
    rows = []
    for h in range(1, horizon + 1):
        at_h = history[history["horizon"] == h] if len(history) else history
        found = weights_of(at_h) if len(at_h) else None
        rows.append(found if found is not None else (overall if overall is not None else equal))
    return pd.DataFrame(rows, index=pd.RangeIndex(1, horizon + 1, name="horizon"),
                        columns=members)


def combine(frame: pd.DataFrame, weights: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Weighted point forecast and bounds of ``frame``'s rows (by their ``horizon``).

    A member without a value in a row leaves it; the others' weights are
    renormalised. Returns point, lower and upper bound.
    """
    members = list(weights.columns)
    w = weights.reindex(frame["horizon"].to_numpy()).to_numpy()
    out = []
    for cols in (members, [bounds(m)[0] for m in members], [bounds(m)[1] for m in members]):
        values = np.column_stack([
            frame[c].to_numpy(dtype=float) if c in frame else np.full(len(frame), np.nan)
            for c in cols])
        present = np.isfinite(values)
        mass = np.where(present, w, 0.0).sum(axis=1)
        total = np.where(present, values * w, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(mass > 0, total / mass, np.nan))
    return tuple(out)


def add_combination(
    predictions: pd.DataFrame,
    members: Sequence[str],
    horizon: int,
    power: float = 1.0,
    trim: float = 1.5,
) -> tuple[pd.DataFrame, dict[pd.Timestamp, pd.DataFrame]]:
    """Add the ``territory`` column (and its bounds) to backtest predictions.

    Each origin's rows are combined with weights from the origins before it.
    Returns the predictions with ``territory``, ``territory_lo`` and
    ``territory_hi``, and the weights used at each origin.
    """
    out = predictions.copy()
    lo_col, hi_col = bounds(COMBINED)
    for col in (COMBINED, lo_col, hi_col):
        out[col] = np.nan
    used: dict[pd.Timestamp, pd.DataFrame] = {}
    for origin in sorted(out["origin"].unique()):
        earlier = out[out["origin"] < origin]
        weights = combination_weights(earlier, members, horizon, power, trim)
        at = (out["origin"] == origin).to_numpy()
        point, lo, hi = combine(out.loc[at], weights)
        out.loc[at, COMBINED], out.loc[at, lo_col], out.loc[at, hi_col] = point, lo, hi
        used[pd.Timestamp(origin)] = weights
    return out, used


def promotion_gate(predictions: pd.DataFrame, members: Sequence[str]) -> dict[str, object]:
    """The combination against the best single member on the same rows (MASE).

    Returns the best member, both scores, the relative gap and whether the
    combination passes (is lower).
    """
    scores = {m: mase(predictions["actual"], predictions[m], predictions["scale"])
              for m in members}
    best = min(scores, key=lambda m: scores[m] if np.isfinite(scores[m]) else np.inf)
    ours = mase(predictions["actual"], predictions[COMBINED], predictions["scale"])
    return {"best_member": best, "best_member_mase": scores[best], "territory_mase": ours,
            "gap": ours / scores[best] - 1.0, "passed": bool(ours < scores[best])}
