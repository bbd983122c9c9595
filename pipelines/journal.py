"""Crash recovery and workspace locks: a run journals its intent, the next run undoes a dead one.

Every flow run holds a lock of its own, ``<workspace>/.journal/<token>.lock``,
from its first step to its last, and keeps ``<token>.json`` beside it: the
flow, the process, the stage it is in and the folder it will publish.
Before it changes the model registry it adds the tracking URI and a
snapshot of the registry (aliases and versions) to that journal. Each
change to the journal is written atomically.

A process that dies (kill -9, a crash, a lost machine) leaves its journal,
and the operating system releases its lock. :func:`recover`, called at the
start of every run and by ``territory recover``, takes each journal whose
lock it can take, so never one of a run still in progress, and undoes it:

- the model versions that run registered are deleted, unless its outputs
  were published (the folder's manifest names its MLflow run);
- aliases that point at them go back to where they were;
- its MLflow runs are marked FAILED (a RUNNING one is left by a dead process);
- its ``.tmp-*`` folders are removed, and a folder it had moved aside is
  put back;
- a failure record ``<folder>.failed.json`` says which stage it died in.

Publishing holds one more lock per output folder
(``<workspace>/.locks/<kind>--<folder>.lock``), so two runs never publish
the same as-of folder at once: the second waits ``schedule.lock_timeout_s``
seconds, then fails with :class:`WorkspaceBusy`, which names the lock and
the run that holds it.

``TERRITORY_CHAOS_KILL_AT=<point>`` makes a run kill itself (SIGKILL) at
that point, for the chaos test: a stage name (``build-features``) or one of
:data:`PUBLISH_POINTS`. It is read only in :func:`chaos_point`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from territory.features.errors import InputError
from territory.models import tracking
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import atomic_directory, failure_record_path, write_json

log = logging.getLogger(__name__)

JOURNAL_DIR = ".journal"
LOCK_DIR = ".locks"
CHAOS_ENV = "TERRITORY_CHAOS_KILL_AT"
# Points inside publishing, in order: after the forecaster is registered (its MLflow run is
# still RUNNING), after the outputs are written (not yet moved into place), after they are.
PUBLISH_POINTS = ("model-registered", "outputs-written", "outputs-published")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def chaos_point(name: str) -> None:
    """Kill this process (SIGKILL) when ``TERRITORY_CHAOS_KILL_AT`` names ``name``."""
    wanted = os.environ.get(CHAOS_ENV)
    if wanted and _slug(wanted) == _slug(name):
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class WorkspaceBusy(InputError):
    """Another run holds the lock of the folder this run would publish."""


# --- One run's journal -------------------------------------------------------------------


@dataclass
class RunJournal:
    """The journal of one run in progress: ``<workspace>/.journal/<token>.json``."""

    workspace: Path
    token: str
    record: dict[str, Any]
    lock: FileLock
    keep: bool = False  # True when a failure could not be undone here: recovery finishes it

    @property
    def path(self) -> Path:
        return self.workspace / JOURNAL_DIR / f"{self.token}.json"

    def update(self, **values: Any) -> None:
        """Record ``values`` (stage, folder, registry...) before acting on them."""
        self.record.update({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})
        write_json(self.path, self.record)

    def owner(self) -> str:
        return _owner_text(self.record)


def _owner_text(record: dict[str, Any]) -> str:
    return (f"{record.get('flow', 'a run')} (pid {record.get('pid')} on {record.get('host')}, "
            f"started {record.get('started_at')})")


@contextmanager
def run_journal(config: RunConfig, flow: str, flow_run_id: str | None = None,
                folder: Path | None = None,
                on_recovered: Callable[[list[dict[str, Any]]], None] | None = None
                ) -> Iterator[RunJournal]:
    """Recover what dead runs left, then journal this run until it ends.

    ``on_recovered`` gets the summaries of the dead runs undone (the flows
    mark their Prefect flow runs crashed). The journal is removed when the
    run ends, whether it succeeded or failed here (a failure undoes its own
    registry changes in-process), unless that undo failed: then the next
    run's :func:`recover` finishes it.
    """
    workspace = Path(config.workspace)
    try:
        done = recover(workspace)
        if done and on_recovered is not None:
            on_recovered(done)
    except Exception as exc:  # the registry is down: the journals stay for the next run
        log.warning("could not recover what an earlier run left (%s); will retry next run", exc)
    token = uuid.uuid4().hex
    (workspace / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    lock = FileLock(workspace / JOURNAL_DIR / f"{token}.lock")
    lock.acquire(timeout=0)
    entry = RunJournal(workspace, token, {}, lock)
    try:
        entry.update(token=token, flow=flow, flow_run_id=flow_run_id, pid=os.getpid(),
                     host=socket.gethostname(), started_at=_now(), stage="start",
                     folder=folder, registry=None, published=False)
        yield entry
    finally:
        if not entry.keep:
            entry.path.unlink(missing_ok=True)
        lock.release()
        if not entry.keep:
            Path(lock.lock_file).unlink(missing_ok=True)


# --- Publishing: the folder lock, the registry transaction, the atomic folder ------------


def _lock_path(workspace: Path, folder: Path) -> Path:
    return Path(workspace) / LOCK_DIR / f"{folder.parent.name}--{folder.name}.lock"


@contextmanager
def folder_lock(config: RunConfig, folder: Path, holder: dict[str, Any],
                timeout: float | None = None) -> Iterator[Path]:
    """Hold the lock of output ``folder``; wait at most ``timeout`` s for another run's.

    ``holder`` (flow, pid, host, start) is written beside the lock, so a run
    that waits in vain can say who holds it. Raises :class:`WorkspaceBusy`.
    """
    timeout = config.schedule.lock_timeout_s if timeout is None else timeout
    path = _lock_path(config.workspace, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner_file = path.with_suffix(".json")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        try:
            other = _owner_text(json.loads(owner_file.read_text()))
        except (OSError, ValueError):
            other = "another run"
        raise WorkspaceBusy(
            str(folder), f"another run is publishing this folder: {other} holds the lock "
                         f"{path}; waited {timeout:g} s (wait for it to finish, or raise "
                         "schedule.lock_timeout_s)") from None
    try:
        write_json(owner_file, {**holder, "locked_at": _now()})
        yield path
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()


@dataclass
class Published:
    """What :func:`publishing` yields: the temporary folder to write into."""

    tmp: Path
    token: str
    transaction: tracking.Transaction | None = field(default=None)


@contextmanager
def publishing(entry: RunJournal | None, config: RunConfig, folder: Path,
               registry: bool = True) -> Iterator[Published]:
    """Publish ``folder``: lock it, journal the registry, write it atomically.

    With ``registry``, the block runs inside a registry transaction whose
    token is this run's; the registry snapshot and tracking URI are in the
    journal before anything changes. The folder's ``.tmp-`` and ``.old-``
    names carry the token, so recovery removes exactly this run's.
    """
    from territory.pipelines import publish

    token = entry.token if entry is not None else uuid.uuid4().hex
    holder = dict(entry.record) if entry is not None else {
        "flow": "a run", "pid": os.getpid(), "host": socket.gethostname(),
        "started_at": _now()}
    with folder_lock(config, folder, holder):
        if entry is not None:
            entry.update(folder=folder)
        if not registry:
            with atomic_directory(folder, token) as tmp:
                yield Published(tmp, token)
                chaos_point("outputs-written")
            chaos_point("outputs-published")
            return
        publish.setup_tracking(config)
        models = publish.registered_models(config)
        before = tracking.registry_snapshot(models)
        if entry is not None:
            entry.update(registry={"tracking_uri": publish.tracking_uri(config),
                                   "experiment": config.tracking.experiment,
                                   "before": before})
        txn = None
        try:
            with publish.registry_transaction(config, token, before) as txn:
                with atomic_directory(folder, token) as tmp:
                    yield Published(tmp, token, txn)
                    chaos_point("outputs-written")
                chaos_point("outputs-published")
        except BaseException:
            if entry is not None and txn is not None and txn.rolled_back is False:
                entry.keep = True  # the registry did not answer: the next run undoes it
            raise
        if entry is not None:
            entry.update(registry=None, published=True)


# --- Recovery of dead runs -----------------------------------------------------------------


def recover(workspace: Path) -> list[dict[str, Any]]:
    """Undo what each dead run left in ``workspace``; returns one summary per run.

    A journal is a dead run's when its lock can be taken: a run in progress
    holds its own. See the module docstring for what is undone.
    """
    journals = Path(workspace) / JOURNAL_DIR
    if not journals.is_dir():
        return []
    done = []
    for path in sorted(journals.glob("*.json")):
        lock = FileLock(path.with_suffix(".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # its run is still in progress
        try:
            if not path.exists():  # it ended between the listing and the lock
                continue
            try:
                record = json.loads(path.read_text())
            except ValueError:  # cut short while written (atomic writes make this rare)
                record = {"token": path.stem}
            done.append(_recover_one(record))
            path.unlink(missing_ok=True)
        finally:
            lock.release()
            Path(lock.lock_file).unlink(missing_ok=True)
    return done


def _published_run_id(folder: Path) -> str | None:
    """The MLflow run id the published ``folder``'s manifest (or train summary) names."""
    for name in ("manifest.json", "summary.json"):
        with suppress(OSError, ValueError):
            return json.loads((folder / name).read_text()).get("mlflow_run_id")
    return None


