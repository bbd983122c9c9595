"""The MLflow adapter's reconciliation part: what a training run records of its reconciliation
for the scoring runs of its champion (:mod:`territory.models.reconcile_runs`).

* tags ``reconcile_method`` (a run without sales forces) and ``reconcile_method.<force>``
  (one per force): the method the run published;
* artifact ``reconcile/backtest_forecasts.parquet``: its backtest forecasts of the units
  (unit, origin, horizon, published forecast), from which a scoring run calibrates the
  aggregates' intervals on its own alignment.

Only the tracking modules import MLflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from territory.models.reconcile_runs import ChampionChoice

METHOD_TAG = "reconcile_method"
ARTIFACT_DIR = "reconcile"
BACKTEST_ARTIFACT = "backtest_forecasts.parquet"


def method_tag(force: str | None = None) -> str:
    """The tag that holds the method published for ``force`` (None: no forces)."""
    return METHOD_TAG if force is None else f"{METHOD_TAG}.{force}"


def log_methods(methods: dict[str | None, str]) -> None:
    """In the active run, the method published per force (key None: a run without forces)."""
    mlflow.set_tags({method_tag(force): method for force, method in methods.items()})


def log_backtest_forecasts(frame: pd.DataFrame) -> None:
    """In the active run, the backtest forecasts of the units
    (:func:`territory.models.reconcile_runs.backtest_forecasts`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / BACKTEST_ARTIFACT
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), ARTIFACT_DIR)


def load_choice(run_id: str) -> ChampionChoice:
    """What training run ``run_id`` recorded of its reconciliation (no methods and no
    backtest forecasts for a run that recorded none)."""
    tags = MlflowClient().get_run(run_id).data.tags
    methods: dict[str | None, str] = {}
    for key, value in tags.items():
        if key == METHOD_TAG:
            methods[None] = value
        elif key.startswith(f"{METHOD_TAG}."):
            methods[key.removeprefix(f"{METHOD_TAG}.")] = value
    backtest = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/{BACKTEST_ARTIFACT}", dst_path=tmp)
            backtest = pd.read_parquet(path)
        except (MlflowException, OSError):
            backtest = None  # a run trained before it kept them: no interval for aggregates
    return ChampionChoice(run_id, methods, backtest)
