"""The stages of a run with several sales forces (``forces:`` in the config).

One run, one feature set, one forecaster of total sales; then per segment a
potential (one global model with the segment as a feature,
:mod:`territory.models.forces`), and per force its scores, its design with
the territory engine and its recommendations, each force on its own
territories config, current alignment and reps.

Every per-force step reuses the one-force stage of
:mod:`territory.pipelines.stages` on a view of the run: :func:`force_view`
gives a force its config (``territories`` and ``data.alignment``/``reps``
its own), its inputs (its alignment and reps) and its feature set (its
workload and current territories). A config without ``forces:`` never
reaches this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from territory.features import input_checks as checks
from territory.features import io as fio
from territory.features.errors import InputError
from territory.features.feature_set import FeatureSet, annual_and_workload
from territory.features.panel import panel_on_calendar, regular_periods
from territory.features.segments import SEGMENT_COL, check_segments, segment_sales
from territory.models import alignment
from territory.models import forces as mf
from territory.models.force_recommender import (
    ForcePotential,
    ForcesRecommender,
    SegmentPotentials,
)
from territory.models.potential import describe_drivers
from territory.models.recommender import build_bundle
from territory.models.scoring import Scores
from territory.pipelines.config import RunConfig
from territory.pipelines.forces_config import ForceConfig


@dataclass
class ForceTables:
    """A force's own inputs: its current alignment and reps (None where not given)."""

    alignment: pd.DataFrame | None
    reps: pd.DataFrame | None


@dataclass
class SegmentModels:
    """What the segment stage learned: per unit, each force's annual sales, workload,
    potential and drivers, and the potential model's metrics."""

    annual: pd.DataFrame  # unit x force: sales over the last year
    workload: pd.DataFrame  # unit x force
    potential: pd.DataFrame  # unit x force: annual potential (sum over its segments)
    drivers: pd.DataFrame  # unit x force: the top drivers of its largest segment
    by_segment: pd.DataFrame  # unit x segment: annual potential
    metrics: dict[str, float]  # the segment models' (``segment_potential_*``)
    force_metrics: dict[str, dict[str, float]]  # per force: its potential's (``potential_*``)
    models: dict[str, ForcePotential] | None = None  # per force: its potential model (serving)


def check_flow_takes_forces(config: RunConfig, kind: str) -> None:
    """Only the pipeline (``territory run``, folder kind ``runs``) designs with forces yet."""
    if config.forces is not None and kind not in ("runs", "features"):
        raise InputError("config", f"forces: are designed by the pipeline (territory run) only; "
                         f"this flow ({kind}) works on one sales force", key="forces",
                         hint="run `territory run` for the forces' designs, or remove forces: "
                              "from this flow's config")


def force_config(config: RunConfig, force: ForceConfig) -> RunConfig:
    """The run's config as one force sees it: its territories, alignment and reps."""
    data = config.data.model_copy(update={"alignment": force.alignment, "reps": force.reps})
    return config.model_copy(update={"territories": force.territories, "data": data})


def load_force_tables(config: RunConfig, inputs) -> dict[str, ForceTables]:
    """Check the segments against the forces and read each force's alignment and reps.

    Units left out for data gaps (``data.gaps: exclude``) are left out here too.
    """
    data, cols = config.data, config.data.columns
    if inputs.segment_sales is None:
        raise InputError(str(data.sales), "forces: are configured, but the sales file has no "
                         f"'{SEGMENT_COL}' column saying which segment each row belongs to",
                         column=SEGMENT_COL,
                         hint=f"add a '{SEGMENT_COL}' column (product line or customer "
                              "segment) to the sales file, or remove forces: from the config")
    check_segments(sorted(inputs.segment_sales[SEGMENT_COL].unique()),
                   {f.name: f.segments for f in config.forces}, str(data.sales))
    unit_ids = inputs.units[cols.unit_col].to_numpy()
    all_ids = unit_ids if not inputs.gaps.missing else [*unit_ids, *inputs.gaps.missing]
    tables = {}
    for force in config.forces:
        checks.check_territory_count(force.territories.n_territories, len(unit_ids),
                                     f"{data.units} (force {force.name})")
        current = (fio.load_alignment(force.alignment, all_ids, cols,
                                      data.columns_for("alignment"))
                   if force.alignment else None)
        if current is not None:
            current = current[current[cols.unit_col].isin(set(unit_ids))].reset_index(drop=True)
        territory_ids = current[cols.territory_col].unique() if current is not None else None
        reps = (fio.load_reps(force.reps, all_ids, territory_ids, cols, data.columns_for("reps"))
                if force.reps else None)
        tc = force.territories
        capacity = reps.get("capacity") if reps is not None else None
        if tc.n_territories == "auto" and tc.rep_capacity is None and (
                capacity is None or capacity.isna().all()):
            raise InputError(str(force.reps), f"force {force.name!r} has n_territories: auto, "
                             "but its reps file has no capacity values", column="capacity",
                             hint="add a capacity column to the force's reps file, or set its "
                                  "territories.rep_capacity, or n_territories to a number")
        tables[force.name] = ForceTables(current, reps)
    return tables


