"""Write a run's outputs, its report and its MLflow record."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from territory.models import tracking
from territory.models.serving import build_bundle
from territory.pipelines import report as rpt
from territory.pipelines.config import RunConfig
from territory.pipelines.report_map import interactive_map
from territory.pipelines.stages import Design, FeatureSet, Inputs, Recommendations, Scores, Trained


def tracking_uri(config: RunConfig) -> str:
    """Configured URI, or a SQLite store in the workspace."""
    if config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return f"sqlite:///{(Path(config.workspace) / 'mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    """A store on this machine (SQLite or files), as opposed to a tracking server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def setup_tracking(config: RunConfig) -> str:
    """Point MLflow at the config's store and experiment.

    A local store keeps its artifacts in the workspace; a remote tracking
    server decides where artifacts go (its ``--artifacts-destination``).
    """
    uri = tracking_uri(config)
    root = Path(config.workspace) / "mlartifacts" if is_local_store(uri) else None
    return tracking.setup_tracking(uri, config.tracking.experiment, root)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.0%}"


def _hover_text(recs: pd.DataFrame, unit_ids: np.ndarray) -> pd.Series:
    r = recs.reindex(unit_ids)
    name = r["name"].astype(str) + " " if "name" in r else ""
    return (name + "(" + r.index.astype(str) + ") · " + r["proposed_territory"].astype(str)
            + " (now " + r["current_territory"].astype(str) + ")"
            + " · forecast " + r["forecast"].map("{:,.0f}".format)
            + " · potential " + r["potential"].map("{:,.0f}".format)
            + " · " + r["action"].astype(str))


def quality_sentences(config: RunConfig, trained: Trained, scores: Scores) -> list[str]:
    """Model quality in plain words."""
    m = trained.metrics
    sentences = [
        f"Over the last {config.forecast.validation_periods} months held out from training, "
        f"forecasts were within ±{m['valid_wape']:.0%} of actual sales in total (WAPE), "
        f"against ±{m['valid_wape_seasonal_naive']:.0%} for repeating last year's months.",
        f"Forecasts ran {abs(m['valid_bias']):.1%} "
        f"{'high' if m['valid_bias'] > 0 else 'low'} overall on that window.",
        f"Forecast ranges are built to hold {config.forecast.interval_level:.0%} of outcomes.",
    ]
    for key, value in m.items():
        if key.startswith("backtest_coverage") and np.isfinite(value):
            sentences[-1] += f" In the backtest they held {value:.0%}."
            break
    if "potential_spearman_vs_truth" in scores.metrics:
        sentences.append(
            "On this simulated company, estimated potential ranks units with a rank "
            f"correlation of {scores.metrics['potential_spearman_vs_truth']:.2f} against the "
            "true potential.")
    return sentences


