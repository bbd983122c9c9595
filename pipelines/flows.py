"""Prefect flows: thin wiring of the stages in :mod:`territory.pipelines.stages`.

Five flows, each taking the validated :class:`~pipelines.config.RunConfig`
as its parameter (Prefect validates it again when a deployment passes JSON):

- :func:`prepare_features`: load and validate the inputs, build the feature set
  (cached on the input files' hashes and the config that shapes features);
- :func:`train`: fit, backtest, register, gate (``<workspace>/train/``);
- :func:`nightly_forecast`: score with the registry's champion, recommend on
  the current alignment, write the report (``<workspace>/nightly/``);
- :func:`design_scenario`: a scenario scored with the champion (``<workspace>/scenarios/``);
- :func:`pipeline` (``territory_pipeline``): all of it (``<workspace>/runs/``), as run by
  ``territory run`` and ``make demo``.

With ``forces:`` each flow works per sales force (:mod:`territory.pipelines.force_runs`).

Every flow writes one folder per as-of date, atomically: a re-run replaces
that date's folder, and a failure anywhere leaves the previous outputs,
registry versions and aliases as they were (see
:func:`territory.pipelines.publish.registry_transaction`). A failed flow leaves
``<folder>.failed.json`` beside where its folder would be, and a Prefect
markdown artifact, saying which stage failed and what to do.

The task runner comes from the config (:func:`task_runner_for`): call a flow as
``with_runner(flow, config)(config)``.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from territory.features.feature_set import FeatureSet
from territory.models.config import TerritoryConfig
from territory.pipelines import (
    cache,
    deploy,
    force_runs,
    forces,
    journal,
    monitoring,
    publish,
    reconcile_runs,
    run_keys,
    stages,
)
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import failure_record_path, output_dir, write_json
from territory.pipelines.progress import stage

# --- Task runner: chosen from the config -------------------------------------------------


def task_runner_for(config: RunConfig):
    """The Prefect task runner ``config.runner`` asks for.

    ``local`` is Prefect's default :class:`~prefect.task_runners.ThreadPoolTaskRunner`;
    ``dask`` is prefect-dask's ``DaskTaskRunner`` on ``config.dask`` (see
    :mod:`territory.pipelines.dask_runner`, whose stages then use that cluster).
    """
    if config.runner == "dask":
        from territory.pipelines import dask_runner

        return dask_runner.task_runner(config)
    return ThreadPoolTaskRunner()


def with_runner(flow_obj, config: RunConfig):
    """``flow_obj`` with the task runner of ``config`` (see :func:`task_runner_for`)."""
    return flow_obj.with_options(task_runner=task_runner_for(config))


# --- Where each flow writes, and what it left when it failed -----------------------------

KINDS = {"territory-pipeline": "runs", "train": "train", "nightly-forecast": "nightly",
         "design-territories": "scenarios", "build-features": "features"}


# Per flow run: the stage now running and the folder it writes (read by the failure hook).
_RUNS: dict[str, dict[str, Any]] = {}


def _flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def _note(**values: Any) -> None:
    run_id = _flow_run_id()
    if run_id is not None:
        info = _RUNS.setdefault(run_id, {})
        info.update(values)
        if (entry := info.get("journal")) is not None:
            entry.update(**{k: v for k, v in values.items() if k in ("stage", "folder")})


def _journal() -> journal.RunJournal | None:
    """The journal of the flow run in progress here (see :mod:`territory.pipelines.journal`)."""
    run_id = _flow_run_id()
    return _RUNS.get(run_id, {}).get("journal") if run_id is not None else None


@contextmanager
def _journaled(config: RunConfig, flow_name: str, kind: str) -> Iterator[None]:
    """Recover what dead runs left, then journal this flow run until it ends."""
    folder = output_dir(config, kind, config.as_of or "latest")
    with journal.run_journal(config, flow_name, _flow_run_id(), folder,
                             on_recovered=deploy.mark_crashed) as entry:
        _note(journal=entry)
        yield


@contextmanager
def _step(name: str, config: RunConfig) -> Iterator[None]:
    """A named stage: progress line, journal entry, and the stage the failure record names."""
    _note(stage=name)
    journal.chaos_point(name)
    with stage(name, config.progress == "rich"):
        yield


def record_failure(flow_obj, flow_run, state) -> None:
    """``on_failure`` hook: write ``<folder>.failed.json`` and a Prefect markdown artifact."""
    info = _RUNS.pop(str(flow_run.id), {})
    error = None
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # the state holds no result: use its message
        pass
    if not isinstance(error, BaseException):
        error = None
    try:
        config = RunConfig.model_validate(flow_run.parameters["config"])
    except Exception:
        return  # the parameters themselves were invalid: Prefect's own message says why
    folder = info.get("folder") or output_dir(
        config, KINDS.get(flow_obj.name, "runs"), config.as_of or "latest")
    stage_name = info.get("stage", "start")
    record = {
        "flow": flow_obj.name,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "stage": stage_name,
        "error_type": type(error).__name__ if error else None,
        "error": str(error) if error else state.message,
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": info.get("as_of", config.as_of),
        "outputs": str(folder),
        "outputs_unchanged": True,
        "what_to_do": journal.what_to_do(error, stage_name, flow_obj.name),
        "traceback": "".join(traceback.format_exception(error))[-4000:] if error else None,
    }
    path = failure_record_path(Path(folder))
    write_json(path, record)
    try:
        create_markdown_artifact(key=publish.artifact_key(config.run_name, "failure"),
                                 markdown=journal.failure_markdown(record, path),
                                 description=f"Why {flow_obj.name} failed")
    except Exception:  # the API is what failed: the file record is enough
        pass


def _succeeded(folder: Path) -> None:
    """A successful run clears the failure record of its folder (and of 'latest')."""
    failure_record_path(folder).unlink(missing_ok=True)
    latest = folder.with_name(folder.name[: -len("YYYY-MM-DD")] + "latest")
    failure_record_path(latest).unlink(missing_ok=True)


def _begin(config: RunConfig, kind: str, as_of, suffix: str = "") -> Path:
    folder = output_dir(config, kind, as_of, suffix)
    _note(folder=folder, as_of=f"{as_of:%Y-%m-%d}")
    return folder


# --- Tasks --------------------------------------------------------------------------------


def _retry_unless_input_error(task, task_run, state) -> bool:
    """Retry I/O hiccups (disk, network, MLflow), never a user's bad input or a bug."""
    try:
        state.result()
    except Exception as exc:
        return journal.is_transient(exc)
    return False