def force_sales(config: RunConfig, inputs, features: FeatureSet
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per unit, each force's sales over the last year and workload, and each segment's
    sales over the last year (unit x force, unit x force, unit x segment)."""
    cols, fc = config.data.columns, config.features
    unit_ids = features.market_table.index.to_numpy()
    by_segment = inputs.segment_sales[inputs.segment_sales[cols.unit_col].isin(set(unit_ids))]
    periods = regular_periods(inputs.sales[cols.time_col].min(), features.as_of, fc.frequency)
    annual, workload, seg_annual = {}, {}, {}
    for force in config.forces:
        for name, chosen in [(force.name, force.segments), *((s, [s]) for s in force.segments)]:
            panel = panel_on_calendar(segment_sales(by_segment, chosen, cols), unit_ids,
                                      periods, cols)
            sold, load = annual_and_workload(panel, periods, fc, fc.season,
                                             force.territories.workload_column, cols)
            if name == force.name and chosen is force.segments:
                annual[name] = sold.reindex(unit_ids)
                workload[name] = load.reindex(unit_ids).fillna(0.0)
            else:
                seg_annual[name] = sold.reindex(unit_ids)
    total = features.annual_sales.reindex(unit_ids)
    # a unit that sold recently but nothing of a segment sold zero of it, not a gap
    seg_annual = pd.DataFrame(seg_annual).apply(lambda col: col.where(total.isna(), col.fillna(0)))
    return pd.DataFrame(annual).fillna(0.0), pd.DataFrame(workload), seg_annual


def segment_stage(config: RunConfig, inputs, features: FeatureSet) -> SegmentModels:
    """Each force's recent sales and workload, and potential per unit and segment."""
    cols = config.data.columns
    unit_ids = features.market_table.index.to_numpy()
    annual, workload, seg_annual = force_sales(config, inputs, features)
    territory = {}
    for force, tables in inputs.force_tables.items():
        current = alignment.current_territories(tables.alignment, unit_ids, cols)
        for segment in next(f for f in config.forces if f.name == force).segments:
            territory[segment] = current
    potential, drivers, metrics, own, models = mf.fit_segment_potential(
        config.potential, features.market_table, seg_annual, territory, features.xy)
    force_metrics = {f.name: mf.pool_metrics([(own[s], float(seg_annual[s].notna().sum()))
                                              for s in f.segments]) for f in config.forces}
    by_force, force_drivers = {}, {}
    for force in config.forces:
        by_force[force.name] = potential[force.segments].sum(axis=1)
        largest = potential[force.segments].idxmax(axis=1)
        force_drivers[force.name] = pd.Series(
            [drivers.at[u, s] for u, s in largest.items()], index=unit_ids)
    metrics = {f"segment_{k}": v for k, v in metrics.items()}
    return SegmentModels(annual, workload, pd.DataFrame(by_force), pd.DataFrame(force_drivers),
                         potential, metrics, force_metrics,
                         {f.name: ForcePotential({s: models[s] for s in f.segments})
                          for f in config.forces})


def check_champion_segments(config: RunConfig, fitted: SegmentPotentials | None,
                            where: str) -> SegmentPotentials:
    """The champion's segment models, checked against the config's forces and segments.

    ``where`` names the champion (registered model, version, run) in the error.
    """
    wanted = {f.name: list(f.segments) for f in config.forces}
    if fitted is None:
        raise InputError("config", f"forces: are configured, but {where} was trained without "
                         "them: it holds no potential models per segment", key="forces",
                         hint="train with this config first (`territory run`, or the train "
                              "flow), so that its champion carries each segment's model")
    have = fitted.segments()
    if {k: sorted(v) for k, v in have.items()} != {k: sorted(v) for k, v in wanted.items()}:
        def show(forces: dict[str, list[str]]) -> str:
            return "; ".join(f"{k}: {', '.join(v)}" for k, v in forces.items())

        raise InputError("config", f"{where} was trained for the forces and segments "
                         f"{show(have)}, this config has {show(wanted)}", key="forces",
                         hint="train with this config first (`territory run`, or the train "
                              "flow), or score with the config it was trained with")
    return fitted


def champion_segment_stage(config: RunConfig, inputs, features: FeatureSet,
                           fitted: SegmentPotentials) -> SegmentModels:
    """:func:`segment_stage` with the champion's segment models instead of fitting them:
    each force's recent sales and workload from this run's data, potential and drivers
    per unit and segment from the models (checked with :func:`check_champion_segments`)."""
    annual, workload, _ = force_sales(config, inputs, features)
    market = features.market_table
    by_segment, by_force, drivers = [], {}, {}
    for force in config.forces:
        model = fitted.forces[force.name]
        part = model.segment_predictions(market)[force.segments]
        by_segment.append(part)
        by_force[force.name] = part.sum(axis=1)
        drivers[force.name] = describe_drivers(model.contributions(market))
    return SegmentModels(annual, workload, pd.DataFrame(by_force), pd.DataFrame(drivers),
                         pd.concat(by_segment, axis=1), dict(fitted.metrics),
                         {k: dict(v) for k, v in fitted.force_metrics.items()},
                         dict(fitted.forces))


def segment_potentials(segments: SegmentModels) -> SegmentPotentials:
    """What a training run logs of its segment models, for later runs to score with."""
    return SegmentPotentials(dict(segments.models), dict(segments.metrics),
                             {k: dict(v) for k, v in segments.force_metrics.items()})


@dataclass
class ForceView:
    """One force's view of the run, on which the one-force stages run unchanged."""

    name: str
    config: RunConfig
    inputs: object  # territory.pipelines.stages.Inputs
    features: FeatureSet
    scores: Scores


def force_views(config: RunConfig, inputs, features: FeatureSet, scores: Scores,
                segments: SegmentModels) -> list[ForceView]:
    """Per force: its config, inputs, feature set and scores (see the module docstring)."""
    cols = config.data.columns
    tables = inputs.force_tables
    total = segments.annual.sum(axis=1)
    views = []
    for force in config.forces:
        own = tables[force.name]
        unit_ids = features.market_table.index.to_numpy()
        view_features = replace(
            features, workload=segments.workload[force.name],
            territory=alignment.current_territories(own.alignment, unit_ids, cols))
        share = mf.force_share(segments.annual[force.name], total)
        frame, totals = mf.force_scores(scores.scores, share, segments.potential[force.name],
                                        segments.drivers[force.name],
                                        config.features.season, cols.unit_col)
        # the run's truth metrics compare the total potential: not this force's
        metrics = {**{k: v for k, v in scores.metrics.items() if "vs_truth" not in k},
                   **segments.metrics}
        view_scores = Scores(frame, totals, metrics, None)
        views.append(ForceView(force.name, force_config(config, force),
                               replace(inputs, alignment=own.alignment, reps=own.reps),
                               view_features, view_scores))
    return views


def forces_recommender(config: RunConfig, views: list[ForceView], recs: list,
                       segments: SegmentModels, market: pd.DataFrame) -> ForcesRecommender:
    """The served recommender of a run with forces: per force a bundle on its own potential
    model, its recommendations (forecasts, territories, peers) and the market table."""
    unit_col = config.data.columns.unit_col
    return ForcesRecommender({
        view.name: build_bundle(segments.models[view.name], rec.units, unit_col, market)
        for view, rec in zip(views, recs, strict=True)})
