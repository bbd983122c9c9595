"""Publish a run: write its output files, and record it in MLflow through the adapter.

Every MLflow call goes through :mod:`territory.models.tracking`; this module
decides what a run logs. The report's content comes from
:mod:`territory.pipelines.report_content`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from territory.features.errors import InputError
from territory.features.feature_set import FeatureSet
from territory.features.spreadsheet_safe import write_csv
from territory.models import tracking
from territory.models.alignment import Design
from territory.models.forces import overlay, with_force
from territory.models.recommend import Recommendations
from territory.models.recommender import build_bundle
from territory.models.scoring import Scores
from territory.models.tracking import reconcile_record
from territory.models.tracking.tables import load_logged_table
from territory.models.training import Trained
from territory.pipelines import journal, monitoring, reconcile_runs, run_keys
from territory.pipelines import report as rpt
from territory.pipelines.config import RunConfig
from territory.pipelines.forces import forces_recommender, segment_potentials
from territory.pipelines.rep_change import add_rep_change_metrics
from territory.pipelines.report_content import report_content, summary_markdown
from territory.pipelines.report_forces import forces_index_html
from territory.pipelines.stages import Inputs, unit_names

__all__ = ["RegisteredModels", "artifact_key", "find_tracked_run", "load_registered_models",
           "registered_models", "registry_transaction", "setup_tracking", "summary_markdown",
           "track_run", "track_training", "tracking_uri", "write_outputs"]


#: The rep-change share error per receiving territory (``data.previous_alignment``): a run
#: folder's file and its training run's MLflow artifact.
REP_CHANGE_TABLE = "rep_change_territories.csv"


def tracking_uri(config: RunConfig) -> str:
    """Configured URI, or a SQLite store in the workspace."""
    return tracking.store_uri(config.tracking.tracking_uri, config.workspace)


def setup_tracking(config: RunConfig) -> str:
    """Point MLflow at the config's store and experiment; returns the URI."""
    return tracking.connect(config.tracking.tracking_uri, config.workspace,
                            config.tracking.experiment)


def artifact_key(run_name: str, what: str) -> str:
    """Stable Prefect artifact key: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_name.lower()).strip("-") or "run"
    return f"{slug}-{what}"


def write_outputs(
    out: Path,
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: Recommendations,
    watch=None,
    fit_rep_change: bool = True,
) -> rpt.ReportContent:
    """Write every output file of a run into ``out`` (a temporary folder).

    ``watch``: the nightly run's monitoring (:class:`territory.pipelines.monitoring.Watch`),
    shown in the report. ``fit_rep_change`` False (scoring runs): the rep-change metrics and
    table are the model's own (its training run's), never fitted again.
    """
    cols = config.data.columns
    if fit_rep_change:
        add_rep_change_metrics(config, inputs, features, trained)
    if trained.rep_change_territories is not None:
        write_csv(trained.rep_change_territories, out / REP_CHANGE_TABLE)
    scores.scores.to_parquet(out / "scores.parquet", index=False)
    alignment = pd.DataFrame({
        cols.unit_col: design.proposed.index,
        cols.territory_col: design.proposed.to_numpy(),
        "current_territory": design.current.reindex(design.proposed.index).to_numpy()
        if design.current is not None else None,
    })
    if design.region is not None:
        alignment["region"] = design.region.reindex(design.proposed.index).to_numpy()
    alignment.to_parquet(out / "alignment.parquet", index=False)
    territories = inputs.units[[cols.unit_col, "geometry"]].merge(alignment, on=cols.unit_col)
    territories = territories.dissolve(cols.territory_col).reset_index()
    territories[[cols.territory_col, "geometry"]].to_file(out / "territories.geojson",
                                                          driver="GeoJSON")
    write_csv(design.summary, out / "territory_summary.csv")
    if design.plans is not None:
        write_csv(design.plans, out / "plans.csv")
    if design.comparison is not None:
        write_csv(design.comparison, out / "plan_comparison.csv")
    if design.region_summary is not None:
        write_csv(design.region_summary, out / "region_summary.csv")
    write_csv(recs.moves, out / "moves.csv")
    if scores.reconciliation is not None:  # every node's forecast: units add up to the total
        write_csv(scores.reconciliation.nodes, out / "forecast_hierarchy.csv")
    if inputs.gaps:
        write_csv(inputs.gaps.table(config.data.gaps, cols.unit_col), out / "data_gaps.csv")
    write_csv(recs.units.reset_index(), out / "recommendations.csv")
    write_csv(recs.territories, out / "territory_recommendations.csv")
    write_csv(recs.opportunities, out / "opportunities.csv")
    if recs.reps is not None:
        write_csv(recs.reps, out / "rep_changes.csv")
    content = report_content(config, inputs, features, trained, scores, design, recs, watch)
    (out / "report.html").write_text(rpt.render_html(content), encoding="utf-8")
    rpt.write_excel({**content.tables, "Units": recs.units.reset_index(),
                     "Territory summary": design.summary}, out / "report.xlsx")
    return content


def _gate_metric(config: RunConfig, trained: Trained) -> str:
    """The published forecast's backtest metric (LightGBM's without a combination)."""
    fc = config.forecast
    names = (f"backtest_{fc.gate_metric}_published", f"backtest_{fc.gate_metric}",
             f"valid_{fc.gate_metric}")
    return next((m for m in names if m in trained.metrics), "valid_wape")


def _log_published(trained: Trained) -> None:
    """Which forecast the run publishes, its weights per horizon and the gate's record."""
    published = trained.published
    tracking.log_tags({"published_forecast": published.name if published else "lightgbm"})
    if published is None:
        return
    weights = published.weights.rename(columns={"forecast": "lightgbm"}).reset_index()
    tracking.log_table(weights, "combination_weights.csv")
    gate = {k: (float(v) if isinstance(v, float | np.floating) else v)
            for k, v in published.gate.items()}
    tracking.log_text(json.dumps({**gate, "published": published.name}, indent=2, default=str),
                      "combination_gate.json")


