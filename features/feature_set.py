"""The feature set of a run: adjacency, forecast tables, market table, sales and workload.

Pure functions over DataFrames, no file access: the pipeline's features stage
loads the inputs and calls :func:`build_feature_set`;
:mod:`territory.features.partitioned` builds the same tables one partition of
units at a time and shares :func:`annual_and_workload` with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from territory.features.build import build_forecast_table, build_market_table, training_origins
from territory.features.config import ColumnsConfig, FeaturesConfig
from territory.features.frequency import FREQUENCIES
from territory.features.panel import make_panel
from territory.features.spatial import AdjacencyGraph, build_adjacency, projected_xy

#: Periods in a year per frequency code.
PERIODS_PER_YEAR = {code: spec.season for code, spec in FREQUENCIES.items()}


@dataclass
class FeatureSet:
    graph: AdjacencyGraph
    xy: np.ndarray
    as_of: pd.Timestamp
    train_table: pd.DataFrame
    score_table: pd.DataFrame
    market_table: pd.DataFrame
    annual_sales: pd.Series
    workload: pd.Series
    # current territory per unit (the alignment file; NaN: unassigned), None without one:
    # the potential model's rep effect
    territory: pd.Series | None = None
    # log ratio of the last year's two interleaved halves per unit (annual_split_log_ratio):
    # the potential model's measure of how noisy a unit's annual sales are; None: unknown
    annual_split: pd.Series | None = None
    # unit, period, target up to the as-of date: the statistical members' history (None in
    # feature sets cached before it existed: the history is then recovered from train_table)
    sales_panel: pd.DataFrame | None = None
    # the training rows kept in files instead (the Dask runner's cached feature builds: one
    # file per partition of units, ``territory.models.distributed.SpilledTable``, read by
    # the workers); ``train_table`` then has the columns and no rows. None: in train_table
    train_files: list | None = None


def resolve_as_of(as_of: str | None, sales: pd.DataFrame, time_col: str) -> pd.Timestamp:
    """The configured as-of date, or the last period of the sales history."""
    if as_of:
        return pd.Timestamp(as_of)
    return pd.Timestamp(sales[time_col].max())


def annual_and_workload(
    panel: pd.DataFrame,
    periods: pd.DatetimeIndex,
    config: FeaturesConfig,
    periods_per_year: int,
    workload_column: str | None,
    columns: ColumnsConfig | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Annualised recent sales and mean workload per unit, as the features stage defines them.

    Annual sales are the last year's total, scaled up from the periods
    observed, and NaN with fewer than half a year observed (annual data: the
    last year's value); workload is the
    mean of ``workload_column`` over the last year (1 per unit without one).
    """
    cols = columns or ColumnsConfig()
    step = pd.tseries.frequencies.to_offset(config.frequency)
    recent = panel[panel[cols.time_col] > periods[-1] - periods_per_year * step]
    by_unit = recent.groupby(cols.unit_col)
    observed = by_unit[cols.target_col].count()
    annual = (
        by_unit[cols.target_col].sum(min_count=1) * periods_per_year / observed.clip(lower=1)
    ).where(observed >= periods_per_year // 2)
    if workload_column and workload_column in panel.columns:
        workload = by_unit[workload_column].mean().fillna(0.0)
    else:
        workload = pd.Series(1.0, index=observed.index)
    return annual, workload


def annual_split_log_ratio(
    panel: pd.DataFrame,
    periods: pd.DatetimeIndex,
    periods_per_year: int,
    columns: ColumnsConfig | None = None,
) -> pd.Series:
    """``log1p`` of the last year's sales in its odd periods minus that in its even ones.

    Both halves share the unit's level, rep and trend, so across units of a
    similar size the spread of this ratio measures the sampling noise of a
    year's sales (:func:`territory.models.potential_rep.sampling_variance`).
    NaN for a unit with a missing period in the last year, and for every unit
    with fewer than 2 periods a year (annual data cannot be split).
    """
    cols = columns or ColumnsConfig()
    if periods_per_year < 2 or len(periods) < periods_per_year:
        units = panel[cols.unit_col].unique()
        return pd.Series(np.nan, index=pd.Index(units, name=cols.unit_col))
    last_year = periods[-periods_per_year:]
    recent = panel[panel[cols.time_col].isin(last_year)]
    odd = recent[cols.time_col].map(dict(zip(last_year, np.arange(periods_per_year) % 2,
                                             strict=True))).to_numpy() == 1
    by_unit = recent.groupby([recent[cols.unit_col], odd])[cols.target_col]
    halves = by_unit.sum(min_count=1).unstack()
    complete = recent.groupby(cols.unit_col)[cols.target_col].count() == periods_per_year
    ratio = np.log1p(halves[True]) - np.log1p(halves[False])
    return ratio.where(complete.reindex(ratio.index, fill_value=False))


def market_features(
    units: gpd.GeoDataFrame,
    demographics: pd.DataFrame | None,
    graph: AdjacencyGraph,
    columns: ColumnsConfig,
    demographic_columns: list[str] | None = None,
    projected_crs: str | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Market features per unit for the potential model: demographics (as known at
    ``as_of`` when they have a year column), neighbours, size."""
    unit_ids = units[columns.unit_col].to_numpy()
    crs = projected_crs or units.estimate_utm_crs()
    area_km2 = pd.Series(units.geometry.to_crs(crs).area.to_numpy() / 1e6,
                         index=pd.Index(unit_ids, name=columns.unit_col), name="unit_area_km2")
    if demographics is not None:
        market = build_market_table(demographics, graph, columns, demographic_columns, as_of)
    else:
        market = pd.DataFrame(index=area_km2.index)
    if "area_km2" not in market.columns:
        market = market.join(area_km2)
    return market.reindex(unit_ids)


def build_feature_set(
    units: gpd.GeoDataFrame,
    sales: pd.DataFrame,
    demographics: pd.DataFrame | None,
    as_of: pd.Timestamp,
    config: FeaturesConfig,
    horizon: int,
    columns: ColumnsConfig,
    workload_column: str | None = None,
    projected_crs: str | None = None,
) -> FeatureSet:
    """Panel, adjacency, forecast tables and market table as of ``as_of``."""
    cols = columns
    unit_ids = units[cols.unit_col].to_numpy()
    graph = build_adjacency(units, cols.unit_col, config.contiguity, projected_crs)
    xy = projected_xy(units, projected_crs)
    panel = make_panel(sales, unit_ids, config.frequency, cols, end=as_of)
    periods = pd.DatetimeIndex(sorted(panel[cols.time_col].unique()))
    train = build_forecast_table(panel, config, horizon, training_origins(periods, config),
                                 demographics, graph, cols)
    score = build_forecast_table(panel, config, horizon, [periods[-1]], demographics, graph,
                                 cols)
    annual, workload = annual_and_workload(panel, periods, config,
                                           config.season, workload_column,
                                           cols)
    market = market_features(units, demographics, graph, cols, config.demographic_columns,
                             projected_crs, as_of)
    split = annual_split_log_ratio(panel, periods, config.season, cols)
    return FeatureSet(graph, xy, as_of, train, score, market,
                      annual.reindex(unit_ids), workload.reindex(unit_ids).fillna(0.0),
                      annual_split=split.reindex(unit_ids),
                      sales_panel=panel[[cols.unit_col, cols.time_col, cols.target_col]])


def sales_panel(sales: pd.DataFrame, unit_ids: np.ndarray, frequency: str,
                columns: ColumnsConfig, as_of: pd.Timestamp) -> pd.DataFrame:
    """The regular panel of sales up to ``as_of`` (unit, period, target), as the features use."""
    cols = columns
    panel = make_panel(sales, unit_ids, frequency, cols, end=as_of)
    return panel[[cols.unit_col, cols.time_col, cols.target_col]]
