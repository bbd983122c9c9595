"""Checks across tables and against the run's settings, made before any model is trained.

Pure functions on validated tables: dates after the as-of date or today, an
as-of date outside the history, more territories than units, ids that one
table knows and another does not, a current alignment that is not
contiguous or leaves units without a territory, territories without a rep
and reps without a territory, and the memory a run will need. Errors raise
:class:`~features.errors.InputError`; warnings come back as
:class:`InputWarning` records, turned into words by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from territory.features._contract import MAX_IDS_LISTED, listed_ids
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.errors import MAX_ROWS_SHOWN, InputError
from territory.features.spatial import AdjacencyGraph

#: Peak memory of a run per byte of its feature panel (units x periods x features x 8).
#: Measured on the demo with resource.getrusage (ru_maxrss) around the features and
#: training stages: 3,085 units x 60 months x 36 features = 53.3 MB of panel; the
#: process held 339 MiB once the inputs were loaded and peaked at 1,344 MiB, so
#: (1344 - 339) MiB / 53.3 MB = 19.8, rounded up to 20.
MEMORY_FACTOR = 20.0
#: Bytes a run holds before its panel: Python, pandas, LightGBM and the loaded demo
#: inputs (339 MiB measured, as above).
MEMORY_BASE = 350 * 2**20


@dataclass(frozen=True)
class InputWarning:
    """A finding that does not stop a run but that the user should see.

    Attributes
    ----------
    source
        The file the finding is about.
    rule
        What was found, in words.
    column
        The column concerned.
    rows
        Examples (ids or rows); the first five are shown.
    n_rows
        How many there are in all.
    hint
        What the user may do.
    """

    source: str
    rule: str
    column: str | None = None
    rows: Sequence[str] = field(default_factory=tuple)
    n_rows: int = 0
    hint: str | None = None

    def __str__(self) -> str:
        head = f"{self.source}" + (f", column '{self.column}'" if self.column else "")
        text = f"{head}: {self.rule}"
        if self.rows:
            more = self.n_rows - min(len(self.rows), MAX_ROWS_SHOWN)
            shown = ", ".join(self.rows[:MAX_ROWS_SHOWN]) + (f" (and {more} more)" if more > 0
                                                            else "")
            text += f"\n  e.g. {shown}"
        return text + (f"\n  what to do: {self.hint}" if self.hint else "")


def _period_rows(sales: pd.DataFrame, mask: np.ndarray, columns: ColumnsConfig) -> list[str]:
    unit, time = columns.unit_col, columns.time_col
    picked = sales.loc[mask, [unit, time]].sort_values([time, unit], ascending=[False, True])
    return [f"({unit}={u}, {time}={t:%Y-%m-%d})"
            for u, t in picked.head(MAX_ROWS_SHOWN).itertuples(index=False)]


def check_no_future_periods(
    sales: pd.DataFrame,
    source: str,
    limit: pd.Timestamp,
    limit_name: str,
    columns: ColumnsConfig | None = None,
) -> None:
    """Refuse sales dated after ``limit`` (the as-of date, or today).

    Parameters
    ----------
    sales
        Validated sales (one row per unit and period).
    source
        The sales file, for the message.
    limit
        The last date a period may start on.
    limit_name
        What ``limit`` is, in words (``"as_of 2024-06-01"``, ``"today (2026-12-06)"``).
    columns
        Contract column names.
    """
    cols = columns or ColumnsConfig()
    late = (sales[cols.time_col] > limit).to_numpy()
    if late.any():
        raise InputError(
            source,
            f"{cols.time_col} must not be after {limit_name}" + (
                "" if limit_name.startswith("as_of") else
                ": a period in the future would silently become the as-of date"),
            column=cols.time_col,
            rows=_period_rows(sales, late, cols),
            n_rows=int(late.sum()),
            hint="fix or drop those rows (a typo such as 2099 for 2019?), or set as_of to the "
                 "last period you mean to plan from",
        )


def check_as_of_in_range(
    as_of: pd.Timestamp, sales: pd.DataFrame, source: str, columns: ColumnsConfig | None = None
) -> None:
    """Refuse an as-of date before the first or after the last period of the sales history."""
    cols = columns or ColumnsConfig()
    first, last = sales[cols.time_col].min(), sales[cols.time_col].max()
    if first <= as_of <= last:
        return
    where = "after the last" if as_of > last else "before the first"
    raise InputError(
        source,
        f"as_of {as_of:%Y-%m-%d} is {where} period of the sales history, which runs from "
        f"{first:%Y-%m-%d} to {last:%Y-%m-%d}",
        column=cols.time_col,
        key="as_of",
        hint=f"set as_of between {first:%Y-%m-%d} and {last:%Y-%m-%d}, or null for the last "
             "period",
    )


def check_territory_count(n_territories: int | str, n_units: int, source: str) -> None:
    """Refuse more territories than units (each territory needs at least one unit)."""
    if isinstance(n_territories, int) and n_territories > n_units:
        raise InputError(
            source,
            f"territories.n_territories is {n_territories}, but the units file has only "
            f"{n_units} units; each territory needs at least one",
            key="territories.n_territories",
            hint=f"set territories.n_territories to at most {n_units} (or to auto with "
                 "territories.rep_capacity)",
        )


def check_known_ids(
    ids: Iterable[object], known: Iterable[str], source: str, column: str, what: str = "units"
) -> None:
    """Refuse ids of one table that the ``what`` table does not have, listing them."""
    known = frozenset(str(k) for k in known)
    unknown = sorted({str(i) for i in ids if pd.notna(i)} - known)
    if unknown:
        raise InputError(
            source,
            f"{column} must be a known unit; " + listed_ids(unknown, f"not in the {what} file"),
            column=column,
            rows=unknown[:MAX_IDS_LISTED],
            n_rows=len(unknown),
            hint=f"every {column} must appear in the {what} file; fix the ids or drop those rows",
        )


def _territory_pieces(graph: AdjacencyGraph, members: np.ndarray) -> list[np.ndarray]:
    """Connected pieces of the units at ``members`` (positions in the graph), largest first."""
    sub = graph.matrix[members][:, members]
    n, labels = connected_components(sp.csr_matrix(sub), directed=False)
    pieces = [members[labels == k] for k in range(n)]
    return sorted(pieces, key=len, reverse=True)


def alignment_warnings(
    unit_ids: Sequence[str],
    alignment: pd.DataFrame,
    source: str,
    graph: AdjacencyGraph | None = None,
    columns: ColumnsConfig | None = None,
) -> list[InputWarning]:
    """Warnings about the current alignment: territories in pieces, units with no territory.

    Parameters
    ----------
    unit_ids
        Every unit of the units file.
    alignment
        Validated alignment (unit and territory ids as text).
    source
        The alignment file.
    graph
        The project's adjacency (:func:`features.spatial.build_adjacency`);
        ``None`` skips the contiguity check.
    columns
        Contract column names.
    """
    cols = columns or ColumnsConfig()
    unit, territory = cols.unit_col, cols.territory_col
    found: list[InputWarning] = []
    assigned = set(alignment[unit].astype(str))
    missing = sorted(set(map(str, unit_ids)) - assigned)
    if missing:
        found.append(InputWarning(
            source, f"{len(missing)} units have no territory in the alignment", unit,
            missing[:MAX_IDS_LISTED], len(missing),
            "add them to the alignment; a rebalance design assigns them anew"))
    if graph is None:
        return found
    position = pd.Series(np.arange(graph.n_units), index=graph.unit_ids)
    split = []
    for name, group in alignment.groupby(territory, sort=True):
        members = position.reindex(group[unit].astype(str)).dropna().to_numpy(dtype=int)
        pieces = _territory_pieces(graph, members) if len(members) > 1 else []
        if len(pieces) > 1:
            stray = ", ".join(graph.unit_ids[pieces[-1]][:3])
            split.append(f"{name} ({len(pieces)} pieces; a detached one holds {stray})")
    if split:
        found.append(InputWarning(
            source, f"{len(split)} current territories are not contiguous (more than one piece "
            "on the adjacency graph)", territory, split, len(split),
            "check the alignment; a design keeps every territory in one piece, so these will "
            "change"))
    return found


def rep_warnings(
    alignment: pd.DataFrame | None,
    reps: pd.DataFrame,
    source: str,
    columns: ColumnsConfig | None = None,
) -> list[InputWarning]:
    """Reps without a territory, and territories of the alignment that no rep covers.

    Parameters
    ----------
    alignment
        Validated current alignment; ``None`` skips the territories' check.
    reps
        Validated reps (a blank territory is missing).
    source
        The reps file.
    columns
        Contract column names.
    """
    cols = columns or ColumnsConfig()
    territory, rep = cols.territory_col, cols.rep_col
    found: list[InputWarning] = []
    free = reps[reps[territory].isna()]
    if len(free):
        ids = sorted(free[rep].astype(str).unique())
        found.append(InputWarning(
            source, f"{len(ids)} reps have no territory ({territory} is blank): they cover no "
            "current territory and the design does not place them", territory,
            ids[:MAX_IDS_LISTED], len(ids),
            "give each rep the territory they cover, or leave the blank for a rep still to be "
            "placed (the report lists them with no units)"))
    if alignment is None:
        return found
    covered = set(reps[territory].dropna().astype(str))
    uncovered = sorted(set(alignment[territory].astype(str)) - covered)
    if uncovered:
        found.append(InputWarning(
            source, f"{len(uncovered)} territories of the alignment have no rep", territory,
            uncovered[:MAX_IDS_LISTED], len(uncovered),
            "add a rep row for each (a vacancy can be a rep_id such as 'open')"))
    return found


def feature_count(config: FeaturesConfig, n_demographics: int) -> int:
    """Columns of the feature panel the config asks for (an upper estimate)."""
    rolling = len(config.rolling_windows) * len(config.rolling_stats)
    seasonal = 3 if config.seasonality else 0  # sine, cosine, same period last year
    trend = 2 if config.trend else 0
    return (len(config.lags) + rolling + seasonal + trend + n_demographics
            + len(config.spatial_lag_features("target")) + 4)  # ids, target, workload, horizon


def estimate_peak_memory(n_units: int, n_periods: int, n_features: int) -> int:
    """Bytes a run is expected to peak at: a base plus :data:`MEMORY_FACTOR` x the panel."""
    panel = n_units * n_periods * n_features * 8
    return int(MEMORY_BASE + MEMORY_FACTOR * panel)


def check_memory(needed: int, available: int | None, source: str) -> None:
    """Refuse a run whose estimated peak exceeds the available memory."""
    if available is None or needed <= available:
        return
    raise InputError(
        source,
        f"the run needs about {needed / 2**30:.1f} GiB (estimated from units x periods x "
        f"features), but only {available / 2**30:.1f} GiB of memory is available",
        key="features",
        hint="use fewer periods (drop the oldest years), fewer lags, rolling windows or "
             "demographic columns, run on a larger machine, or set runner: dask",
    )
