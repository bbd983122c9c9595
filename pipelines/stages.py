"""The pipeline's stages: each loads what it needs, calls one domain function, returns.

``territory.pipelines.flows`` makes them Prefect tasks; tests and notebooks
call them directly. The heavy stages (features, training, scoring) run on
the backend the config names, chosen once in :func:`backend`: this process
(:class:`LocalBackend`) or a Dask cluster
(:class:`territory.pipelines.dask_runner.DaskBackend`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import numpy as np
import pandas as pd

from territory.features import feature_set
from territory.features import io as fio
from territory.features.errors import InputError
from territory.features.feature_set import FeatureSet
from territory.features.gaps import DataGaps
from territory.features.spreadsheet_safe import revert_inert
from territory.models import alignment, plans, scoring, training
from territory.models import potential_uncertainty as uncertainty
from territory.models import recommend as rec
from territory.models import robust_balance as robust
from territory.models.alignment import Design, Geography
from territory.models.recommend import Recommendations
from territory.models.scoring import Scores
from territory.models.training import Trained
from territory.pipelines import reconcile_runs
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import file_sha256
from territory.pipelines.train_files import with_train_rows
from territory.pipelines.validation import check_run_inputs, handle_data_gaps

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    units: gpd.GeoDataFrame
    sales: pd.DataFrame
    demographics: pd.DataFrame | None
    alignment: pd.DataFrame | None
    reps: pd.DataFrame | None
    file_hashes: dict[str, str]
    gaps: DataGaps = field(default_factory=DataGaps)  # found and handled (``data.gaps``)
    edits: pd.DataFrame | None = None  # a manager's locks (``data.edits``)
    # sales per segment (the sales file's ``segment`` column), None without one
    segment_sales: pd.DataFrame | None = None
    # with ``forces:``, each force's alignment and reps (territory.pipelines.forces)
    force_tables: dict | None = None
    # the earlier alignment (``data.previous_alignment``), validated like the alignment
    previous_alignment: pd.DataFrame | None = None


def load_inputs(config: RunConfig) -> Inputs:
    """Read and validate every input file named in the config."""
    data, cols = config.data, config.data.columns
    units = fio.load_units(data.units, cols, data.columns_for("units"))
    unit_ids = units[cols.unit_col].to_numpy()
    sales, by_segment = fio.load_sales_by_segment(
        data.sales, unit_ids, cols, config.features.frequency, data.date_format,
        data.columns_for("sales"))
    demographics = (
        fio.load_demographics(data.demographics, unit_ids, cols, data.columns_for("demographics"))
        if data.demographics else None
    )
    alignment = (fio.load_alignment(data.alignment, unit_ids, cols, data.columns_for("alignment"))
                 if data.alignment else None)
    territory_ids = (
        alignment[cols.territory_col].unique() if alignment is not None else None
    )
    reps = (fio.load_reps(data.reps, unit_ids, territory_ids, cols, data.columns_for("reps"))
            if data.reps else None)
    edits = (fio.load_alignment(data.edits, unit_ids, cols, data.columns_for("edits"))
             if data.edits else None)
    hashes = {
        name: file_sha256(Path(path))
        for name in ("units", "sales", "demographics", "alignment", "reps", "edits")
        if (path := getattr(data, name)) is not None and Path(path).is_file()
    }
    previous = data.previous_alignment
    if previous is not None:
        hashes["previous_alignment"] = file_sha256(Path(previous.path))
    for force in config.forces or []:
        hashes |= {f"{name}:{force.name}": file_sha256(Path(path))
                   for name in ("alignment", "reps") if (path := getattr(force, name))}
    inputs = Inputs(units, sales, demographics, alignment, reps, hashes, edits=edits,
                    segment_sales=by_segment, previous_alignment=(
                        fio.load_alignment(previous.path, unit_ids, cols,
                                           data.columns_for("alignment"))
                        if previous is not None else None))
    check_run_inputs(config, inputs)  # dates, as-of, K and memory, before any feature
    inputs = handle_data_gaps(config, inputs, resolved_as_of(config, inputs))
    if config.forces is not None:
        from territory.pipelines.forces import load_force_tables

        inputs = replace(inputs, force_tables=load_force_tables(config, inputs))
    return inputs


def load_inputs_for_run(config: RunConfig) -> Inputs:
    """:func:`load_inputs`, then the warnings ``territory validate`` shows, logged once
    (to the console, and to the Prefect run: the CLI names ``territory`` among Prefect's
    extra loggers) so that a run never passes over them in silence."""
    from territory.pipelines.validation import input_warnings

    inputs = load_inputs(config)
    for warning in input_warnings(config, inputs):
        log.warning("%s", warning)
    return inputs


def resolved_as_of(config: RunConfig, inputs: Inputs) -> pd.Timestamp:
    """The configured as-of date, or the last period of the sales history."""
    return feature_set.resolve_as_of(config.as_of, inputs.sales, config.data.columns.time_col)


# --- Backends: where the heavy stages run --------------------------------------------------


class Backend(Protocol):
    def features(self, config: RunConfig, inputs: Inputs) -> FeatureSet: ...
    def train(self, config: RunConfig, features: FeatureSet) -> Trained: ...
    def score(self, config: RunConfig, features: FeatureSet, trained: Trained) -> Scores: ...


class LocalBackend:
    """Features, training and scoring in this process."""

    def features(self, config: RunConfig, inputs: Inputs) -> FeatureSet:
        return feature_set.build_feature_set(
            inputs.units, inputs.sales, inputs.demographics, resolved_as_of(config, inputs),
            config.features, config.forecast.horizon, config.data.columns,
            config.territories.workload_column, config.data.projected_crs)

    def train(self, config: RunConfig, features: FeatureSet, fit_forecaster=None,
              origin_forecasts=None) -> Trained:
        features = with_train_rows(features, config.data.columns.unit_col)  # Dask-built
        return training.train_models(features, config.forecast, config.potential,
                                     config.features, config.data.columns, fit_forecaster,
                                     origin_forecasts)

    def score(self, config: RunConfig, features: FeatureSet, trained: Trained) -> Scores:
        return scoring.score_units(features, trained, config.features.frequency,
                                   config.data.columns, read_truth(config),
                                   config.potential.interval_level)


def backend(config: RunConfig) -> Backend:
    """The backend ``config.runner`` names."""
    if config.runner == "dask":
        from territory.pipelines.dask_runner import DaskBackend

        return DaskBackend()
    return LocalBackend()


def read_truth(config: RunConfig) -> pd.DataFrame | None:
    """The simulator's truth file by unit, when the config names one (evaluation only)."""
    if config.data.truth is None:
        return None
    own, unit = config.data.columns_for("truth").unit_col, config.data.columns.unit_col
    return pd.read_parquet(config.data.truth).rename(columns={own: unit}).set_index(unit)


