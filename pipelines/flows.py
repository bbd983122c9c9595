"""Prefect flows: thin wiring of the stages in :mod:`pipelines.stages`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.errors import InputError
from pipelines import publish, stages
from pipelines.config import RunConfig
from pipelines.outputs import atomic_directory
from pipelines.progress import stage


def _retry_unless_input_error(task, task_run, state) -> bool:
    """Retry I/O hiccups, never a user's bad input."""
    try:
        state.result()
    except InputError:
        return False
    except Exception:
        return True
    return False


load_inputs = task(stages.load_inputs, name="load-inputs", cache_policy=NO_CACHE, retries=2,
                   retry_delay_seconds=[1, 5], retry_condition_fn=_retry_unless_input_error)
build_features = task(stages.build_features, name="build-features", cache_policy=NO_CACHE)
train_models = task(stages.train_models, name="train-models", cache_policy=NO_CACHE)
score_units = task(stages.score_units, name="score-units", cache_policy=NO_CACHE)
design_territories = task(stages.design_territories, name="design-territories",
                          cache_policy=NO_CACHE)


@task(name="publish", cache_policy=NO_CACHE)
def publish_run(
    config: RunConfig, inputs, features, trained, scores, design, started: float
) -> dict:
    """Write outputs atomically, log to MLflow, then move the run folder into place."""
    recs = stages.recommendations(config, inputs, features, scores, design)
    run_dir = Path(config.workspace) / "runs" / f"{config.run_name}-{features.as_of:%Y-%m-%d}"
    with atomic_directory(run_dir) as tmp:
        content = publish.write_outputs(tmp, config, inputs, features, trained, scores, design,
                                        recs)
        run_id, decision = publish.track_run(config, inputs, features, trained, scores, design, tmp,
                                             recs)
        (tmp / "manifest.json").write_text(
            json.dumps(stages.manifest(config, inputs, run_id, started), indent=2, default=str))
    publish_artifacts(config, content, recs, run_dir)
    return {
        "run_dir": run_dir,
        "report_html": run_dir / "report.html",
        "report_xlsx": run_dir / "report.xlsx",
        "mlflow_run_id": run_id,
        "promotion": decision,
        "metrics": {**trained.metrics, **scores.metrics},
        "territories": design.overall,
        "current_territories": design.current_overall,
        "violations": design.violations,
    }


def publish_artifacts(config: RunConfig, content, recs, run_dir: Path) -> None:
    """A markdown summary and a territory table under stable keys, so the UI shows history."""
    create_markdown_artifact(
        key=publish.artifact_key(config.run_name, "summary"),
        markdown=publish.summary_markdown(content, run_dir / "report.html"),
        description=f"Territory plan summary for {config.run_name}",
    )
    table = recs.territories.round(4).astype(object).where(recs.territories.notna(), None)
    create_table_artifact(
        key=publish.artifact_key(config.run_name, "territories"),
        table=table.to_dict(orient="records"),
        description="Proposed territories: totals, balance, white space",
    )


@flow(name="territory-pipeline", validate_parameters=True)
def territory_pipeline(config: RunConfig) -> dict:
    """Features → forecast and potential → territories → outputs, report and MLflow."""
    started = time.time()
    show = config.progress == "rich"
    with stage("load and validate inputs", show):
        inputs = load_inputs(config)
    with stage("build features", show):
        features = build_features(config, inputs)
    with stage("train forecast and potential models", show):
        trained = train_models(config, features)
    with stage("score units", show):
        scores = score_units(config, features, trained)
    with stage("design territories", show):
        design = design_territories(config, inputs, features, scores)
    with stage("write outputs, report and MLflow run", show):
        return publish_run(config, inputs, features, trained, scores, design, started)
