"""The flows against a real remote MLflow tracking server (``mlflow server``).

The server runs in a subprocess with a SQLite backend and a local artifact
destination (proxied artifacts, as a team server would serve them from S3 or
GCS); the config only names its ``http://`` URI. The train flow registers and
promotes there, and the nightly forecast loads the champion back from it.
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
from mlflow.tracking import MlflowClient

from territory.pipelines.config import load_config
from tests.conftest import FAST_MODELS, free_port, write_slice_config

BIN = Path(sys.executable).parent

FAST = {
    "run_name": "remote",
    **FAST_MODELS,
}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free port: SQLite backend, local artifacts, one worker."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", (root / "artifacts").as_uri()],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, (root / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url, root
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(server.pid, sig)
                server.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_config_accepts_only_tracking_uris(demo_slice_dir, tmp_path):
    from territory.features.errors import InputError

    ok = load_config(write_slice_config(
        demo_slice_dir, tmp_path / "a", tracking={"tracking_uri": "https://mlflow.example.com/"}))
    assert ok.tracking.tracking_uri == "https://mlflow.example.com"
    with pytest.raises(InputError, match="tracking.tracking_uri"):
        load_config(write_slice_config(demo_slice_dir, tmp_path / "b",
                                       tracking={"tracking_uri": "mlflow.example.com:5000"}))


@pytest.mark.slow
def test_train_and_nightly_against_a_remote_tracking_server(prefect_session, mlflow_server,
                                                            demo_slice_dir, tmp_path):
    from territory.pipelines.flows import nightly_forecast, train

    url, root = mlflow_server
    config = load_config(write_slice_config(
        demo_slice_dir, tmp_path / "workspace", **FAST,
        tracking={"tracking_uri": url, "experiment": "remote-test",
                  "registered_model": "remote-forecaster"}))
    summary = train(config)

    client = MlflowClient(tracking_uri=url)  # the REST API, as any team member would see it
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "valid_wape" in run.data.metrics
    assert run.data.tags["as_of"] == "2025-12-01" and run.data.tags["promotion"] == "promoted"
    champion = client.get_model_version_by_alias("remote-forecaster", "champion")
    assert champion.run_id == summary["mlflow_run_id"]
    assert client.get_model_version_by_alias("remote-forecaster", "challenger").version == \
        champion.version
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "promotion_decision.json", "forecast_importance.csv"} <= artifacts
    # Artifacts went to the server's destination, not to the local workspace.
    assert any((root / "artifacts").rglob("MLmodel"))
    assert not (Path(config.workspace) / "mlflow.db").exists()
    assert not (Path(config.workspace) / "mlartifacts").exists()

    nightly = nightly_forecast(config)  # loads the champion back from the server
    manifest = json.loads((nightly["folder"] / "manifest.json").read_text())
    assert manifest["model"] == {"name": "remote-forecaster", "version": str(champion.version),
                                 "run_id": champion.run_id}
