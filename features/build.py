"""Feature tables: one row per (unit, origin, horizon) for the forecaster,
one row per unit for the potential model.

Nothing here looks past an origin: every temporal feature of origin ``t``
comes from :mod:`territory.features.temporal`, which uses values up to ``t`` only.
The target column is filled only where the target period is in the panel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.errors import InputError
from territory.features.panel import to_wide
from territory.features.spatial import AdjacencyGraph, spatial_lag
from territory.features.temporal import calendar_features, origin_features, seasonal_values


def min_history(config: FeaturesConfig) -> int:
    """Periods of history the widest feature needs."""
    return max([*config.lags, *config.rolling_windows])


def _neighbour_mean(graph: AdjacencyGraph, unit_ids: pd.Index, values: np.ndarray) -> np.ndarray:
    """Row-standardised spatial lag of every column of ``values`` (units × periods)."""
    order = pd.Index(graph.unit_ids).get_indexer(unit_ids)
    if (order < 0).any():
        missing = list(unit_ids[order < 0][:5])
        raise InputError("units", "sales units missing from the adjacency graph", rows=missing)
    full = np.full((graph.n_units, values.shape[1]), np.nan)
    full[order] = values
    valid = ~np.isnan(full)
    sums = graph.matrix @ np.where(valid, full, 0.0)
    counts = graph.matrix @ valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    return lag[order]


def build_forecast_table(
    panel: pd.DataFrame,
    config: FeaturesConfig,
    horizon: int,
    origins: list[pd.Timestamp] | None = None,
    demographics: pd.DataFrame | None = None,
    graph: AdjacencyGraph | None = None,
    columns: ColumnsConfig | None = None,
) -> pd.DataFrame:
    """Stack origin features over horizons 1..``horizon``.

    Parameters
    ----------
    panel
        Regular panel from :func:`territory.features.panel.make_panel`.
    config
        Feature declaration.
    horizon
        Number of periods ahead to forecast.
    origins
        As-of periods to build rows for; default the last period only.
    demographics
        Optional unit-level numeric columns, indexed or keyed by unit.
    graph
        Optional adjacency for spatial lags of ``config.spatial_lag_features``
        (the level column unless ``spatial_lag_columns`` names others).

    Returns
    -------
    pandas.DataFrame
        Columns: unit, ``origin``, ``horizon``, ``target_period``, ``target``
        (NaN beyond the panel), then the features, all float32.
    """
    cols = columns or ColumnsConfig()
    target = cols.target_col
    wide = to_wide(panel, target, cols)
    periods = pd.DatetimeIndex(wide.columns)
    values = wide.to_numpy(dtype=float)
    need = min_history(config)
    if len(periods) < need:
        raise InputError(
            "sales",
            f"history has {len(periods)} periods but the widest feature needs {need}",
            column=cols.time_col,
            hint="shorten features.lags / features.rolling_windows or supply a longer history",
        )
    feats = origin_features(wide, config, target)
    if graph is not None:
        for name in config.spatial_lag_features(target):
            if name not in feats:
                raise InputError(
                    "config",
                    f"spatial lag of unknown feature '{name}'; known: {sorted(feats)}",
                    column="features.spatial_lag_columns",
                )
            feats[f"{name}_nbr_mean"] = _neighbour_mean(graph, wide.index, feats[name])

    origins = [periods[-1]] if origins is None else list(origins)
    origin_idx = periods.get_indexer(pd.DatetimeIndex(origins))
    if (origin_idx < 0).any():
        bad = [str(o) for o, i in zip(origins, origin_idx, strict=True) if i < 0][:5]
        raise InputError("sales", "origin is not a period of the panel", rows=bad)

    freq = pd.tseries.frequencies.to_offset(config.frequency)
    horizons = np.arange(1, horizon + 1)
    n_units = len(wide)
    unit_ids = wide.index.to_numpy()
    # Column-wise parts, concatenated once: a list of per-origin DataFrames and
    # their concat would hold the whole table twice (GBs at national scale).
    parts: dict[str, list[np.ndarray]] = {}
    seasonal = config.seasonality and config.season > 1  # annual data has no season
    for t in origin_idx:
        first, second = seasonal_values(values, int(t), horizons, config.season)
        target_periods = pd.DatetimeIndex([periods[t] + h * freq for h in horizons])
        calendar = calendar_features(target_periods, config.frequency)
        for j, h in enumerate(horizons):
            block: dict[str, np.ndarray] = {
                cols.unit_col: unit_ids,
                "origin": np.full(n_units, periods.values[t]),
                "horizon": np.full(n_units, h, dtype=np.int16),
                "target_period": np.full(n_units, target_periods.values[j]),
                "time_index": np.full(n_units, t, dtype=np.float32),
            }
            for name, arr in feats.items():
                block[name] = arr[:, t].astype(np.float32)
            if seasonal:
                block[f"{target}_same_period_1y"] = first[:, j].astype(np.float32)
                block[f"{target}_same_period_2y"] = second[:, j].astype(np.float32)
                for cal in calendar.columns:
                    block[cal] = np.full(n_units, calendar[cal].iloc[j], dtype=np.float32)
            t_target = t + h
            block["target"] = (
                values[:, t_target] if t_target < len(periods) else np.full(n_units, np.nan)
            )
            for name, arr in block.items():
                parts.setdefault(name, []).append(arr)
    data = {name: np.concatenate(parts.pop(name)) for name in list(parts)}
    table = pd.DataFrame(data, copy=False)
    if demographics is not None and not demographics.empty:
        _add_demographics(table, demographics, cols)
    return table


def _add_demographics(table: pd.DataFrame, demographics: pd.DataFrame,
                      cols: ColumnsConfig) -> None:
    """Each row's demographics as known at its origin, added in place (a join would copy
    the table); with a year column, the latest year at or before the origin's."""
    origin_year = pd.DatetimeIndex(table["origin"]).year.to_numpy()
    years = np.unique(origin_year) if cols.year_col in demographics.columns else [None]
    units = table[cols.unit_col].to_numpy()
    columns: dict[str, np.ndarray] = {}
    for year in years:
        rows = np.arange(len(table)) if year is None else np.flatnonzero(origin_year == year)
        known = demographics_as_of(demographics, cols, year).astype(np.float32)
        pos = known.index.get_indexer(units[rows])
        found = pos >= 0
        for name in known.columns:
            column = columns.setdefault(name, np.full(len(table), np.nan, dtype=np.float32))
            column[rows[found]] = known[name].to_numpy()[pos[found]]
    for name, column in columns.items():
        table[name] = column


