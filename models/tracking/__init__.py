"""The MLflow adapter: with its registry part (:mod:`territory.models.tracking.registry`)
and the migration of old workspaces (:mod:`territory.models.tracking.legacy`), the only
code of the project that calls MLflow.

It points MLflow at a store, logs runs (config, params, metrics, dataset
digests, figures, tables), logs and registers the three pyfuncs (scoring
model, potential model, recommender), moves registry aliases, undoes a failed
block's registry changes, loads registered versions back, and builds the
scoring server (MLflow's scoring app behind a body size limit). New
versions get the alias ``challenger``; ``champion`` moves only through
:func:`promote_if_better`, so a failed or worse run never touches it.

Inside a :func:`registry_transaction`, every MLflow run started and every
model version registered carries the tag ``territory.run`` = the
transaction's token, so a rollback (in the failing process, or later by
:func:`undo_run` for a process that died) touches only what that one run
registered, never a concurrent run's versions (see ``tracking.registry``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient

from territory.features.spreadsheet_safe import write_csv
from territory.models.force_recommender import ForcesRecommender
from territory.models.recommender import RecommenderBundle, ScoringInputError
from territory.models.tracking.registry import (
    RUN_TAG,
    Transaction,
    current_token,
    registry_snapshot,
    registry_transaction,
    runs_of,
    undo_run,
)

__all__ = ["RUN_TAG", "Transaction", "current_token", "registry_snapshot",
           "registry_transaction", "runs_of", "undo_run"]  # re-exported from tracking.registry

CHAMPION = "champion"
CHALLENGER = "challenger"
RECOMMENDER = "territory-recommender"


class TerritoryScoringModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that scores forecast-table rows with the fitted forecaster.

    Input: rows of the forecast table (unit, horizon and feature columns).
    Output: ``forecast``, ``forecast_lo``, ``forecast_hi`` per row: LightGBM's.
    ``published`` (a :class:`territory.models.combination.PublishedForecast`,
    or None) travels with the version, so a run scoring with it publishes the
    same combination; served rows carry no history for the statistical
    members, so the server answers with LightGBM alone.
    """

    def __init__(self, forecaster: Any, published: Any = None) -> None:
        self.forecaster = forecaster
        self.published = published

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        point, lo, hi = self.forecaster.predict_interval(model_input)
        return pd.DataFrame({"forecast": point, "forecast_lo": lo, "forecast_hi": hi})


def store_uri(configured_uri: str | None, workspace: Path) -> str:
    """``configured_uri``, or the SQLite store in ``workspace``."""
    if configured_uri:
        return configured_uri
    return f"sqlite:///{(Path(workspace) / 'mlflow.db').resolve()}"


def is_local_store(uri: str) -> bool:
    """A store on this machine (SQLite or files), as opposed to a tracking server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def connect(configured_uri: str | None, workspace: Path, experiment: str) -> str:
    """Point MLflow at the store and experiment; returns the tracking URI.

    A local store keeps its artifacts in the workspace; a remote tracking
    server decides where artifacts go (its ``--artifacts-destination``).
    """
    uri = store_uri(configured_uri, workspace)
    root = Path(workspace) / "mlartifacts" if is_local_store(uri) else None
    setup_tracking(uri, experiment, root)
    return uri


def transient_error_types() -> tuple[type[BaseException], ...]:
    """Errors of the tracking store worth retrying (the store or network hiccuped)."""
    return (MlflowException,)


def setup_tracking(tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and make sure the experiment exists.

    ``artifact_root`` pins where a new experiment stores artifacts (the
    workspace, for a local SQLite store); remote servers choose their own.
    """
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def training_run(run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
    """Start a run and yield its id; a failure marks the run FAILED.

    Inside a :func:`registry_transaction` the run is tagged with its token.
    """
    token = current_token()
    if token is not None:
        tags = {**(tags or {}), RUN_TAG: token}
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        yield run.info.run_id


@contextmanager
def nested_run(run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
    """Start a run nested under the active one (e.g. one tuning trial); yield its id."""
    with mlflow.start_run(run_name=run_name, nested=True, tags=tags) as run:
        yield run.info.run_id


def log_params(params: dict[str, Any]) -> None:
    """Log flat params (values as strings of at most 500 characters)."""
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})