IO_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 10],
              "retry_condition_fn": _retry_unless_input_error}


class InputFilesAndConfig(CachePolicy):
    """Cache key of the feature build: input file hashes + the config that shapes features.

    The hashes are the ones :func:`territory.pipelines.stages.load_inputs` computed from
    the files (:func:`territory.pipelines.outputs.file_sha256`); DataFrames are never
    hashed. The feature code's own hash takes part, so an upgrade rebuilds.
    """

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        return run_keys.features_cache_key(inputs["config"], inputs["inputs"].file_hashes)


# The stages as tasks: each loads, calls one domain function, returns (see ``stages``).
load_inputs_task = task(name="load-inputs", cache_policy=NO_CACHE, **IO_RETRIES)(
    stages.load_inputs_for_run)
features_task = task(name="build-features", cache_policy=InputFilesAndConfig(),
                     persist_result=True, cache_expiration=timedelta(days=30))(
    stages.feature_stage)
train_task = task(name="train-models", cache_policy=NO_CACHE)(stages.train_stage)
score_task = task(name="score-units", cache_policy=NO_CACHE)(stages.score_stage)
design_task = task(name="design-territories", cache_policy=NO_CACHE)(stages.design_stage)
current_alignment_task = task(name="current-alignment", cache_policy=NO_CACHE)(
    stages.current_alignment_stage)
recommend_task = task(name="recommend", cache_policy=NO_CACHE)(stages.recommend_stage)
segment_task = task(name="potential-per-segment", cache_policy=NO_CACHE)(forces.segment_stage)
champion_segments_task = task(name="potential-per-segment", cache_policy=NO_CACHE)(
    forces.champion_segment_stage)
