"""Issue 13: Prefect's local server starts in time or says what to set, and never outlives us;
preflight checks stop a run with one line before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from territory.features.errors import InputError
from territory.pipelines import prefect_api
from territory.pipelines.cli import app
from tests.conftest import FAST_MODELS, write_slice_config


def servers_for(home: Path) -> list[int]:
    """Pids of Prefect API servers whose PREFECT_HOME is ``home``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if prefect_api.SERVER_APP.encode() in cmdline and \
                f"PREFECT_HOME={home}".encode() in environ:
            found.append(int(proc.name))
    return found


def _gone(home: Path, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while servers_for(home):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_server_too_slow_to_start_gives_one_line_saying_what_to_set(tmp_path, monkeypatch):
    home = tmp_path / "prefect"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv(prefect_api.STARTUP_ENV, "0.3")  # no server answers that fast
    with pytest.raises(prefect_api.PrefectStartError) as err:
        with prefect_api.prefect_api(tmp_path):
            pass
    message = str(err.value)
    assert "\n" not in message and f"{prefect_api.STARTUP_ENV}=600" in message
    assert "PREFECT_API_URL" in message and "within 0.3 s" in message
    assert _gone(home)  # and the server it started is stopped
    assert "PREFECT_API_URL" not in os.environ


def test_startup_timeout_defaults_to_a_generous_value(monkeypatch):
    monkeypatch.delenv(prefect_api.STARTUP_ENV, raising=False)
    assert prefect_api.startup_timeout() == prefect_api.DEFAULT_STARTUP_S >= 120
    monkeypatch.setenv(prefect_api.STARTUP_ENV, "soon")
    with pytest.raises(prefect_api.PrefectStartError, match="not a number of seconds"):
        prefect_api.startup_timeout()


def test_an_api_url_that_is_set_is_used_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.internal:4200/api")
    with prefect_api.prefect_api(tmp_path) as url:
        assert url == "http://prefect.internal:4200/api"
    assert not (tmp_path / "prefect").exists()


def test_preflight_refuses_a_workspace_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError) as err:
        prefect_api.preflight(blocker / "workspace")
    assert "not writable" in str(err.value) and "\n" not in str(err.value)


def test_preflight_refuses_a_disk_without_room_for_the_estimate(tmp_path):
    import shutil

    huge = tmp_path / "sales.parquet"
    with open(huge, "wb") as handle:  # sparse: as large as the free space, costs nothing
        handle.truncate(shutil.disk_usage(tmp_path).free)
    with pytest.raises(InputError) as err:
        prefect_api.preflight(tmp_path / "ws", [huge])
    assert "not enough free disk" in str(err.value) and "MiB" in str(err.value)
    prefect_api.preflight(tmp_path / "ws", [])  # small inputs fit


def test_run_with_an_unwritable_workspace_stops_in_one_line(demo_slice_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    path = write_slice_config(demo_slice_dir, tmp_path / "ok")
    raw = yaml.safe_load(path.read_text())
    raw["workspace"] = str(blocker / "workspace")
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not writable" in lines[0] and "Traceback" not in result.output


@pytest.mark.slow
def test_the_server_starts_and_stops_with_the_command(tmp_path, monkeypatch):
    home = tmp_path / "prefect"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    with prefect_api.prefect_api(tmp_path) as url:
        assert prefect_api._healthy(url) and servers_for(home)
        assert os.environ["PREFECT_API_URL"] == url
    assert _gone(home) and "PREFECT_API_URL" not in os.environ


@pytest.mark.slow
def test_kill_minus_9_leaves_no_prefect_server(demo_slice_dir, tmp_path):
    workspace = tmp_path / "ws"
    path = write_slice_config(demo_slice_dir, workspace, run_name="orphan", **FAST_MODELS)
    home = (workspace / "prefect").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"TERRITORY_CHAOS_KILL_AT": "load and validate inputs",
                "PREFECT_HOME": str(home)})
    done = subprocess.run([str(Path(sys.executable).with_name("territory")), "run", "--config",
                           str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert (home / "server.log").exists()  # it had started a server of its own
    assert _gone(home), f"orphan Prefect server(s): {servers_for(home)}"
