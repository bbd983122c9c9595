"""An alert's retrain, executed: a firing rule of the nightly run starts the retrain
deployment, a process worker runs it, and the retrained model meets the champion gate.

The Prefect API is the session's test server (``prefect_session``); the
deployments are registered on a process work pool as ``territory deploy``
does, and a ``prefect worker`` subprocess (killed with its process group at
the end, whatever happens) picks the alert's run up from the pool.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from territory.pipelines import flows, publish
from territory.pipelines.config import load_config
from territory.pipelines.deploy import deploy, deployment_specs
from tests.conftest import FAST_MODELS, write_slice_config
from tests.drifted import drifted_inputs
from tests.test_prefect_server import _start, _stop

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "territory-alert-pool"


def _wait_final(client, flow_run_id, worker, log: Path, timeout: float = 300):
    """The flow run once it is in a final state (the worker must stay up meanwhile)."""
    deadline = time.time() + timeout
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert worker.poll() is None, log.read_text()[-4000:]
        assert time.time() < deadline, (run.state, log.read_text()[-4000:])
        time.sleep(1)


@pytest.mark.slow
def test_an_alert_starts_a_retrain_that_a_worker_runs_through_the_gate(
        prefect_session, demo_slice_dir, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    workspace = tmp_path / "workspace"
    config_path = write_slice_config(
        demo_slice_dir, workspace, run_name="alerted", **FAST_MODELS,
        tracking={"experiment": "alerted-test", "registered_model": "alerted-forecaster"},
        schedule={"work_pool": POOL})
    first = flows.train(load_config(config_path))  # the champion, on the clean inputs
    assert first["promotion"]["promoted"] and first["version"] == "1"

    # The inputs drift; the deployments read the config file at each run.
    demographics, sales = drifted_inputs(demo_slice_dir, tmp_path)
    raw = yaml.safe_load(config_path.read_text())
    raw["data"].update({"demographics": str(demographics), "sales": str(sales)})
    raw["monitoring"] = {"retrain_on_alert": True}
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    deploy(config, config_path)
    retrain_spec = next(s for s in deployment_specs(config, config_path)
                        if s.flow_name == "territory-retrain")

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_HOME": str(tmp_path / "worker_home"), "PREFECT_LOGGING_LEVEL": "INFO",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "worker.log"
    worker = _start([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type",
                     "process"], env, log)
    try:
        result = flows.nightly_forecast(config)
        fired = result["monitoring"]["alerts"]
        assert "drift" in {a["rule"] for a in fired}
        started = fired[0]["retrain"]
        assert started["started"], started
        with get_client(sync_client=True) as client:
            run = _wait_final(client, started["flow_run_id"], worker, log)
            assert run.state.is_completed(), (run.state, log.read_text()[-4000:])
            assert "alert" in run.tags
            assert run.deployment_id == client.read_deployment_by_name(
                retrain_spec.full_name).id
    finally:
        _stop(worker)

    # The worker's run trained on the drifted inputs and met the same gate as any retrain.
    summary = json.loads((workspace / "train" / "alerted-2025-12-01" / "summary.json")
                         .read_text())
    assert summary["config"]["data"]["sales"] == str(sales)
    assert summary["version"] == "2" and summary["mlflow_run_id"] != first["mlflow_run_id"]
    gate = summary["promotion"]
    assert (str(gate["challenger_version"]), str(gate["champion_version"])) == ("2", "1")
    assert gate["champion_windows"] == gate["windows"]  # compared on the same windows
    assert gate["champion_score"] == pytest.approx(first["metrics"][gate["metric"]])
    assert gate["challenger_score"] == pytest.approx(summary["metrics"][gate["metric"]])
    assert gate["promoted"] == (gate["challenger_score"] < gate["champion_score"])
    assert "vs champion" in gate["reason"]
    client = MlflowClient(tracking_uri=publish.tracking_uri(config))
    champion = client.get_registered_model("alerted-forecaster").aliases["champion"]
    assert str(champion) == ("2" if gate["promoted"] else "1")
