"""Input drift: how far a run's inputs moved from the data its model was trained on.

Pure functions over DataFrames. The train flow keeps a :class:`Reference` of
the champion's training data (a seeded sample of its feature rows, the
columns and their types, the units, the share of zeros and gaps); the
nightly run compares its own inputs with it:

- **per feature**, the population stability index and the two-sample
  Kolmogorov-Smirnov statistic (:func:`psi`, :func:`drift_table`);
- **schema**: columns that are new, missing or changed type, and units that
  are new or missing (:func:`schema_changes`);
- **data quality**: the share of exact zeros and of missing periods in the
  last year of sales, and units whose zeros code a gap
  (:func:`data_quality`, with :func:`territory.features.gaps.zero_coded_gaps`).

The statistic
-------------
PSI compares the shares of the current values that fall in each decile bin
of the reference values: ``PSI = Σ_i (c_i − r_i) · ln(c_i / r_i)``, with
shares floored at ``1e-4`` so an empty bin stays finite. Bin edges are the
reference's deciles (ties merged, so a feature with few distinct values gets
fewer bins); values beyond them fall in the end bins. The usual reading,
from credit scoring: below 0.1 stable, 0.1 to 0.25 a moderate shift, above
0.25 a major one. KS is the largest gap between the two empirical
distribution functions (0 to 1, from :func:`scipy.stats.ks_2samp`); with
thousands of rows its p-value is tiny for any shift, so the rules read PSI
and the report shows both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from territory.features.config import ColumnsConfig
from territory.features.gaps import zero_coded_gaps

PSI_BINS = 10
PSI_FLOOR = 1e-4
DRIFT_COLUMNS = ["table", "feature", "psi", "ks", "reference_mean", "current_mean",
                 "mean_change", "reference_missing", "current_missing"]
SCHEMA_COLUMNS = ["table", "what", "name", "change"]


@dataclass(frozen=True)
class Reference:
    """What a model's training data looked like, in a few thousand rows.

    ``tables`` maps a table name (``forecast``, ``market``) to a sample of its
    numeric feature columns; ``columns`` holds every column of each table with
    its dtype; ``units`` the units the model was trained on; ``quality`` the
    :func:`data_quality` of its sales history.
    """

    as_of: str
    tables: dict[str, pd.DataFrame]
    columns: dict[str, dict[str, str]]
    units: list[str]
    quality: dict[str, float] = field(default_factory=dict)


def numeric_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The numeric columns of ``frame`` (booleans as 0/1)."""
    keep = [c for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    return frame[keep].astype(float)


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``, drawn without replacement with ``seed``."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[pick].reset_index(drop=True)


def build_reference(tables: dict[str, pd.DataFrame], units, quality: dict[str, float],
                    as_of: pd.Timestamp, max_rows: int, seed: int,
                    schema_tables: dict[str, pd.DataFrame] | None = None) -> Reference:
    """A :class:`Reference`: ``tables`` sampled to ``max_rows`` rows each with ``seed``, and
    the columns (name and dtype) of ``tables`` and of ``schema_tables`` (checked, not sampled)."""
    samples = {name: sample_rows(numeric_features(frame), max_rows, seed)
               for name, frame in tables.items()}
    every = {**(schema_tables or {}), **tables}
    columns = {name: {str(c): str(frame[c].dtype) for c in frame.columns}
               for name, frame in every.items() if frame is not None}
    return Reference(f"{pd.Timestamp(as_of):%Y-%m-%d}", samples, columns,
                     sorted(np.asarray(units).astype(str).tolist()), dict(quality))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (see the module).

    NaN values are left out of both; NaN when either side has no value.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) or not len(cur):
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    n_bins = len(edges) + 1
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n_bins) / len(ref)
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=n_bins) / len(cur)
    ref_share, cur_share = np.maximum(ref_share, PSI_FLOOR), np.maximum(cur_share, PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (NaN left out; NaN when a side is empty)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) or not len(cur):
        return float("nan")
    return float(stats.ks_2samp(ref, cur).statistic)