def log_text(text: str, name: str) -> None:
    """Log a text artifact (e.g. a written config file)."""
    mlflow.log_text(text, name)


def log_config(config: dict, name: str = "config.json") -> None:
    """Log the resolved config as an artifact and its flat keys as params."""
    mlflow.log_dict(config, name)
    flat = pd.json_normalize(config, sep=".").iloc[0].to_dict()
    params = {k: str(v)[:500] for k, v in flat.items()}
    for start in range(0, len(params), 100):
        mlflow.log_params(dict(list(params.items())[start : start + 100]))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log finite metrics; NaN and inf are skipped."""
    clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    mlflow.log_metrics(clean, step=step)


def log_dataset(frame: pd.DataFrame, source: Path, name: str, context: str = "training") -> str:
    """Log a dataset's digest and source with ``mlflow.data``; returns the digest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
        dataset = mlflow.data.from_pandas(frame, source=str(source), name=name)
    mlflow.log_input(dataset, context=context)
    return dataset.digest


def log_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_figure(figure: Any, name: str) -> None:
    mlflow.log_figure(figure, name)


def log_table(frame: pd.DataFrame, name: str) -> None:
    """Log a DataFrame as a CSV artifact (text cells inert in a spreadsheet)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write_csv(frame, path)
        mlflow.log_artifact(str(path))


def _register_pyfunc(
    python_model: mlflow.pyfunc.PythonModel,
    artifact_name: str,
    example: pd.DataFrame,
    registered_model: str,
    params: dict | None = None,
) -> str:
    """Log a pyfunc in the active run with signature (``params``: its request parameters
    with their defaults) and example, register it, and alias the new version
    ``challenger``; returns the version."""
    output = python_model.predict(None, example)
    info = mlflow.pyfunc.log_model(
        name=artifact_name,
        python_model=python_model,
        signature=infer_signature(example, output, params),
        input_example=example,
        registered_model_name=registered_model,
        pip_requirements=["mlflow", "lightgbm", "pandas", "scikit-learn"],
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    if (token := current_token()) is not None:
        client.set_model_version_tag(registered_model, version, RUN_TAG, token)
    client.set_registered_model_alias(registered_model, CHALLENGER, version)
    return version


def log_scoring_model(
    forecaster: Any, input_example: pd.DataFrame, registered_model: str, published: Any = None
) -> str:
    """Log the forecaster (with what a run publishes) as a pyfunc, register it, and tag the
    version ``challenger``.

    Returns the new model version.
    """
    example = input_example.head(5).reset_index(drop=True)
    # Integer columns cannot hold missing values in a signature; serve them as doubles.
    ints = example.select_dtypes("integer").columns
    example[ints] = example[ints].astype("float64")
    return _register_pyfunc(TerritoryScoringModel(forecaster, published), "scoring-model",
                            example, registered_model)


class TerritoryRecommender(mlflow.pyfunc.PythonModel):
    """Pyfunc around a :class:`territory.models.recommender.RecommenderBundle`, or for a
    run with sales forces a :class:`territory.models.force_recommender.ForcesRecommender`.

    Requests are unit feature rows (``unit_id`` plus the market feature
    columns); replies are scores, assignments, actions and reasons, with
    forces one row per unit and force, or with the parameter ``force``
    (``{"params": {"force": ...}}``) that force's only. Bad requests become
    ``INVALID_PARAMETER_VALUE`` errors, which MLflow's scoring server answers
    with HTTP 400 and the message.
    """

    def __init__(self, bundle: RecommenderBundle | ForcesRecommender) -> None:
        self.bundle = bundle

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        try:
            if isinstance(self.bundle, ForcesRecommender):
                return self.bundle.score(model_input, (params or {}).get("force") or None)
            return self.bundle.score(model_input)
        except ScoringInputError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def log_recommender(
    bundle: RecommenderBundle | ForcesRecommender, features: pd.DataFrame,
    registered_model: str = RECOMMENDER,
) -> str:
    """Log and register the recommender (a ``RecommenderBundle``, or a ``ForcesRecommender``
    taking the parameter ``force``); ``features`` (index = unit) gives the example rows."""
    rows = features[bundle.feature_columns].head(3).astype(float)
    example = rows.reset_index(names=bundle.unit_col)
    example[bundle.unit_col] = example[bundle.unit_col].astype(str)
    params = {"force": ""} if isinstance(bundle, ForcesRecommender) else None  # "": all
    return _register_pyfunc(TerritoryRecommender(bundle), "territory-recommender", example,
                            registered_model, params)


def log_batch_scores(scored: pd.DataFrame, csv_path: Path, run_name: str) -> str:
    """Log batch recommendations as a table artifact in a new run; returns its id."""
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_table(scored, artifact_file="recommendations.json")
        mlflow.log_artifact(str(csv_path))
        mlflow.log_metric("rows_scored", len(scored))
    return run.info.run_id


def load_champion(registered_model: str = RECOMMENDER) -> Any:
    """The pyfunc that holds ``champion`` (tracking must be set up)."""
    return _load_pyfunc(f"models:/{registered_model}@{CHAMPION}")


def _load_pyfunc(model_uri: str) -> Any:
    """Load a pyfunc. One pickled before the ``territory.*`` namespace (it names the old
    ``models.*`` modules) loads with those names aliased, with a warning once that
    ``territory migrate`` re-registers it (:mod:`territory.models.tracking.legacy`)."""
    from territory.models.tracking import legacy

    try:
        with legacy.without_legacy_names():
            return mlflow.pyfunc.load_model(model_uri)
    except ModuleNotFoundError as exc:
        if not legacy.is_legacy_name_error(exc):
            raise
    legacy.warn_legacy_load(model_uri)
    with legacy.legacy_module_names():
        return mlflow.pyfunc.load_model(model_uri)


def tag_model_version(registered_model: str, version: str, key: str, value: str) -> None:
    MlflowClient().set_model_version_tag(registered_model, version, key, value)


def _champion_version(registered_model: str) -> str | None:
    """Version that holds ``champion``, or None."""
    try:
        return MlflowClient().get_model_version_by_alias(registered_model, CHAMPION).version
    except mlflow.exceptions.MlflowException:
        return None


def champion_version(tracking_uri: str, registered_model: str = RECOMMENDER) -> str | None:
    """The version of ``registered_model`` that holds ``champion``, or None.

    A SQLite store that does not exist yet means no model, and is not created
    (MLflow would create an empty one). Errors other than "no such model or
    alias" (a tracking server that does not answer) propagate.
    """
    if tracking_uri.startswith("sqlite:///") and \
            not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return MlflowClient().get_model_version_by_alias(registered_model, CHAMPION).version
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote_if_better(
    registered_model: str,
    version: str,
    metric: str,
    value: float,
    comparable_on: str,
    margin: float = 0.0,
    artifact_name: str = "promotion_decision.json",
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` when it beats the champion.

    Lower ``metric`` is better. The champion's score is read from its run;
    the two are compared only when both were evaluated on the same windows
    (``comparable_on``: the backtest's ``windows_key``, which lists its
    origins and horizon, or the validation window when the backtest is off;
    the champion's is its ``evaluation_windows`` tag). The challenger must be
    lower by the relative ``margin``. With no champion yet, a challenger with
    a finite score is promoted; a NaN score never is. The decision, both
    scores and both windows are logged to the active run and returned.
    """
    client = MlflowClient()
    current = _champion_version(registered_model)
    decision: dict[str, Any] = {
        "challenger_version": version,
        "challenger_score": value,
        "champion_version": current,
        "champion_score": None,
        "metric": metric,
        "margin": margin,
        "windows": comparable_on,
    }
    if current is None:
        promote = value is not None and bool(np.isfinite(value))
        reason = "no champion yet" if promote else f"no finite {metric}; not promoted"
    else:
        champ_run = client.get_run(client.get_model_version(registered_model, current).run_id)
        champ_score = champ_run.data.metrics.get(metric)
        champ_windows = champ_run.data.tags.get("evaluation_windows")
        same_windows = champ_windows == comparable_on
        decision["champion_score"] = champ_score
        decision["champion_windows"] = champ_windows
        if value is None or not np.isfinite(value):
            promote, reason = False, f"challenger has no finite {metric}; kept champion"
        elif champ_score is None or not same_windows:
            promote = False
            reason = "champion was evaluated on other windows; kept until a comparable run"
        else:
            promote = value < champ_score * (1.0 - margin)
            reason = (
                f"challenger {metric}={value:.4f} vs champion {champ_score:.4f} "
                f"(margin {margin:.0%}): {'promoted' if promote else 'kept champion'}"
            )
    if promote:
        client.set_registered_model_alias(registered_model, CHAMPION, version)
    decision.update({"promoted": promote, "reason": reason})
    mlflow.log_dict(json.loads(json.dumps(decision, default=str)), artifact_name)
    tag = "promotion" if artifact_name == "promotion_decision.json" else \
        f"promotion.{registered_model}"
    mlflow.set_tags({tag: "promoted" if promote else "not promoted",
                     f"{tag}_reason": reason})
    return decision