def report_content(
    config: RunConfig,
    inputs: Inputs,
    features: FeatureSet,
    trained: Trained,
    scores: Scores,
    design: Design,
    recs: Recommendations,
) -> rpt.ReportContent:
    """Assemble the map, charts, headline numbers, sentences and tables for the report."""
    cols, tc = config.data.columns, config.territories
    units = inputs.units.to_crs(config.data.projected_crs or inputs.units.estimate_utm_crs())
    uid = units[cols.unit_col].to_numpy()
    u = recs.units.reindex(uid)
    territory_layers = {"Proposed territories": u["proposed_territory"].reset_index(drop=True)}
    if design.current is not None:
        territory_layers["Current alignment"] = u["current_territory"].fillna("unassigned") \
            .reset_index(drop=True)
    value_layers = {
        "Potential": u["potential"].reset_index(drop=True),
        "White space": u["white_space"].reset_index(drop=True),
        "Penetration": u["penetration"].fillna(0.0).reset_index(drop=True),
    }
    figures = {"Map": interactive_map(units.reset_index(drop=True), territory_layers,
                                      value_layers, _hover_text(recs.units, uid))}
    if design.current_summary is not None:
        deviations = {}
        for attr in tc.balance_attributes:
            col = f"{attr}_deviation"
            if col in design.summary and col in design.current_summary:
                deviations[attr] = (design.current_summary.set_index("territory")[col],
                                    design.summary.set_index("territory")[col])
        if deviations:
            figures["Balance before and after"] = rpt.balance_chart(deviations, tc.tolerance)

    ov = design.overall
    headline = [
        ("As of", f"{features.as_of:%Y-%m}"),
        ("Units", f"{len(uid):,}"),
        ("Territories", f"{design.n_territories or tc.n_territories}"),
        (f"Forecast, next {config.forecast.horizon} periods", f"{u['forecast'].sum():,.0f}"),
        (f"Potential, next {config.forecast.horizon} periods", f"{u['potential'].sum():,.0f}"),
    ]
    for attr in tc.balance_attributes:
        now = (design.current_overall or {}).get(f"max_abs_deviation_{attr}")
        new = ov.get(f"max_abs_deviation_{attr}")
        headline.append((f"Worst {attr} imbalance", f"{_pct(now)} → {_pct(new)}"
                         if now is not None else _pct(new)))
    headline.append(("Units moved", f"{len(recs.moves):,} ({len(recs.moves) / len(uid):.0%})"))
    if design.region_summary is not None:
        headline.append(("Regions", f"{len(design.region_summary)}"))
    tables = {
        "Territories": recs.territories.round(3),
        "White-space opportunities": recs.opportunities.head(100)[
            [c for c in ["rank", cols.unit_col, "name", "proposed_territory", "forecast",
                         "potential", "white_space", "penetration", "action", "reason",
                         "drivers"] if c in recs.opportunities]],
    }
    if recs.reps is not None:
        tables["Reps: what changes"] = recs.reps.round(1)
    tables["Moves"] = recs.moves.head(500)
    if design.region_summary is not None:
        tables["Regions"] = design.region_summary.round(3)
    if design.auto_k:
        tables["Number of territories"] = pd.DataFrame({"why": [design.auto_k]})
    if design.violations:
        tables["Violations"] = pd.DataFrame({"violation": design.violations})
    if design.diagnosis:
        tables["Why balance is not reached"] = pd.DataFrame({"diagnosis": design.diagnosis})
    return rpt.ReportContent(
        title=f"Territory plan: {config.run_name}",
        subtitle=f"As of {features.as_of:%Y-%m-%d}; {len(uid):,} units; "
                 f"balanced on {', '.join(tc.balance_attributes)} at ±{tc.tolerance:.0%}.",
        headline=headline,
        quality_sentences=quality_sentences(config, trained, scores),
        figures=figures,
        tables=tables,
    )


def summary_markdown(content: rpt.ReportContent, report_path: Path) -> str:
    """The report's headline and quality sentences as markdown (for Prefect's UI)."""
    lines = [f"# {content.title}", "", content.subtitle, "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in content.headline]
    lines += ["", "**Model quality**", ""] + [f"- {s}" for s in content.quality_sentences]
    lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines)


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
) -> rpt.ReportContent:
    """Write every output file of a run into ``out`` (a temporary folder)."""
    cols = config.data.columns
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
    design.summary.to_csv(out / "territory_summary.csv", index=False)
    if design.region_summary is not None:
        design.region_summary.to_csv(out / "region_summary.csv", index=False)
    recs.moves.to_csv(out / "moves.csv", index=False)
    recs.units.reset_index().to_csv(out / "recommendations.csv", index=False)
    recs.territories.to_csv(out / "territory_recommendations.csv", index=False)
    recs.opportunities.to_csv(out / "opportunities.csv", index=False)
    if recs.reps is not None:
        recs.reps.to_csv(out / "rep_changes.csv", index=False)
    content = report_content(config, inputs, features, trained, scores, design, recs)
    (out / "report.html").write_text(rpt.render_html(content), encoding="utf-8")
    rpt.write_excel({**content.tables, "Units": recs.units.reset_index(),
                     "Territory summary": design.summary}, out / "report.xlsx")
    return content


def _gate_metric(config: RunConfig, trained: Trained) -> str:
    fc = config.forecast
    return next((m for m in (f"backtest_{fc.gate_metric}", f"valid_{fc.gate_metric}")
                 if m in trained.metrics), "valid_wape")


