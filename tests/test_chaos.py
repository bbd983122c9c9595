"""Issue 13: kill -9 at every stage boundary, and runs at the same time, in real processes.

``territory run`` runs in a subprocess against this session's Prefect test
server and the workspace's MLflow SQLite store. ``TERRITORY_CHAOS_KILL_AT``
makes it SIGKILL itself at one point; then the workspace must hold the last
good outputs, and after recovery the registry must be as it was (or keep a
run whose outputs were published), with no RUNNING MLflow run, no temporary
folder and a failure record naming the stage. The next run must succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from territory.pipelines import flows, journal, publish
from territory.pipelines.config import load_config
from territory.pipelines.outputs import failure_record_path
from tests.conftest import FAST_MODELS, write_slice_config

pytestmark = pytest.mark.slow

TERRITORY = Path(sys.executable).with_name("territory")
# Every stage boundary of `territory run`, then the points inside publishing. The last
# kill is recovered by the next run itself, not by the test.
POINTS = ["load and validate inputs", "build features", "train forecast and potential models",
          "score units", "design territories", "write outputs, report and MLflow run",
          "outputs-written", "outputs-published", "model-registered"]
FOLDER = "chaos-2025-12-01"


@pytest.fixture(scope="module")
def base(prefect_session, demo_slice_dir, tmp_path_factory):
    """A workspace with one published run (in this process), and the environment of others."""
    from prefect.settings import PREFECT_API_URL

    workspace = tmp_path_factory.mktemp("chaos") / "workspace"
    path = write_slice_config(demo_slice_dir, workspace, run_name="chaos", **FAST_MODELS,
                              tracking={"experiment": "chaos-test",
                                        "registered_model": "chaos-forecaster"})
    config = load_config(path)
    flows.pipeline(config)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_HOME": str(prefect_session),
           "PREFECT_LOCAL_STORAGE_PATH": str(prefect_session / "storage"),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop(journal.CHAOS_ENV, None)
    return {"config": config, "yaml": yaml.safe_load(path.read_text()), "env": env,
            "dir": workspace.parent}


def _run(base, seed: int, kill_at: str | None = None, wait: bool = True, **schedule):
    """``territory run`` in a subprocess with another potential seed (so it registers)."""
    raw = json.loads(json.dumps(base["yaml"]))
    raw["potential"] = {**raw["potential"], "seed": seed}
    raw["schedule"] = {**raw.get("schedule", {}), **schedule}
    path = base["dir"] / f"run-{seed}.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = dict(base["env"])
    if kill_at:
        env[journal.CHAOS_ENV] = kill_at
    proc = subprocess.Popen([str(TERRITORY), "run", "--config", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _client(config) -> MlflowClient:
    return MlflowClient(tracking_uri=publish.tracking_uri(config))


def registry(config) -> dict:
    client = _client(config)
    state = {}
    for name in publish.registered_models(config):
        model = client.get_registered_model(name)
        state[name] = ({a: str(v) for a, v in model.aliases.items()},
                       sorted(str(v.version) for v in
                              client.search_model_versions(f"name = '{name}'")))
    return state


def run_statuses(config) -> dict[str, str]:
    client = _client(config)
    exp = client.get_experiment_by_name(config.tracking.experiment)
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id])}


def outputs(config) -> dict[str, str]:
    root = Path(config.workspace) / "runs" / FOLDER
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(config) -> list[str]:
    ws = Path(config.workspace)
    hidden = [p.name for p in (ws / "runs").iterdir() if p.name.startswith(".")]
    return hidden + [p.name for p in (ws / journal.JOURNAL_DIR).glob("*.json")]


def test_kill_at_every_stage_boundary_then_the_next_run_succeeds(base):
    config = base["config"]
    files, reg = outputs(config), registry(config)
    for i, point in enumerate(POINTS):
        code, _, err = _run(base, seed=100 + i, kill_at=point)
        assert code == -signal.SIGKILL, f"{point}: exit {code}\n{err[-3000:]}"
        published = point == "outputs-published"
        if not published:  # the last good outputs are intact whatever the moment of death
            assert outputs(config) == files, point
        if point == POINTS[-1]:
            break  # left for the next run to recover
        done = journal.recover(Path(config.workspace))
        assert [d["published"] for d in done] == [published], point
        assert "RUNNING" not in run_statuses(config).values(), point
        assert leftovers(config) == [], point
        stage = point if point in POINTS[:6] else "write outputs, report and MLflow run"
        folder = FOLDER if point != POINTS[0] else "chaos-latest"  # as-of unknown yet
        record = failure_record_path(Path(config.workspace) / "runs" / folder)
        if published:  # a run that published everything is kept as it is
            assert registry(config) != reg and outputs(config) != files
            files, reg = outputs(config), registry(config)
            continue
        assert registry(config) == reg, point
        assert json.loads(record.read_text())["stage"] == stage, point
        record.unlink()
    # the run killed right after registering left a version, challenger on it, a RUNNING run
    client = _client(config)
    model = config.tracking.registered_model
    dead = max(client.search_model_versions(f"name = '{model}'"), key=lambda v: int(v.version))
    assert dead.version not in reg[model][1]
    assert client.get_registered_model(model).aliases["challenger"] == dead.version
    assert client.get_run(dead.run_id).info.status == "RUNNING"
    dead_flow_run = json.loads(next((Path(config.workspace) / journal.JOURNAL_DIR)
                                    .glob("*.json")).read_text())["flow_run_id"]
    code, out, err = _run(base, seed=200)
    assert code == 0, err[-3000:]
    assert client.get_run(dead.run_id).info.status == "FAILED"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:  # its Prefect flow run no longer "Running"
        assert prefect.read_flow_run(dead_flow_run).state.type.value == "CRASHED"
    after = registry(config)
    for name, (_, versions) in after.items():
        new = sorted(set(versions) - set(reg[name][1]), key=int)
        assert len(new) == 1, (name, new)  # the dead run's version is gone, the new one is in
    assert str(dead.version) not in after[model][1]
    assert "RUNNING" not in run_statuses(config).values() and leftovers(config) == []
    assert not failure_record_path(Path(config.workspace) / "runs" / FOLDER).exists()
    manifest = json.loads((Path(config.workspace) / "runs" / FOLDER / "manifest.json")
                          .read_text())
    assert run_statuses(config)[manifest["mlflow_run_id"]] == "FINISHED"


def test_a_second_publisher_gives_up_naming_the_lock_and_the_holder(base):
    config = base["config"]
    folder = Path(config.workspace) / "runs" / FOLDER
    holder = {"flow": "territory-pipeline", "pid": os.getpid(), "host": "this-test",
              "started_at": "2026-01-01T00:00:00+00:00"}
    reg = registry(config)
    with journal.folder_lock(config, folder, holder):
        code, _, err = _run(base, seed=300, lock_timeout_s=2)
    assert code == 2, err[-3000:]
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert f"pid {os.getpid()} on this-test" in line and "runs--chaos-2025-12-01.lock" in line
    assert "lock_timeout_s" in line
    assert registry(config) == reg  # it waited before changing anything
    journal.recover(Path(config.workspace))
    assert registry(config) == reg and leftovers(config) == []


def test_two_runs_at_once_both_publish_and_keep_each_others_versions(base):
    config = base["config"]
    reg = registry(config)
    procs = [_run(base, seed=seed, wait=False) for seed in (401, 402)]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0, err[-3000:]
    after = registry(config)
    for name, (_, versions) in after.items():
        assert set(reg[name][1]) < set(versions)
        assert len(set(versions) - set(reg[name][1])) == 2, name  # one per run, none deleted
    statuses = run_statuses(config)
    manifest = json.loads((Path(config.workspace) / "runs" / FOLDER / "manifest.json")
                          .read_text())
    assert statuses[manifest["mlflow_run_id"]] == "FINISHED"
    assert "RUNNING" not in statuses.values() and leftovers(config) == []
