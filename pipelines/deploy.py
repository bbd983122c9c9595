"""Deployments, schedules and backfills of the flows in :mod:`territory.pipelines.flows`.

Two deployments run the product unattended:

- ``<run_name>-nightly``: the nightly forecast, at ``schedule.nightly_cron``
  (02:00 by default) in ``schedule.timezone``;
- ``<run_name>-weekly-retrain``: the train flow, at ``schedule.retrain_cron``
  (Sunday 03:00 by default).

Their entry flows take the path of the YAML config, so an edit to the config
applies from the next run without redeploying. ``territory deploy`` registers
them on a process work pool (``schedule.work_pool``; run a worker with
``prefect worker start --pool <pool>``); ``territory schedule`` serves them
from the current process instead, for users without a work pool.
``prefect.yaml`` at the repository root declares the same two deployments
for ``prefect deploy --all``.

:func:`backfill` replays the nightly forecast as of each month of a range,
each with a model trained only on data up to that month (or, retraining every
few months, the model of the latest retrain before it, as a nightly run scores
with the champion of the last retrain), and measures the forecast against the
actuals that came later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from territory.features.errors import InputError
from territory.features.spreadsheet_safe import write_csv
from territory.pipelines.config import RunConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- Entry flows of the deployments ------------------------------------------------------


@flow(name="territory-nightly", validate_parameters=True)
def scheduled_nightly(config_path: str, as_of: str | None = None) -> dict:
    """Read the config and run the nightly forecast with the config's task runner."""
    from territory.pipelines.flows import nightly_forecast, with_runner

    config = load_config(config_path, {"as_of": as_of} if as_of else None)
    result = with_runner(nightly_forecast, config)(config)
    return {"folder": str(result["folder"]), "as_of": f"{result['as_of']:%Y-%m-%d}",
            "model_version": result["model_version"]}


@flow(name="territory-retrain", validate_parameters=True)
def scheduled_retrain(config_path: str, as_of: str | None = None) -> dict:
    """Read the config and run the train flow (fit, backtest, register, gate)."""
    from territory.pipelines.flows import train, with_runner

    config = load_config(config_path, {"as_of": as_of} if as_of else None)
    summary = with_runner(train, config)(config)
    return {"version": summary["version"], "as_of": summary["as_of"],
            "promoted": bool(summary["promotion"].get("promoted")),
            "reused": summary["reused"]}


# --- Deployment specs ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow_name: str
    entrypoint: str
    cron: str
    timezone: str
    parameters: dict
    description: str
    tags: tuple[str, ...] = ("territory",)

    @property
    def full_name(self) -> str:
        """``<flow name>/<deployment name>``, as ``run_deployment`` takes it."""
        return f"{self.flow_name}/{self.name}"


def deployment_specs(config: RunConfig, config_path: str | Path) -> list[DeploymentSpec]:
    """The nightly forecast and the weekly retrain for one config."""
    sc = config.schedule
    params = {"config_path": str(Path(config_path).resolve())}
    return [
        DeploymentSpec(
            name=f"{config.run_name}-nightly", flow_name="territory-nightly",
            entrypoint="pipelines/deploy.py:scheduled_nightly", cron=sc.nightly_cron,
            timezone=sc.timezone, parameters=params,
            description="Score every unit with the champion, recommend, report "
                        f"(daily at '{sc.nightly_cron}', {sc.timezone}).",
            tags=("territory", "nightly")),
        DeploymentSpec(
            name=f"{config.run_name}-weekly-retrain", flow_name="territory-retrain",
            entrypoint="pipelines/deploy.py:scheduled_retrain", cron=sc.retrain_cron,
            timezone=sc.timezone, parameters=params,
            description="Fit, backtest, register and gate the forecaster "
                        f"('{sc.retrain_cron}', {sc.timezone}).",
            tags=("territory", "retrain")),
    ]


def _schedule(spec: DeploymentSpec):
    from prefect.schedules import Cron

    return Cron(spec.cron, timezone=spec.timezone)