def _log_training(
    config: RunConfig, inputs: Inputs, features: FeatureSet, trained: Trained
) -> tuple[str, dict]:
    """Inside an active run: config, data, metrics, both models, the gate."""
    tracking.log_tags({"as_of": f"{features.as_of:%Y-%m-%d}",
                       "evaluation_windows": trained.evaluation_windows,
                       "config_hash": config.fingerprint()})
    tracking.log_config(json.loads(config.model_dump_json()))
    tracking.log_dataset(inputs.sales, Path(config.data.sales), "sales")
    for name, digest in inputs.file_hashes.items():
        tracking.log_tags({f"input_sha256.{name}": digest})
    tracking.log_metrics(trained.metrics)
    tracking.log_table(trained.forecaster.feature_importance().rename("gain").reset_index()
                       .rename(columns={"index": "feature"}), "forecast_importance.csv")
    tracking.log_table(trained.potential.feature_importance().rename("gain").reset_index()
                       .rename(columns={"index": "feature"}), "potential_importance.csv")
    if trained.backtest is not None:
        tracking.log_backtest(trained.backtest)
    version = tracking.log_scoring_model(
        trained.forecaster, features.score_table.head(5), config.tracking.registered_model)
    MlflowClient().set_model_version_tag(config.tracking.registered_model, version, "as_of",
                                         f"{features.as_of:%Y-%m-%d}")
    log_potential_model(trained.potential, features.market_table)
    gate = _gate_metric(config, trained)
    decision = tracking.promote_if_better(
        config.tracking.registered_model, version, gate, trained.metrics[gate],
        trained.evaluation_windows, margin=config.forecast.gate_margin)
    decision["version"] = version
    return version, decision


def track_training(
    config: RunConfig, inputs: Inputs, features: FeatureSet, trained: Trained, key: str
) -> tuple[str, dict]:
    """The train flow's MLflow run: log, register the forecaster, apply the gate.

    The run is tagged ``run_key`` only once everything is logged, so only a
    complete run is ever reused by a re-run with the same key.
    """
    setup_tracking(config)
    with tracking.training_run(f"{config.run_name}-train-{features.as_of:%Y-%m}") as run_id:
        _, decision = _log_training(config, inputs, features, trained)
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
        tracking.log_table(scores.unit_totals.reset_index(), "unit_drivers.csv")
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


# --- Registry helpers for the flows: reuse, rollback, loading the champion ---


class PotentialModel(mlflow.pyfunc.PythonModel):
    """Pyfunc around the fitted :class:`territory.models.potential.PotentialEstimator`.

    Logged (not registered) in every training run beside the registered
    forecaster, so the nightly forecast scores with the champion's own
    potential model.
    """

    def __init__(self, potential) -> None:
        self.potential = potential

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        return pd.DataFrame({"potential": self.potential.predict(model_input)})


POTENTIAL_ARTIFACT = "potential-model"


def log_potential_model(potential, market_table: pd.DataFrame) -> None:
    """Log the potential model in the active run under ``potential-model``."""
    from mlflow.models import infer_signature

    example = market_table.head(3).astype(float).reset_index(drop=True)
    model = PotentialModel(potential)
    mlflow.pyfunc.log_model(
        name=POTENTIAL_ARTIFACT, python_model=model, input_example=example,
        signature=infer_signature(example, model.predict(None, example)),
        pip_requirements=["mlflow", "lightgbm", "pandas", "scikit-learn"],
    )


def find_tracked_run(config: RunConfig, key: str) -> dict | None:
    """The finished run tagged ``run_key`` = ``key``, as a summary, or None."""
    setup_tracking(config)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.run_key = '{key}'",
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        versions = client.search_model_versions(
            f"name = '{config.tracking.registered_model}' and run_id = '{run.info.run_id}'")
        tags = run.data.tags
        return {
            "run_id": run.info.run_id,
            "version": str(versions[0].version) if versions else None,
            "metrics": dict(run.data.metrics),
            "promotion": {"promoted": tags.get("promotion") == "promoted",
                          "reason": f"reused run {run.info.run_id} (same inputs, config and "
                                    f"as-of date); first decision: "
                                    f"{tags.get('promotion_reason', 'n/a')}",
                          "reused": True},
        }
    return None