def _restore_folder(folder: Path, token: str) -> list[str]:
    """Remove the run's temporary folders; put a folder it had moved aside back."""
    removed = []
    for tmp in folder.parent.glob(f".{folder.name}.tmp-{token}*"):
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp.name)
    for old in folder.parent.glob(f".{folder.name}.old-{token}*"):
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:  # killed between the two renames: the previous outputs go back
            os.replace(old, folder)
        removed.append(old.name)
    return removed


def _recover_one(record: dict[str, Any]) -> dict[str, Any]:
    token = record["token"]
    folder = Path(record["folder"]) if record.get("folder") else None
    summary: dict[str, Any] = {"token": token, "flow": record.get("flow"),
                               "flow_run_id": record.get("flow_run_id"),
                               "stage": record.get("stage"), "folder": record.get("folder")}
    published = bool(record.get("published"))
    reg = record.get("registry")
    if reg:
        keep = _published_run_id(folder) if folder is not None else None
        undone = tracking.undo_run(reg["tracking_uri"], reg["experiment"], reg["before"],
                                   token, keep_run_id=keep)
        published = published or undone["kept_run"] is not None
        summary["registry"] = undone
    if folder is not None:
        summary["removed"] = _restore_folder(folder, token)
        if not published:
            _write_record(record, folder, summary)
    summary["published"] = published
    return summary