def _log_training(
    config: RunConfig, inputs: Inputs, features: FeatureSet, trained: Trained, segments=None
) -> tuple[str, dict]:
    """Inside an active run: config, data, metrics, both models, the gate.

    ``segments`` (a run with sales forces: :class:`territory.pipelines.forces.SegmentModels`)
    logs the segment potential models too, for the scoring flows to score each segment with.
    """
    tracking.log_tags({"as_of": f"{features.as_of:%Y-%m-%d}",
                       "evaluation_windows": trained.evaluation_windows,
                       "config_hash": config.fingerprint()})
    tracking.log_config(json.loads(config.model_dump_json()))
    tracking.log_dataset(inputs.sales, Path(config.data.sales), "sales")
    for name, digest in inputs.file_hashes.items():
        tracking.log_tags({f"input_sha256.{name}": digest})
    tracking.log_metrics(trained.metrics)
    if trained.rep_change_territories is not None:
        tracking.log_table(trained.rep_change_territories, REP_CHANGE_TABLE)
    monitoring.log_reference(config, inputs, features)  # what later inputs are compared with
    tracking.log_table(trained.forecaster.feature_importance().rename("gain").reset_index()
                       .rename(columns={"index": "feature"}), "forecast_importance.csv")
    tracking.log_table(trained.potential.feature_importance().rename("gain").reset_index()
                       .rename(columns={"index": "feature"}), "potential_importance.csv")
    if trained.backtest is not None:
        tracking.log_backtest(trained.backtest)
    kept = reconcile_runs.training_backtest(config, trained)
    if kept is not None and config.forecast.reconcile.enabled:  # for the champion's scoring runs
        reconcile_record.log_backtest_forecasts(kept)
    _log_published(trained)
    version = tracking.log_scoring_model(
        trained.forecaster, features.score_table.head(5), config.tracking.registered_model,
        trained.published)
    tracking.tag_model_version(config.tracking.registered_model, version, "as_of",
                               f"{features.as_of:%Y-%m-%d}")
    journal.chaos_point("model-registered")  # the chaos test: registered, run still RUNNING
    tracking.log_potential_model(trained.potential, features.market_table)
    if segments is not None and segments.models is not None:
        tracking.log_potential_model(segment_potentials(segments), features.market_table,
                                     tracking.SEGMENT_POTENTIAL_ARTIFACT)
    gate = _gate_metric(config, trained)
    decision = tracking.promote_if_better(
        config.tracking.registered_model, version, gate, trained.metrics[gate],
        trained.evaluation_windows, margin=config.forecast.gate_margin)
    decision["version"] = version
    return version, decision