def drift_table(reference: Reference, current: dict[str, pd.DataFrame], max_rows: int,
                seed: int, bins: int = PSI_BINS) -> pd.DataFrame:
    """Per table and feature present on both sides: PSI, KS, means and missing shares.

    ``current`` maps the same table names as the reference to this run's rows;
    they are sampled to ``max_rows`` with ``seed``. Sorted by PSI, largest first.
    """
    rows = []
    for name, ref in reference.tables.items():
        if name not in current:
            continue
        cur = sample_rows(numeric_features(current[name]), max_rows, seed)
        for column in (c for c in ref.columns if c in cur.columns):
            r, c = ref[column].to_numpy(), cur[column].to_numpy()
            ref_mean, cur_mean = np.nanmean(r) if np.isfinite(r).any() else np.nan, \
                np.nanmean(c) if np.isfinite(c).any() else np.nan
            change = (cur_mean - ref_mean) / abs(ref_mean) if ref_mean else np.nan
            rows.append({"table": name, "feature": column, "psi": psi(r, c, bins),
                         "ks": ks_statistic(r, c), "reference_mean": ref_mean,
                         "current_mean": cur_mean, "mean_change": change,
                         "reference_missing": float(np.isnan(r).mean()) if len(r) else np.nan,
                         "current_missing": float(np.isnan(c).mean()) if len(c) else np.nan})
    table = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return table.sort_values("psi", ascending=False, na_position="last", kind="stable") \
        .reset_index(drop=True)


def schema_changes(reference: Reference, current: dict[str, pd.DataFrame], units,
                   max_listed: int = 5) -> pd.DataFrame:
    """Columns new, missing or of another type than in training; units new or missing.

    One row per change: ``table``, ``what`` (``column`` or ``units``), ``name``
    and ``change`` in words (unit lists show the first ``max_listed`` ids).
    """
    rows = []
    for name, before in reference.columns.items():
        if name not in current:
            continue
        if current[name] is None:
            continue
        now = {str(c): str(current[name][c].dtype) for c in current[name].columns}
        rows += [{"table": name, "what": "column", "name": c, "change": "new"}
                 for c in now if c not in before]
        rows += [{"table": name, "what": "column", "name": c, "change": "missing"}
                 for c in before if c not in now]
        rows += [{"table": name, "what": "column", "name": c,
                  "change": f"type {before[c]} -> {now[c]}"}
                 for c in before if c in now and _kind(before[c]) != _kind(now[c])]
    trained, scored = set(reference.units), set(np.asarray(units).astype(str))
    for change, ids in (("new", sorted(scored - trained)), ("missing", sorted(trained - scored))):
        if ids:
            listed = ", ".join(ids[:max_listed]) + (" ..." if len(ids) > max_listed else "")
            rows.append({"table": "units", "what": "units", "name": listed,
                         "change": f"{len(ids)} {change} since training"})
    return pd.DataFrame(rows, columns=SCHEMA_COLUMNS)


def _kind(dtype: str) -> str:
    """int, float and bool all count as numbers: a column read as float is not a change."""
    return "number" if dtype.startswith(("int", "float", "bool", "Int", "Float", "uint")) \
        else dtype


def data_quality(sales: pd.DataFrame, unit_ids, columns: ColumnsConfig, season: int,
                 as_of: pd.Timestamp, frequency: str,
                 zero_coded: pd.DataFrame | None = None) -> dict[str, float]:
    """The last year of sales up to ``as_of``: shares of zeros and of missing periods.

    Returns ``zero_share`` (exact zeros among the reported values),
    ``missing_share`` (unit-periods of the year without a value) and
    ``zero_coded_units`` (units whose history up to ``as_of`` ends in a year
    or more of zeros after years of sales: a reporting change, not a market).
    """
    cols = columns
    step = pd.tseries.frequencies.to_offset(frequency)
    history = sales[sales[cols.time_col] <= as_of]
    start = pd.Timestamp(as_of) - (max(int(season), 1) - 1) * step
    recent = history[history[cols.time_col] >= start]
    values = recent[cols.target_col].dropna().to_numpy(dtype=float)
    n_cells = len(np.asarray(unit_ids)) * max(int(season), 1)
    gaps = zero_coded_gaps(history, cols, season) if zero_coded is None else zero_coded
    ends_in_zeros = gaps[gaps["last_zero"] >= start] if len(gaps) else gaps
    return {
        "zero_share": float((values == 0).mean()) if len(values) else float("nan"),
        "missing_share": float(1 - len(values) / n_cells) if n_cells else float("nan"),
        "zero_coded_units": float(len(ends_in_zeros)),
    }
