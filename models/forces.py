"""Potential and forecast per segment, and a sales force's scores: the sum over its segments.

Potential per unit and segment (:func:`fit_segment_potential`) comes from
the run's own potential model (:func:`territory.models.potential_rep.fit_potential`,
``potential.method``), fitted two ways and chosen by its out-of-sample loss:

- one global model with the segment as a feature: the market table stacked
  once per segment with a ``segment_code`` column, the target that segment's
  annual sales. It shares what the markets have in common, but greedy trees
  can miss an interaction whose main effects cancel (one line urban-led,
  the other rural-led: pooled, density predicts nothing);
- one model per segment, on that segment's sales alone.

A rep-adjusted potential separates each force's rep effect: a row's
territory is its force's current territory (named ``segment:territory``).

The forecast stays the run's one forecaster of total sales. A force's
forecast is the unit's total forecast times the force's share of that
unit's sales over the last year (top-down disaggregation with historical
proportions), its interval likewise. Its potential is the sum of its
segments' potentials, its white space the difference.

Pure functions: DataFrames and arrays in, DataFrames out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from territory.models.config import PotentialConfig
from territory.models.potential import describe_drivers
from territory.models.potential_rep import fit_potential

SEGMENT_CODE = "segment_code"
FORCE_COL = "force"


def stacked_market(market: pd.DataFrame, segments: Sequence[str]) -> pd.DataFrame:
    """The market table once per segment, with ``segment_code`` (0, 1, ...) and a unique
    ``unit|segment`` index."""
    parts = []
    for code, segment in enumerate(segments):
        part = market.copy()
        part[SEGMENT_CODE] = float(code)
        part.index = [f"{u}|{segment}" for u in market.index]
        parts.append(part)
    return pd.concat(parts)


#: Out-of-sample loss of each potential method (lower is better), to choose the models by.
CRITERIA = {1.0: "potential_cv_log_rmse_rep", 0.0: "potential_cv_pinball"}
SEGMENT_MODELS = ("auto", "global", "per_segment")


def _groups(segment: str, current: pd.Series | None, index: pd.Index) -> np.ndarray:
    """Each unit's territory in the force selling ``segment``, named ``segment:territory``."""
    if current is None:
        return np.full(len(index), np.nan, dtype=object)
    labels = current.reindex(index).to_numpy(dtype=object)
    return np.array([f"{segment}:{t}" if pd.notna(t) else np.nan for t in labels], dtype=object)


def _territory(groups: np.ndarray, index: pd.Index) -> pd.Series | None:
    territory = pd.Series(groups, index=index, dtype=object)
    return None if territory.notna().sum() == 0 else territory


def _criterion(metrics: dict[str, float]) -> tuple[str, float]:
    name = CRITERIA[metrics["potential_rep_adjusted"]]
    return name, float(metrics[name])