def log_backtest(result: Any, prefix: str = "backtest_") -> None:
    """Log a backtest result: metrics per horizon, tables and figures.

    Per-horizon WAPE, MASE and coverage are logged as metric histories with
    the horizon as the step (MLflow draws them as curves); the full metric
    tables and the figures go in as artifacts.
    """
    import matplotlib.pyplot as plt

    from territory.models.backtest import backtest_figures

    table = result.table()
    for _, row in table[table["horizon"] != "all"].iterrows():
        name = "" if row["model"] == "forecast" else f"_{row['model']}"
        log_metrics({f"{prefix}wape_by_horizon{name}": row["wape"],
                     f"{prefix}mase_by_horizon{name}": row["mase"]}, step=int(row["horizon"]))
    intervals = result.interval_table()
    for _, row in intervals[intervals["horizon"] != "all"].iterrows():
        log_metrics({f"{prefix}coverage_by_horizon": row["coverage"]}, step=int(row["horizon"]))
    log_table(table, f"{prefix}metrics.csv")
    log_table(intervals, f"{prefix}intervals.csv")
    mlflow.set_tags({"backtest_windows": result.windows_key})
    for name, fig in backtest_figures(result).items():
        log_figure(fig, name)
        plt.close(fig)


# --- The potential model: logged (not registered) beside the forecaster ------------------