def ensure_work_pool(name: str) -> None:
    """Create the process work pool ``name`` unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy(config: RunConfig, config_path: str | Path, source: Path = REPO_ROOT) -> list[str]:
    """Register both deployments on the config's process work pool; returns their ids.

    The code is read from ``source`` (this checkout) by the worker at run
    time, so the worker must run on a machine that sees this folder.
    """
    from prefect import Flow

    ensure_work_pool(config.schedule.work_pool)
    ids = []
    for spec in deployment_specs(config, config_path):
        remote = Flow.from_source(source=str(source), entrypoint=spec.entrypoint)
        ids.append(str(remote.deploy(
            name=spec.name, work_pool_name=config.schedule.work_pool,
            schedules=[_schedule(spec)], parameters=spec.parameters,
            description=spec.description, tags=list(spec.tags),
            build=False, push=False, print_next_steps=False, ignore_warnings=True,
        )))
    return ids


def serve(config: RunConfig, config_path: str | Path, limit: int | None = 1) -> None:
    """Serve both deployments from this process until interrupted (``prefect.serve``)."""
    from prefect import serve as prefect_serve

    flows = {"territory-nightly": scheduled_nightly, "territory-retrain": scheduled_retrain}
    deployments = [
        flows[spec.flow_name].to_deployment(
            name=spec.name, schedules=[_schedule(spec)], parameters=spec.parameters,
            description=spec.description, tags=list(spec.tags))
        for spec in deployment_specs(config, config_path)
    ]
    prefect_serve(*deployments, limit=limit, print_starting_message=False)


# --- Alerts: record, artifact, webhook, retrain -------------------------------------------


def start_retrain(config: RunConfig) -> dict:
    """Start a run of the retrain deployment (``<run_name>-weekly-retrain``) now.

    The deployment runs the train flow, so the new model passes the same
    promotion gate as every weekly retrain before it can become champion.
    Returns what happened, as a record; nothing here fails the nightly run.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"territory-retrain/{config.run_name}-weekly-retrain"
    try:
        run = run_deployment(name, timeout=0, as_subflow=False, tags=["territory", "alert"])
    except ObjectNotFound:
        return {"deployment": name, "started": False,
                "why": "no such deployment: register it with `territory deploy` (or serve it "
                       "with `territory schedule`)"}
    except Exception as exc:  # the Prefect API is down: the alert is still recorded
        return {"deployment": name, "started": False, "why": str(exc)[:300]}
    return {"deployment": name, "started": True, "flow_run_id": str(run.id)}


def publish_monitoring(config: RunConfig, found, folder: Path, kind: str) -> dict:
    """Save the monitoring history; for a nightly run, act on the alerts that fired.

    Each alert becomes a line of ``<workspace>/monitoring/alerts.jsonl`` and
    the run's alerts one Prefect markdown artifact (``<run_name>-alerts``);
    with ``monitoring.webhook`` they are POSTed there as JSON, and with
    ``monitoring.retrain_on_alert`` the retrain deployment starts.
    """
    from prefect.artifacts import create_markdown_artifact

    from territory.pipelines import alerts, monitoring
    from territory.pipelines.publish import artifact_key

    out = monitoring.publish_watch(config, found)
    if found is None or kind != "nightly" or not found.alerts:
        return {**out, "alerts": []}
    mc = config.monitoring
    new = alerts.records(config, found.alerts, found.as_of, folder / "report.html")
    extra = {}
    if mc.webhook:
        extra["webhook"] = alerts.post_webhook(
            mc.webhook, {"run_name": config.run_name, "as_of": new[0]["as_of"], "alerts": new},
            mc.webhook_timeout_s)
    if mc.retrain_on_alert:
        extra["retrain"] = start_retrain(config)
    new = [{**r, **extra} for r in new]
    alerts.append_records(config, new)
    create_markdown_artifact(key=artifact_key(config.run_name, "alerts"),
                             markdown=alerts.markdown(new),
                             description=f"Monitoring alerts of {config.run_name}")
    return {**out, "alerts": new}


# --- Backfill -----------------------------------------------------------------------------


def month_range(start: str, end: str) -> list[pd.Timestamp]:
    """First days of the months from ``start`` to ``end`` (``YYYY-MM``), inclusive."""
    try:
        first, last = pd.Period(start, "M"), pd.Period(end, "M")
    except ValueError as exc:
        raise InputError("backfill", f"not a month: {exc}", hint="use YYYY-MM") from None
    if last < first:
        raise InputError("backfill", f"--end {end} is before --start {start}")
    return [p.to_timestamp() for p in pd.period_range(first, last, freq="M")]


BACKFILL_COLUMNS = ["as_of", "status", "model_version", "model_as_of", "model_reused",
                    "months_observed", "wape", "wape_h1", "wape_territory", "bias", "coverage",
                    "folder"]


def backfill_config(config: RunConfig, as_of: pd.Timestamp) -> RunConfig:
    """The config of one backfill date: its own run name and registered model.

    Backfill models go to ``<registered_model>-backfill``, never to the
    production model, so a backfill cannot move the production champion.
    """
    from territory.pipelines.monitoring import BACKFILL_SUFFIX

    tracking = config.tracking.model_copy(
        update={"registered_model": f"{config.tracking.registered_model}{BACKFILL_SUFFIX}"})
    return config.model_copy(update={"as_of": f"{as_of:%Y-%m-%d}", "tracking": tracking,
                                     "run_name": f"{config.run_name}{BACKFILL_SUFFIX}"})