def _log_choices(choices: dict) -> None:
    """The reconciliation method published per force (None: no forces), as tags, and the
    backtest table it was chosen on (``reconcile_backtest[_<force>].csv``)."""
    reconcile_record.log_methods({force: method for force, (method, _) in choices.items()})
    for force, (_, table) in choices.items():
        if table is not None:
            tracking.log_table(table, f"reconcile_backtest{'_' + force if force else ''}.csv")


def track_training(
    config: RunConfig, inputs: Inputs, features: FeatureSet, trained: Trained, key: str,
    segments=None,
) -> tuple[str, dict]:
    """The train flow's MLflow run: log, register the forecaster, apply the gate
    (``segments``: with sales forces, the segment models, logged beside it).

    The run is tagged ``run_key`` only once everything is logged, so only a
    complete run is ever reused by a re-run with the same key.
    """
    setup_tracking(config)
    with tracking.training_run(f"{config.run_name}-train-{features.as_of:%Y-%m}") as run_id:
        _, decision = _log_training(config, inputs, features, trained, segments)
        _log_choices(reconcile_runs.train_choices(config, inputs, features, trained))
        tracking.log_tags({"run_key": key, "flow": "train"})
    return run_id, decision


def track_run(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    out: Path,
    recs: Recommendations | None = None,
    key: str | None = None,
) -> tuple[str, dict]:
    """Log the run to MLflow, register the models and apply the promotion gate.

    The forecaster and the recommender pyfunc are registered in the same run
    and pass the same gate, on the same metric and windows.
    """
    setup_tracking(config)
    with tracking.training_run(f"{config.run_name}-{features.as_of:%Y-%m}") as run_id:
        _, decision = _log_training(config, inputs, features, trained)
        overall = {f"territory_{k}": v for k, v in design.overall.items()
                   if isinstance(v, int | float | np.floating | np.integer)
                   and not isinstance(v, bool)}
        tracking.log_metrics({**scores.metrics, **overall})
        if scores.reconciliation is not None:
            record = scores.reconciliation
            _log_choices({None: (record.method, record.table)})
        tracking.log_table(scores.unit_totals.reset_index(), "unit_drivers.csv")
        if design.plans is not None:
            tracking.log_table(design.plans, "plans.csv")
        if design.comparison is not None:
            tracking.log_table(design.comparison, "plan_comparison.csv")
        fc = config.forecast
        gate = _gate_metric(config, trained)
        if recs is not None:
            bundle = build_bundle(trained.potential, recs.units, config.data.columns.unit_col,
                                  features.market_table)
            rec_version = tracking.log_recommender(bundle, features.market_table)
            decision["recommender"] = tracking.promote_if_better(
                tracking.RECOMMENDER, rec_version, gate,
                trained.metrics[gate], trained.evaluation_windows, margin=fc.gate_margin,
                artifact_name="recommender_promotion_decision.json")
        if key is not None:
            tracking.log_tags({"run_key": key, "flow": "pipeline"})
    return run_id, decision