load_segments_task = task(name="load-segment-models", cache_policy=NO_CACHE, **IO_RETRIES)(
    force_runs.load_segment_potentials)
write_forces_task = task(name="write-forecast", cache_policy=NO_CACHE, **IO_RETRIES)(
    force_runs.write_scored_forces)
publish_forces_task = task(name="publish", cache_policy=NO_CACHE, **IO_RETRIES)(
    publish.publish_forces)
find_run_task = task(name="find-tracked-run", cache_policy=NO_CACHE, **IO_RETRIES)(
    publish.find_tracked_run)
load_model_task = task(name="load-model", cache_policy=NO_CACHE, **IO_RETRIES)(
    publish.load_registered_models)
write_scored_task = task(name="write-forecast", cache_policy=NO_CACHE, **IO_RETRIES)(
    publish.write_scored_outputs)
register_task = task(name="register", cache_policy=NO_CACHE, **IO_RETRIES)(
    publish.register_and_gate)
watch_task = task(name="monitor", cache_policy=NO_CACHE)(monitoring.watch)
publish_watch_task = task(name="publish-monitoring", cache_policy=NO_CACHE, **IO_RETRIES)(
    deploy.publish_monitoring)


def _features(config: RunConfig, kind: str, suffix: str = ""
              ) -> tuple[stages.Inputs, FeatureSet, Path]:
    """Load inputs, note this run's folder (now that the as-of date is known), build features."""
    with _step("load and validate inputs", config):
        inputs = load_inputs_task(config)
    folder = _begin(config, kind, stages.resolved_as_of(config, inputs), suffix)
    with _step("build features", config):
        features = features_task(config, inputs)
        _prune_feature_cache(config, inputs)
    return inputs, features, folder


