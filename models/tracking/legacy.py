"""Workspaces made before the ``territory.*`` namespace: load their models, then migrate them.

Until the packages installed as ``territory.features``, ``territory.models`` and
``territory.pipelines``, they were top-level ``features``, ``models`` and
``pipelines``. Pyfuncs registered then were cloudpickled by reference to those
names (``models.forecast.SalesForecaster``, ``pipelines.publish.PotentialModel``,
...), so loading them today fails with ``ModuleNotFoundError``.

- :func:`legacy_module_names` makes the old names resolve to today's modules
  while it is active, so such a pickle loads in this process.
- :func:`migrate_workspace` re-logs every such version with today's code and
  moves its aliases, so it loads everywhere without the shim (a model server
  in its own process too).

Which old names the shim takes over: a name that is not importable, or that
is importable only as this project's own source folder (a checkout on
``sys.path``, as under pytest; importing it would load every module a second
time, with classes that are not today's). A real, different package of that
name is never shadowed. Nothing happens at import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from territory.models import tracking

log = logging.getLogger(__name__)

OLD_PACKAGES = {"features": "territory.features", "models": "territory.models",
                "pipelines": "territory.pipelines"}
# Modules that were renamed, not only moved under ``territory.``.
MOVED_MODULES = {"models.serving": "territory.models.recommender"}
# Attributes that moved to another module: old module -> {attribute: new module}.
MOVED_ATTRIBUTES = {"pipelines.publish": {"PotentialModel": "territory.models.tracking"}}
MIGRATED_TO = "migrated_to"


class LegacyWorkspaceWarning(UserWarning):
    """A model was loaded with the old module names; ``territory migrate`` fixes it for good."""


# --- The shim ----------------------------------------------------------------------------------


def is_legacy_name_error(exc: BaseException) -> bool:
    """True for a ``ModuleNotFoundError`` about one of the old top-level names."""
    return isinstance(exc, ModuleNotFoundError) and \
        (exc.name or "").split(".")[0] in OLD_PACKAGES


def _new_name(old: str) -> str:
    if old in MOVED_MODULES:
        return MOVED_MODULES[old]
    root, _, rest = old.partition(".")
    return OLD_PACKAGES[root] + (f".{rest}" if rest else "")


def _proxy(old: str, new: str, package: bool) -> types.ModuleType:
    """A stand-in module named ``old``: attributes come from ``new`` (or where they moved)."""
    moved = MOVED_ATTRIBUTES.get(old, {})
    proxy = types.ModuleType(old, f"Alias of {new} for models pickled before the rename.")

    def __getattr__(attr: str) -> Any:
        return getattr(importlib.import_module(moved.get(attr, new)), attr)

    proxy.__getattr__ = __getattr__
    if package:
        proxy.__path__ = []  # submodules are found by the finder, not on disk
    return proxy


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader for the old names under ``roots``.

    ``block``: every old name is missing (what an installed environment sees),
    so a plain load in a source checkout fails as it would anywhere else.
    Otherwise a plain module resolves to today's module object itself; packages
    and modules with moved attributes resolve to proxies, so importing an old
    name never adds attributes to today's packages.
    """

    def __init__(self, roots: set[str], block: bool) -> None:
        self.roots, self.block = roots, block
        self._targets: dict[str, types.ModuleType] = {}
        self._specs: dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname.split(".")[0] not in self.roots:
            return None
        if self.block:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        new = _new_name(fullname)
        if importlib.util.find_spec(new) is None:
            return None
        if fullname in MOVED_ATTRIBUTES:  # not imported until an attribute is asked for
            module = _proxy(fullname, new, package=False)
        else:
            module = importlib.import_module(new)
            if hasattr(module, "__path__"):
                module = _proxy(fullname, new, package=True)
            else:
                self._specs[fullname] = module.__spec__
        self._targets[fullname] = module
        return importlib.util.spec_from_loader(fullname, self,
                                               is_package=hasattr(module, "__path__"))

    def create_module(self, spec) -> types.ModuleType:
        return self._targets.pop(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        # Already executed; the import system set its ``__spec__`` to the alias: put it back.
        original = self._specs.pop(module.__spec__.name, None)
        if original is not None:
            module.__spec__ = original


def _ours_or_missing(old: str, new: str) -> bool:
    """``old`` is not importable, or only as this project's own source folder."""
    try:
        spec = importlib.util.find_spec(old)
    except ValueError:  # in sys.modules without a spec: someone else's module
        return False
    if spec is None:
        return True
    ours = {Path(p).resolve() for p in importlib.import_module(new).__path__}
    found = {Path(p).resolve() for p in spec.submodule_search_locations or []}
    return bool(found) and found <= ours


@contextmanager
def _old_names(block: bool) -> Iterator[None]:
    if any(isinstance(finder, _OldNames) for finder in sys.meta_path):
        yield  # already active: nested use changes nothing
        return
    roots = {old for old, new in OLD_PACKAGES.items() if _ours_or_missing(old, new)}
    # Copies of the source folders imported under the old names: hidden meanwhile.
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules)
              if name.split(".")[0] in roots}
    finder = _OldNames(roots, block)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in roots]:
            del sys.modules[name]
        sys.modules.update(hidden)


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """While active, ``features``, ``models`` and ``pipelines`` (and their submodules,
    renamed ones such as ``models.serving`` included) import as today's ``territory.*``
    modules. On exit every alias is gone from ``sys.modules`` and ``sys.meta_path``."""
    with _old_names(block=False):
        yield


