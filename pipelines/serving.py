"""Batch scoring: every unit scored with the champion recommender.

The scoring server (``mlflow models serve``), the pyfunc and every MLflow call
live in :mod:`territory.models.tracking`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from territory.features.spatial import build_adjacency
from territory.features.spreadsheet_safe import write_csv
from territory.models import tracking
from territory.pipelines.config import RunConfig
from territory.pipelines.outputs import atomic_directory
from territory.pipelines.publish import setup_tracking
from territory.pipelines.stages import load_inputs, market_table


def score_all(config: RunConfig, out: Path | None = None) -> tuple[Path, pd.DataFrame, str]:
    """Score every unit with the champion recommender; write and log ``recommendations.csv``.

    Returns the CSV path, the scored frame and the MLflow run id of the scoring run.
    """
    cols = config.data.columns
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, cols.unit_col, config.features.contiguity,
                            config.data.projected_crs)
    request = market_table(config, inputs, graph).reset_index(names=cols.unit_col)
    setup_tracking(config)
    scored = tracking.load_champion().predict(request)
    out_dir = Path(out) if out is not None else Path(config.workspace) / "scores"
    with atomic_directory(out_dir) as tmp:
        write_csv(scored, tmp / "recommendations.csv")
    run_id = tracking.log_batch_scores(scored, out_dir / "recommendations.csv",
                                       f"{config.run_name}-batch-score")
    return out_dir / "recommendations.csv", scored, run_id
