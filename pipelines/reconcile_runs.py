"""The reconcile stage of every kind of run (issue #14, item 4): unit, territory, region and
total forecasts that add up on the published alignment.

* A run that trains (``territory run``) chooses the method on its own backtest windows
  (:func:`territory.models.reconcile.reconcile_published`).
* The train flow has no design: it chooses on the current alignment
  (:func:`train_choices`), so the scoring runs of its champion have a method to apply.
* A scoring run (nightly, backfill, scenario) applies its champion's method
  (:func:`territory.models.reconcile_runs.reconcile_with`), read from the champion's
  training run by the MLflow adapter (:mod:`territory.models.tracking.reconcile_record`).
* With sales forces, each force's hierarchy is reconciled on that force's sales, with the
  method chosen for it as above (:func:`reconciled_views`): per force, as a run without
  forces chooses, since the forces' territories and sales differ.

Every training run keeps its backtest forecasts of the units
(:func:`training_backtest`), from which a scoring run calibrates the aggregates' intervals.
Plain functions; the flows call them (:mod:`territory.pipelines.flows`).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from territory.features.feature_set import FeatureSet
from territory.features.panel import panel_on_calendar, to_wide
from territory.features.segments import segment_sales
from territory.models import alignment, scoring
from territory.models import reconcile as rc
from territory.models import reconcile_runs as rr
from territory.models.alignment import Design
from territory.models.scoring import Scores
from territory.models.training import Trained
from territory.pipelines.config import RunConfig


def _settings(config: RunConfig) -> dict:
    """What every reconciliation of ``config`` shares: calendar, member and columns."""
    season = config.features.season
    return {"season": season, "frequency": config.features.frequency,
            "member": config.forecast.reconcile.member, "unit_col": config.data.columns.unit_col,
            "max_history": 10 * season if season > 1 else None}


def total_history(config: RunConfig, features: FeatureSet, units) -> pd.DataFrame:
    """All sales, wide (units × periods up to the as-of date), on every unit of ``units``
    too (a scored unit without history has an all-unknown row)."""
    history = scoring.member_history(features, config.features.frequency, config.data.columns)
    history = history.set_axis(history.index.astype(str), axis=0)
    return history.reindex(history.index.union(pd.Index([str(u) for u in units])))


def force_history(config: RunConfig, inputs, force: str, total: pd.DataFrame) -> pd.DataFrame:
    """The sales of ``force``'s segments, wide, on the units and periods of ``total``."""
    cols = config.data.columns
    segments = next(f.segments for f in config.forces if f.name == force)
    sales = segment_sales(inputs.segment_sales, segments, cols)
    sales = sales[sales[cols.unit_col].astype(str).isin(set(total.index))]
    panel = panel_on_calendar(sales.assign(**{cols.unit_col: sales[cols.unit_col].astype(str)}),
                              total.index.to_numpy(), pd.DatetimeIndex(total.columns), cols)
    return rr.force_history(to_wide(panel, cols.target_col, cols), total)


def _hierarchy(config: RunConfig, territories: pd.Series, region: pd.Series | None,
               units: pd.Index, source: str) -> rc.Hierarchy:
    cols = config.data.columns
    frame = pd.DataFrame({cols.unit_col: territories.index.astype(str),
                          cols.territory_col: territories.to_numpy()})
    if region is not None:
        frame["region"] = region.reindex(territories.index).to_numpy()
    return rc.build_hierarchy(frame, units, unit_col=cols.unit_col,
                              territory_col=cols.territory_col,
                              region_col="region" if region is not None else None, source=source)


def training_backtest(config: RunConfig, trained: Trained) -> pd.DataFrame | None:
    """The train stage's backtest forecasts of the units, of the published forecast
    (:func:`territory.models.reconcile_runs.backtest_forecasts`); None without a backtest."""
    result = trained.backtest
    if result is None or result.predictions is None or not len(result.predictions):
        return None
    column = trained.published.method if trained.published is not None else "forecast"
    return rr.backtest_forecasts(result.predictions, column, config.data.columns.unit_col)


def _force_backtest(config: RunConfig, backtest: pd.DataFrame | None, own: pd.DataFrame,
                    total: pd.DataFrame) -> pd.DataFrame | None:
    if backtest is None:
        return None
    return rr.force_backtest(backtest, own, total, config.features.season,
                             config.data.columns.unit_col)