@contextmanager
def without_legacy_names() -> Iterator[None]:
    """While active, the old names are missing even in a source checkout, as they are
    for an installed package (and a model server): a plain load, checked honestly."""
    with _old_names(block=True):
        yield


_warned: set[str] = set()


def warn_legacy_load(model_uri: str) -> None:
    """Say once per process that a model needed the old names, and how to fix that."""
    if _warned:
        return
    _warned.add(model_uri)
    warnings.warn(
        f"{model_uri} was registered before the territory.* namespace (it names the old "
        "modules models.*, pipelines.*); it was loaded with those names aliased. Run "
        "`territory migrate --config <config>` to re-register such models, so a model "
        "server loads them too.", LegacyWorkspaceWarning, stacklevel=3)


def needs_legacy_names(model_uri: str) -> bool:
    """True when ``model_uri`` loads only with the old module names.

    Errors other than a missing old module (no such model, artifacts gone) propagate.
    """
    try:
        with without_legacy_names():
            mlflow.pyfunc.load_model(model_uri)
    except ModuleNotFoundError as exc:
        if is_legacy_name_error(exc):
            return True
        raise
    return False


def champion_needs_migration(tracking_uri: str,
                             model_uri: str = tracking.CHAMPION_RECOMMENDER_URI) -> bool:
    """For ``territory serve``: the model loads only with the shim, which a server lacks.

    False when it loads, and when it fails for another reason (the server reports that).
    """
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return needs_legacy_names(model_uri)
    except Exception:  # not ours to explain: the server reports it
        return False


# --- Migration ---------------------------------------------------------------------------------


class Migrated(NamedTuple):
    """One re-registered version."""

    model: str
    old_version: str
    new_version: str


def migrate_workspace(experiment: str, registered_models: Sequence[str]) -> list[Migrated]:
    """Re-register every version of ``registered_models`` that needs the old module names.

    Tracking must be set up (:func:`territory.models.tracking.connect`). Versions
    are grouped by the run that logged them; each such run gets one new run in
    the same experiment (tagged ``migrated_from_run``) with its params, metrics,
    tags, inputs and files, every legacy version re-logged with today's code
    (tagged ``migrated_from_run`` and ``migrated_from_version``, with the old
    version's tags), and its potential model. Every alias of an old version moves
    to its new version; the old one is tagged ``migrated_to``, so a second
    migration finds nothing to do. A failure leaves the registry as it was and
    deletes the new runs. Returns what moved, oldest first.
    """
    client = MlflowClient()
    by_run: dict[str, list[tuple[str, Any]]] = {}
    for name in registered_models:
        for mv in _legacy_versions(client, name):
            by_run.setdefault(mv.run_id, []).append((name, mv))
    if not by_run:
        return []
    moved: list[Migrated] = []
    started: list[str] = []
    with tracking.registry_transaction(experiment, list(registered_models)):
        try:
            for old_run_id, versions in by_run.items():
                moved += _migrate_run(client, old_run_id, versions, started)
            for item in moved:
                client.set_model_version_tag(item.model, item.old_version, MIGRATED_TO,
                                             item.new_version)
        except BaseException:
            _discard(client, started, moved)
            raise
    return moved


def _legacy_versions(client: MlflowClient, name: str) -> list[Any]:
    """Versions of ``name`` not migrated yet that load only with the old names."""
    found = []
    versions = client.search_model_versions(f"name = '{name}'")
    for mv in sorted(versions, key=lambda v: int(v.version)):
        if MIGRATED_TO in mv.tags:
            continue
        try:
            if needs_legacy_names(f"models:/{name}/{mv.version}"):
                found.append(mv)
        except Exception as exc:  # one broken old version must not block the rest
            log.warning("skipping %s version %s: it does not load (%s)", name, mv.version, exc)
    return found


