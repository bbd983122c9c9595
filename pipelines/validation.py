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
    tc = config.territories
    if tc.n_territories == "auto" and tc.rep_capacity is None:
        capacity = (inputs.reps.get("capacity") if inputs.reps is not None else None)
        if capacity is None or capacity.isna().all():
            raise InputError(
                str(data.reps), "territories.n_territories is auto, but no capacity is known: "
                "territories.rep_capacity is not set and the reps file has no capacity values",
                column="capacity",
                hint="add a capacity column (workload one rep carries) to the reps file, or set "
                     "territories.rep_capacity, or set n_territories to a number")
    from territory.pipelines.stages import unit_names

    unit_names(config, inputs.units)  # name_columns that the units file lacks stop here
    if config.runner == "local":  # a Dask cluster's memory is the cluster's
        memory = estimate_memory(config, inputs)
        checks.check_memory(memory.needed, memory.available, str(data.sales))


def handle_data_gaps(config: RunConfig, inputs, as_of: pd.Timestamp):
    """Find the units with no sales history or no demographics and apply ``data.gaps``.

    ``stop`` raises, naming them; ``exclude`` returns the inputs without them
    (every table, and rep homes among them cleared); ``estimate`` keeps them.
    The gaps found, zero-coded ones included, ride along on ``inputs.gaps``.
    """
    from dataclasses import replace

    from territory.features.gaps import find_data_gaps

    cols, data = config.data.columns, config.data
    unit_ids = inputs.units[cols.unit_col].astype(str).to_numpy()
    gaps = find_data_gaps(unit_ids, inputs.sales, inputs.demographics, cols,
                          config.features.season, as_of)
    if data.gaps == "stop" and gaps.missing:
        source, ids, what = ((str(data.sales), gaps.no_sales, "no sales history")
                             if gaps.no_sales else
                             (str(data.demographics), gaps.no_demographics, "no demographics"))
        both = (f"; {len(gaps.no_demographics):,} have no demographics"
                if gaps.no_sales and gaps.no_demographics else "")
        raise InputError(
            source,
            f"{len(ids):,} of {len(unit_ids):,} units have {what}{both} "
            f"(first {min(len(ids), checks.MAX_IDS_LISTED)}: "
            f"{', '.join(ids[:checks.MAX_IDS_LISTED])}); a gap is not a zero",
            column=cols.unit_col, rows=ids[:checks.MAX_IDS_LISTED], n_rows=len(ids),
            hint="add their rows, or set data.gaps: exclude (leave them out of the design) or "
                 "estimate (potential from neighbours and market features, flagged)")
    if data.gaps == "exclude" and gaps.missing:
        inputs = _without_units(inputs, set(gaps.missing), cols)
        checks.check_territory_count(config.territories.n_territories, len(inputs.units),
                                     f"{data.units} without the {len(gaps.missing):,} units "
                                     "left out for data gaps")
    return replace(inputs, gaps=gaps)


def _without_units(inputs, left_out: set[str], cols):
    """The inputs without ``left_out`` units: every table, and rep homes among them cleared."""
    from dataclasses import replace

    from territory.features.schemas import HOME_UNIT_COL

    def keep(frame: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame[~frame[column].astype(str).isin(left_out)].reset_index(drop=True)

    reps = inputs.reps
    if reps is not None and HOME_UNIT_COL in reps.columns:
        reps = reps.copy()
        reps[HOME_UNIT_COL] = reps[HOME_UNIT_COL].where(
            ~reps[HOME_UNIT_COL].astype(str).isin(left_out))
    return replace(inputs, units=keep(inputs.units, cols.unit_col),
                   sales=keep(inputs.sales, cols.unit_col),
                   demographics=keep(inputs.demographics, cols.unit_col),
                   alignment=keep(inputs.alignment, cols.unit_col), reps=reps)


def gap_warnings(config: RunConfig, gaps) -> list[InputWarning]:
    """The data gaps in words: what was found and what the run does with it."""
    from territory.features.gaps import GAP_CHOICES

    cols, data = config.data.columns, config.data
    found = []
    for ids, source, what in ((gaps.no_sales, data.sales, "no sales history"),
                              (gaps.no_demographics, data.demographics, "no demographics")):
        if ids:
            found.append(InputWarning(
                str(source), f"{len(ids):,} units have {what}: data.gaps is {data.gaps}, so "
                             f"{GAP_CHOICES[data.gaps]}",
                cols.unit_col, tuple(ids[:checks.MAX_IDS_LISTED]), len(ids),
                "add their rows, or choose another data.gaps"))
    zeros = gaps.zero_coded
    if len(zeros):
        found.append(InputWarning(
            str(data.sales), f"{len(zeros):,} units sold for years and then show exact zeros "
                             "for a year or more: a reporting gap coded as 0?",
            cols.target_col, tuple(f"{r.unit} ({r.first_zero:%Y-%m}..{r.last_zero:%Y-%m})"
                                   for r in zeros.head(checks.MAX_IDS_LISTED).itertuples()),
            len(zeros), "if those zeros mean 'not reported', leave the rows out instead"))
    return found


def _warnings(config: RunConfig, inputs) -> list[InputWarning]:
    """Warnings about the current alignment and the reps."""
    cols, data = config.data.columns, config.data
    found: list[InputWarning] = []
    if inputs.alignment is not None:
        from territory.features.spatial import build_adjacency

        unit_ids = inputs.units[cols.unit_col].astype(str).to_numpy()
        graph = build_adjacency(inputs.units, cols.unit_col, config.features.contiguity,
                                data.projected_crs)
        found += checks.alignment_warnings(unit_ids, inputs.alignment, str(data.alignment),
                                           graph, cols)
    if inputs.reps is not None:
        found += checks.rep_warnings(inputs.alignment, inputs.reps, str(data.reps), cols)
    return found


def input_warnings(config: RunConfig, inputs) -> list[InputWarning]:
    """Every warning of ``territory validate`` on loaded inputs: the data gaps, the
    current alignment and the reps."""
    return gap_warnings(config, inputs.gaps) + _warnings(config, inputs)


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
                            estimate_memory(config, inputs), input_warnings(config, inputs))