def reconcile_design(config: RunConfig, trained: Trained, scores: Scores, design: Design,
                     history: pd.DataFrame, force: str | None = None,
                     total: pd.DataFrame | None = None) -> Scores:
    """``scores`` reconciled on ``design``'s alignment (and regions) with ``history``'s sales.

    ``trained`` is this run's (choose on its backtest) or, in a scoring run, the champion's
    (apply its training run's method). ``force`` (with ``total``, all sales wide) reconciles
    that force's hierarchy: its backtest forecasts are the total's scaled to the force.
    Unchanged with ``forecast.reconcile.enabled: false`` or without a design.
    """
    rc_config, cols = config.forecast.reconcile, config.data.columns
    if not rc_config.enabled or design.proposed is None:
        return scores
    hierarchy = _hierarchy(config, design.proposed, design.region, history.index,
                           "the published alignment" + (f" of force {force}" if force else ""))
    choice, common = trained.champion_reconcile, _settings(config)
    if choice is not None:
        backtest = choice.backtest
        if force is not None:
            backtest = _force_backtest(config, backtest, history, total)
        table, record = rr.reconcile_with(
            hierarchy, scores.scores, history, backtest, choice.method_for(force),
            interval_level=config.forecast.interval_level, chosen_in=choice.run_id, **common)
    else:
        if force is None:  # the train stage's own predictions and column, as they are
            result, published = trained.backtest, trained.published
            backtest = result.predictions if result is not None else None
            column = published.method if published is not None else "forecast"
        else:
            backtest = _force_backtest(config, training_backtest(config, trained), history,
                                       total)
            column = "forecast"
        table, record = rc.reconcile_published(
            hierarchy, scores.scores, history, backtest, column, methods=tuple(rc_config.methods),
            level=rc_config.level, tolerance=rc_config.tolerance,
            unit_tolerance=rc_config.unit_tolerance,
            interval_level=config.forecast.interval_level, **common)
    metrics = {**scores.metrics, **record.metrics()}
    if record.method == "bottom_up":
        return replace(scores, reconciliation=record, metrics=metrics)
    totals = scoring.horizon_totals(table, scores.unit_totals, cols.unit_col)
    return replace(scores, scores=table, unit_totals=totals, reconciliation=record,
                   metrics=metrics)


def reconciled_views(config: RunConfig, views: list, designs: list[Design], trained: Trained
                     ) -> list:
    """Each force's view (:class:`territory.pipelines.forces.ForceView`) with its scores
    reconciled on its design and its own sales (:func:`reconcile_design`)."""
    if not views or not config.forecast.reconcile.enabled:
        return views
    first = views[0]
    total = total_history(config, first.features,
                          first.scores.scores[config.data.columns.unit_col].unique())
    out = []
    for view, design in zip(views, designs, strict=True):
        own = force_history(config, view.inputs, view.name, total)
        out.append(replace(view, scores=reconcile_design(view.config, trained, view.scores,
                                                         design, own, view.name, total)))
    return out


def _choose(config: RunConfig, territories: pd.Series, history: pd.DataFrame,
            backtest: pd.DataFrame, source: str) -> tuple[str, pd.DataFrame]:
    """The method chosen on ``backtest``'s windows on the alignment ``territories``."""
    rc_config, common = config.forecast.reconcile, _settings(config)
    hierarchy = _hierarchy(config, territories, None, history.index, source)
    horizon = int(backtest["horizon"].max())
    windows = rc.backtest_windows(hierarchy, backtest, history, "forecast", horizon,
                                  common["season"], common["frequency"], common["member"],
                                  common["unit_col"], common["max_history"])
    level = rc_config.level if rc_config.level in hierarchy.levels else "total"
    return rc.choose_method(hierarchy, windows, tuple(rc_config.methods), level=level,
                            tolerance=rc_config.tolerance, unit_tolerance=rc_config.unit_tolerance)


def train_choices(config: RunConfig, inputs, features: FeatureSet, trained: Trained
                  ) -> dict[str | None, tuple[str, pd.DataFrame]]:
    """The train flow's choice of method, on the current alignment (per force, on each
    force's), for the scoring runs of its champion: ``{force: (method, table)}`` (key None
    without forces). A hierarchy without a complete current alignment is left out: its
    scoring runs publish BottomUp."""
    backtest = training_backtest(config, trained)
    if backtest is None or not config.forecast.reconcile.enabled:
        return {}
    cols = config.data.columns
    total = total_history(config, features, backtest[cols.unit_col].unique())
    current = ({None: inputs.alignment} if config.forces is None else
               {name: tables.alignment for name, tables in inputs.force_tables.items()})
    out = {}
    for force, table in current.items():
        if table is None:
            continue
        territories = alignment.current_territories(table, total.index.to_numpy(), cols)
        if territories.isna().any():
            continue
        history, force_rows = total, backtest
        if force is not None:
            history = force_history(config, inputs, force, total)
            force_rows = rr.force_backtest(backtest, history, total, config.features.season,
                                           cols.unit_col)
        out[force] = _choose(config, territories, history, force_rows,
                             "the current alignment" + (f" of force {force}" if force else ""))
    return out
