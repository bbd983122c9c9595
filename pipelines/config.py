"""Run config: the one place that reads a YAML file and validates it.

``load_config`` turns the YAML into frozen pydantic models. Relative paths are
resolved against the config file's folder, so a config works from any working
directory. Any mistake (unknown key, wrong type, missing file) raises one
:class:`territory.features.errors.InputError` that names the file, the key,
what was expected and what was given, in plain words
(:mod:`territory.pipelines.config_errors`). Names that become part of an
output path (``run_name``) must be plain folder names.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from territory.features.config import ColumnsConfig, FeaturesConfig, FrozenModel
from territory.features.errors import InputError, shorten
from territory.models.config import (
    ForecastConfig,
    MonitoringConfig,
    PotentialConfig,
    TerritoryConfig,
)
from territory.pipelines.config_errors import describe_errors, problem_text
from territory.pipelines.forces_config import ForceConfig, check_forces, merged_forces

SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
SAFE_NAME_RULE = ("letters, digits, '-', '_' and '.', not starting with '.', without '..', "
                  "'/', '\\' or spaces, at most 100 characters")


def check_safe_name(value: str, key: str) -> str:
    """``value`` if it is safe as one folder or file name; else a ValueError naming ``key``."""
    if not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{key} becomes part of an output folder's name, so it must be a plain "
                         f"name: {SAFE_NAME_RULE}; got {shorten(repr(value))}")
    return value


TableName = Literal["units", "sales", "demographics", "alignment", "reps", "truth", "edits"]
FILES = ("units", "sales", "demographics", "alignment", "reps", "truth", "edits")


class TableColumns(FrozenModel):
    """One table's own column names; a name left out is the one in ``data.columns``."""

    unit_col: str | None = None
    time_col: str | None = None
    target_col: str | None = None
    territory_col: str | None = None
    rep_col: str | None = None
    year_col: str | None = None


class PreviousAlignment(FrozenModel):
    """An earlier alignment and the month it was replaced by ``data.alignment``.

    ``path`` has the alignment file's columns (``unit_col``, ``territory_col``) and is
    validated like it; ``changed_at`` is the first period (``YYYY-MM`` or ``YYYY-MM-DD``)
    of the current alignment: the units whose territory differs between the two are
    the moved units that the rep-change share error scores (issue #19).
    """

    path: Path
    changed_at: str

    @field_validator("changed_at", mode="before")
    @classmethod
    def _a_date(cls, value: object) -> str:
        import pandas as pd

        text = str(value)
        try:
            if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", text):
                raise ValueError(text)
            pd.Timestamp(text)
        except ValueError:
            raise ValueError(f"changed_at {shorten(repr(text))} is not a date; give the first "
                             "month of the current alignment as YYYY-MM (e.g. 2024-07)") from None
        return text


