"""The MLflow adapter's monitoring part: metric histories over dates, and the drift
reference that travels with a model's training run. Only the tracking modules import MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

REFERENCE_ARTIFACT = "monitoring_reference"


def month_step(when) -> int:
    """The step of a date in a metric history: months since 1970-01."""
    when = pd.Timestamp(when)
    return (when.year - 1970) * 12 + when.month - 1


def log_metric_history(series: dict[str, list[tuple[pd.Timestamp, float]]]) -> None:
    """In the active run, each metric as a history with one point per date (MLflow draws a
    curve): the step is :func:`month_step` of the date, the timestamp the date itself."""
    run_id = mlflow.active_run().info.run_id
    points = [Metric(name, float(value), int(pd.Timestamp(when).value // 10**6),
                     month_step(when))
              for name, values in series.items() for when, value in values
              if value is not None and np.isfinite(value)]
    client = MlflowClient()
    for start in range(0, len(points), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=points[start:start + 1000])


def log_reference(folder: Path) -> None:
    """Log the files of a drift reference in the active (training) run."""
    mlflow.log_artifacts(str(folder), REFERENCE_ARTIFACT)


def download_reference(run_id: str, dst: Path) -> Path | None:
    """The drift reference of training run ``run_id`` in ``dst``; None when the run has none
    (a model trained before references were kept)."""
    try:
        return Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(dst)))
    except (MlflowException, OSError):
        return None
