"""Coherent forecasts in the runs that choose no reconciliation of their own (issue #14, item 4).

A training run chooses the method on its backtest windows
(:func:`territory.models.reconcile.reconcile_published`). Two kinds of run reuse that choice:

* **Scoring runs** (nightly, backfill, scenario) load the champion and have no backtest.
  They apply the method the champion's training run chose (:class:`ChampionChoice`, read by
  the MLflow adapter) on this run's alignment. Each aggregate's base forecast is refitted
  on this run's sales, as the training run fits it. The aggregates' intervals come from
  the training run's backtest forecasts of the units, which it keeps for this purpose: the
  windows are rebuilt on this run's hierarchy and history (every target period of those
  windows is history by now), and the aggregates are refitted at each origin, so the
  calibration is the one the training run would have had on this alignment
  (:func:`reconcile_with`). A champion whose run recorded no method gets BottomUp
  (``fallback="untagged"``). So does a method that needs the backtest errors when the run
  kept no backtest forecasts (``"no_errors"``).
* **Runs with sales forces** reconcile each force's own hierarchy (unit -> that force's
  territory -> region -> total) on that force's sales. Their backtest forecasts of the
  units are the total's, scaled by each unit's share of the force's sales in the year
  before each origin (:func:`force_backtest`): that is how a force's published forecast
  is made from the total's at the as-of date, and it uses nothing after the origin.

Pure logic: frames and arrays in, frames out; no file access, Prefect or MLflow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.models import reconcile as rc
from territory.models.forces import force_share

#: The columns of the backtest forecasts a training run keeps (besides the unit column).
BACKTEST_COLUMNS = ("origin", "horizon", "forecast")


@dataclass(frozen=True)
class ChampionChoice:
    """What the champion's training run recorded of its reconciliation.

    ``methods``: the method it published, by force (key None: a run without forces);
    empty when it recorded none (a model trained before runs were reconciled).
    ``backtest``: its backtest forecasts of the units (unit column, ``origin``,
    ``horizon``, ``forecast``: the published forecast), None when it kept none.
    """

    run_id: str
    methods: dict[str | None, str] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None

    def method_for(self, force: str | None = None) -> str | None:
        """The method chosen for ``force`` (None: the run's single hierarchy), or None."""
        return self.methods.get(force)


def backtest_forecasts(predictions: pd.DataFrame, column: str, unit_col: str = "unit_id"
                       ) -> pd.DataFrame:
    """What a training run keeps of its backtest for the scoring runs: per unit, origin and
    horizon, the published forecast's ``column`` (as ``forecast``)."""
    out = predictions[[unit_col, "origin", "horizon", column]].rename(columns={column: "forecast"})
    return out.assign(**{unit_col: out[unit_col].astype(str)}).reset_index(drop=True)


def reconcile_with(
    hierarchy: rc.Hierarchy,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    backtest: pd.DataFrame | None,
    method: str | None,
    *,
    season: int,
    frequency: str,
    member: str = "auto_theta",
    interval_level: float = 0.8,
    unit_col: str = "unit_id",
    max_history: int | None = None,
    chosen_in: str | None = None,
) -> tuple[pd.DataFrame, rc.Reconciliation]:
    """The published ``scores`` reconciled with a method chosen elsewhere (``method``; None:
    that run chose none, so BottomUp with ``fallback="untagged"``).

    ``history`` is wide sales up to the as-of date (units × periods, every backtest target
    period included); ``backtest`` the training run's backtest forecasts of the units
    (:func:`backtest_forecasts`), from which the aggregates' intervals are calibrated as
    the training run calibrates them (:func:`territory.models.reconcile.all_errors`);
    without it the aggregates get no interval. ``chosen_in`` names the run that chose.
    """
    started = time.process_time()
    horizon = int(scores["horizon"].max())
    windows = []
    if backtest is not None:  # a champion newer than this run's data: only origins it has
        backtest = backtest[pd.to_datetime(backtest["origin"]).isin(history.columns)]
    if backtest is not None and len(backtest):
        windows = rc.backtest_windows(hierarchy, backtest, history, "forecast", horizon, season,
                                      frequency, member, unit_col, max_history)
    fallback = None
    if method is None:
        method, fallback = "bottom_up", "untagged"
    elif method in rc.NEEDS_ERRORS and rc.all_errors(hierarchy, windows) is None:
        method, fallback = "bottom_up", "no_errors"
    if method == "bottom_up" and not windows:  # BottomUp needs no aggregate forecast
        aggregates = np.full((hierarchy.n_aggregates, horizon), np.nan)
    else:
        values = history.reindex(index=hierarchy.units).to_numpy(dtype=float)
        aggregates = rc.aggregate_forecasts(hierarchy, values, pd.Timestamp(history.columns[-1]),
                                            horizon, season, frequency, member, max_history)
    out, nodes = rc.reconcile_scores(hierarchy, scores, aggregates, method,
                                     rc.all_errors(hierarchy, windows), interval_level, unit_col)
    record = rc.Reconciliation(method, None, nodes, time.process_time() - started,
                               chosen_in=chosen_in, fallback=fallback)
    return out, record


def force_history(force_sales: pd.DataFrame, total: pd.DataFrame) -> pd.DataFrame:
    """A force's wide sales on the total's units and periods: a period in which a unit sold
    but nothing of the force's segments is 0 for the force, not unknown."""
    own = force_sales.reindex(index=total.index, columns=total.columns)
    return own.where(own.notna() | total.isna(), 0.0)


def force_backtest(backtest: pd.DataFrame, own: pd.DataFrame, total: pd.DataFrame, season: int,
                   unit_col: str = "unit_id") -> pd.DataFrame:
    """The total's backtest forecasts of the units scaled to a force: each row's forecast
    times the unit's share of the force's sales over the ``season`` periods up to its origin
    (:func:`territory.models.forces.force_share`; nothing after the origin is used).

    ``own`` and ``total`` are the force's and all sales, wide, on the same units and periods.
    """
    periods = pd.DatetimeIndex(total.columns)
    parts = []
    backtest = backtest[pd.to_datetime(backtest["origin"]).isin(periods)]
    for origin, rows in backtest.groupby("origin", sort=True):
        t = periods.get_loc(pd.Timestamp(origin))
        window = slice(max(t + 1 - season, 0), t + 1)
        share = force_share(own.iloc[:, window].sum(axis=1, min_count=1).fillna(0.0),
                            total.iloc[:, window].sum(axis=1, min_count=1).fillna(0.0))
        factor = rows[unit_col].astype(str).map(share.set_axis(share.index.astype(str)))
        parts.append(rows.assign(forecast=rows["forecast"] * factor.fillna(0.0).to_numpy()))
    return pd.concat(parts, ignore_index=True) if parts else backtest.iloc[:0]