def feature_cache_dir() -> Path:
    """Where Prefect keeps the feature cache: its local result storage."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path)


def _prune_feature_cache(config: RunConfig, inputs: stages.Inputs) -> None:
    """Keep the feature cache within ``config.cache`` (see :mod:`territory.pipelines.cache`)."""
    key = run_keys.features_cache_key(config, inputs.file_hashes)
    folder = feature_cache_dir()
    try:
        cache.touch(folder, key)
        cache.prune(folder, config.cache.max_size_gb * cache.GIB,
                    config.cache.max_age_days * 86400, keep=key)
    except OSError as exc:  # a cache that cannot be pruned must not fail the run
        get_run_logger().warning("could not prune the feature cache in %s: %s", folder, exc)


def _timed(task_obj, seconds: float):
    return task_obj.with_options(timeout_seconds=seconds)


# --- Publishing ---------------------------------------------------------------------------


@task(name="publish", cache_policy=NO_CACHE, **IO_RETRIES)
def publish_run(
    config: RunConfig, inputs, features, trained, scores, design, recs, started: float,
    key: str | None = None,
) -> dict:
    """Write outputs atomically, log to MLflow, then move the run folder into place.

    Everything happens under the folder's lock, inside a registry transaction
    (:func:`territory.pipelines.journal.publishing`): if writing the files,
    logging or moving the folder fails, this run's model versions are deleted
    and the aliases put back; if the process dies, the next run does it. A
    re-run with the same inputs, config and as-of date reuses its tracked run
    instead of registering duplicates.
    """
    run_dir = output_dir(config, "runs", features.as_of)
    existing = publish.find_tracked_run(config, key) if key else None
    with journal.publishing(_journal(), config, run_dir) as out:
        tmp = out.tmp
        content = publish.write_outputs(tmp, config, inputs, features, trained, scores,
                                        design, recs)
        if existing is None:
            run_id, decision = publish.track_run(config, inputs, features, trained, scores,
                                                 design, tmp, recs, key=key)
        else:
            run_id, decision = existing["run_id"], existing["promotion"]
        manifest = run_keys.manifest(config, inputs.file_hashes, run_id, started)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    publish_artifacts(config, content, recs, run_dir)
    return {
        "run_dir": run_dir,
        "report_html": run_dir / "report.html",
        "report_xlsx": run_dir / "report.xlsx",
        "mlflow_run_id": run_id,
        "promotion": decision,
        "published_forecast": trained.published.name if trained.published else "lightgbm",
        "metrics": {**trained.metrics, **scores.metrics},
        "territories": design.overall,
        "current_territories": design.current_overall,
        "violations": design.violations,
        "diagnosis": design.diagnosis,
    }


def publish_artifacts(config: RunConfig, content, recs, run_dir: Path,
                      prefix: str | None = None) -> None:
    """A markdown summary and a territory table under stable keys, so the UI shows history."""
    prefix = prefix or config.run_name
    create_markdown_artifact(
        key=publish.artifact_key(prefix, "summary"),
        markdown=publish.summary_markdown(content, run_dir / "report.html"),
        description=f"Territory plan summary for {prefix}",
    )
    table = recs.territories.round(4).astype(object).where(recs.territories.notna(), None)
    create_table_artifact(
        key=publish.artifact_key(prefix, "territories"),
        table=table.to_dict(orient="records"),
        description="Territories: totals, balance, white space",
    )


# --- Flows --------------------------------------------------------------------------------


@flow(name="build-features", validate_parameters=True, on_failure=[record_failure])
def prepare_features(config: RunConfig) -> FeatureSet:
    """Load and validate the inputs; build (or reuse from cache) the feature set."""
    with _journaled(config, "build-features", "features"):
        return _features(config, "features")[1]


@flow(name="train", validate_parameters=True, on_failure=[record_failure])
def train(config: RunConfig) -> dict:
    """Fit the forecaster and the potential model, backtest, register, gate.

    Writes ``<workspace>/train/<run_name>-<as_of>/summary.json``. With the same
    inputs, config and as-of date as a finished run, nothing is refit or
    registered again: the earlier run and version are returned.
    """
    with _journaled(config, "train", "train"):
        started = time.time()
        with _step("load and validate inputs", config):
            inputs = load_inputs_task(config)
        as_of = stages.resolved_as_of(config, inputs)
        folder = _begin(config, "train", as_of)
        key = run_keys.run_key(config, inputs.file_hashes, as_of, "train")
        with _step("check the registry", config):
            existing = find_run_task(config, key)
        if existing is not None and (folder / "summary.json").is_file():
            _succeeded(folder)
            return {**json.loads((folder / "summary.json").read_text()), "reused": True}
        with _step("build features", config):
            features = features_task(config, inputs)
            _prune_feature_cache(config, inputs)
        if existing is not None:  # tracked, but its summary is missing: write it, register nothing
            with journal.publishing(_journal(), config, folder, registry=False) as out:
                summary = run_keys.train_summary(
                    config, inputs, features, existing["run_id"], existing["version"],
                    existing["metrics"], existing["promotion"], started)
                (out.tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            _succeeded(folder)
            return {**summary, "reused": True}
        with _step("train forecast and potential models", config):
            trained = _timed(train_task, config.schedule.train_timeout_s)(config, features)
            segments = (segment_task(config, inputs, features) if config.forces is not None
                        else None)
        with _step("register and gate", config):
            summary = register_task(_journal(), config, inputs, features, trained, key, folder,
                                    started, segments)
        _succeeded(folder)
        return {**summary, "reused": False}


@flow(name="nightly-forecast", validate_parameters=True, on_failure=[record_failure])
def nightly_forecast(
    config: RunConfig,
    model_version: str | None = None,
    kind: Literal["nightly", "backfill"] = "nightly",
) -> dict:
    """Score every unit with the champion, recommend on the current alignment, report.

    ``model_version`` scores with that version of
    ``tracking.registered_model`` instead of the champion (backfills do).
    Writes ``<workspace>/<kind>/<run_name>-<as_of>/``: ``scores.parquet``,
    recommendations, ``report.html``/``report.xlsx`` and a manifest naming the
    model version. Nothing is registered and no alias moves.
    """
    with _journaled(config, "nightly-forecast", kind):
        started = time.time()
        inputs, features, folder = _features(config, kind)
        with _step("load the champion model", config):
            model = load_model_task(config, model_version)
        with _step("score units", config):
            scores = score_task(config, features, model.trained)
        with _step("recommend", config):
            if config.forces is not None:  # per force, on the champion's segment models
                planned = _champion_force_plans(config, inputs, features, model, scores, ())
            elif inputs.alignment is not None:
                design = current_alignment_task(config, inputs, features, scores)
            else:
                design = _timed(design_task, config.schedule.design_timeout_s)(
                    config, inputs, features, scores)
            if config.forces is None:
                scores = stages.reconcile_stage(config, features, model.trained, scores, design)
                recs = recommend_task(config, inputs, features, scores, design)
        with _step("measure earlier forecasts", config):
            watched = watch_task(config, inputs, features, model.run_id)
        with _step("write forecast, recommendations and report", config):
            if config.forces is not None:
                written = write_forces_task(_journal(), config, folder, inputs, features, model,
                                            *planned, started, watch=watched)
                if kind == "nightly":
                    _force_artifacts(config, planned, written["contents"], folder, "nightly")
            else:
                written = write_scored_task(_journal(), config, folder, inputs, features, model,
                                            scores, design, recs, started, watch=watched)
                if kind == "nightly":
                    publish_artifacts(config, written["content"], recs, folder,
                                      prefix=f"{config.run_name}-nightly")
        with _step("publish monitoring and alerts", config):
            try:
                watched_out = publish_watch_task(config, watched, folder, kind)
            except Exception as exc:  # the forecast is out; the next run measures again
                get_run_logger().warning("the monitoring table was not updated: %s", exc)
                watched_out = {"error": str(exc)}
        _succeeded(folder)
        return {"folder": folder, "as_of": features.as_of, "model_version": model.version,
                "model_run_id": model.run_id, "scores": scores.scores, "monitoring": watched_out,
                "metrics": {**model.trained.metrics, **scores.metrics},
                **({"forces": written["forces"]} if config.forces is not None else {})}


@flow(name="design-territories", validate_parameters=True, on_failure=[record_failure])
def design_scenario(
    config: RunConfig,
    scenario: TerritoryConfig | None = None,
    scenario_name: str = "base",
    force: str | None = None,
) -> dict:
    """Design territories for one scenario, scored with the champion.

    ``scenario`` replaces ``config.territories`` (number of territories,
    tolerance, attributes, mode...); with ``forces:``, the territories of the
    force named ``force``, the only force redesigned
    (:mod:`territory.pipelines.force_runs`). Writes
    ``<workspace>/scenarios/<run_name>-<scenario_name>-<as_of>/``.
    """
    config = force_runs.scenario_config(config, scenario, scenario_name, force)
    with _journaled(config, "design-territories", "scenarios"):
        started = time.time()
        inputs, features, folder = _features(config, "scenarios", scenario_name)
        with _step("load the champion model", config):
            model = load_model_task(config, None)
        with _step("score units", config):
            scores = score_task(config, features, model.trained)
        extra = {"scenario": scenario_name, **({"force": force} if force else {})}
        with _step("design territories", config):
            if config.forces is not None:  # the scenario's force, the others as they are
                planned = _champion_force_plans(config, inputs, features, model, scores,
                                                force_runs.designed_forces(config, force))
                design = planned[2][0]
            else:
                design = _timed(design_task, config.schedule.design_timeout_s)(
                    config, inputs, features, scores)
                scores = stages.reconcile_stage(config, features, model.trained, scores, design)
                recs = recommend_task(config, inputs, features, scores, design)
        with _step("write scenario outputs and report", config):
            if config.forces is not None:
                written = write_forces_task(_journal(), config, folder, inputs, features, model,
                                            *planned, started, extra)
            else:
                write_scored_task(_journal(), config, folder, inputs, features, model, scores,
                                  design, recs, started, extra=extra)
        _succeeded(folder)
        return {"folder": folder, "as_of": features.as_of, "territories": design.overall,
                "current_territories": design.current_overall, "violations": design.violations,
                "diagnosis": design.diagnosis,
                **({"forces": written["forces"]} if config.forces is not None else {})}


@flow(name="territory-pipeline", validate_parameters=True, on_failure=[record_failure])
def pipeline(config: RunConfig) -> dict:
    """Features → forecast and potential → territories → outputs, report and MLflow.

    Everything in one run: trains, gates and registers like :func:`train`,
    scores with the freshly trained models and designs territories like
    :func:`design_scenario`, and writes ``<workspace>/runs/<run_name>-<as_of>/``.
    """
    with _journaled(config, "territory-pipeline", "runs"):
        started = time.time()
        inputs, features, _ = _features(config, "runs")
        key = run_keys.run_key(config, inputs.file_hashes, features.as_of, "pipeline")
        with _step("train forecast and potential models", config):
            trained = _timed(train_task, config.schedule.train_timeout_s)(config, features)
        with _step("score units", config):
            scores = score_task(config, features, trained)
        if config.forces is not None:  # one design per sales force
            return _design_forces(config, inputs, features, trained, scores, started, key)
        with _step("design territories", config):
            design = _timed(design_task, config.schedule.design_timeout_s)(
                config, inputs, features, scores)
        with _step("write outputs, report and MLflow run", config):
            scores = stages.reconcile_stage(config, features, trained, scores, design)
            recs = recommend_task(config, inputs, features, scores, design)
            result = publish_run(config, inputs, features, trained, scores, design, recs, started,
                                 key)
        _succeeded(result["run_dir"])
        return result


def _design_forces(config: RunConfig, inputs, features, trained, scores, started: float,
                   key: str) -> dict:
    """The pipeline's end with ``forces:``: potential per segment, then one design per
    force, then one publication."""
    with _step("potential per segment", config):
        segments = segment_task(config, inputs, features)
    with _step("design territories", config):
        planned = _force_plans(config, inputs, features, trained, scores, segments,
                               force_runs.designed_forces(config))
    with _step("write outputs, report and MLflow run", config):
        run_dir = output_dir(config, "runs", features.as_of)
        result = publish_forces_task(_journal(), config, run_dir, inputs, features, trained,
                                     *planned, started, key)
    _force_artifacts(config, planned, result["contents"], run_dir)
    _succeeded(run_dir)
    return result


def _force_plans(config: RunConfig, inputs, features, trained, scores, segments,
                 fresh: Collection[str]) -> tuple:
    """Per sales force its view, design (side by side on the task runner), reconciled scores
    and recommendations: ``(segments, views, designs, recs)``. The forces named in ``fresh``
    are designed; the others' current alignment is described (one without it is designed)."""
    views = forces.force_views(config, inputs, features, scores, segments)
    design = _timed(design_task, config.schedule.design_timeout_s)
    futures = []
    for view in views:
        chosen = (design if view.name in fresh or view.inputs.alignment is None
                  else current_alignment_task)
        futures.append(chosen.with_options(task_run_name=f"{chosen.name}-{view.name}").submit(
            view.config, view.inputs, view.features, view.scores))
    designs = [future.result() for future in futures]
    views = reconcile_runs.reconciled_views(config, views, designs, trained)
    recs = [recommend_task(v.config, v.inputs, v.features, v.scores, d)
            for v, d in zip(views, designs, strict=True)]
    return segments, views, designs, recs


def _champion_force_plans(config: RunConfig, inputs, features, model, scores,
                          fresh: Collection[str]) -> tuple:
    """:func:`_force_plans` on the segment models of the champion (``model``)'s run."""
    fitted = load_segments_task(config, model)
    segments = champion_segments_task(config, inputs, features, fitted)
    return _force_plans(config, inputs, features, model.trained, scores, segments, fresh)


def _force_artifacts(config: RunConfig, planned: tuple, contents: dict, folder: Path,
                     kind: str = "") -> None:
    """Each force's summary and territory table as Prefect artifacts (keys end in its name)."""
    _, views, _, recs = planned
    for view, rec in zip(views, recs, strict=True):
        prefix = "-".join(part for part in (config.run_name, kind, view.name) if part)
        publish_artifacts(view.config, contents.pop(view.name), rec,
                          folder / "forces" / view.name, prefix)


territory_pipeline = pipeline