def write_force_outputs(out: Path, config: RunConfig, trained: Trained, views, designs,
                        recs_list, segments, watch=None) -> dict[str, rpt.ReportContent]:
    """A run with sales forces: each force's full outputs in ``forces/<force>/``, and the
    tables of every force together at the top, each row carrying its ``force``.

    ``views`` are the forces' views of the run (:func:`territory.pipelines.forces.force_views`),
    with their designs and recommendations in the same order. ``watch``: a nightly run's
    monitoring of the forecast of total sales, shown in every force's report. The
    rep-change metric (``data.previous_alignment``) is the run's, never refitted per force.
    """
    contents, tables = {}, {}
    forecast_only = {k: v for k, v in trained.metrics.items() if not k.startswith("potential_")}
    for view, design, recs in zip(views, designs, recs_list, strict=True):
        folder = out / "forces" / view.name
        folder.mkdir(parents=True)
        # the force's report states the model its potential came from, not the total's
        own = replace(trained, potential_territories=None, rep_change_territories=None,
                      metrics={**forecast_only, **segments.force_metrics[view.name]})
        contents[view.name] = write_outputs(folder, view.config, view.inputs, view.features,
                                            own, view.scores, design, recs, watch,
                                            fit_rep_change=False)
        own = {
            "alignment.parquet": pd.read_parquet(folder / "alignment.parquet"),
            "scores.parquet": view.scores.scores,
            "territory_summary.csv": design.summary,
            "plans.csv": design.plans,
            "moves.csv": recs.moves,
            "recommendations.csv": recs.units.reset_index(),
            "territory_recommendations.csv": recs.territories,
        }
        for name, frame in own.items():
            if frame is not None:
                tables.setdefault(name, []).append(with_force(frame, view.name))
    for name, frames in tables.items():
        frame = pd.concat(frames, ignore_index=True)
        if name.endswith(".parquet"):
            frame.to_parquet(out / name, index=False)
        else:
            write_csv(frame, out / name)
    _write_run_report(out, config, views, designs, segments)
    write_csv(segments.by_segment.rename_axis(config.data.columns.unit_col).reset_index(),
              out / "segment_potential.csv")
    return contents


def _write_run_report(out: Path, config: RunConfig, views, designs, segments) -> None:
    """``overlay.csv`` (who covers each unit) and ``report.html`` (a force selector and the
    overlay) at the top of a run with sales forces."""
    cols, first = config.data.columns, views[0]
    unit_ids = first.inputs.units[cols.unit_col].to_numpy()
    xy = pd.DataFrame(first.features.xy, columns=["x", "y"], index=unit_ids)
    cover = overlay({v.name: d.proposed for v, d in zip(views, designs, strict=True)},
                    {v.name: v.inputs.reps for v in views}, segments.annual, xy,
                    cols.territory_col, cols.rep_col)
    names = unit_names(config, first.inputs.units)
    if names is not None:
        cover.insert(0, "name", names.reindex(cover.index).to_numpy())
    cover = cover.rename_axis(cols.unit_col)
    write_csv(cover.reset_index(), out / "overlay.csv")
    forces = {}
    for view, design in zip(views, designs, strict=True):
        overall = design.overall
        headline = {"territories": len(design.summary),
                    **{f"{k.removeprefix('max_abs_deviation_')}: largest deviation": f"{v:.1%}"
                       for k, v in overall.items() if k.startswith("max_abs_deviation_")},
                    "contiguous": overall.get("contiguous"),
                    "violations": len(design.violations),
                    "segments": ", ".join(next(f.segments for f in config.forces
                                               if f.name == view.name))}
        forces[view.name] = (headline, design.summary)
    page = forces_index_html(f"{config.run_name}: {len(views)} sales forces",
                             f"as of {first.features.as_of:%Y-%m-%d}", forces, cover)
    (out / "report.html").write_text(page, encoding="utf-8")