class DataConfig(FrozenModel):
    """Input files. ``units`` and ``sales`` are required, the rest optional.

    ``columns`` names the contract columns in every file; ``table_columns``
    overrides them for one table (``{units: {unit_col: FIPS}}``), so a units
    file keyed by ``FIPS`` works while the other files say ``unit_id``.
    ``date_format`` is the strptime format of the sales dates when they are
    not ISO (``"%d/%m/%Y"``); dates are never guessed.
    ``projected_crs`` must be a projected CRS (metres or feet) that pyproj knows.
    ``gaps`` says what a run does with units that have no sales history or no
    demographics (:data:`territory.features.gaps.GAP_CHOICES`): stop and list
    them, leave them out of the design, or estimate their potential.
    ``name_columns`` are the units-file columns that name a unit in the moves,
    the recommendations and the map, joined with ", " (``[name, region]``
    gives "Story, Iowa"); by default the ``name`` column when there is one.
    ``edits`` is a manager's CSV of ``unit_col, territory_col`` (the report's editor
    exports it; ``territory run --edits`` sets it): those units stay locked in those
    territories and the design redesigns the rest.
    ``previous_alignment`` (:class:`PreviousAlignment`) is an earlier alignment and the
    date it changed; with it, training scores the potential on the moved units' sales.
    """

    units: Path
    sales: Path
    demographics: Path | None = None
    alignment: Path | None = None
    reps: Path | None = None
    truth: Path | None = None
    edits: Path | None = None
    previous_alignment: PreviousAlignment | None = None
    projected_crs: str | None = None
    date_format: str | None = None
    # units with no sales history or no demographics: stop | exclude | estimate
    gaps: Literal["stop", "exclude", "estimate"] = "stop"
    name_columns: list[str] | None = None
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    table_columns: dict[TableName, TableColumns] = Field(default_factory=dict)

    @field_validator("date_format")
    @classmethod
    def _strptime_format(cls, value: str | None) -> str | None:
        if value is not None and "%" not in value:
            raise ValueError(f"date_format {shorten(repr(value))} is not a strptime format; "
                             "write it with % codes, e.g. '%d/%m/%Y' or '%m/%d/%Y'")
        return value

    @field_validator("projected_crs")
    @classmethod
    def _projected(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(value)
        except CRSError:
            raise ValueError(f"projected_crs {shorten(repr(value))} is not a coordinate "
                             "reference system pyproj knows; give an EPSG code such as "
                             "'EPSG:5070' (US), 'EPSG:3035' (Europe), or null for the UTM "
                             "zone of the data") from None
        if not crs.is_projected:
            raise ValueError(f"projected_crs {shorten(repr(value))} is in degrees "
                             f"({crs.name}), not a projected CRS in metres; give one such as "
                             "'EPSG:5070' (US) or 'EPSG:3035' (Europe), or null for the UTM "
                             "zone of the data")
        return value

    @field_validator("name_columns")
    @classmethod
    def _some_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("name_columns must list one or more distinct columns of the units "
                             "file, e.g. [name, region]; or null for the name column")
        return value

    def columns_for(self, table: TableName) -> ColumnsConfig:
        """The column names of ``table``'s file: ``columns`` with its ``table_columns``."""
        override = self.table_columns.get(table)
        if override is None:
            return self.columns
        return self.columns.model_copy(update=override.model_dump(exclude_none=True))


TRACKING_SCHEMES = ("http://", "https://", "sqlite:///", "postgresql://", "postgresql+",
                    "mysql://", "mysql+", "file:", "databricks")


class TrackingConfig(FrozenModel):
    """MLflow tracking. ``tracking_uri`` None means a SQLite store in the workspace.

    A remote tracking server (``http://mlflow.internal:5000``) or a database
    URI works unchanged: runs, models and aliases then live there, and the
    server decides where artifacts go (``--artifacts-destination``). The
    pipeline never needs a code change to switch.
    """

    tracking_uri: str | None = None
    experiment: str = "territory"
    registered_model: str = "territory-forecaster"

    @field_validator("tracking_uri")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(TRACKING_SCHEMES):
            raise ValueError(
                f"tracking_uri '{value}' is not an MLflow tracking URI; use http(s)://host:port "
                "for a tracking server, sqlite:///path.db or postgresql://... for a database, "
                "or null for the workspace's SQLite store")
        return value.rstrip("/")


class ScheduleConfig(FrozenModel):
    """When the deployed flows run and on which Prefect work pool.

    Cron strings are read in ``timezone`` (an IANA name such as
    ``Europe/Paris``), so "02:00" stays 02:00 local time across daylight
    saving changes. ``*_timeout_s`` bound the long tasks; a task past its
    timeout fails the run, which leaves the last good outputs in place.
    ``lock_timeout_s`` is how long a run waits for another run that is
    publishing the same as-of folder before it gives up with an error.
    """

    timezone: str = "UTC"
    nightly_cron: str = "0 2 * * *"
    retrain_cron: str = "0 3 * * 0"
    work_pool: str = "territory-process"
    train_timeout_s: float = Field(3600.0, gt=0.0)
    design_timeout_s: float = Field(3600.0, gt=0.0)
    lock_timeout_s: float = Field(600.0, ge=0.0)

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as "
                             "Europe/Paris or America/Chicago)") from None
        return value

    @field_validator("nightly_cron", "retrain_cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"cron '{value}' must have five fields (minute hour day month "
                             "weekday)")
        return value


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


class CacheConfig(FrozenModel):
    """The feature cache (one file per feature build in Prefect's result storage).

    After every build, entries not used for ``max_age_days`` are removed,
    then the least recently used ones until the rest fit in ``max_size_gb``
    (the one in use is always kept). ``territory cache clear`` empties it.
    """

    max_size_gb: float = Field(20.0, gt=0.0)
    max_age_days: float = Field(30.0, gt=0.0)


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
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    progress: Literal["rich", "none"] = "rich"
    runner: Literal["local", "dask"] = "local"
    dask: DaskConfig = Field(default_factory=DaskConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # sales forces (territory.pipelines.forces_config); None: one force selling everything
    forces: list[ForceConfig] | None = None

    @model_validator(mode="before")
    @classmethod
    def _force_territories(cls, data):
        """Each force's ``territories`` laid over the top-level ``territories:`` section."""
        if isinstance(data, dict) and data.get("forces") is not None:
            data = {**data, "forces": merged_forces(data["forces"], data.get("territories"))}
        return data

    @model_validator(mode="after")
    def _forces_agree(self) -> RunConfig:
        if self.forces is not None:
            if not self.forces:
                raise ValueError("forces: list at least one sales force, or leave the key out "
                                 "for one force that sells every segment")
            check_forces(self.forces)
        return self

    @field_validator("run_name")
    @classmethod
    def _plain_run_name(cls, value: str) -> str:
        return check_safe_name(value, "run_name")

    @model_validator(mode="after")
    def _auto_k_has_a_capacity(self) -> RunConfig:
        tc = self.territories
        if tc.n_territories == "auto" and tc.rep_capacity is None and self.data.reps is None:
            raise ValueError("territories.n_territories: auto needs a capacity per rep: set "
                             "territories.rep_capacity, or give data.reps with a capacity column")
        return self

    @model_validator(mode="after")
    def _previous_needs_current(self) -> RunConfig:
        if self.data.previous_alignment is not None and self.data.alignment is None:
            raise ValueError("data.previous_alignment is compared with the current alignment: "
                             "set data.alignment too, or leave previous_alignment out")
        return self

    @model_validator(mode="after")
    def _robust_has_uncertainty(self) -> RunConfig:
        if any(f.territories.robust.enabled for f in self.forces or []):
            raise ValueError("territories.robust designs one sales force's plan; it is not "
                             "available with forces: (leave robust out of each force)")
        if not self.territories.robust.enabled:
            return self
        if self.potential.method != "rep_adjusted" or self.data.alignment is None:
            raise ValueError("territories.robust weighs plans by how sure their potential is, "
                             "which needs potential.method: rep_adjusted and data.alignment "
                             f"(now {self.potential.method!r} and "
                             f"{'no alignment' if self.data.alignment is None else 'given'}); "
                             "set both, or set territories.robust: false")
        return self

    @model_validator(mode="after")
    def _coverage_floor_below_the_level(self) -> RunConfig:
        floor = self.monitoring.alerts.coverage_floor
        if floor is not None and floor >= self.forecast.interval_level:
            raise ValueError(f"monitoring.alerts.coverage_floor {floor} must be below "
                             f"forecast.interval_level {self.forecast.interval_level}: the "
                             "ranges are built to hold that share, so the rule would always fire")
        return self

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
        """Stable hash of the resolved config (``forces`` counts only when given, so a
        config without it keeps the hash it always had)."""
        payload = json.dumps(self.model_dump(mode="json", exclude=self.unset_keys()),
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


    def unset_keys(self) -> dict:
        """Keys that take no part in hashes while they are left out (``forces``,
        ``data.previous_alignment``), as a pydantic ``exclude`` mapping."""
        keys: dict = {} if self.forces is not None else {"forces": True}
        if self.data.previous_alignment is None:
            keys["data"] = {"previous_alignment": True}
        return keys


def _resolve(base: Path, value: object) -> object:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


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
        raise _plain_error(path, exc) from None
    base = path.resolve().parent
    data = config.data.model_copy(
        update={
            name: _resolve(base, getattr(config.data, name))
            for name in FILES
        }
    )
    for name in FILES:
        file = getattr(data, name)
        if file is not None and not Path(file).is_file():
            what = "not a file (a folder)" if Path(file).exists() else "file not found"
            raise InputError(
                str(path),
                f"{what}: {file}",
                key=f"data.{name}",
                hint=f"check the path; relative paths are resolved from the config file's "
                     f"folder, {base}",
            )
    if data.previous_alignment is not None:
        data = data.model_copy(update={"previous_alignment": _resolved_previous(
            path, base, data.previous_alignment)})
    forces = None if config.forces is None else [
        _resolved_force(path, base, force) for force in config.forces]
    return config.model_copy(update={"data": data, "workspace": _resolve(base, config.workspace),
                                     "forces": forces})


def _resolved_previous(path: Path, base: Path, previous: PreviousAlignment) -> PreviousAlignment:
    """``previous`` with its path resolved and checked."""
    file = _resolve(base, previous.path)
    if not Path(file).is_file():
        what = "not a file (a folder)" if Path(file).exists() else "file not found"
        raise InputError(str(path), f"{what}: {file}", key="data.previous_alignment.path",
                         hint=f"check the path; relative paths are resolved from the config "
                              f"file's folder, {base}")
    return previous.model_copy(update={"path": file})


def _resolved_force(path: Path, base: Path, force: ForceConfig) -> ForceConfig:
    """``force`` with its alignment and reps paths resolved and checked."""
    files = {name: _resolve(base, getattr(force, name)) for name in ("alignment", "reps")}
    for name, file in files.items():
        if file is not None and not Path(file).is_file():
            raise InputError(str(path), f"file not found: {file}",
                             key=f"forces.{force.name}.{name}",
                             hint=f"check the path; relative paths are resolved from the config "
                                  f"file's folder, {base}")
    return force.model_copy(update=files)


def with_edits(config: RunConfig, edits: Path) -> RunConfig:
    """``config`` with ``data.edits`` set to ``edits`` (``territory run --edits``)."""
    edits = Path(edits).expanduser().resolve()
    if not edits.is_file():
        what = "not a file (a folder)" if edits.exists() else "file not found"
        raise InputError(str(edits), what, key="--edits",
                         hint="pass the CSV the report's editor exported (Export edits)")
    return config.model_copy(update={"data": config.data.model_copy(update={"edits": edits})})


def _plain_error(path: Path, exc: ValidationError) -> InputError:
    """The first problem of a failed validation, in words (and how many more there are)."""
    problems = describe_errors(exc.errors(), RunConfig)
    first = problems[0]
    rule = problem_text(first)
    if len(problems) > 1:
        others = ", ".join(p.key or "(top level)" for p in problems[1:6])
        rule += f" (also wrong: {others}{' and more' if len(problems) > 6 else ''})"
    return InputError(str(path), rule, key=first.key or "(top level)",
                      hint="fix this key; see configs/demo.yaml for every key and its default")