def demographics_as_of(demographics: pd.DataFrame, columns: ColumnsConfig,
                       year: int | None = None) -> pd.DataFrame:
    """Numeric demographics per unit, as known in ``year``.

    Without a year column the table is already one row per unit. With one,
    each unit gets its latest row at or before ``year`` (its latest row when
    ``year`` is None); a unit with no row by then is left out, so its values
    are missing, never borrowed from the future.
    """
    cols = columns
    frame = demographics
    if cols.year_col in frame.columns:
        if year is not None:
            frame = frame[frame[cols.year_col] <= year]
        frame = (frame.sort_values([cols.unit_col, cols.year_col], kind="stable")
                 .drop_duplicates(cols.unit_col, keep="last"))
    return _unit_indexed(frame, cols)


def _unit_indexed(frame: pd.DataFrame, cols: ColumnsConfig) -> pd.DataFrame:
    if cols.unit_col in frame.columns:
        frame = frame.set_index(cols.unit_col)
    return frame.select_dtypes("number").drop(columns=[cols.year_col], errors="ignore")


def build_market_table(
    demographics: pd.DataFrame,
    graph: AdjacencyGraph | None = None,
    columns: ColumnsConfig | None = None,
    demographic_columns: list[str] | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Market features per unit: demographics and their neighbour means.

    Used by the potential model, which must not see a unit's own sales. With a
    year column, the values known at ``as_of`` (:func:`demographics_as_of`).
    """
    cols = columns or ColumnsConfig()
    demo = demographics_as_of(demographics, cols, None if as_of is None else as_of.year)
    if demographic_columns is not None:
        missing = [c for c in demographic_columns if c not in demo.columns]
        if missing:
            raise InputError(
                "demographics",
                f"configured demographic columns not found; available: {list(demo.columns)}",
                column=missing[0],
            )
        demo = demo[demographic_columns]
    demo = demo.astype(float)
    if graph is None:
        return demo
    return demo.join(spatial_lag(graph, demo))


def training_origins(panel_periods: pd.DatetimeIndex, config: FeaturesConfig) -> list[pd.Timestamp]:
    """Origins with enough history for every feature (growth needs two windows)."""
    need = min_history(config) * (2 if config.trend else 1)
    start = max(need - 1, 0)
    return list(panel_periods[start:])
