"""Serving the recommender through MLflow: the pyfunc, its registration, the server.

The pyfunc ``territory-recommender`` wraps :class:`models.serving.RecommenderBundle`.
Requests are unit feature rows (``unit_id`` plus the market feature columns);
replies are scores, assignments, actions and reasons. Bad requests become
MLflow ``INVALID_PARAMETER_VALUE`` errors, which the scoring server answers
with HTTP 400 and the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.tracking import MlflowClient

from models.serving import RecommenderBundle, ScoringInputError

RECOMMENDER_NAME = "territory-recommender"


class TerritoryRecommender(mlflow.pyfunc.PythonModel):
    """Pyfunc around a :class:`RecommenderBundle`."""

    def __init__(self, bundle: RecommenderBundle) -> None:
        self.bundle = bundle

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        try:
            return self.bundle.score(model_input)
        except ScoringInputError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def input_example(bundle: RecommenderBundle, features: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """``n`` rows of real unit features in the request layout."""
    rows = features[bundle.feature_columns].head(n).astype(float)
    return rows.reset_index(names=bundle.unit_col).assign(
        **{bundle.unit_col: lambda f: f[bundle.unit_col].astype(str)})


def log_recommender(bundle: RecommenderBundle, features: pd.DataFrame,
                    registered_model: str = RECOMMENDER_NAME) -> str:
    """Log the pyfunc in the active run, register it, alias the version ``challenger``."""
    example = input_example(bundle, features)
    info = mlflow.pyfunc.log_model(
        name="territory-recommender",
        python_model=TerritoryRecommender(bundle),
        signature=infer_signature(example, bundle.score(example)),
        input_example=example,
        registered_model_name=registered_model,
        pip_requirements=["mlflow", "lightgbm", "pandas", "scikit-learn"],
    )
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(registered_model, "challenger", version)
    return version


def serve_command(tracking_uri: str, host: str, port: int,
                  model_uri: str = f"models:/{RECOMMENDER_NAME}@champion") -> list[str]:
    """The ``mlflow models serve`` command line (local environment, no conda/virtualenv)."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_bin), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-h", host, "-p", str(port)]


def serving_env(tracking_uri: str) -> dict[str, str]:
    """Environment for the scoring server: tracking URI, and this venv's tools on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def start_server(tracking_uri: str, host: str = "127.0.0.1", port: int = 5001,
                 model_uri: str = f"models:/{RECOMMENDER_NAME}@champion") -> subprocess.Popen:
    """Start the scoring server in the background; the caller stops it."""
    return subprocess.Popen(serve_command(tracking_uri, host, port, model_uri),
                            env=serving_env(tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def load_champion(tracking_uri: str, name: str = RECOMMENDER_NAME):
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}@champion")


def score_all(config, out: Path | None = None) -> tuple[Path, pd.DataFrame, str]:
    """Score every unit with the champion recommender; write and log ``recommendations.csv``.

    Returns the CSV path, the scored frame and the MLflow run id of the scoring run.
    """
    from features.spatial import build_adjacency
    from pipelines.outputs import atomic_directory
    from pipelines.publish import tracking_uri
    from pipelines.stages import load_inputs, market_features

    cols = config.data.columns
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, cols.unit_col, config.features.contiguity,
                            config.data.projected_crs)
    features = market_features(config, inputs, graph)
    uri = tracking_uri(config)
    model = load_champion(uri)
    bundle_columns = [c for c in features.columns]
    request = features[bundle_columns].reset_index(names=cols.unit_col)
    scored = model.predict(request)
    out_dir = Path(out) if out is not None else Path(config.workspace) / "scores"
    with atomic_directory(out_dir) as tmp:
        scored.to_csv(tmp / "recommendations.csv", index=False)
    mlflow.set_experiment(config.tracking.experiment)
    with mlflow.start_run(run_name=f"{config.run_name}-batch-score") as run:
        mlflow.log_table(scored, artifact_file="recommendations.json")
        mlflow.log_artifact(str(out_dir / "recommendations.csv"))
        mlflow.log_metric("rows_scored", len(scored))
    return out_dir / "recommendations.csv", scored, run.info.run_id
