"""The potential's rep-change share error on the run's own data (``data.previous_alignment``).

With an earlier alignment and the date it changed, the units whose territory
differs are a natural experiment (:mod:`territory.models.potential_rep_change`):
one extra potential is fitted on the year before ``changed_at`` with the
earlier alignment as the territories, and each moved unit's sales over the
year from ``changed_at`` are predicted at its receiving territory's rep effect.
Everything the fit sees is as known one period before ``changed_at``: the
sales target, the territories and the market table (demographics with a year
column as of that period, :func:`territory.features.feature_set.market_features`),
so nothing after the change leaks into it. Without ``data.previous_alignment``
nothing runs.
"""

from __future__ import annotations

import pandas as pd

from territory.features.errors import InputError
from territory.features.feature_set import (
    annual_and_workload,
    annual_split_log_ratio,
    market_features,
)
from territory.features.panel import make_panel
from territory.models.alignment import current_territories
from territory.models.potential_rep import potential_factory, potential_method
from territory.models.potential_rep_change import rep_change_share_error


def rep_change_stage(config, inputs, features) -> tuple[dict[str, float], pd.DataFrame] | None:
    """Rep-change metrics and the table per receiving territory, or None without
    ``data.previous_alignment`` (see the module doc)."""
    previous = config.data.previous_alignment
    if previous is None or inputs.previous_alignment is None:
        return None
    cols, fc = config.data.columns, config.features
    unit_ids = features.market_table.index.to_numpy()
    changed = pd.Timestamp(previous.changed_at)
    step = pd.tseries.frequencies.to_offset(fc.frequency)
    dates = pd.to_datetime(inputs.sales[cols.time_col])
    after_window = (dates >= changed) & (dates < changed + fc.season * step)
    if dates[dates < changed].nunique() < fc.season or dates[after_window].nunique() < fc.season:
        raise InputError(str(previous.path), f"changed_at {previous.changed_at} needs a full "
                         f"year ({fc.season} periods) of sales before it and after it; the "
                         f"sales run {dates.min():%Y-%m}..{dates.max():%Y-%m}",
                         column="data.previous_alignment.changed_at",
                         hint="give the month the current alignment started, or leave "
                              "previous_alignment out")
    market = market_features(inputs.units, inputs.demographics, features.graph, cols,
                             fc.demographic_columns, config.data.projected_crs,
                             as_of=changed - step).reindex(features.market_table.index)
    panel = make_panel(inputs.sales, unit_ids, fc.frequency, cols, end=changed - step)
    periods = pd.DatetimeIndex(sorted(panel[cols.time_col].unique()))
    annual, _ = annual_and_workload(panel, periods, fc, fc.season, None, cols)
    split = annual_split_log_ratio(panel, periods, fc.season, cols)
    before = current_territories(inputs.previous_alignment, unit_ids, cols)
    after = current_territories(inputs.alignment, unit_ids, cols)
    sales_after = (inputs.sales[after_window.to_numpy()].groupby(cols.unit_col)[cols.target_col]
                   .sum().reindex(market.index))
    method = potential_method(config.potential, before)
    model = potential_factory(config.potential, method)()
    target = annual.reindex(market.index).to_numpy()
    if method == "rep_adjusted":
        model.fit(market, target, groups=before.reindex(market.index).to_numpy(),
                  split=split.reindex(market.index).to_numpy())
    else:
        model.fit(market, target)
    return rep_change_share_error(model, market, sales_after, before.reindex(market.index),
                                  after.reindex(market.index))


def add_rep_change_metrics(config, inputs, features, trained) -> None:
    """Put :func:`rep_change_stage`'s metrics into ``trained.metrics`` and its table into
    ``trained.rep_change_territories`` (in place, once), so that the MLflow run, the
    summary, ``rep_change_territories.csv`` and the report carry them; nothing without
    ``data.previous_alignment``. Models that already carry them (a champion whose
    training run logged them) keep those."""
    if "potential_rep_change_units" in trained.metrics:
        return
    found = rep_change_stage(config, inputs, features)
    if found is not None:
        trained.metrics.update(found[0])
        trained.rep_change_territories = found[1]