class PotentialModel(mlflow.pyfunc.PythonModel):
    """Pyfunc around the fitted :class:`territory.models.potential.PotentialEstimator`.

    Logged (not registered) in every training run beside the registered
    forecaster, so the nightly forecast scores with the champion's own
    potential model.
    """

    def __init__(self, potential) -> None:
        self.potential = potential

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        return pd.DataFrame({"potential": self.potential.predict(model_input)})


POTENTIAL_ARTIFACT = "potential-model"
SEGMENT_POTENTIAL_ARTIFACT = "segment-potential-models"  # runs with sales forces


def log_potential_model(potential, market_table: pd.DataFrame,
                        name: str = POTENTIAL_ARTIFACT) -> None:
    """Log a potential model in the active run under ``name`` (``potential-model``; the
    segment models of a run with sales forces: ``segment-potential-models``)."""
    example = market_table.head(3).astype(float).reset_index(drop=True)
    model = PotentialModel(potential)
    mlflow.pyfunc.log_model(
        name=name, python_model=model, input_example=example,
        signature=infer_signature(example, model.predict(None, example)),
        pip_requirements=["mlflow", "lightgbm", "pandas", "scikit-learn"],
    )


# --- Reuse and loading registered versions (rollback: tracking.registry) -------------------


def find_tracked_run(experiment: str, registered_model: str, key: str) -> dict | None:
    """The finished run tagged ``run_key`` = ``key``, as a summary, or None."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.run_key = '{key}'",
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        versions = client.search_model_versions(
            f"name = '{registered_model}' and run_id = '{run.info.run_id}'")
        tags = run.data.tags
        return {
            "run_id": run.info.run_id,
            "version": str(versions[0].version) if versions else None,
            "metrics": dict(run.data.metrics),
            "promotion": {"promoted": tags.get("promotion") == "promoted",
                          "reason": f"reused run {run.info.run_id} (same inputs, config and "
                                    f"as-of date); first decision: "
                                    f"{tags.get('promotion_reason', 'n/a')}",
                          "reused": True},
        }
    return None


@dataclass
class LoadedVersion:
    """One registered forecaster version with the potential model of its run."""

    forecaster: Any
    potential: Any
    metrics: dict[str, float]
    evaluation_windows: str
    name: str
    version: str
    run_id: str
    published: Any = None  # the combination a run scoring with this version publishes


def load_version(registered_model: str, version: str | None = None) -> LoadedVersion | None:
    """Forecaster ``version`` (default: the champion) and its run's potential model.

    None when the version (or the champion) does not exist. The metrics are
    the ones its training run logged.
    """
    client = MlflowClient()
    try:
        mv = (client.get_model_version_by_alias(registered_model, CHAMPION) if version is None
              else client.get_model_version(registered_model, str(version)))
    except MlflowException:
        return None
    model = _load_pyfunc(f"models:/{registered_model}/{mv.version}").unwrap_python_model()
    run = client.get_run(mv.run_id)
    return LoadedVersion(model.forecaster, _load_potential(client, run), dict(run.data.metrics),
                         run.data.tags.get("evaluation_windows", ""), registered_model,
                         str(mv.version), mv.run_id, getattr(model, "published", None))


def load_logged_potential(run_id: str, name: str = SEGMENT_POTENTIAL_ARTIFACT):
    """The potential model logged as ``name`` in run ``run_id``, or None."""
    run = MlflowClient().get_run(run_id)
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'", output_format="list")
    return _load_pyfunc(found[0].model_uri).unwrap_python_model().potential if found else None


def _load_potential(client: MlflowClient, run):
    """The potential model logged in ``run``; older runs have it in the recommender."""
    run_id = run.info.run_id
    found = load_logged_potential(run_id, POTENTIAL_ARTIFACT)
    if found is not None:
        return found
    versions = client.search_model_versions(f"name = '{RECOMMENDER}' and run_id = '{run_id}'")
    if not versions:
        raise MlflowException(f"run {run_id} holds no potential model")
    model = _load_pyfunc(f"models:/{RECOMMENDER}/{versions[0].version}")
    return model.unwrap_python_model().bundle.potential_model


# --- The scoring server: MLflow's scoring app on the champion recommender ---------------------

CHAMPION_RECOMMENDER_URI = f"models:/{RECOMMENDER}@{CHAMPION}"
MODEL_URI_ENV = "TERRITORY_SERVE_MODEL_URI"
MAX_BODY_ENV = "TERRITORY_SERVE_MAX_BODY_BYTES"


def scoring_app():
    """MLflow's scoring app for ``$TERRITORY_SERVE_MODEL_URI``, behind a body size limit.

    A factory for ``uvicorn --factory`` (what ``mlflow models serve`` runs,
    plus :class:`territory.models.body_limit.BodyLimit` with
    ``$TERRITORY_SERVE_MAX_BODY_BYTES``): same routes (``/invocations``,
    ``/ping``, ``/health``, ``/version``), same replies.
    """
    from mlflow.pyfunc import scoring_server

    from territory.models.body_limit import DEFAULT_MAX_BYTES, BodyLimit

    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_URI_ENV])
    limit = int(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BYTES)
    return BodyLimit(scoring_server.init(model), limit)


def serve_command(host: str, port: int) -> list[str]:
    """The command line of the scoring server (uvicorn on :func:`scoring_app`)."""
    return [sys.executable, "-m", "uvicorn", "--factory", f"{__name__}:scoring_app",
            "--host", host, "--port", str(port), "--log-level", "warning"]


def serving_env(tracking_uri: str, model_uri: str = CHAMPION_RECOMMENDER_URI,
                max_body_bytes: int | None = None) -> dict[str, str]:
    """Environment for the scoring server: tracking URI, model, body limit, this venv's PATH."""
    from territory.models.body_limit import DEFAULT_MAX_BYTES

    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, MODEL_URI_ENV: model_uri,
            MAX_BODY_ENV: str(max_body_bytes or DEFAULT_MAX_BYTES),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def start_server(tracking_uri: str, host: str = "127.0.0.1", port: int = 5001,
                 model_uri: str = CHAMPION_RECOMMENDER_URI,
                 max_body_bytes: int | None = None) -> subprocess.Popen:
    """Start the scoring server in the background; the caller stops it."""
    return subprocess.Popen(serve_command(host, port),
                            env=serving_env(tracking_uri, model_uri, max_body_bytes),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
