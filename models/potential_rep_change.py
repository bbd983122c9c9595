"""Territory potential share error on real data: held-out sales where a unit's rep changed.

On the demo the territories' potential share error is measured against the
simulator's truth. Real data has no truth, but it has natural experiments:
a unit that moved from one rep to another. Its sales after the move are its
market times the *new* rep's capture, so a potential fitted before the move
(with the old alignment) predicts them only as far as it separated the market
from the old rep: a potential that kept the old rep's effect in it is off by
the ratio of the two reps' effects.

:func:`rep_change_share_error` takes a potential model fitted on the sales up
to the change, with the alignment of that time, and each moved unit's sales
over the same length of time after it. Each moved unit's sales are predicted
as its potential at the new territory's effect (estimated, in the fit, from
the units that territory already had; a rep-adjusted model's
``territory_effects_``; a model without effects predicts its potential as it
stands). The moved units are grouped by the territory they moved into, and
per group the relative error of its share of the moved units' sales is
reported, as for the current territories (``potential_cv_sales_share_error``).
Shares make the metric blind to growth common to every unit between the two
periods. No truth file is read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from territory.features.errors import InputError


def moved_units(before: pd.Series, after: pd.Series) -> pd.Index:
    """Units with a territory in both alignments (by unit id) that changed territory."""
    both = pd.concat({"before": before, "after": after}, axis=1).dropna()
    return both.index[both["before"].astype(str) != both["after"].astype(str)]


def rep_change_share_error(
    model,
    market: pd.DataFrame,
    sales_after: pd.Series,
    before: pd.Series,
    after: pd.Series,
    min_units: int = 3,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Share error of the potential on moved units' sales after the move (see the module doc).

    Parameters
    ----------
    model
        A potential model fitted with ``before`` as the territories (``predict``, and for
        rep-adjusted models ``unit_log``, ``territory_effects_``).
    market
        Market features by unit id (the rows ``model`` was fitted on).
    sales_after
        Each unit's sales after the change, over the fit's period length, by unit id.
    before, after
        Territory per unit id at the fit and after the change.
    min_units
        Smallest number of moved units for a receiving territory to be scored.

    Returns
    -------
    metrics, territories
        ``potential_rep_change_units``, ``potential_rep_change_territories``, the p50 and p90
        of ``potential_rep_change_share_error`` and ``potential_rep_change_log_rmse`` (units'
        log error after removing the mean, i.e. common growth); per receiving territory
        ``n_units``, ``sales_after``, ``predicted_sales``, ``predicted_share``,
        ``actual_share`` (of the scored moved units' sales) and ``share_error``.
    """
    moved = moved_units(before, after).intersection(market.index)
    sales = sales_after.reindex(moved)
    moved = moved[sales.notna().to_numpy()]
    if (sales_after.reindex(moved) < 0).any():
        raise InputError("sales after the change", "sales must be >= 0", column="sales",
                         rows=list(moved[sales_after.reindex(moved).to_numpy() < 0][:5]))
    new = after.reindex(moved).astype(str)
    counts = new.value_counts()
    scored = counts.index[counts >= min_units]
    moved = moved[new.isin(scored).to_numpy()]
    new = new.reindex(moved)
    if len(scored) < 2:
        raise InputError("alignment change", f"only {len(scored)} territories received at "
                         f"least {min_units} moved units with sales after the change; the "
                         "share error needs two or more", column="territory",
                         hint="give an earlier alignment that differs from the current one in "
                              "more units, or lower min_units")
    predicted = _predicted_at_new_rep(model, market.loc[moved], new)
    actual = sales_after.reindex(moved).to_numpy(dtype=float)
    frame = pd.DataFrame({"territory": new.to_numpy(), "sales_after": actual,
                          "predicted_sales": predicted})
    sums = frame.groupby("territory").agg(n_units=("sales_after", "size"),
                                          sales_after=("sales_after", "sum"),
                                          predicted_sales=("predicted_sales", "sum"))
    sums["predicted_share"] = sums["predicted_sales"] / sums["predicted_sales"].sum()
    sums["actual_share"] = sums["sales_after"] / sums["sales_after"].sum()
    sums["share_error"] = ((sums["predicted_share"] - sums["actual_share"]).abs()
                           / sums["actual_share"])
    error = np.log1p(actual) - np.log1p(predicted)
    return {
        "potential_rep_change_units": float(len(moved)),
        "potential_rep_change_territories": float(len(sums)),
        "potential_rep_change_share_error_p50": float(sums["share_error"].quantile(0.5)),
        "potential_rep_change_share_error_p90": float(sums["share_error"].quantile(0.9)),
        "potential_rep_change_log_rmse": float(np.sqrt(np.mean((error - error.mean()) ** 2))),
    }, sums.reset_index()


def _predicted_at_new_rep(model, market: pd.DataFrame, new: pd.Series) -> np.ndarray:
    """Each row's potential at its new territory's effect (a territory the fit did not see,
    or a model without effects: the potential as it stands)."""
    effects = getattr(model, "territory_effects_", None)
    if effects is None:
        return np.asarray(model.predict(market), dtype=float)
    effect = effects.reindex(new.to_numpy()).to_numpy(dtype=float)
    at_reference = np.isnan(effect)
    effect[at_reference] = model.reference_effect_
    return np.maximum(np.expm1(model.unit_log(market) + effect), 0.0)
