"""Run config: the one place that reads a YAML file and validates it.

``load_config`` turns the YAML into frozen pydantic models. Relative paths are
resolved against the config file's folder, so a config works from any working
directory. Any mistake (unknown key, wrong type, missing file) raises one
:class:`features.errors.InputError` that names the key and the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from features.config import ColumnsConfig, FeaturesConfig, FrozenModel
from features.errors import InputError
from models.config import ForecastConfig, PotentialConfig, TerritoryConfig


class DataConfig(FrozenModel):
    """Input files. ``units`` and ``sales`` are required, the rest optional."""

    units: Path
    sales: Path
    demographics: Path | None = None
    alignment: Path | None = None
    reps: Path | None = None
    truth: Path | None = None
    projected_crs: str | None = None
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)


class TrackingConfig(FrozenModel):
    """MLflow tracking. ``tracking_uri`` None means a SQLite store in the workspace."""

    tracking_uri: str | None = None
    experiment: str = "territory"
    registered_model: str = "territory-forecaster"


class DaskConfig(FrozenModel):
    """Where and how the ``runner: dask`` path runs (ignored with ``runner: local``).

    ``address`` None starts a ``LocalCluster`` of ``n_workers`` processes with
    ``threads_per_worker`` threads and ``memory_limit`` each; an address
    (``tcp://host:8786``) connects to an existing scheduler instead. Features
    are built per partition: by the values of the units column
    ``partition_by`` (e.g. ``region``) or, when it is None, in ``n_partitions``
    west-to-east bands of units. The forecaster trains with ``lightgbm.dask``
    when its training rows reach ``lightgbm_min_rows``, else locally.
    """

    address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    partition_by: str | None = None
    n_partitions: int = Field(8, ge=1)
    lightgbm_min_rows: int = Field(1_000_000, ge=0)


class RunConfig(FrozenModel):
    """Everything one pipeline run needs."""

    run_name: str = "territory"
    workspace: Path = Path("workspace")
    as_of: str | None = None
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    potential: PotentialConfig = Field(default_factory=PotentialConfig)
    territories: TerritoryConfig = Field(default_factory=TerritoryConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    progress: Literal["rich", "none"] = "rich"
    runner: Literal["local", "dask"] = "local"
    dask: DaskConfig = Field(default_factory=DaskConfig)

    @model_validator(mode="after")
    def _as_of_is_a_date(self) -> RunConfig:
        if self.as_of is not None:
            import pandas as pd

            try:
                pd.Timestamp(self.as_of)
            except ValueError as exc:
                raise ValueError(f"as_of '{self.as_of}' is not a date (use YYYY-MM-DD)") from exc
        return self

    def fingerprint(self) -> str:
        """Stable hash of the resolved config."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _resolve(base: Path, value: object) -> object:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _key_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read, resolve and validate a run config.

    Parameters
    ----------
    path
        YAML file.
    overrides
        Top-level keys to replace after reading (used by the CLI and tests).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "config file not found", hint="pass --config with a YAML file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(str(path), "the config must be a mapping of keys to values")
    raw = {**raw, **(overrides or {})}
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key_path(err["loc"]) or "(top level)"
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        raise InputError(
            str(path),
            f"{err['msg']}{got_text}",
            column=key,
            hint="fix this key; see configs/demo.yaml for every key and its default",
        ) from None
    base = path.resolve().parent
    data = config.data.model_copy(
        update={
            name: _resolve(base, getattr(config.data, name))
            for name in ("units", "sales", "demographics", "alignment", "reps", "truth")
        }
    )
    for name in ("units", "sales", "demographics", "alignment", "reps", "truth"):
        file = getattr(data, name)
        if file is not None and not Path(file).exists():
            raise InputError(
                str(path),
                f"file not found: {file}",
                column=f"data.{name}",
                hint="check the path; relative paths are read from the config file's folder",
            )
    return config.model_copy(update={"data": data, "workspace": _resolve(base, config.workspace)})
