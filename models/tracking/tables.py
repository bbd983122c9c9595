"""The MLflow adapter's tables part: a CSV artifact of a logged run, read back.

:func:`territory.models.tracking.log_table` writes them; a scoring run reads
one back from its champion's training run (the rep-change table of
``data.previous_alignment``) instead of computing it again. Only the tracking
modules import MLflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from territory.features.spreadsheet_safe import revert_inert


def load_logged_table(run_id: str, name: str,
                      text_columns: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """The CSV artifact ``name`` of run ``run_id`` as a DataFrame, or None when the run has
    no such artifact. ``text_columns`` are read as text (ids such as ``"007"`` stay so);
    text cells are as they were before :func:`territory.features.spreadsheet_safe.write_csv`
    made them inert."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                                       dst_path=tmp)
        except (MlflowException, OSError):
            return None
        frame = pd.read_csv(Path(path), dtype=dict.fromkeys(text_columns, str))
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]):
            frame[column] = frame[column].map(revert_inert)
    return frame