def _migrate_run(client: MlflowClient, old_run_id: str, versions: list[tuple[str, Any]],
                 started: list[str]) -> list[Migrated]:
    """One new run for the legacy versions ``old_run_id`` logged, and its potential model."""
    old = client.get_run(old_run_id)
    tags = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.")}
    tags.update({"migrated_from_run": old_run_id,
                 "migrated_from_version": ", ".join(f"{n}/{mv.version}" for n, mv in versions)})
    if (token := tracking.current_token()) is not None:  # a rollback finds the new versions
        tags[tracking.RUN_TAG] = token
    with mlflow.start_run(experiment_id=old.info.experiment_id, tags=tags,
                          run_name=f"{old.info.run_name or old_run_id}-migrated") as run:
        started.append(run.info.run_id)
        _copy_run_data(client, old, run.info.run_id)
        moved = [Migrated(name, str(mv.version), _relog_version(client, name, mv))
                 for name, mv in versions]
        _relog_potential(old)
    return moved


def _copy_run_data(client: MlflowClient, old: Any, new_run_id: str) -> None:
    """Params, full metric histories, dataset inputs and run files of ``old``."""
    params = [Param(k, v) for k, v in old.data.params.items()]
    metrics = [Metric(m.key, m.value, m.timestamp, m.step) for key in old.data.metrics
               for m in client.get_metric_history(old.info.run_id, key)]
    for start in range(0, len(params), 100):
        client.log_batch(new_run_id, params=params[start:start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(new_run_id, metrics=metrics[start:start + 1000])
    if old.inputs is not None and old.inputs.dataset_inputs:
        client.log_inputs(new_run_id, datasets=old.inputs.dataset_inputs)
    if client.list_artifacts(old.info.run_id):
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.artifacts.download_artifacts(run_id=old.info.run_id, dst_path=tmp)
            client.log_artifacts(new_run_id, tmp)


def _load_with_example(model_uri: str) -> tuple[Any, Any]:
    """The python model (loaded with the old names) and its input example, typed as signed."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        with legacy_module_names():
            python_model = mlflow.pyfunc.load_model(local).unwrap_python_model()
        meta = Model.load(local)
        example = meta.load_input_example(local)
    if example is None:
        raise MlflowException(f"{model_uri} has no input example to re-log it with")
    types_ = meta.signature.inputs.input_types_dict() if meta.signature else {}
    return python_model, example.astype(
        {col: kind.to_pandas() for col, kind in types_.items() if col in example})


def _relog_version(client: MlflowClient, name: str, mv: Any) -> str:
    """Re-log one legacy version with today's loggers in the active run; the new version."""
    uri = f"models:/{name}/{mv.version}"
    python_model, example = _load_with_example(uri)
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    if isinstance(python_model, tracking.TerritoryScoringModel):
        new = tracking.log_scoring_model(python_model.forecaster, example, name)
    elif isinstance(python_model, tracking.TerritoryRecommender):
        bundle = python_model.bundle
        new = tracking.log_recommender(bundle, example.set_index(bundle.unit_col), name)
    else:
        raise MlflowException(f"{uri}: cannot migrate a {type(python_model).__name__}")
    version_tags = {**mv.tags, "migrated_from_run": mv.run_id,
                    "migrated_from_version": str(mv.version)}
    for key, value in version_tags.items():
        tracking.tag_model_version(name, new, key, value)
    _move_aliases(client, name, aliases, str(mv.version), new)
    return new


def _move_aliases(client: MlflowClient, name: str, before: dict[str, str], old: str,
                  new: str) -> None:
    """Aliases that named ``old`` name ``new``; the others are as before (logging a
    version aliases it ``challenger``)."""
    now = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    for alias in set(before) | set(now):
        wanted = new if before.get(alias) == old else before.get(alias)
        if wanted is None:
            client.delete_registered_model_alias(name, alias)
        elif now.get(alias) != wanted:
            client.set_registered_model_alias(name, alias, wanted)


def _relog_potential(old: Any) -> None:
    """Re-log the potential model ``old`` logged beside its forecaster, if any."""
    found = mlflow.search_logged_models(
        experiment_ids=[old.info.experiment_id], output_format="list",
        filter_string=f"source_run_id = '{old.info.run_id}' AND "
                      f"name = '{tracking.POTENTIAL_ARTIFACT}'")
    if found:
        python_model, example = _load_with_example(found[0].model_uri)
        tracking.log_potential_model(python_model.potential, example)


def _discard(client: MlflowClient, run_ids: list[str], moved: list[Migrated]) -> None:
    """After a failure: the new runs are deleted and the old versions lose ``migrated_to``
    (the registry transaction deletes the new versions and puts the aliases back)."""
    for run_id in run_ids:
        with suppress(MlflowException):
            client.delete_run(run_id)
    for item in moved:
        with suppress(MlflowException):
            client.delete_model_version_tag(item.model, item.old_version, MIGRATED_TO)
