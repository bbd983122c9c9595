"""Identities of a run: the features cache key, the tracked-run key and the manifest.

A cached feature set is reused while the input files, the config that
shapes features and the feature code are unchanged; a tracked run is reused
while inputs, config and as-of date are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

import territory.features
from territory.pipelines.config import RunConfig


def manifest(config: RunConfig, file_hashes: dict[str, str], run_id: str | None,
             started: float) -> dict:
    """Provenance of one run: config hash, input hashes, versions, MLflow run id."""
    packages = ["territory", "lightgbm", "mlflow", "prefect", "pandas", "scikit-learn",
                "geopandas", "libpysal"]
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "config_hash": config.fingerprint(),
        "config": json.loads(config.model_dump_json()),
        "input_hashes": file_hashes,
        "versions": {"python": platform.python_version(), **versions},
        "mlflow_run_id": run_id,
        "wall_time_s": round(time.time() - started, 2),
    }


def _code_fingerprint() -> str:
    """SHA-256 of the feature code, so a code change invalidates cached features."""
    digest = hashlib.sha256()
    for file in sorted(Path(territory.features.__file__).parent.rglob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def features_cache_key(config: RunConfig, file_hashes: dict[str, str]) -> str:
    """Cache key of the features stage: input file hashes, the config it reads, the code.

    Only the parts of the config that change the feature set take part, so
    retuning the forecaster or the territory scenario reuses the features.
    DataFrames are never hashed: the files they come from are.
    """
    relevant = {
        "as_of": config.as_of,
        # file contents count through their hashes, not their paths
        "data": config.data.model_dump(mode="json", include={
            "projected_crs", "columns", "table_columns", "date_format", "gaps"}),
        "features": config.features.model_dump(mode="json"),
        "horizon": config.forecast.horizon,
        "workload_column": config.territories.workload_column,
        # a manager's edits change the design, not the features
        "inputs": dict(sorted((k, v) for k, v in file_hashes.items() if k != "edits")),
        "code": _code_fingerprint(),
    }
    payload = json.dumps(relevant, sort_keys=True, default=str)
    return "features-" + hashlib.sha256(payload.encode()).hexdigest()


def run_key(config: RunConfig, file_hashes: dict[str, str], as_of: pd.Timestamp,
            kind: str) -> str:
    """Identity of a tracked run: same inputs, config and as-of date give the same key.

    A re-run with the same key reuses the tracked run instead of registering a
    duplicate model version. Settings that do not change results (progress
    display, schedules, the runner) are left out.
    """
    skip = {key: True for key in ("progress", "schedule", "runner", "dask", "cache")}
    cfg = config.model_dump(mode="json", exclude={**skip, **config.unset_keys()})
    payload = json.dumps({"kind": kind, "as_of": f"{as_of:%Y-%m-%d}", "config": cfg,
                          "inputs": dict(sorted(file_hashes.items()))}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def train_summary(config: RunConfig, inputs, features, run_id: str | None, version, metrics,
                  decision, started: float) -> dict:
    """The train flow's ``summary.json``: the manifest, the model version, metrics, decision."""
    manifest_ = manifest(config, inputs.file_hashes, run_id, started)
    return {**manifest_, "as_of": f"{features.as_of:%Y-%m-%d}" if features else None,
            "registered_model": config.tracking.registered_model, "version": version,
            "metrics": metrics, "promotion": decision}