# --- Stages -----------------------------------------------------------------------------------


def feature_stage(config: RunConfig, inputs: Inputs) -> FeatureSet:
    """Adjacency, forecast tables, market table, annual sales and workload as of the as-of
    date, with each unit's current territory (for the potential model's rep effect)."""
    features = backend(config).features(config, inputs)
    unit_ids = features.market_table.index.to_numpy()
    features.territory = alignment.current_territories(inputs.alignment, unit_ids,
                                                       config.data.columns)
    return features


def train_stage(config: RunConfig, features: FeatureSet) -> Trained:
    """The forecaster and the potential model, with their out-of-sample metrics."""
    return backend(config).train(config, features)


def score_stage(config: RunConfig, features: FeatureSet, trained: Trained) -> Scores:
    """Scores per (unit, horizon) and per-unit horizon totals."""
    return backend(config).score(config, features, trained)


def unit_geography(config: RunConfig, inputs: Inputs, features: FeatureSet) -> Geography:
    """Unit ids, projected coordinates, contiguity and areas (km², when the data has them)."""
    unit_ids = inputs.units[config.data.columns.unit_col].to_numpy()
    market = features.market_table if features.market_table is not None else pd.DataFrame()
    area = next((c for c in ("unit_area_km2", "area_km2") if c in market), None)
    areas = None if area is None else market[area].reindex(unit_ids).to_numpy(dtype=float)
    if areas is not None and not (np.isfinite(areas).all() and (areas >= 0).all()):
        areas = None  # a demographics area column with gaps: no elongation rather than a guess
    return Geography(unit_ids, features.xy, features.graph.matrix, areas)


def design_stage(config: RunConfig, inputs: Inputs, features: FeatureSet, scores: Scores
                 ) -> Design:
    """A proposed alignment balanced on the configured attributes."""
    geo = unit_geography(config, inputs, features)
    measures = alignment.unit_measures(scores.unit_totals, features.workload, geo.unit_ids,
                                       config.territories.index)
    current = alignment.current_territories(inputs.alignment, geo.unit_ids, config.data.columns)
    args = (current, inputs.reps, config.data.columns, locks(config, inputs))
    if config.territories.robust.enabled:
        pc = config.potential  # drawn apart from the report's draws (seed + 1): see robust_balance
        draws = uncertainty.score_draws(scores.unit_totals, pd.Index(geo.unit_ids), pc.n_draws,
                                        pc.seed + 1)
        if draws is None:
            raise InputError("config", "robust mode needs the potential's uncertainty, which "
                             "this run's potential has not", key="territories.robust",
                             hint="use potential.method: rep_adjusted with data.alignment, or "
                                  "set territories.robust: false")
        design = robust.robust_design(geo, measures, config.territories, draws, *args)
    else:
        design = plans.publishable_design(geo, measures, config.territories, *args)
    return with_balance_probability(config, design, scores)


