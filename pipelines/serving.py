"""Serving the recommender: the ``mlflow models serve`` process and batch scoring.

The pyfunc ``territory-recommender`` itself, its registration and the MLflow
calls live in :mod:`territory.models.tracking`; this module starts the scoring server
and runs batch scoring over every unit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from territory.models import tracking


def serve_command(host: str, port: int,
                  model_uri: str = f"models:/{tracking.RECOMMENDER}@champion") -> list[str]:
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
                 model_uri: str = f"models:/{tracking.RECOMMENDER}@champion") -> subprocess.Popen:
    """Start the scoring server in the background; the caller stops it."""
    return subprocess.Popen(serve_command(host, port, model_uri), env=serving_env(tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def load_champion(config):
    """The champion recommender of the config's tracking store."""
    from territory.pipelines.publish import setup_tracking

    setup_tracking(config)
    return tracking.load_champion()


def score_all(config, out: Path | None = None) -> tuple[Path, pd.DataFrame, str]:
    """Score every unit with the champion recommender; write and log ``recommendations.csv``.

    Returns the CSV path, the scored frame and the MLflow run id of the scoring run.
    """
    from territory.features.spatial import build_adjacency
    from territory.pipelines.outputs import atomic_directory
    from territory.pipelines.stages import load_inputs, market_features

    cols = config.data.columns
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, cols.unit_col, config.features.contiguity,
                            config.data.projected_crs)
    request = market_features(config, inputs, graph).reset_index(names=cols.unit_col)
    scored = load_champion(config).predict(request)
    out_dir = Path(out) if out is not None else Path(config.workspace) / "scores"
    with atomic_directory(out_dir) as tmp:
        scored.to_csv(tmp / "recommendations.csv", index=False)
    run_id = tracking.log_batch_scores(scored, out_dir / "recommendations.csv",
                                       f"{config.run_name}-batch-score")
    return out_dir / "recommendations.csv", scored, run_id