def pool_metrics(parts: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Several segments' potential metrics as one (``parts``: metrics and units per segment).

    Out-of-sample measures are means over units, so they pool as means
    weighted by units (an RMSE as the root of the weighted mean square).
    Segments whose models use different methods do not pool: only
    ``potential_rep_adjusted`` (0 for the quantile) comes back.
    """
    methods = {m["potential_rep_adjusted"] for m, _ in parts}
    out = {"potential_rep_adjusted": min(methods)}
    if len(methods) > 1:
        return out
    weights = np.array([w for _, w in parts], dtype=float)
    shared = set.intersection(*(set(m) for m, _ in parts)) - set(out)
    for key in sorted(k for k in shared if k.startswith("potential_cv_")):
        values = np.array([m[key] for m, _ in parts], dtype=float)
        out[key] = float(np.sqrt(np.sum(weights * values**2) / weights.sum()) if "rmse" in key
                         else np.sum(weights * values) / weights.sum())
    return out


def _global_potential(config, market, annual, territory_by_segment, xy):
    """One model over every segment, the segment a feature: potential, drivers, metrics
    (the same for every segment)."""
    segments = list(annual.columns)
    X = stacked_market(market, segments)
    y = np.concatenate([annual[s].reindex(market.index).to_numpy(float) for s in segments])
    groups = np.concatenate([_groups(s, territory_by_segment.get(s), market.index)
                             for s in segments])
    model, metrics, _ = fit_potential(config, X, y, _territory(groups, X.index),
                                      np.vstack([xy] * len(segments)))
    potential, drivers = {}, {}
    for code, segment in enumerate(segments):
        rows = X.iloc[code * len(market):(code + 1) * len(market)]
        potential[segment] = pd.Series(model.predict(rows), index=market.index)
        contributions = model.contributions(rows).drop(columns=SEGMENT_CODE)
        drivers[segment] = describe_drivers(contributions.set_axis(market.index))
    models = {segment: (model, float(code)) for code, segment in enumerate(segments)}
    return (pd.DataFrame(potential), pd.DataFrame(drivers), metrics,
            dict.fromkeys(segments, metrics), models)


def _per_segment_potential(config, market, annual, territory_by_segment, xy):
    """One model per segment: potential, drivers, the metrics pooled over the segments
    (with each segment's under ``<name>_<segment>``), each segment's metrics and model."""
    potential, drivers, parts, each, models = {}, {}, [], {}, {}
    for segment in annual.columns:
        y = annual[segment].reindex(market.index).to_numpy(float)
        groups = _groups(segment, territory_by_segment.get(segment), market.index)
        model, metrics, _ = fit_potential(config, market, y, _territory(groups, market.index),
                                          xy)
        potential[segment] = pd.Series(model.predict(market), index=market.index)
        drivers[segment] = describe_drivers(model.contributions(market))
        parts.append((metrics, float(np.isfinite(y).sum())))
        each[segment] = metrics
        models[segment] = (model, None)
    metrics = pool_metrics(parts)
    for segment, seg_metrics in each.items():
        metrics |= {f"{k}_{segment}": v for k, v in seg_metrics.items()
                    if k.startswith("potential_cv_")}
    return pd.DataFrame(potential), pd.DataFrame(drivers), metrics, each, models


def fit_segment_potential(
    config: PotentialConfig,
    market: pd.DataFrame,
    annual_by_segment: pd.DataFrame,
    territory_by_segment: Mapping[str, pd.Series | None],
    xy: np.ndarray,
    models: str = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], dict[str, dict[str, float]],
           dict[str, tuple[object, float | None]]]:
    """Annual potential per unit and segment: one global model with the segment as a
    feature, one model per segment, or (``auto``) the one of the two with the lower
    out-of-sample loss of ``potential.method`` (spatial-block cross-validation).

    Parameters
    ----------
    market
        Market features per unit (the feature set's market table).
    annual_by_segment
        Annual sales per unit (rows, the market table's order) and segment (columns).
    territory_by_segment
        Per segment, the current territory per unit of the force that sells it
        (None: no alignment), for a rep-adjusted potential.
    xy
        Unit coordinates, in the market table's order (spatial folds).
    models
        ``auto``, ``global`` or ``per_segment``. ``auto`` is ``per_segment`` when
        some segments' forces have a current alignment and others not (their
        potentials are then of different methods).

    Returns
    -------
    potential, drivers, metrics, by_segment, models
        Annual potential and its top drivers per unit (rows) and segment
        (columns); the chosen models' out-of-sample metrics, both candidates'
        criterion (``potential_cv_<criterion>_global`` / ``_per_segment``) and
        ``potential_per_segment_models`` (1: one model per segment); per
        segment the metrics of the model that made its potential; and per
        segment that model with its ``segment_code`` (None: a model of the
        segment alone), as :class:`territory.models.force_recommender.ForcePotential`
        takes them.
    """
    if models not in SEGMENT_MODELS:
        raise ValueError(f"models must be one of {SEGMENT_MODELS}, got {models!r}")
    args = (config, market, annual_by_segment, territory_by_segment, xy)
    with_alignment = {territory_by_segment.get(s) is not None for s in annual_by_segment}
    if models == "auto" and len(with_alignment) > 1:
        models = "per_segment"  # some forces have a current alignment, some not: no one model
    candidates = {}
    if models in ("auto", "global"):
        candidates["global"] = _global_potential(*args)
    if models in ("auto", "per_segment"):
        candidates["per_segment"] = _per_segment_potential(*args)
    scores = {kind: _criterion(result[2]) for kind, result in candidates.items()
              if CRITERIA[result[2]["potential_rep_adjusted"]] in result[2]}
    chosen = min(scores, key=lambda kind: scores[kind][1]) if scores else next(iter(candidates))
    potential, drivers, metrics, by_segment, models_used = candidates[chosen]
    metrics = dict(metrics)
    for kind, (name, value) in scores.items():
        metrics[f"{name}_{kind}"] = value
    metrics["potential_per_segment_models"] = float(chosen == "per_segment")
    return potential, drivers, metrics, by_segment, models_used


def force_share(annual_force: pd.Series, annual_total: pd.Series) -> pd.Series:
    """Each unit's share of its sales that a force sells, over the last year.

    A unit without recent sales takes the force's share of all units' sales.
    """
    overall = float(annual_force.sum()) / max(float(annual_total.sum()), 1e-12)
    share = annual_force / annual_total.where(annual_total > 0)
    return share.where(np.isfinite(share), np.nan).fillna(overall).clip(0.0, 1.0)


def force_scores(
    scores: pd.DataFrame,
    share: pd.Series,
    annual_potential: pd.Series,
    drivers: pd.Series,
    periods_per_year: int,
    unit_col: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A force's scores per (unit, horizon) and per unit, from the run's total scores.

    The forecast and its interval are scaled by the force's ``share`` of the
    unit's sales; potential per period is the force's annual potential over
    ``periods_per_year``; white space is their difference.
    """
    out = scores.copy()
    unit = out[unit_col]
    factor = unit.map(share).fillna(0.0).to_numpy()
    for column in ("forecast", "forecast_lo", "forecast_hi"):
        out[column] = out[column].to_numpy() * factor
    out["potential"] = unit.map(annual_potential).to_numpy() / periods_per_year
    out["white_space"] = out["potential"] - out["forecast"]
    out["drivers"] = unit.map(drivers).to_numpy()
    totals = out.groupby(unit_col).agg(
        forecast=("forecast", "sum"), forecast_lo=("forecast_lo", "sum"),
        forecast_hi=("forecast_hi", "sum"), potential=("potential", "sum"))
    totals["drivers"] = drivers.reindex(totals.index)
    if "forecast_drivers" in out:
        totals["forecast_drivers"] = out.groupby(unit_col)["forecast_drivers"].first()
    totals["forecast"] = totals["forecast"].fillna(0.0)
    return out, totals


def with_force(frame: pd.DataFrame, force: str) -> pd.DataFrame:
    """``frame`` with a leading ``force`` column (for the combined output tables)."""
    out = frame.copy()
    if FORCE_COL in out.columns:
        out = out.drop(columns=FORCE_COL)
    out.insert(0, FORCE_COL, force)
    return out


def overlay(
    proposed: Mapping[str, pd.Series],
    reps: Mapping[str, pd.DataFrame | None],
    sold: pd.DataFrame,
    xy: pd.DataFrame,
    territory_col: str = "territory_id",
    rep_col: str = "rep_id",
    home_col: str = "home_unit_id",
) -> pd.DataFrame:
    """Per unit, which territory and rep of each force covers it, and the shared customers.

    A unit is ``shared`` when every force sold there over the last year
    (``sold``: unit x force), so reps of each force work it. A rep keeps
    their territory's id (as in the rep changes), so a proposed territory's
    rep and home come from the force's reps table; for each pair of forces
    with homes, ``homes_km_<a>_<b>`` is how far apart the two reps covering
    the unit live (straight line, km; ``xy`` in metres, indexed by unit).
    """
    out = pd.DataFrame(index=xy.index)
    homes = {}
    for force, labels in proposed.items():
        out[f"{force}_territory"] = labels.reindex(out.index)
        table = reps.get(force)
        if table is None:
            continue
        by_territory = table.drop_duplicates(territory_col).set_index(territory_col)
        out[f"{force}_rep"] = out[f"{force}_territory"].map(by_territory[rep_col])
        if home_col in by_territory:
            homes[force] = out[f"{force}_territory"].map(by_territory[home_col])
    out["shared"] = (sold.reindex(out.index).fillna(0.0) > 0).all(axis=1).to_numpy()
    names = list(homes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = xy.reindex(homes[a].to_numpy()), xy.reindex(homes[b].to_numpy())
            out[f"homes_km_{a}_{b}"] = np.hypot(pa["x"].to_numpy() - pb["x"].to_numpy(),
                                                 pa["y"].to_numpy() - pb["y"].to_numpy()) / 1e3
    return out