def locks(config: RunConfig, inputs: Inputs) -> alignment.Locks | None:
    """The manager's edits (``data.edits``) as locks, or None."""
    if inputs.edits is None:
        return None
    cols, file_cols = config.data.columns, config.data.columns_for("edits")
    territory = inputs.edits.set_index(cols.unit_col)[cols.territory_col].map(revert_inert)
    return alignment.Locks(territory, str(config.data.edits), file_cols.territory_col)


def with_balance_probability(config: RunConfig, design: Design, scores: Scores) -> Design:
    """The design with, per territory (proposed and current), the interval of its potential
    and the probability that it lies within the potential tolerance of the mean
    (:func:`territory.models.potential_uncertainty.plan_balance`); unchanged when the
    potential has no uncertainty or is not balanced."""
    tolerance = config.territories.tolerances.get("potential")
    pc = config.potential
    if tolerance is None:
        return design
    summaries = {}
    for name, labels in (("summary", design.proposed), ("current_summary", design.current)):
        table = getattr(design, name)
        if table is None or labels is None or labels.isna().any():
            continue
        balance = uncertainty.plan_balance(scores.unit_totals, labels, tolerance,
                                           pc.interval_level, pc.n_draws, pc.seed)
        if balance is not None:
            summaries[name] = table.merge(balance, on="territory", how="left")
    return replace(design, **summaries)


def current_alignment_stage(config: RunConfig, inputs: Inputs, features: FeatureSet,
                            scores: Scores) -> Design:
    """The current alignment as a design (nightly runs recommend, they don't redesign)."""
    cols = config.data.columns
    if inputs.alignment is None:
        raise InputError("config", "the nightly forecast needs the current alignment",
                         column="data.alignment",
                         hint="set data.alignment, or run the design flow for a fresh design")
    geo = unit_geography(config, inputs, features)
    current = alignment.current_territories(inputs.alignment, geo.unit_ids, cols)
    if current.isna().any():
        missing = list(current.index[current.isna()][:5])
        raise InputError(str(config.data.alignment), "units without a territory",
                         column=cols.territory_col, rows=missing,
                         hint="assign every unit to a territory in the alignment file")
    measures = alignment.unit_measures(scores.unit_totals, features.workload, geo.unit_ids,
                                       config.territories.index)
    design = alignment.describe_current_alignment(geo, measures, config.territories, current)
    return with_balance_probability(config, design, scores)


def reconcile_stage(config: RunConfig, features: FeatureSet, trained: Trained, scores: Scores,
                    design: Design) -> Scores:
    """Scores whose unit, territory, region and total forecasts add up on the published
    alignment: with the method chosen on the train stage's backtest, or in a scoring run
    the champion's (:func:`territory.pipelines.reconcile_runs.reconcile_design`).
    Unchanged with ``forecast.reconcile.enabled: false``."""
    if not config.forecast.reconcile.enabled or design.proposed is None:
        return scores
    history = reconcile_runs.total_history(
        config, features, scores.scores[config.data.columns.unit_col].unique())
    return reconcile_runs.reconcile_design(config, trained, scores, design, history)


def recommend_stage(config: RunConfig, inputs: Inputs, features: FeatureSet, scores: Scores,
                    design: Design) -> Recommendations:
    """Per unit, territory and rep recommendations, white space and moves."""
    cols = config.data.columns
    by_unit = inputs.units.set_index(cols.unit_col)
    xy = pd.DataFrame(features.xy, columns=["x", "y"], index=by_unit.index.to_numpy())
    return rec.recommend(
        scores.unit_totals, design.proposed, design.current, design.summary, cols.unit_col,
        unit_names=unit_names(config, inputs.units), reps=inputs.reps,
        workload=features.workload, xy=xy, territory_col=cols.territory_col,
        rep_col=cols.rep_col, rep_capacity=config.territories.rep_capacity,
        data_gaps=inputs.gaps.by_unit())


def unit_names(config: RunConfig, units: pd.DataFrame) -> pd.Series | None:
    """Each unit's name, by unit id: ``data.name_columns`` joined with ", " (blank parts
    left out), else the ``name`` column, else None."""
    columns = config.data.name_columns or (["name"] if "name" in units else [])
    if not columns:
        return None
    missing = [c for c in columns if c not in units]
    if missing:
        raise InputError(str(config.data.units), "name columns not in the units file",
                         column=", ".join(missing), key="data.name_columns",
                         hint="list columns of the units file "
                              f"({', '.join(map(str, units.columns[:12]))}), or set it to null")
    parts = units[columns].astype("string").apply(lambda col: col.str.strip())
    names = parts.apply(lambda row: ", ".join(v for v in row if isinstance(v, str) and v), axis=1)
    return pd.Series(names.to_numpy(dtype=object),
                     index=units[config.data.columns.unit_col].to_numpy(), name="name")


def market_table(config: RunConfig, inputs: Inputs, graph) -> pd.DataFrame:
    """Market features per unit (what the potential model reads), for scoring outside a run."""
    return feature_set.market_features(inputs.units, inputs.demographics, graph,
                                       config.data.columns, config.features.demographic_columns,
                                       config.data.projected_crs, resolved_as_of(config, inputs))