def _registry_state(client: MlflowClient, name: str) -> dict | None:
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return None
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    return {"aliases": {a: str(v) for a, v in model.aliases.items()}, "versions": versions}


@contextmanager
def registry_transaction(config: RunConfig, key: str | None = None) -> Iterator[None]:
    """Undo the registry changes of a block that fails.

    On failure, model versions registered inside the block are deleted, the
    ``champion`` and ``challenger`` aliases are put back as they were, and
    runs tagged with ``key`` that started inside the block are marked FAILED
    and lose the tag (so they are never reused). A failed run thus leaves the
    registry exactly as it found it.
    """
    setup_tracking(config)
    client = MlflowClient()
    names = [config.tracking.registered_model, tracking.RECOMMENDER]
    before = {name: _registry_state(client, name) for name in names}
    started_ms = int(time.time() * 1000) - 1000
    try:
        yield
    except BaseException as exc:
        try:
            _rollback(client, config, before, key, started_ms)
        except Exception as undo:  # the registry itself is down: say so, keep the real error
            exc.add_note(f"registry rollback failed too: {undo!r}")
        raise


def _rollback(client: MlflowClient, config: RunConfig, before: dict, key: str | None,
              started_ms: int) -> None:
    for name, state in before.items():
        now = _registry_state(client, name)
        if now is None:
            continue
        old_versions = state["versions"] if state else set()
        for version in sorted(now["versions"] - old_versions, key=int):
            client.delete_model_version(name, version)
        old_aliases = state["aliases"] if state else {}
        for alias in now["aliases"]:
            if alias not in old_aliases:
                client.delete_registered_model_alias(name, alias)
        for alias, version in old_aliases.items():
            if now["aliases"].get(alias) != version:
                client.set_registered_model_alias(name, alias, version)
        if state is None and not client.search_model_versions(f"name = '{name}'"):
            client.delete_registered_model(name)
    if key is not None:
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        if experiment is not None:
            for run in client.search_runs([experiment.experiment_id],
                                          filter_string=f"tags.run_key = '{key}' and "
                                                        f"attributes.start_time >= {started_ms}"):
                client.delete_tag(run.info.run_id, "run_key")
                client.set_terminated(run.info.run_id, status="FAILED")


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
    from territory.features.errors import InputError

    setup_tracking(config)
    client = MlflowClient()
    name = config.tracking.registered_model
    try:
        mv = (client.get_model_version_by_alias(name, tracking.CHAMPION) if version is None
              else client.get_model_version(name, str(version)))
    except MlflowException:
        what = "no champion" if version is None else f"no version {version}"
        raise InputError(
            tracking_uri(config), f"{what} of registered model '{name}'",
            hint="train first: `territory run` or the train flow promotes a champion",
        ) from None
    forecaster = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}").unwrap_python_model() \
        .forecaster
    run = client.get_run(mv.run_id)
    potential = _load_potential(client, run)
    trained = Trained(forecaster, potential, dict(run.data.metrics), pd.DataFrame(),
                      run.data.tags.get("evaluation_windows", ""))
    return RegisteredModels(trained, name, str(mv.version), mv.run_id)


def _load_potential(client: MlflowClient, run):
    """The potential model logged in ``run``; older runs have it in the recommender."""
    run_id = run.info.run_id
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{POTENTIAL_ARTIFACT}'",
        output_format="list")
    if found:
        return mlflow.pyfunc.load_model(found[0].model_uri).unwrap_python_model().potential
    versions = client.search_model_versions(
        f"name = '{tracking.RECOMMENDER}' and run_id = '{run_id}'")
    if not versions:
        raise MlflowException(f"run {run_id} holds no potential model")
    model = mlflow.pyfunc.load_model(f"models:/{tracking.RECOMMENDER}/{versions[0].version}")
    return model.unwrap_python_model().bundle.potential_model