def _write_record(record: dict[str, Any], folder: Path, summary: dict[str, Any]) -> None:
    stage = record.get("stage", "start")
    write_json(failure_record_path(folder), {
        "flow": record.get("flow"),
        "flow_run_id": record.get("flow_run_id"),
        "stage": stage,
        "error_type": "Died",
        "error": f"the run stopped during '{stage}' without finishing (killed or crashed): "
                 f"{_owner_text(record)}",
        "failed_at": _now(),
        "recovered_at": _now(),
        "outputs": str(folder),
        "outputs_unchanged": True,
        "undone": {k: v for k, v in summary.items() if k in ("registry", "removed")},
        "what_to_do": f"Nothing was changed: what the dead run had started was undone (by "
                      f"the next run, or territory recover). Re-run {record.get('flow')} for "
                      "the same as-of date; a successful re-run removes this record.",
    })


def what_to_do(error: BaseException | None, stage_name: str, flow_name: str) -> str:
    """What a failure record tells the user to do about ``error`` (a flow's failure hook)."""
    if isinstance(error, WorkspaceBusy):
        return ("Another run was publishing the same folder. Wait for it to finish (or raise "
                "schedule.lock_timeout_s), then re-run; nothing was changed.")
    if isinstance(error, InputError):
        return ("Fix the input or config named in the error, then re-run the same command; "
                "nothing was changed.")
    if isinstance(error, TimeoutError) or "timed out" in str(error).lower():
        return (f"'{stage_name}' ran past its timeout (schedule.*_timeout_s). Raise the "
                "timeout or shrink the problem, then re-run; nothing was changed.")
    return (f"Nothing was changed: the last good outputs, registry versions and aliases are as "
            f"they were. Check the error and the Prefect logs of this flow run, then re-run "
            f"{flow_name} for the same as-of date; a successful re-run replaces that date's "
            "outputs and removes this record.")


def is_transient(error: BaseException) -> bool:
    """An error worth retrying: I/O, network, the tracking server. Never bad input or a bug."""
    if isinstance(error, InputError):
        return False
    transient: tuple[type[BaseException], ...] = (OSError, *tracking.transient_error_types())
    try:
        import httpx
        import requests

        transient += (httpx.TransportError, requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover - both come with MLflow and Prefect
        pass
    return isinstance(error, transient)


def failure_markdown(record: dict, path: Path) -> str:
    """The Prefect markdown artifact of a failure record (written at ``path``)."""
    return "\n".join([
        f"# {record['flow']} failed at: {record['stage']}", "",
        f"- **error**: `{record['error_type']}`: {record['error']}",
        f"- **as of**: {record['as_of'] or 'latest'}",
        f"- **when**: {record['failed_at']}",
        f"- **outputs**: `{record['outputs']}` unchanged", "",
        f"**What to do**: {record['what_to_do']}", "",
        f"Record: `{path}`",
    ])
