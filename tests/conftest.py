"""Shared fixtures: a small slice of the demo data and a config for it."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
SLICE_STATES = ("Iowa", "Nebraska")

# Small, fast models for the flow and service tests: behaviour, not accuracy.
FAST_MODELS = {
    "forecast": {"n_estimators": 30, "learning_rate": 0.2, "max_train_rows": 5000,
                 "early_stopping_rounds": 5, "backtest": {"windows": 0}},
    "potential": {"n_estimators": 50},
    "territories": {"n_territories": 4, "keep_rep_homes": False, "time_limit_s": 10},
}


def free_port() -> int:
    """A TCP port nobody listens on now, for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(server, port: int, seconds: float = 180.0) -> None:
    """Wait for the model server ``server`` (a Popen) to answer ``/ping`` on ``port``; fail
    with its output if it exits, or after ``seconds``."""
    import time
    import urllib.request

    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, server.stdout.read()
        assert time.time() < deadline, "the model server did not start"
        time.sleep(0.5)


def post_invocations(port: int, payload: dict | str) -> tuple[int, dict]:
    """POST ``payload`` (a dict, or raw JSON text) to the model server's ``/invocations``;
    the status and the decoded answer, errors included."""
    import json
    import urllib.error
    import urllib.request

    body = payload if isinstance(payload, str) else json.dumps(payload)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body.encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="session")
def demo_slice_dir(tmp_path_factory) -> Path:
    """Iowa and Nebraska (192 counties) from the committed demo data, 4 territories."""
    out = tmp_path_factory.mktemp("demo_slice")
    counties = gpd.read_parquet(DEMO / "counties.parquet")
    counties = counties[counties["region"].isin(SLICE_STATES)].reset_index(drop=True)
    ids = set(counties["unit_id"])
    counties.to_parquet(out / "counties.parquet")
    demo = pd.read_parquet(DEMO / "demographics.parquet")
    demo[demo["unit_id"].isin(ids)].to_parquet(out / "demographics.parquet")
    sales = pd.read_parquet(DEMO / "sales.parquet")
    sales[sales["unit_id"].isin(ids)].to_parquet(out / "sales.parquet")
    truth = pd.read_parquet(DEMO / "truth.parquet")
    truth[truth["unit_id"].isin(ids)].to_parquet(out / "truth.parquet")
    alignment = pd.read_csv(DEMO / "alignment.csv", dtype=str)
    alignment = alignment[alignment["unit_id"].isin(ids)]
    alignment.to_csv(out / "alignment.csv", index=False)
    reps = pd.read_csv(DEMO / "reps.csv", dtype=str)
    reps = reps[reps["territory_id"].isin(set(alignment["territory_id"]))]
    reps.to_csv(out / "reps.csv", index=False)
    return out


def write_slice_config(slice_dir: Path, workspace: Path, **overrides) -> Path:
    """A fast config over the slice; ``overrides`` replace top-level sections."""
    config = {
        "run_name": "slice",
        "workspace": str(workspace),
        "data": {
            "units": str(slice_dir / "counties.parquet"),
            "sales": str(slice_dir / "sales.parquet"),
            "demographics": str(slice_dir / "demographics.parquet"),
            "alignment": str(slice_dir / "alignment.csv"),
            "reps": str(slice_dir / "reps.csv"),
            "truth": str(slice_dir / "truth.parquet"),
            "projected_crs": "EPSG:5070",
            "name_columns": ["name", "region"],
        },
        "forecast": {"n_estimators": 60, "learning_rate": 0.15, "max_train_rows": 20000,
                     "early_stopping_rounds": 10},
        "potential": {"n_estimators": 100},
        "territories": {"n_territories": 4, "keep_rep_homes": False, "time_limit_s": 10},
        "tracking": {"experiment": "slice-test", "registered_model": "slice-forecaster"},
        "progress": "none",
    }
    config.update(overrides)
    path = workspace.parent / f"{workspace.name}.yaml"
    workspace.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def prefect_session(tmp_path_factory):
    """One temporary Prefect API for the whole session, with its own home and result store.

    Starting Prefect's test server costs 10-50 s on a loaded 2-core machine,
    so flow tests share this one. The temporary home keeps cached results
    (the feature cache) out of ``~/.prefect`` and apart between sessions.
    """
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect_home")
    with temporary_settings({PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}):
        with prefect_test_harness(server_startup_timeout=180):
            yield home