def track_forces_run(config: RunConfig, inputs: Inputs, features: FeatureSet, trained: Trained,
                     views, designs, segments, out: Path,
                     key: str | None = None, recommender=None) -> tuple[str, dict]:
    """Log a run with sales forces: the forecaster as :func:`track_run` does, the segment
    potential models (``segments``) and their metrics, and each force's territory measures
    as ``<force>_territory_*`` and reconciliation metrics as ``<force>_reconcile_*``.

    ``recommender`` (a :class:`territory.models.force_recommender.ForcesRecommender`)
    is registered as the served recommender and passes the forecaster's gate, as in
    :func:`track_run`; its answers carry the force.
    """
    setup_tracking(config)
    with tracking.training_run(f"{config.run_name}-{features.as_of:%Y-%m}") as run_id:
        _, decision = _log_training(config, inputs, features, trained, segments)
        metrics = dict(segments.metrics)
        for view, design in zip(views, designs, strict=True):
            metrics |= {f"{view.name}_territory_{k}": v for k, v in design.overall.items()
                        if isinstance(v, int | float | np.floating | np.integer)
                        and not isinstance(v, bool)}
            metrics |= {f"{view.name}_{k}": v for k, v in view.scores.metrics.items()
                        if k.startswith("reconcile_")
                        or (k.startswith("potential_") and k not in trained.metrics)}
            if design.plans is not None:
                tracking.log_table(design.plans, f"plans_{view.name}.csv")
        _log_choices({v.name: (v.scores.reconciliation.method, v.scores.reconciliation.table)
                      for v in views if v.scores.reconciliation is not None})
        tracking.log_metrics(metrics)
        tracking.log_table(pd.read_csv(out / "segment_potential.csv"), "segment_potential.csv")
        if recommender is not None:
            gate = _gate_metric(config, trained)
            rec_version = tracking.log_recommender(recommender, features.market_table)
            decision["recommender"] = tracking.promote_if_better(
                tracking.RECOMMENDER, rec_version, gate, trained.metrics[gate],
                trained.evaluation_windows, margin=config.forecast.gate_margin,
                artifact_name="recommender_promotion_decision.json")
        if key is not None:
            tracking.log_tags({"run_key": key, "flow": "pipeline", "forces": ",".join(
                v.name for v in views)})
    return run_id, decision


