"""Issue 13: the journal of a dead run is undone by the next one; locks between runs.

Code tests on hand-made workspaces, and registry tests on a real MLflow
SQLite store with a tiny pyfunc. The process-killing tests are in
``tests/test_chaos.py``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from filelock import FileLock
from mlflow.tracking import MlflowClient

from territory.models import tracking
from territory.models.tracking import registry as tracking_registry
from territory.pipelines import journal
from territory.pipelines.config import load_config
from territory.pipelines.outputs import failure_record_path, write_json
from tests.conftest import write_slice_config


@pytest.fixture
def config(demo_slice_dir, tmp_path):
    return load_config(write_slice_config(demo_slice_dir, tmp_path / "ws"))


def _dead_journal(workspace: Path, token: str, **record) -> Path:
    """A journal as a killed run leaves it: the JSON, and a lock file nobody holds."""
    path = workspace / journal.JOURNAL_DIR / f"{token}.json"
    write_json(path, {"token": token, "flow": "territory-pipeline", "pid": 999999,
                      "host": "h", "started_at": "2026-01-01T00:00:00+00:00", **record})
    path.with_suffix(".lock").touch()
    return path


def test_dead_run_leaves_no_temp_folder_and_a_failure_record(config):
    ws = Path(config.workspace)
    folder = ws / "runs" / "slice-2025-12-01"
    (folder).mkdir(parents=True)
    (folder / "manifest.json").write_text('{"mlflow_run_id": "earlier"}')
    tmp = folder.with_name(f".{folder.name}.tmp-{'a' * 32}")
    tmp.mkdir()
    (tmp / "scores.parquet").write_bytes(b"partial")
    other = folder.with_name(f".{folder.name}.tmp-{'b' * 32}")  # another run's: left alone
    other.mkdir()
    _dead_journal(ws, "a" * 32, stage="score units", folder=str(folder), registry=None)
    done = journal.recover(ws)
    assert [d["token"] for d in done] == ["a" * 32]
    assert not tmp.exists() and other.exists() and (folder / "manifest.json").is_file()
    record = json.loads(failure_record_path(folder).read_text())
    assert record["stage"] == "score units" and record["outputs_unchanged"]
    assert "pid 999999" in record["error"] and "re-run" in record["what_to_do"]
    assert not list((ws / journal.JOURNAL_DIR).iterdir())  # journal and lock file gone
    assert journal.recover(ws) == []  # nothing twice


def test_a_folder_moved_aside_is_put_back(config):
    ws = Path(config.workspace)
    folder = ws / "runs" / "slice-2025-12-01"
    token = "c" * 32
    old = folder.with_name(f".{folder.name}.old-{token}")  # killed between the two renames
    old.mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    new = folder.with_name(f".{folder.name}.tmp-{token}")
    new.mkdir()
    _dead_journal(ws, token, stage="write outputs, report and MLflow run", folder=str(folder))
    journal.recover(ws)
    assert (folder / "manifest.json").is_file() and not old.exists() and not new.exists()


def test_a_run_in_progress_is_never_recovered(config):
    ws = Path(config.workspace)
    folder = ws / "runs" / "slice-2025-12-01"
    token = "d" * 32
    tmp = folder.with_name(f".{folder.name}.tmp-{token}")
    tmp.mkdir(parents=True)
    path = _dead_journal(ws, token, stage="build features", folder=str(folder))
    held = FileLock(path.with_suffix(".lock"))
    held.acquire()
    try:
        assert journal.recover(ws) == []
        assert path.exists() and tmp.exists()
    finally:
        held.release()
    assert [d["token"] for d in journal.recover(ws)] == [token]


def test_run_journal_lives_while_the_run_does(config):
    ws = Path(config.workspace)
    with journal.run_journal(config, "train", folder=ws / "train" / "x-latest") as entry:
        record = json.loads(entry.path.read_text())
        assert record["pid"] == os.getpid() and record["stage"] == "start"
        entry.update(stage="build features")
        assert json.loads(entry.path.read_text())["stage"] == "build features"
        assert journal.recover(ws) == []  # its own lock is held
    assert not entry.path.exists()
    with pytest.raises(RuntimeError), journal.run_journal(config, "train") as entry:
        raise RuntimeError("boom")
    assert not entry.path.exists()  # a failure undone in-process leaves no journal


def test_chaos_point_reads_the_environment_only_when_named(monkeypatch):
    monkeypatch.delenv(journal.CHAOS_ENV, raising=False)
    journal.chaos_point("score units")  # not asked: nothing happens
    monkeypatch.setenv(journal.CHAOS_ENV, "design-territories")
    journal.chaos_point("score units")  # another point: nothing happens


def test_second_publisher_waits_then_names_the_lock_and_the_holder(config):
    folder = Path(config.workspace) / "runs" / "slice-2025-12-01"
    holder = {"flow": "territory-pipeline", "pid": 4242, "host": "box",
              "started_at": "2026-01-01T00:00:00+00:00"}
    entered, release = threading.Event(), threading.Event()

    def first():
        with journal.folder_lock(config, folder, holder):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(10)
        with pytest.raises(journal.WorkspaceBusy) as err:
            with journal.folder_lock(config, folder, {"flow": "second"}, timeout=0.3):
                pass
    finally:
        release.set()
        thread.join()
    message = str(err.value)
    assert "\n" not in message and "runs--slice-2025-12-01.lock" in message
    assert "pid 4242 on box" in message and "lock_timeout_s" in message
    with journal.folder_lock(config, folder, {"flow": "third"}, timeout=1):
        pass  # free again once the first run is done


# --- The registry: a rollback touches only its own run's versions -------------------------------


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.setup_tracking(uri, "recovery-test", tmp_path / "artifacts")
    yield uri
    mlflow.end_run()  # a test that failed mid-run leaves none active (nor a ./mlflow.db)
    mlflow.set_tracking_uri(None)


def _register(token_run: str) -> str:
    """Inside the active transaction: one run with one registered version of 'm'."""
    with tracking.training_run(token_run):
        return tracking._register_pyfunc(Echo(), "echo", pd.DataFrame({"x": [1.0]}), "m")


def _state(uri: str) -> tuple[dict, list[str]]:
    client = MlflowClient(tracking_uri=uri)
    aliases = {a: str(v) for a, v in client.get_registered_model("m").aliases.items()}
    return aliases, sorted(str(v.version) for v in client.search_model_versions("name = 'm'"))


def test_rollback_keeps_a_concurrent_runs_versions(store):
    with tracking.registry_transaction("recovery-test", ["m"]):
        first = _register("first")
    client = MlflowClient()
    client.set_registered_model_alias("m", tracking.CHAMPION, first)
    before_b = tracking.registry_snapshot(["m"])  # run B starts...
    with tracking.registry_transaction("recovery-test", ["m"]):  # ...run A registers meanwhile
        concurrent = _register("concurrent")
    with pytest.raises(RuntimeError, match="B fails"):
        with tracking.registry_transaction("recovery-test", ["m"], before=before_b) as txn:
            mine = _register("b")
            client.set_registered_model_alias("m", tracking.CHAMPION, mine)
            raise RuntimeError("B fails")
    assert txn.rolled_back is True
    aliases, versions = _state(store)
    assert versions == sorted([first, concurrent])  # only B's own version is gone
    # the aliases B moved go back to where B found them
    assert aliases == {tracking.CHAMPION: first, tracking.CHALLENGER: first}
    b_run = [r for r in tracking.runs_of(client, "recovery-test", txn.token)]
    assert [r.info.status for r in b_run] == ["FAILED"]


def test_undo_of_a_dead_run_restores_aliases_and_fails_its_running_run(store):
    with tracking.registry_transaction("recovery-test", ["m"]):
        first = _register("first")
    client = MlflowClient()
    client.set_registered_model_alias("m", tracking.CHAMPION, first)
    before = tracking.registry_snapshot(["m"])
    token = "e" * 32
    # What a killed process leaves: its version registered, champion moved, its run RUNNING.
    reset = tracking_registry._TOKEN.set(token)
    try:
        run = mlflow.start_run(run_name="killed", tags={tracking.RUN_TAG: token})
        dead = tracking._register_pyfunc(Echo(), "echo", pd.DataFrame({"x": [1.0]}), "m")
        client.set_registered_model_alias("m", tracking.CHAMPION, dead)
    finally:
        tracking_registry._TOKEN.reset(reset)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    undone = tracking.undo_run(store, "recovery-test", before, token)
    assert undone["deleted_versions"] == {"m": [dead]}
    assert _state(store) == ({tracking.CHAMPION: first, tracking.CHALLENGER: first}, [first])
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    mlflow.end_run(status="FAILED")  # this test process lives on: leave no active run
    # a run whose outputs were published keeps everything
    with tracking.registry_transaction("recovery-test", ["m"]) as txn:
        with tracking.training_run("published") as kept:
            tracking._register_pyfunc(Echo(), "echo", pd.DataFrame({"x": [1.0]}), "m")
    undone = tracking.undo_run(store, "recovery-test", before, txn.token, keep_run_id=kept)
    assert undone["kept_run"] == kept and not undone["deleted_versions"]
    assert len(_state(store)[1]) == 2
