"""Deployments against a real Prefect server: `territory deploy` + a process worker,
`territory schedule` (served in-process), runs triggered with ``run_deployment``.

Everything runs in subprocesses with a temporary ``PREFECT_HOME``; the server,
the worker and the serving process are killed (their whole process groups) at
the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from territory.pipelines.config import load_config
from territory.pipelines.deploy import deployment_specs
from tests.conftest import FAST_MODELS, free_port, write_slice_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

FAST = {
    "run_name": "sched",
    **FAST_MODELS,
    "tracking": {"experiment": "sched-test", "registered_model": "sched-forecaster"},
    "schedule": {"timezone": "America/Chicago", "work_pool": "territory-test-pool"},
}


def test_prefect_yaml_matches_territory_deploy():
    """prefect.yaml (for `prefect deploy --all`) declares what `territory deploy` registers."""
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    config = load_config(ROOT / "configs" / "demo.yaml")
    specs = deployment_specs(config, "configs/demo.yaml")
    assert [d["name"] for d in declared] == [s.name for s in specs]
    for d, s in zip(declared, specs, strict=True):
        assert d["entrypoint"] == s.entrypoint
        assert d["schedules"] == [{"cron": s.cron, "timezone": s.timezone}]
        assert d["work_pool"]["name"] == config.schedule.work_pool
        assert d["parameters"] == {"config_path": "configs/demo.yaml"}
        module, name = s.entrypoint.split(":")
        assert f"def {name}(" in (ROOT / module).read_text()


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_handle = handle
    return proc


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a process and its whole group: TERM, then KILL after 15 s."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.log_handle.close()


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_deployments_run_on_a_real_prefect_server(demo_slice_dir, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    workspace = tmp_path / "workspace"
    config_path = write_slice_config(demo_slice_dir, workspace, **FAST)
    config = load_config(config_path)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(ROOT)}
    server = worker = served = None
    marks = {"start": time.time()}
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "worker", "serve")}
    try:
        server = _start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                         "--port", str(port), "--no-ui", "--analytics-off"], env, logs["server"])
        _wait_healthy(f"{api}/health", server, logs["server"])
        marks["server healthy"] = time.time()

        deployed = subprocess.run([str(BIN / "territory"), "deploy", "--config", str(config_path)],
                                  env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        marks["deployed"] = time.time()
        specs = {s.flow_name: s for s in deployment_specs(config, config_path)}

        with temporary_settings({PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                for spec in specs.values():
                    found = client.read_deployment_by_name(spec.full_name)
                    assert found.work_pool_name == "territory-test-pool"
                    schedule = found.schedules[0].schedule
                    assert (schedule.cron, schedule.timezone) == (spec.cron, "America/Chicago")
                    assert found.parameters == {"config_path": str(config_path.resolve())}

            # The weekly retrain, picked up by a process worker from the work pool.
            worker = _start([str(BIN / "prefect"), "worker", "start", "--pool",
                             "territory-test-pool", "--type", "process"], env, logs["worker"])
            retrain = run_deployment(specs["territory-retrain"].full_name, timeout=240)
            assert retrain.state.is_completed(), (retrain.state, logs["worker"].read_text()[-4000:])
            summary = workspace / "train" / "sched-2025-12-01" / "summary.json"
            assert json.loads(summary.read_text())["promotion"]["promoted"]
            marks["retrain done (worker)"] = time.time()
            _stop(worker)
            worker = None

            # The nightly forecast, served in-process by `territory schedule` (no work pool),
            # for a second run name: a served deployment should not share a worker's name.
            served_path = tmp_path / "served.yaml"
            served_path.write_text(yaml.safe_dump(
                {**yaml.safe_load(config_path.read_text()), "run_name": "served"}))
            served_config = load_config(served_path)
            served = _start([str(BIN / "territory"), "schedule", "--config", str(served_path)],
                            env, logs["serve"])
            nightly_spec = deployment_specs(served_config, served_path)[0]
            deadline = time.time() + 120
            with get_client(sync_client=True) as client:
                while True:  # until `territory schedule` has registered its deployments
                    try:
                        client.read_deployment_by_name(nightly_spec.full_name)
                        break
                    except ObjectNotFound:
                        assert served.poll() is None, logs["serve"].read_text()[-4000:]
                        assert time.time() < deadline, logs["serve"].read_text()[-4000:]
                        time.sleep(0.5)
            nightly = run_deployment(nightly_spec.full_name, timeout=240)
            assert nightly.state.is_completed(), (nightly.state, logs["serve"].read_text()[-4000:])
            marks["nightly done (served)"] = time.time()
        folder = workspace / "nightly" / "served-2025-12-01"
        assert {"scores.parquet", "report.html", "manifest.json"} <= {p.name for p in
                                                                      folder.iterdir()}
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["model"]["run_id"] == json.loads(summary.read_text())["mlflow_run_id"]
    finally:
        for proc in (served, worker, server):
            _stop(proc)
        previous = marks.pop("start")
        for name, at in marks.items():
            print(f"{name}: +{at - previous:.1f} s")
            previous = at
