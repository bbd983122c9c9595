"""The MLflow adapter, registry part: transactions that undo their own changes.

Inside a :func:`registry_transaction`, every MLflow run started (through
:func:`territory.models.tracking.training_run`) and every model version
registered carries the tag ``territory.run`` = the transaction's token. A
rollback, in the failing process or later by :func:`undo_run` for a process
that died, then touches only what that one run registered, never the
versions of a run going on at the same time. :mod:`territory.models.tracking`
re-exports these names; callers use them from there.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

RUN_TAG = "territory.run"  # the token of the run that created an MLflow run or model version

# The token of the registry transaction in progress in this context, if any.
_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("territory_run_token",
                                                                   default=None)


def current_token() -> str | None:
    """The token of the registry transaction in progress here, or None."""
    return _TOKEN.get()


def _registry_state(client: MlflowClient, name: str) -> dict | None:
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return None
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    return {"aliases": {a: str(v) for a, v in model.aliases.items()}, "versions": versions}


def registry_snapshot(registered_models: list[str]) -> dict[str, dict | None]:
    """Aliases and versions of each model now (None: not registered), as plain JSON data.

    A run journals this before it changes the registry, so that what it did
    can be undone even after the process died.
    """
    client = MlflowClient()
    snapshot = {}
    for name in registered_models:
        state = _registry_state(client, name)
        snapshot[name] = None if state is None else {
            "aliases": state["aliases"], "versions": sorted(state["versions"], key=int)}
    return snapshot


@dataclass
class Transaction:
    """One registry transaction: its token, the registry before it, and how it ended.

    ``rolled_back`` is None while the block runs or when it succeeded, True
    when a failure was undone, False when the undo itself failed (the
    registry did not answer): then :func:`undo_run` must finish it later.
    """

    token: str
    before: dict[str, dict | None]
    rolled_back: bool | None = None


@contextmanager
def registry_transaction(experiment: str, registered_models: list[str],
                         token: str | None = None,
                         before: dict[str, dict | None] | None = None
                         ) -> Iterator[Transaction]:
    """Undo the registry changes of a block that fails.

    Runs started and versions registered inside the block are tagged with
    ``token`` (a fresh one when None). On failure, the versions of this
    token are deleted, aliases that point at them go back to where they
    were in ``before`` (default: the registry now), and the token's runs
    are marked FAILED and lose their ``run_key`` tag (so they are never
    reused). Versions registered meanwhile by another run are left alone.
    """
    token = token or uuid.uuid4().hex
    txn = Transaction(token, before if before is not None
                      else registry_snapshot(registered_models))
    reset = _TOKEN.set(token)
    try:
        yield txn
    except BaseException as exc:
        try:
            undo_run(None, experiment, txn.before, token)
            txn.rolled_back = True
        except Exception as undo:  # the registry itself is down: say so, keep the real error
            txn.rolled_back = False
            exc.add_note(f"registry rollback failed too: {undo!r}")
        raise
    finally:
        _TOKEN.reset(reset)


def runs_of(client: MlflowClient, experiment: str, token: str) -> list:
    """The MLflow runs of ``experiment`` tagged with ``token`` (deleted ones too)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id],
                              filter_string=f"tags.`{RUN_TAG}` = '{token}'",
                              run_view_type=ViewType.ALL)


def undo_run(tracking_uri: str | None, experiment: str, before: dict[str, dict | None],
             token: str, keep_run_id: str | None = None) -> dict[str, Any]:
    """Undo what the run with ``token`` did to the registry; returns what was undone.

    ``before`` is the :func:`registry_snapshot` taken before the run changed
    anything. Only versions tagged with ``token``, or registered from one of
    its MLflow runs, are deleted; an alias that points at one of them goes
    back to its ``before`` version (or is removed when it had none). The
    token's runs are marked FAILED (a RUNNING one was left by a dead process)
    and lose their ``run_key`` tag. ``keep_run_id`` names the run whose
    outputs were published: when it is one of the token's, its versions,
    aliases and status stay (``kept_run`` in the result). ``tracking_uri`` None means the
    one MLflow points at now.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = runs_of(client, experiment, token)
    all_ids = {run.info.run_id for run in runs}
    kept = keep_run_id if keep_run_id in all_ids else None
    run_ids = all_ids - {kept}
    undone: dict[str, Any] = {"deleted_versions": {}, "restored_aliases": {},
                              "failed_runs": [], "kept_run": kept}
    if kept is None:
        for name, state in before.items():
            _undo_model(client, name, state, token, run_ids, undone)
    for run in runs:
        if run.info.run_id not in run_ids or run.info.lifecycle_stage == "deleted":
            continue
        if "run_key" in run.data.tags:
            client.delete_tag(run.info.run_id, "run_key")
        if run.info.status not in ("FAILED", "KILLED"):
            client.set_terminated(run.info.run_id, status="FAILED")
            undone["failed_runs"].append(run.info.run_id)
    return undone


def _undo_model(client: MlflowClient, name: str, state: dict | None, token: str,
                run_ids: set[str], undone: dict[str, Any]) -> None:
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return  # never registered: nothing to undo
    versions = client.search_model_versions(f"name = '{name}'")
    ours = {str(v.version) for v in versions
            if v.tags.get(RUN_TAG) == token or v.run_id in run_ids}
    others = {str(v.version) for v in versions} - ours
    old_aliases = (state or {}).get("aliases", {})
    for alias, version in {a: str(v) for a, v in model.aliases.items()}.items():
        if version not in ours:
            continue
        previous = old_aliases.get(alias)
        if previous is not None and previous in others:
            client.set_registered_model_alias(name, alias, previous)
            undone["restored_aliases"][f"{name}@{alias}"] = previous
        else:
            client.delete_registered_model_alias(name, alias)
            undone["restored_aliases"][f"{name}@{alias}"] = None
    for version in sorted(ours, key=int):
        client.delete_model_version(name, version)
    if ours:
        undone["deleted_versions"][name] = sorted(ours, key=int)
    if state is None and ours and not others:
        client.delete_registered_model(name)