def publish_forces(entry, config: RunConfig, run_dir: Path, inputs: Inputs,
                   features: FeatureSet, trained: Trained, segments, views, designs, recs,
                   started: float, key: str | None = None) -> dict:
    """Publish a run with sales forces like the pipeline's publish task does a run without:
    same lock, registry transaction and atomic folder (``entry``: the flow run's journal
    entry). The result carries each force's measures under ``forces`` and its report's
    content under ``contents``."""
    existing = find_tracked_run(config, key) if key else None
    with journal.publishing(entry, config, run_dir) as out:
        contents = write_force_outputs(out.tmp, config, trained, views, designs, recs, segments)
        if existing is None:
            recommender = (forces_recommender(config, views, recs, segments,
                                              features.market_table)
                           if segments.models is not None else None)
            run_id, decision = track_forces_run(config, inputs, features, trained, views,
                                                designs, segments, out.tmp, key,
                                                recommender)
        else:
            run_id, decision = existing["run_id"], existing["promotion"]
        manifest = run_keys.manifest(config, inputs.file_hashes, run_id, started)
        manifest["forces"] = [view.name for view in views]
        (out.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    first = run_dir / "forces" / views[0].name
    return {
        "run_dir": run_dir, "report_html": run_dir / "report.html",
        "report_xlsx": first / "report.xlsx", "mlflow_run_id": run_id, "promotion": decision,
        "metrics": {**trained.metrics, **segments.metrics},
        "territories": designs[0].overall, "current_territories": designs[0].current_overall,
        "violations": [v for d in designs for v in d.violations],
        "diagnosis": [line for d in designs for line in d.diagnosis],
        "forces": {view.name: {
            "territories": design.overall, "current_territories": design.current_overall,
            "violations": design.violations, "diagnosis": design.diagnosis,
            "report_html": run_dir / "forces" / view.name / "report.html"}
            for view, design in zip(views, designs, strict=True)},
        "contents": contents,
    }


def find_tracked_run(config: RunConfig, key: str) -> dict | None:
    """The finished run tagged ``run_key`` = ``key``, as a summary, or None."""
    setup_tracking(config)
    return tracking.find_tracked_run(config.tracking.experiment,
                                     config.tracking.registered_model, key)


def registered_models(config: RunConfig) -> list[str]:
    """The registered models a run of ``config`` changes."""
    return [config.tracking.registered_model, tracking.RECOMMENDER]


def registry_transaction(config: RunConfig, token: str | None = None,
                         before: dict | None = None):
    """:func:`territory.models.tracking.registry_transaction` on the config's models."""
    setup_tracking(config)
    return tracking.registry_transaction(config.tracking.experiment, registered_models(config),
                                         token, before)


@dataclass
class RegisteredModels:
    """The models of one registered version, ready to score."""

    trained: Trained
    name: str
    version: str
    run_id: str


def load_registered_models(config: RunConfig, version: str | None = None) -> RegisteredModels:
    """Forecaster ``version`` (default: the champion) and the potential model of its run.

    The metrics are the ones its training run logged, so the report's
    quality sentences describe the model that scored.
    """
    setup_tracking(config)
    name = config.tracking.registered_model
    loaded = tracking.load_version(name, version)
    if loaded is None:
        what = "no champion" if version is None else f"no version {version}"
        raise InputError(
            tracking_uri(config), f"{what} of registered model '{name}'",
            hint="train first: `territory run` or the train flow promotes a champion",
        )
    trained = Trained(loaded.forecaster, loaded.potential, loaded.metrics, pd.DataFrame(),
                      loaded.evaluation_windows, published=loaded.published,
                      champion_reconcile=reconcile_record.load_choice(loaded.run_id))
    if "potential_rep_change_units" in loaded.metrics:  # its training run's table, if logged
        trained.rep_change_territories = load_logged_table(loaded.run_id, REP_CHANGE_TABLE,
                                                           ("territory",))
    return RegisteredModels(trained, name, loaded.version, loaded.run_id)


# --- What the flows publish (their tasks: territory.pipelines.flows) -----------------------


def scored_manifest(config: RunConfig, inputs: Inputs, features: FeatureSet,
                    model: RegisteredModels, started: float, extra: dict | None = None) -> dict:
    """The manifest of a scoring run: provenance, the model version that scored, the as-of
    date and what the model promised (for later runs to measure the forecast against)."""
    manifest = run_keys.manifest(config, inputs.file_hashes, model.run_id, started)
    manifest["model"] = {"name": model.name, "version": model.version, "run_id": model.run_id,
                         **(extra or {})}
    manifest["as_of"] = f"{features.as_of:%Y-%m-%d}"
    manifest["monitoring"] = monitoring.promise(model.trained.metrics, config.forecast.horizon)
    return manifest


def write_scored_outputs(
    entry, config: RunConfig, folder: Path, inputs: Inputs, features: FeatureSet,
    model: RegisteredModels, scores: Scores, design: Design, recs: Recommendations,
    started: float, extra: dict | None = None, watch=None,
) -> dict:
    """Write a scoring run's outputs (scores, recommendations, report, manifest) into
    ``folder`` atomically (``entry``: the flow run's journal entry)."""
    with journal.publishing(entry, config, folder, registry=False) as out:
        content = write_outputs(out.tmp, config, inputs, features, model.trained, scores,
                                design, recs, watch, fit_rep_change=False)
        manifest = scored_manifest(config, inputs, features, model, started, extra)
        (out.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return {"content": content, "folder": folder}


def register_and_gate(entry, config: RunConfig, inputs: Inputs, features: FeatureSet,
                      trained: Trained, key: str, folder: Path, started: float,
                      segments=None) -> dict:
    """Log and register the forecaster (and, with forces, the ``segments``' potential
    models), apply the gate, write the train summary.

    One transaction under the folder's lock (``entry``: the flow run's journal
    entry): a failure anywhere in it (or the process dying) leaves the registry
    as it was.
    """
    add_rep_change_metrics(config, inputs, features, trained)
    with journal.publishing(entry, config, folder) as out:
        run_id, decision = track_training(config, inputs, features, trained, key, segments)
        if trained.rep_change_territories is not None:
            write_csv(trained.rep_change_territories, out.tmp / REP_CHANGE_TABLE)
        summary = run_keys.train_summary(config, inputs, features, run_id,
                                         decision["version"], trained.metrics, decision, started)
        (out.tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