def retrain_due(model: dict | None, as_of: pd.Timestamp, retrain_every: int) -> bool:
    """Whether the backfill trains at ``as_of``: no model yet, or the model (a train
    summary) was trained ``retrain_every`` months or more before it."""
    if model is None:
        return True
    trained = pd.Period(model["as_of"], "M")
    return (pd.Period(as_of, "M") - trained).n >= retrain_every


def backfill(config: RunConfig, start: str, end: str, retrain_every: int = 1
             ) -> tuple[pd.DataFrame, Path]:
    """Replay the nightly forecast as of each month from ``start`` to ``end``.

    For each month: train on data up to that month (or reuse the model a
    previous backfill registered with the same inputs, config and as-of
    date), score with it, recommend and report as the nightly forecast does
    (``<workspace>/backfill/<run_name>-backfill-<as_of>/``), then compare the
    forecast with the actual sales of the months that followed. A month
    without enough history is reported as skipped; the others still run.

    With ``retrain_every`` N > 1 a model is trained only every N months (the
    first month, then N months later...) and the months between are scored
    with the latest of them, as the nightly run scores with the champion of
    the last retrain: each month still sees only data up to it (the model saw
    less), and the backfill costs one training per N months instead of one
    per month. ``model_as_of`` in the table says which model scored.

    Returns the accuracy table (one row per as-of date) and the CSV it was
    written to, ``<workspace>/backfill/<run_name>-<start>-<end>.csv``. The
    forecasts are also measured into the monitoring history,
    ``<workspace>/monitoring/accuracy.parquet``, with every actual known
    (:mod:`territory.pipelines.monitoring`), so a new install has a history.
    """
    from territory.models.scoring import forecast_accuracy
    from territory.pipelines import monitoring
    from territory.pipelines.flows import nightly_forecast, train, with_runner
    from territory.pipelines.outputs import atomic_file
    from territory.pipelines.stages import load_inputs

    if retrain_every < 1:
        raise InputError("backfill", f"--retrain-every {retrain_every} is not a number of "
                         "months", hint="use 1 (train at every month) or more")
    months = month_range(start, end)
    cols = config.data.columns
    full = load_inputs(config.model_copy(update={"as_of": None}))
    last = full.sales[cols.time_col].max()
    alignment = (full.alignment.set_index(cols.unit_col)[cols.territory_col]
                 if full.alignment is not None else None)
    rows, model = [], None  # model: the train summary of the latest retrain
    for as_of in months:
        row = {"as_of": f"{as_of:%Y-%m-%d}"}
        if as_of > last:
            rows.append({**row, "status": f"skipped: after the last sales period {last:%Y-%m}"})
            continue
        cfg = backfill_config(config, as_of)
        try:
            if retrain_due(model, as_of, retrain_every):
                model = with_runner(train, cfg)(cfg)
            result = with_runner(nightly_forecast, cfg)(
                cfg, model_version=model["version"], kind="backfill")
        except InputError as exc:
            rows.append({**row, "status": f"skipped: {str(exc).splitlines()[0]}"})
            continue
        accuracy = forecast_accuracy(result["scores"], full.sales, cols, alignment)
        rows.append({**row, "status": "ok", "model_version": model["version"],
                     "model_as_of": model["as_of"], "model_reused": model["reused"],
                     **accuracy, "folder": str(result["folder"])})
    table = pd.DataFrame(rows).reindex(columns=BACKFILL_COLUMNS)
    if config.monitoring.enabled:  # every actual known: the history a new install starts with
        monitoring.publish_watch(config, monitoring.accuracy_watch(config, full.sales, last))
    csv = (Path(config.workspace) / "backfill"
           / f"{config.run_name}-{months[0]:%Y-%m}-{months[-1]:%Y-%m}.csv")
    with atomic_file(csv) as tmp:
        write_csv(table, tmp)
    return table, csv


def mark_crashed(recovered: list[dict]) -> None:
    """The Prefect flow runs of dead runs say Crashed, not Running forever."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for item in recovered:
            if not item.get("flow_run_id"):
                continue
            try:
                client.set_flow_run_state(
                    item["flow_run_id"], Crashed(message=(
                        f"the process died during '{item['stage']}'; a later run undid what "
                        "it had started")), force=True)
            except Exception as exc:  # another Prefect API than the dead run's
                get_run_logger().warning("flow run %s: %s", item["flow_run_id"], exc)
