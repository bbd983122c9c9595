"""Prefect's API for one command, and the checks before any work starts.

Without ``PREFECT_API_URL``, Prefect would start a temporary server of its
own: it waits 20 s by default (too short on a busy machine, where the first
start also migrates its database), fails with a long traceback, and a
``kill -9`` of the command leaves that server running. :func:`prefect_api`
starts the same server (Prefect's ``create_app`` under uvicorn, as Prefect
does) before Prefect is imported, with:

- a generous start-up timeout: ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``,
  180 s unless set;
- a one-line error, saying what to set, when it still does not answer (or
  the server's own last words when it exits);
- no orphan: the server is stopped when the command ends, and on Linux the
  kernel stops it (``PR_SET_PDEATHSIG``) when the command dies.

:func:`preflight` checks, before any work, that the workspace is writable
and that the disk has room for an estimate of what a run writes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from territory.features.errors import InputError, shorten

STARTUP_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_S = 180
SERVER_APP = "prefect.server.api.server:create_app"
MIB = 2**20


class PrefectStartError(RuntimeError):
    """Prefect's local API server did not come up; the message is one line."""


def startup_timeout() -> float:
    """Seconds to wait for the local server: the variable STARTUP_ENV names."""
    raw = os.environ.get(STARTUP_ENV) or str(DEFAULT_STARTUP_S)
    try:
        return max(float(raw), 0.1)
    except ValueError:
        raise PrefectStartError(f"{STARTUP_ENV}={shorten(raw)!r} is not a number of seconds; "
                                f"set it to e.g. {DEFAULT_STARTUP_S}") from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: the kernel sends SIGTERM to this process when its parent dies."""
    import ctypes

    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _last_line(log: Path) -> str:
    with suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip()]
        if lines:
            return shorten(lines[-1], 200)
    return "no output"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prefect_api(workspace: Path) -> Iterator[str]:
    """Yield Prefect's API URL: ``PREFECT_API_URL``, or a local server for this command.

    The local server keeps its database in ``PREFECT_HOME`` (the workspace's
    ``prefect/`` folder, see the CLI) and its log in ``prefect/server.log``.
    Raises :class:`PrefectStartError` when it does not answer in time.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    timeout = startup_timeout()
    home = Path(os.environ.get("PREFECT_HOME") or Path(workspace) / "prefect")
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent),
               "--factory", SERVER_APP, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0",
           "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise PrefectStartError(
                    f"Prefect's local API server exited with code {proc.returncode} before "
                    f"answering: {_last_line(log)} (log: {log})")
            if time.monotonic() > deadline:
                raise PrefectStartError(
                    f"Prefect's local API server did not answer within {timeout:g} s (log: "
                    f"{log}); on a busy machine set {STARTUP_ENV}=600, or set PREFECT_API_URL "
                    "to a running Prefect server")
            time.sleep(0.2)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        flush_run_logs()
        if os.environ.get("PREFECT_API_URL") == url:
            del os.environ["PREFECT_API_URL"]
        _stop(proc)


def _all_handlers() -> set[logging.Handler]:
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger))]
    return {handler for lg in loggers for handler in lg.handlers}


def flush_run_logs() -> None:
    """Send the run logs still queued for the API while the server still answers (else
    Prefect prints "Error logging to API" after the command's own last line)."""
    for handler in _all_handlers():
        with suppress(Exception):  # a handler that cannot flush must not fail the command
            handler.flush()


class _InputErrorTraceback(logging.Filter):
    """Drops Prefect's flow- and task-run records of a failure by bad input: the command
    ends with that error in one line (what to do included), the traceback adds nothing.
    Drops too the "Still processing items" line of its log and event workers while
    :func:`flush_run_logs` drains them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.endswith("Worker") and "Still processing items" in record.getMessage():
            return False
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, InputError) or "InputError" in record.getMessage())


def quiet_input_errors() -> None:
    """Keep bad-input tracebacks off the console (the Prefect run's log keeps them); call
    once Prefect has set its logging up (after importing the flows)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _InputErrorTraceback) for f in handler.filters):
            handler.addFilter(_InputErrorTraceback())


# --- Preflight ------------------------------------------------------------------------------


def disk_estimate(input_files: list[Path]) -> int:
    """Bytes a run may write: ten times its inputs (features, caches, models, outputs)
    plus 200 MiB (MLflow and Prefect stores, the report). A rough upper estimate."""
    size = sum(Path(f).stat().st_size for f in input_files if f is not None and Path(f).is_file())
    return 10 * size + 200 * MIB


def preflight(workspace: Path, input_files: list[Path] | None = None) -> None:
    """Before any work: the workspace is writable and its disk has room (one-line errors)."""
    workspace = Path(workspace)
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        probe = workspace / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(str(workspace), f"the workspace is not writable "
                                         f"({exc.strerror or type(exc).__name__}); set "
                                         "workspace: in the config to a folder you can write"
                         ) from None
    needed = disk_estimate(input_files or [])
    free = shutil.disk_usage(workspace).free
    if free < needed:
        raise InputError(str(workspace), f"not enough free disk: a run may write about "
                                         f"{needed / MIB:,.0f} MiB, {free / MIB:,.0f} MiB are "
                                         "free; free some space or point workspace: elsewhere")
