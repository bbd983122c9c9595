"""The checks across tables and settings that ``territory validate`` and every run make.

:func:`check_run_inputs` runs after the inputs are loaded, before any
feature is built: a period in the future, an as-of date outside the history,
more territories than units, or a run that cannot fit in memory stops there.
:func:`validate_inputs` adds what only ``validate`` reports: periods after a
configured as-of date, ids of the truth file, warnings about the current
alignment and reps, and the memory estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from territory.features import input_checks as checks
from territory.features.errors import InputError
from territory.features.input_checks import InputWarning
from territory.pipelines.config import RunConfig


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak memory and what the machine has (bytes; None: unknown)."""

    needed: int
    available: int | None
    n_units: int
    n_periods: int
    n_features: int


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate`` found: sizes, warnings and the memory estimate."""

    n_units: int
    n_sales_rows: int
    as_of: pd.Timestamp
    memory: MemoryEstimate
    warnings: list[InputWarning] = field(default_factory=list)


def available_memory() -> int | None:
    """Bytes of memory available now: psutil when installed, else /proc/meminfo, else None."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimate_memory(config: RunConfig, inputs) -> MemoryEstimate:
    """Peak memory of the run from the panel size (units x periods x features)."""
    time = config.data.columns.time_col
    periods = inputs.sales[time]
    n_periods = len(pd.date_range(periods.min(), periods.max(), freq=config.features.frequency))
    n_periods = max(n_periods, int(periods.nunique()))
    if config.features.demographic_columns is not None:
        n_demographics = len(config.features.demographic_columns)
    elif inputs.demographics is not None:
        cols = config.data.columns
        n_demographics = len([c for c in inputs.demographics.columns
                              if c not in (cols.unit_col, cols.year_col)])
    else:
        n_demographics = 0
    n_features = checks.feature_count(config.features, n_demographics)
    n_units = len(inputs.units)
    needed = checks.estimate_peak_memory(n_units, n_periods, n_features)
    return MemoryEstimate(needed, available_memory(), n_units, n_periods, n_features)


def check_run_inputs(config: RunConfig, inputs, today: pd.Timestamp | None = None) -> None:
    """Errors that stop a run before its first feature: dates, as-of, K and memory.

    Parameters
    ----------
    config
        The run config.
    inputs
        The loaded inputs (:class:`territory.pipelines.stages.Inputs`).
    today
        The date after which no period may start; defaults to today.
    """
    cols, data = config.data.columns, config.data
    today = (today or pd.Timestamp.today()).normalize()
    checks.check_no_future_periods(inputs.sales, str(data.sales), today,
                                   f"today ({today:%Y-%m-%d})", cols)
    if config.as_of is not None:
        checks.check_as_of_in_range(pd.Timestamp(config.as_of), inputs.sales, str(data.sales),
                                    cols)
    checks.check_territory_count(config.territories.n_territories, len(inputs.units),
                                 str(data.units))
    from territory.pipelines.stages import unit_names

    unit_names(config, inputs.units)  # name_columns that the units file lacks stop here
    if config.runner == "local":  # a Dask cluster's memory is the cluster's
        memory = estimate_memory(config, inputs)
        checks.check_memory(memory.needed, memory.available, str(data.sales))


def _warnings(config: RunConfig, inputs) -> list[InputWarning]:
    """Warnings about the current alignment and the reps (none without an alignment)."""
    if inputs.alignment is None:
        return []
    from territory.features.spatial import build_adjacency

    cols, data = config.data.columns, config.data
    unit_ids = inputs.units[cols.unit_col].astype(str).to_numpy()
    graph = build_adjacency(inputs.units, cols.unit_col, config.features.contiguity,
                            data.projected_crs)
    found = checks.alignment_warnings(unit_ids, inputs.alignment, str(data.alignment), graph,
                                      cols)
    if inputs.reps is not None:
        found += checks.rep_warnings(inputs.alignment, inputs.reps, str(data.reps), cols)
    return found


def _check_truth_ids(config: RunConfig, inputs) -> None:
    """Every unit of the truth file (evaluation only) must be a unit of the units file."""
    from territory.features.io import read_table

    own, source = config.data.columns_for("truth").unit_col, str(config.data.truth)
    truth = read_table(config.data.truth, [own])
    if own not in truth.columns:
        raise InputError(source, f"the truth table needs column '{own}'", column=own,
                         hint="add the column, or name it in data.table_columns.truth.unit_col")
    checks.check_known_ids(truth[own], inputs.units[config.data.columns.unit_col], source, own)


def validate_inputs(
    config: RunConfig, inputs, today: pd.Timestamp | None = None
) -> ValidationReport:
    """Every check of ``territory validate`` on loaded inputs; raises on the first error.

    Returns
    -------
    ValidationReport
        Sizes, the as-of date, warnings (records) and the memory estimate.
    """
    check_run_inputs(config, inputs, today)
    cols, data = config.data.columns, config.data
    if config.as_of is not None:
        as_of = pd.Timestamp(config.as_of)
        checks.check_no_future_periods(inputs.sales, str(data.sales), as_of,
                                       f"as_of ({as_of:%Y-%m-%d})", cols)
    if data.truth is not None:
        _check_truth_ids(config, inputs)
    as_of = pd.Timestamp(config.as_of) if config.as_of else inputs.sales[cols.time_col].max()
    return ValidationReport(len(inputs.units), len(inputs.sales), as_of,
                            estimate_memory(config, inputs), _warnings(config, inputs))
