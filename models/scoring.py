"""Scores per (unit, horizon): forecast, interval, potential, white space and drivers.

Pure: the pipeline's score stage reads the truth file (when there is one)
and calls :func:`score_units`; the Dask backend scores partitions of units
with the same function and computes :func:`truth_metrics` on all units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.features.feature_set import PERIODS_PER_YEAR, FeatureSet
from territory.features.panel import to_wide
from territory.models import backtest, combination
from territory.models.potential import describe_drivers
from territory.models.potential_uncertainty import unit_intervals
from territory.models.reconcile import Reconciliation
from territory.models.training import Trained


@dataclass
class Scores:
    scores: pd.DataFrame
    unit_totals: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)
    # per current territory: estimated and true potential share (only with a truth file)
    territory_truth: pd.DataFrame | None = None
    # coherent unit -> territory -> region -> total forecasts (the reconcile stage)
    reconciliation: Reconciliation | None = None


def annual_potential(trained: Trained, market_table: pd.DataFrame) -> pd.Series:
    """Annual potential per unit (index = the market table's)."""
    return pd.Series(trained.potential.predict(market_table), index=market_table.index)


def territory_share_error(estimated: pd.Series, actual: pd.Series,
                          territory: pd.Series) -> pd.Series:
    """Per territory, ``|estimated share - actual share| / actual share`` of the total.

    All three are indexed by unit; units without a territory or a value are left out.
    """
    frame = pd.DataFrame({"est": estimated, "actual": actual,
                          "territory": territory.reindex(estimated.index)}).dropna()
    sums = frame.groupby("territory")[["est", "actual"]].sum()
    actual_share = sums["actual"] / sums["actual"].sum()
    return ((sums["est"] / sums["est"].sum() - actual_share).abs() / actual_share).rename(
        "potential_share_error")


def potential_uncertainty_columns(trained: Trained, features: FeatureSet, potential: pd.Series,
                                  level: float = 0.8) -> pd.DataFrame:
    """Per unit: the ``level`` interval of its potential (``potential_lo``, ``potential_hi``)
    and what a plan's uncertainty is simulated from: the unit's own error variance
    (``potential_log_var``), its current territory (``potential_group``) and that
    territory's shared variance (``potential_group_var``: the larger of its rep
    effect's standard error squared and ``potential_cv_shared_log_var``, measured on
    held-out sales); empty without them (the quantile potential).

    See :mod:`territory.models.potential_uncertainty`.
    """
    model = trained.potential
    if not hasattr(model, "log_variance") or features.territory is None:
        return pd.DataFrame(index=potential.index)
    market = features.market_table.reindex(potential.index)
    own = model.log_variance(market)
    group = features.territory.reindex(potential.index)
    # the rep effect's own standard error, or what held-out sales show, if larger
    shared = trained.metrics.get("potential_cv_shared_log_var", 0.0)
    group_var = np.maximum(model.territory_effect_variance_, shared)
    frame = unit_intervals(potential, own, group.astype(str).where(group.notna()), group_var,
                           level)
    frame["potential_log_var"] = own.to_numpy()
    frame["potential_group"] = group.to_numpy()
    frame["potential_group_var"] = group.astype(str).map(group_var).fillna(0.0).to_numpy()
    return frame


def truth_metrics(potential: pd.Series, truth: pd.DataFrame | None,
                  territory: pd.Series | None = None) -> dict[str, float]:
    """Rank correlation and WAPE of the estimated potential against a known true potential,
    and (with the current ``territory`` of each unit) the territories' share errors.

    ``truth`` is indexed by unit; without a ``true_potential`` column (or
    without a truth table) there is nothing to compare and the dict is empty.
    """
    if truth is None or "true_potential" not in truth:
        return {}
    est = potential.reindex(truth.index).to_numpy()
    out = {
        "potential_spearman_vs_truth": backtest.spearman(est, truth["true_potential"].to_numpy()),
        "potential_wape_vs_truth": backtest.wape(truth["true_potential"], est),
    }
    if territory is not None and territory.notna().any():
        error = territory_share_error(potential, truth["true_potential"], territory)
        out["potential_share_error_p50_vs_truth"] = float(error.quantile(0.5))
        out["potential_share_error_p90_vs_truth"] = float(error.quantile(0.9))
    return out


def territory_truth_table(potential: pd.Series, truth: pd.DataFrame | None,
                          territory: pd.Series | None) -> pd.DataFrame | None:
    """Per current territory: its share of estimated and of true potential, and the error."""
    if truth is None or "true_potential" not in truth or territory is None:
        return None
    frame = pd.DataFrame({"est": potential, "true": truth["true_potential"],
                          "territory": territory.reindex(potential.index)}).dropna()
    sums = frame.groupby("territory")[["est", "true"]].sum()
    return pd.DataFrame({
        "potential_share": sums["est"] / sums["est"].sum(),
        "true_potential_share": sums["true"] / sums["true"].sum(),
        "share_error_vs_truth": territory_share_error(frame["est"], frame["true"],
                                                      frame["territory"]),
    }).rename_axis("territory").reset_index()


def member_history(features: FeatureSet, frequency: str, columns: ColumnsConfig
                   ) -> pd.DataFrame:
    """Sales per unit (rows) and period (columns) up to the as-of date, from the train table.

    The same history the train stage's backtest gives the statistical members: the
    feature set's sales panel, or (a feature set cached before it had one) what the
    train table holds.
    """
    panel = (features.sales_panel if features.sales_panel is not None else
             backtest.panel_from_table(features.train_table, frequency, columns))
    wide = to_wide(panel, columns.target_col, columns)
    start = wide.columns.min()
    periods = pd.date_range(start, features.as_of, freq=frequency)
    return wide.reindex(columns=periods)


def with_member_forecasts(features: FeatureSet, trained: Trained, frequency: str,
                          columns: ColumnsConfig) -> FeatureSet:
    """``features`` whose score table carries the published members' forecasts from the as-of.

    Unchanged when the published forecast needs no statistical member. The
    Dask backend calls this once, before it splits the score table.
    """
    published = trained.published
    if published is None or not published.needs_members or (
            features.sales_panel is None and features.train_table.empty):
        return features
    table = features.score_table
    if all(m in table for m in published.members):
        return features
    found = combination.member_forecasts(member_history(features, frequency, columns), table,
                                         published, features.as_of, columns.unit_col)
    return dataclasses.replace(features, score_table=pd.concat([table, found], axis=1))


def published_forecast(table: pd.DataFrame, trained: Trained) -> tuple:
    """Point, lower and upper bound the run publishes for each row of ``table``.

    LightGBM's, or combined with the statistical members (their columns in
    ``table``, see :func:`with_member_forecasts`) by the published weights,
    with the combination's conformal interval (the members' bounds, averaged,
    where it has none).
    """
    point, lo, hi = trained.forecaster.predict_interval(table)
    published = trained.published
    if published is None or published.method == combination.LIGHTGBM:
        return point, lo, hi
    frame = pd.DataFrame({"horizon": table["horizon"].to_numpy(), "forecast": point,
                          "forecast_lo": lo, "forecast_hi": hi})
    for m in published.members:
        for col in (m, *combination.bounds(m)):
            frame[col] = table[col].to_numpy() if col in table else float("nan")
    point, lo, hi = combination.combine(frame, published.weights)
    if published.intervals is not None and "history_periods" in table:
        rows = frame.assign(**{combination.COMBINED: point},
                            history_periods=table["history_periods"].to_numpy())
        lo, hi = combination.conformal_bounds(rows, combination.COMBINED, published.intervals,
                                              published.short_periods, lo, hi)
    return point, lo, hi


def score_units(
    features: FeatureSet,
    trained: Trained,
    frequency: str,
    columns: ColumnsConfig,
    truth: pd.DataFrame | None = None,
    interval_level: float = 0.8,
) -> Scores:
    """Scores per (unit, horizon) as in DESIGN.md, plus per-unit horizon totals.

    The forecast is the published one (:func:`published_forecast`): LightGBM's,
    or its combination with the statistical members refit at the as-of date.

    ``truth`` (indexed by unit, with ``true_potential``) adds
    :func:`truth_metrics` to the scores' metrics. With the rep-adjusted
    potential the totals add :func:`potential_uncertainty_columns`.
    """
    cols = columns
    features = with_member_forecasts(features, trained, frequency, cols)
    table = features.score_table
    point, lo, hi = published_forecast(table, trained)
    per_year = PERIODS_PER_YEAR[frequency]
    potential = annual_potential(trained, features.market_table)
    drivers = describe_drivers(trained.potential.contributions(features.market_table))
    unit_index = table[cols.unit_col].to_numpy()
    potential_per_period = potential.reindex(unit_index).to_numpy() / per_year
    scores = pd.DataFrame(
        {
            cols.unit_col: unit_index,
            "as_of": features.as_of,
            "horizon": table["horizon"].to_numpy(),
            "target_period": table["target_period"].to_numpy(),
            "forecast": point,
            "forecast_lo": lo,
            "forecast_hi": hi,
            "potential": potential_per_period,
        }
    )
    scores["white_space"] = scores["potential"] - scores["forecast"]
    scores["drivers"] = drivers.reindex(unit_index).to_numpy()
    totals = scores.groupby(cols.unit_col).agg(
        forecast=("forecast", "sum"), forecast_lo=("forecast_lo", "sum"),
        forecast_hi=("forecast_hi", "sum"), potential=("potential", "sum"),
    )
    totals["drivers"] = drivers.reindex(totals.index)
    forecast_drivers = trained.forecaster.drivers(table)  # e.g. "last 3 months +12%"
    scores["forecast_drivers"] = forecast_drivers.reindex(unit_index).to_numpy()
    totals["forecast_drivers"] = forecast_drivers.reindex(totals.index)
    # A unit without recent history still gets its potential; its forecast is 0.
    totals["forecast"] = totals["forecast"].fillna(0.0)
    totals = totals.join(potential_uncertainty_columns(trained, features, totals["potential"],
                                                       interval_level))
    return Scores(scores, totals, truth_metrics(potential, truth, features.territory),
                  territory_truth_table(potential, truth, features.territory))


def horizon_totals(scores: pd.DataFrame, totals: pd.DataFrame, unit_col: str) -> pd.DataFrame:
    """``totals`` with ``forecast``, ``forecast_lo`` and ``forecast_hi`` summed again over
    the horizon from ``scores`` (after they were reconciled)."""
    sums = scores.groupby(unit_col)[["forecast", "forecast_lo", "forecast_hi"]].sum()
    out = totals.copy()
    for col in sums:
        out[col] = sums[col].reindex(out.index)
    out["forecast"] = out["forecast"].fillna(0.0)
    return out


def forecast_accuracy(
    scores: pd.DataFrame,
    actuals: pd.DataFrame,
    columns,
    alignment: pd.Series | None = None,
) -> dict[str, float]:
    """Forecast against the actuals observed after the as-of date.

    Parameters
    ----------
    scores
        ``scores.parquet`` rows: unit, ``horizon``, ``target_period``,
        ``forecast``, ``forecast_lo``, ``forecast_hi``.
    actuals
        Sales history (unit, period, sales), including periods after the as-of date.
    columns
        The column names (``unit_col``, ``time_col``, ``target_col``).
    alignment
        Territory per unit; adds the WAPE of territory totals per month.

    Returns
    -------
    dict
        ``months_observed`` (target periods with actuals), ``wape``, ``bias``,
        ``coverage``, ``wape_h1`` and ``wape_territory``; NaN when no actual is
        known yet.
    """
    u, t, y = columns.unit_col, columns.time_col, columns.target_col
    truth = actuals[[u, t, y]].rename(columns={t: "target_period", y: "actual"})
    both = scores.merge(truth, on=[u, "target_period"], how="inner").dropna(subset=["actual"])
    nan = float("nan")
    out = {"months_observed": float(both["target_period"].nunique()), "wape": nan, "bias": nan,
           "coverage": nan, "wape_h1": nan, "wape_territory": nan}
    if both.empty:
        return out
    out["wape"] = backtest.wape(both["actual"], both["forecast"])
    out["bias"] = backtest.bias(both["actual"], both["forecast"])
    out["coverage"] = backtest.coverage(both["actual"], both["forecast_lo"], both["forecast_hi"])
    first = both[both["horizon"] == both["horizon"].min()]
    out["wape_h1"] = backtest.wape(first["actual"], first["forecast"])
    if alignment is not None:
        terr = both.assign(territory=alignment.reindex(both[u]).to_numpy()).dropna(
            subset=["territory"])
        sums = terr.groupby(["territory", "target_period"])[["actual", "forecast"]].sum()
        if len(sums):
            out["wape_territory"] = backtest.wape(sums["actual"], sums["forecast"])
    return out
