"""Issue 13: Prefect's local server starts in time or says what to set, and never outlives us
(run, backfill and schedule start one; every other command starts none); preflight checks stop
a run with one line before any work."""

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
@pytest.mark.parametrize("command", [["run"], ["backfill", "--start", "2025-11",
                                               "--end", "2025-11"]], ids=["run", "backfill"])
def test_kill_minus_9_leaves_no_prefect_server(demo_slice_dir, tmp_path, command):
    workspace = tmp_path / "ws"
    path = write_slice_config(demo_slice_dir, workspace, run_name="orphan", **FAST_MODELS)
    home = (workspace / "prefect").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"TERRITORY_CHAOS_KILL_AT": "load and validate inputs",  # inside the first flow
                "PREFECT_HOME": str(home)})
    done = subprocess.run([str(Path(sys.executable).with_name("territory")), *command,
                           "--config", str(path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert (home / "server.log").exists()  # it had started a server of its own
    assert _gone(home), f"orphan Prefect server(s): {servers_for(home)}"


# --- Every command: a Prefect server of its own that dies with it, or none at all ----------


def _spawn_and_kill_when_serving(args: list[str], home: Path, log: Path) -> int:
    """Start ``territory ARGS`` without PREFECT_API_URL; SIGKILL it once its Prefect server
    answers and it is serving. Returns its exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    with open(log, "w") as handle:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("territory")), *args],
                                env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (servers_for(home) and "Ctrl-C stops serving" in log.read_text()):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # serve() has begun registering its deployments
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_kill_minus_9_of_schedule_leaves_no_prefect_server(demo_slice_dir, tmp_path):
    workspace = tmp_path / "ws"
    path = write_slice_config(demo_slice_dir, workspace, run_name="sched-orphan", **FAST_MODELS)
    home = (workspace / "prefect").resolve()
    status = _spawn_and_kill_when_serving(["schedule", "--config", str(path)], home,
                                          tmp_path / "schedule.log")
    assert status == -signal.SIGKILL
    assert _gone(home), f"orphan Prefect server(s): {servers_for(home)}"
    assert (home / "server.log").exists()  # the server was prefect_api's, not an ephemeral one


@pytest.fixture
def refuse_prefect_servers(monkeypatch):
    """Record and refuse any start of a Prefect server: Prefect's own ephemeral one (what a
    client, a flow or the events worker starts without PREFECT_API_URL) or prefect_api's."""
    from prefect.server.api.server import SubprocessASGIServer

    started: list[str] = []

    def refuse(*args, **kwargs):
        started.append(repr(args)[:200])
        raise RuntimeError("this command must not start a Prefect server")

    monkeypatch.setattr(SubprocessASGIServer, "start", refuse)
    monkeypatch.setattr(prefect_api, "prefect_api", refuse)
    for key in ("PREFECT_API_URL", "PREFECT_HOME", prefect_api.STARTUP_ENV,
                "PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.delenv(key, raising=False)  # prepare_environment sets them; undone after
    return started


def test_commands_without_flows_never_start_a_prefect_server(demo_slice_dir, tmp_path,
                                                             refuse_prefect_servers):
    """validate, score, recover, cache clear, migrate: nothing for a kill -9 to orphan."""
    path = write_slice_config(demo_slice_dir, tmp_path / "ws", **FAST_MODELS)
    runner = CliRunner()
    for args in (["validate"], ["recover"], ["cache", "clear"], ["migrate"]):
        result = runner.invoke(app, [*args, "--config", str(path)])
        assert result.exit_code == 0, (args, result.output, result.exception)
    scored = runner.invoke(app, ["score", "--config", str(path)])  # no champion yet
    assert scored.exit_code != 0 and not isinstance(scored.exception, RuntimeError), \
        scored.output
    assert refuse_prefect_servers == []
    assert not (tmp_path / "ws" / "prefect" / "server.log").exists()


def test_tune_and_backtest_never_start_a_prefect_server(tmp_path, refuse_prefect_servers):
    from tests.test_sales_backtest import _sales
    from tests.test_tune import _config

    runner = CliRunner()
    tuned = runner.invoke(app, ["tune", "--config", str(_config(tmp_path)), "--trials", "1",
                                "--out", str(tmp_path / "tuned.yaml")])
    assert tuned.exit_code == 0, (tuned.output, tuned.exception)
    sales = tmp_path / "sales.csv"
    _sales("QS", 40).to_csv(sales, index=False)
    backtest = runner.invoke(app, ["backtest", "--sales", str(sales), "--frequency", "QS",
                                   "--horizon", "4", "--windows", "1",
                                   "--out", str(tmp_path / "bt")])
    assert backtest.exit_code == 0, (backtest.output, backtest.exception)
    assert refuse_prefect_servers == []


def test_deploy_without_a_prefect_server_says_what_to_set_and_starts_none(
        demo_slice_dir, tmp_path, refuse_prefect_servers):
    """A deployment must outlive the command, so deploy never starts a server of its own."""
    path = write_slice_config(demo_slice_dir, tmp_path / "ws", **FAST_MODELS)
    result = CliRunner().invoke(app, ["deploy", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: PREFECT_API_URL: territory deploy needs a Prefect "
                                    "server"), result.output
    assert "what to do: start one with `prefect server start`" in result.output
    assert "Traceback" not in result.output and refuse_prefect_servers == []


@pytest.mark.slow
def test_bad_input_inside_a_flow_ends_in_one_line_without_a_traceback(demo_slice_dir,
                                                                       tmp_path):
    """An input error raised by a task (here: an as-of date before any sale) ends the run
    with the error's own line: Prefect's task and flow tracebacks stay in its run log, and
    no "Error logging to API" follows the error (the queued logs go before the server
    stops). With --verbose the traceback is shown."""
    workspace = tmp_path / "ws"
    path = write_slice_config(demo_slice_dir, workspace, **FAST_MODELS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str((workspace / "prefect").resolve())
    command = [str(Path(sys.executable).with_name("territory")), "run", "--config", str(path),
               "--as-of", "1990-01-01"]
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 2, quiet.stderr[-3000:]
    output = quiet.stdout + quiet.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "1990-01-01" in lines[0], output[-3000:]
    assert lines[1:] == ["  what to do: set as_of between 2021-01-01 and 2025-12-01, or null "
                         "for the last period"], output[-3000:]
    assert "Traceback" not in output and "Error logging to API" not in output, output[-3000:]
    assert not [line for line in lines if "| ERROR" in line], output[-3000:]
    verbose = subprocess.run([*command, "--verbose"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_the_projects_own_warnings_print_as_one_line(capsys):
    """``prepare_environment`` shows the project's UserWarnings as one "warning:" line (no
    source line under it) and leaves other libraries' warnings as Python prints them."""
    import warnings

    from territory.pipelines import cli

    own = str(Path(cli.__file__).resolve())
    cli._show_warning(UserWarning("potential: no current alignment"), UserWarning, own, 1)
    cli._show_warning(FutureWarning("old"), FutureWarning, warnings.__file__, 1)
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "warning: potential: no current alignment"
    assert "FutureWarning: old" in err
