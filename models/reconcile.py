"""Coherent forecasts for unit -> territory -> region -> total (issue #14, item 4).

Managers read territory totals, so the forecasts of a unit, its territory, its region and
the whole plan must add up at every horizon. This module builds the summing matrix S of
the published alignment and reconciles base forecasts with Nixtla's hierarchicalforecast
(``BottomUp``, or ``MinTrace`` ``ols`` / ``wls_struct``, which move every unit of a
territory by the same amount, or ``wls_var`` / ``mint_shrink``, by its error variance).

* Units' base forecasts are the published ones; each aggregate gets its own, a
  statsforecast member (``auto_theta``) fit on its summed sales.
* The method is chosen on the train stage's backtest windows (:func:`choose_method`): the
  lowest WAPE at the level managers read (territories), among the methods that leave the
  unit forecasts no worse than BottomUp's (what the champion gate validated); BottomUp
  unless another beats it by more than a tolerance. ``wls_var`` and ``mint_shrink`` take
  the base forecasts' errors from earlier windows only (targets known at the origin), so
  every method is compared on the windows that have such errors.
* Reconciled units are clipped at zero and every aggregate is their sum: coherent by
  construction. The aggregates' intervals are the library's conformal ones, calibrated on
  the backtest errors (divided by sqrt(horizon), scaled back); units keep theirs, moved
  with their point forecast.

Pure logic: frames and arrays in, frames out; no file access, Prefect or MLflow.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from territory.features.errors import InputError
from territory.models.backtest import mase, seasonal_naive_scale, wape

METHODS = ("bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink")
#: Methods that read the base forecasts' errors (the library's ``y_insample``).
NEEDS_ERRORS = ("wls_var", "mint_shrink")
TOTAL = "total"


@dataclass(frozen=True)
class Hierarchy:
    """The summing matrix S (rows: every node, aggregates first; columns: the units).

    ``nodes`` names each row (``total``, ``region/<id>``, ``territory/<id>``, then the
    unit ids) and ``levels`` gives its level (``total``, ``region``, ``territory``,
    ``unit``).
    """

    S: np.ndarray
    nodes: list[str]
    levels: list[str]
    units: list[str]

    @property
    def n_aggregates(self) -> int:
        return len(self.nodes) - len(self.units)

    @property
    def idx_bottom(self) -> np.ndarray:
        """Row positions of the units (the bottom level) in S."""
        return np.arange(self.n_aggregates, len(self.nodes))

    def level_rows(self, level: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.levels) == level)


def build_hierarchy(
    alignment: pd.DataFrame,
    units: list[str] | pd.Index | np.ndarray,
    *,
    unit_col: str = "unit_id",
    territory_col: str = "territory_id",
    region_col: str | None = None,
    source: str = "alignment",
) -> Hierarchy:
    """S for total -> region (with ``region_col``) -> territory -> unit.

    Every unit in ``units`` must be in ``alignment`` exactly once, with a territory;
    a unit without one, a unit assigned twice, or a territory that spans two regions
    raises an InputError naming ``source``, the column, up to five rows and what to do.
    """
    units = [str(u) for u in units]
    frame = alignment.assign(**{unit_col: alignment[unit_col].astype(str)})
    dup = frame[unit_col][frame[unit_col].duplicated()].unique()
    if len(dup):
        raise InputError(source, "each unit is assigned to one territory", column=unit_col,
                         rows=list(dup[:5]), n_rows=len(dup),
                         hint="give each unit one row in the alignment")
    by_unit = frame.set_index(unit_col)
    terr = by_unit[territory_col].reindex(units)
    missing = terr.index[terr.isna()]
    if len(missing):
        raise InputError(source, f"every forecast unit has a territory ({len(missing)} "
                         "have none)", column=territory_col, rows=list(missing[:5]),
                         n_rows=len(missing),
                         hint="assign them in the alignment, or drop them from the forecast "
                              "before reconciling")
    terr = terr.astype(str).to_numpy()
    labels = {"territory": terr}
    if region_col is not None:
        reg = by_unit[region_col].reindex(units)
        if reg.isna().any():
            raise InputError(source, "every unit has a region", column=region_col,
                             rows=list(reg.index[reg.isna()][:5]), n_rows=int(reg.isna().sum()),
                             hint="fill it, or reconcile without regions")
        split = pd.DataFrame({"t": terr, "r": reg.astype(str).to_numpy()})
        n_reg = split.groupby("t")["r"].nunique()
        if (n_reg > 1).any():
            raise InputError(source, "a territory sits in one region (these span several)",
                             column=region_col, rows=list(n_reg.index[n_reg > 1][:5]),
                             n_rows=int((n_reg > 1).sum()),
                             hint="put each territory's units in one region")
        labels = {"region": split["r"].to_numpy(), **labels}
    rows, nodes, levels = [np.ones(len(units))], [TOTAL], [TOTAL]
    for level, values in labels.items():
        for name in sorted(set(values)):
            rows.append((values == name).astype(float))
            nodes.append(f"{level}/{name}")
            levels.append(level)
    rows.extend(np.eye(len(units)))
    nodes.extend(units)
    levels.extend(["unit"] * len(units))
    return Hierarchy(np.vstack(rows), nodes, levels, units)


def aggregate(hierarchy: Hierarchy, bottom: np.ndarray) -> np.ndarray:
    """Every node's value as the sum of its units: S @ bottom (NaN counts as 0)."""
    bottom = np.asarray(bottom, dtype=float).reshape(len(hierarchy.units), -1)
    return hierarchy.S @ np.nan_to_num(bottom, nan=0.0)


def _reconciler(method: str):
    from hierarchicalforecast.methods import BottomUp, MinTrace

    if method not in METHODS:
        raise ValueError(f"reconcile: method {method!r} is not one of {METHODS}.")
    return BottomUp() if method == "bottom_up" else MinTrace(method=method)


def _library_call(hierarchy: Hierarchy, y_hat: np.ndarray, method: str,
                  errors: tuple[np.ndarray, np.ndarray] | None, level: float | None) -> dict:
    """hierarchicalforecast's fit_predict; with ``level`` its conformal interval."""
    if method in NEEDS_ERRORS and errors is None:
        raise ValueError(f"reconcile: {method} needs the base forecasts' errors "
                         "(actuals and forecasts of every node on earlier windows).")
    y_cal, y_hat_cal = errors if errors is not None else (None, None)
    kwargs = {}
    if level is not None and errors is not None:
        kwargs = {"level": [round(100 * level)], "intervals_method": "conformal"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # calibration columns with NaN dropped
        return _reconciler(method).fit_predict(S=hierarchy.S, y_hat=y_hat, y_insample=y_cal,
                                               y_hat_insample=y_hat_cal, **kwargs)


def _base(hierarchy: Hierarchy, y_hat: np.ndarray) -> np.ndarray:
    """Base forecasts as (nodes, horizons); a NaN unit is 0 and a NaN aggregate its units' sum."""
    y_hat = np.array(y_hat, dtype=float)
    if y_hat.ndim == 1:
        y_hat = y_hat[:, None]
    if y_hat.shape[0] != len(hierarchy.nodes):
        raise ValueError(f"reconcile: y_hat has {y_hat.shape[0]} rows, the hierarchy "
                         f"{len(hierarchy.nodes)} nodes.")
    bottom = np.nan_to_num(y_hat[hierarchy.idx_bottom], nan=0.0)
    y_hat[hierarchy.idx_bottom] = bottom
    sums = hierarchy.S @ bottom
    return np.where(np.isfinite(y_hat), y_hat, sums)


def reconcile(
    hierarchy: Hierarchy,
    y_hat: np.ndarray,
    method: str = "bottom_up",
    errors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Coherent forecasts, shape (nodes, horizons), from base forecasts of every node.

    ``y_hat`` has one row per node of ``hierarchy`` (in its order) and one column per
    horizon. ``errors`` = (actuals, base forecasts) of every node on earlier windows,
    (nodes, observations): what ``mint_shrink`` estimates the error covariance from.
    The reconciled units are clipped at zero and every aggregate is their sum.
    """
    base = _base(hierarchy, y_hat)
    mean = np.asarray(_library_call(hierarchy, base, method, errors, None)["mean"], dtype=float)
    return aggregate(hierarchy, np.maximum(mean[hierarchy.idx_bottom], 0.0))


def reconcile_with_intervals(
    hierarchy: Hierarchy,
    y_hat: np.ndarray,
    method: str,
    calibration: tuple[np.ndarray, ...] | None,
    level: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coherent point forecasts and the library's conformal ``level`` interval of each node.

    ``calibration`` = (actuals, base forecasts[, horizon of each column]) of every node on
    the backtest windows. With the horizons, errors are put on one scale by dividing by
    the square root of their horizon (errors grow with it, and the columns known at an
    origin are mostly short horizons) and the bounds of horizon ``h`` are scaled back by
    sqrt(h); without them the errors are pooled as they are. The library scales linearly,
    so this is its own conformal interval of the scaled forecasts. Without calibration
    (or with fewer than two complete observations) the bounds are NaN.
    """
    base = _base(hierarchy, y_hat)
    errors = calibration[:2] if calibration is not None else None
    point = reconcile(hierarchy, base, method, errors)
    nan = np.full_like(point, np.nan)
    if errors is None or np.isfinite(np.vstack(errors)).all(axis=0).sum() < 2:
        return point, nan, nan.copy()
    actual, forecast = errors
    grow = np.ones(base.shape[1])
    if len(calibration) > 2:
        steps = np.sqrt(np.asarray(calibration[2], dtype=float))[None, :]
        actual, forecast = actual / steps, forecast / steps
        grow = np.sqrt(np.arange(1, base.shape[1] + 1, dtype=float))
    out = _library_call(hierarchy, base / grow, method, (actual, forecast), level)
    quantiles = np.asarray(out["quantiles"], dtype=float) * grow[None, :, None]
    shift = point - np.asarray(out["mean"], dtype=float) * grow  # clipping moved the point
    lo = np.maximum(quantiles[:, :, 0] + shift, 0.0)
    return point, np.minimum(lo, point), np.maximum(quantiles[:, :, -1] + shift, point)


# -- the backtest windows and the choice of method --------------------------------------
@dataclass(frozen=True)
class Window:
    """One backtest origin: base forecasts of every node and the units' actuals.

    ``base``: (nodes, horizons); ``actual``: (units, horizons), NaN where unknown;
    ``periods``: the target period of each horizon; ``scale``: each node's in-sample
    seasonal-naive MAE before the origin (the MASE denominator).
    """

    origin: pd.Timestamp
    base: np.ndarray
    actual: np.ndarray
    periods: pd.DatetimeIndex
    scale: np.ndarray


def earlier_errors(hierarchy: Hierarchy, windows: list[Window], origin: pd.Timestamp
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(actuals, base forecasts, horizons) of every node at the windows before ``origin``,
    on the target periods known at ``origin``; None with fewer than two such columns."""
    actual, base, steps = [], [], []
    for w in windows:
        if w.origin >= origin:
            continue
        known = np.asarray(w.periods <= origin)
        actual.append(aggregate(hierarchy, w.actual)[:, known])
        base.append(_base(hierarchy, w.base)[:, known])
        steps.append(np.arange(1, len(known) + 1)[known])
    if not actual or sum(a.shape[1] for a in actual) < 2:
        return None
    return np.hstack(actual), np.hstack(base), np.concatenate(steps)


def all_errors(hierarchy: Hierarchy, windows: list[Window]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(actuals, base forecasts, horizons) of every node on every window: the published
    run's calibration (all of it is history at the as-of date)."""
    if not windows:
        return None
    return (np.hstack([aggregate(hierarchy, w.actual) for w in windows]),
            np.hstack([_base(hierarchy, w.base) for w in windows]),
            np.concatenate([np.arange(1, w.base.shape[1] + 1) for w in windows]))


def score_windows(hierarchy: Hierarchy, windows: list[Window], methods: tuple[str, ...]
                  ) -> pd.DataFrame:
    """WAPE and MASE of each method's reconciled forecasts per window and level.

    A method that needs errors is scored only on windows with earlier ones
    (:func:`earlier_errors`); the base forecasts are scored too (method ``base``).
    """
    records = []
    levels = np.asarray(hierarchy.levels)
    for k, w in enumerate(windows):
        errors = earlier_errors(hierarchy, windows, w.origin)
        actual = aggregate(hierarchy, w.actual)
        actual[hierarchy.idx_bottom] = w.actual  # unknown unit actuals stay unknown
        candidates = {"base": _base(hierarchy, w.base)}
        for method in methods:
            if method in NEEDS_ERRORS and errors is None:
                continue
            candidates[method] = reconcile(hierarchy, w.base, method,
                                           errors[:2] if errors is not None else None)
        for method, forecast in candidates.items():
            for lev in dict.fromkeys(hierarchy.levels):
                rows = levels == lev
                scale = np.repeat(w.scale[rows][:, None], actual.shape[1], axis=1)
                records.append({
                    "window": k, "origin": w.origin, "method": method, "level": lev,
                    "wape": wape(actual[rows].ravel(), forecast[rows].ravel()),
                    "mase": mase(actual[rows].ravel(), forecast[rows].ravel(), scale.ravel()),
                })
    return pd.DataFrame(records)


def pick_method(table: pd.DataFrame, level: str = "territory", tolerance: float = 0.0,
                unit_tolerance: float | None = 0.0) -> str:
    """The method of ``table`` (mean ``wape`` and ``mase`` by ``method`` and ``level``) to
    publish.

    The lowest WAPE at ``level`` among the eligible methods: with ``unit_tolerance``, a
    method whose unit-level WAPE or MASE is worse than BottomUp's (the unit forecasts as
    the champion gate validated them) by more than that share is not eligible (WAPE
    weighs the large units, MASE every unit alike). BottomUp is kept unless the best
    beats it at ``level`` by more than ``tolerance`` (absolute WAPE).
    """
    table = table[table["method"] != "base"]
    wape_ = table.pivot_table(index="method", columns="level", values="wape")
    if "bottom_up" in wape_.index and unit_tolerance is not None and "unit" in wape_:
        for metric in ("wape", "mase"):
            if metric not in table:
                continue
            unit = table[table["level"] == "unit"].set_index("method")[metric]
            worse = unit > unit["bottom_up"] * (1.0 + unit_tolerance)
            wape_ = wape_.drop(index=[m for m in unit.index[worse] if m in wape_.index])
    best = str(wape_[level].idxmin())
    if "bottom_up" in wape_.index and wape_.loc["bottom_up", level] - wape_.loc[best, level] \
            <= tolerance:
        best = "bottom_up"
    return best


def choose_method(
    hierarchy: Hierarchy,
    windows: list[Window],
    methods: tuple[str, ...] = METHODS,
    *,
    level: str = "territory",
    tolerance: float = 0.0,
    unit_tolerance: float | None = 0.0,
) -> tuple[str, pd.DataFrame]:
    """The method to publish, by mean WAPE over the backtest windows (:func:`pick_method`).

    Every method is compared on the same windows: those where each of ``methods``
    could be scored (a method needing errors has none at the first window; it is left
    out where no window has them). Returns the method and the table of WAPE and MASE by
    method and level (means over those windows; ``base``: each level's own base).
    """
    if not windows:
        raise ValueError("choose_method: no backtest windows to choose a method on.")
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"choose_method: unknown methods {sorted(unknown)}; choose from "
                         f"{METHODS}.")
    if level not in hierarchy.levels:
        raise ValueError(f"choose_method: the hierarchy has no level {level!r} "
                         f"(levels: {sorted(set(hierarchy.levels))}).")
    scored = score_windows(hierarchy, windows, tuple(methods))
    present = scored.groupby("window")["method"].apply(set)
    usable = [m for m in methods if present.map(lambda s, m=m: m in s).any()]
    common = [k for k, s in present.items() if set(usable) <= s]
    table = (scored[scored["window"].isin(common)]
             .groupby(["method", "level"], as_index=False)[["wape", "mase"]].mean())
    table["windows"] = len(common)
    chosen = pick_method(table[table["method"].isin(usable)], level, tolerance, unit_tolerance)
    return chosen, table


# -- base forecasts of the aggregates, backtest windows and the published scores ---------
def aggregate_forecasts(
    hierarchy: Hierarchy,
    history: np.ndarray,
    end: pd.Timestamp,
    horizon: int,
    season: int,
    frequency: str,
    member: str = "auto_theta",
    max_history: int | None = None,
) -> np.ndarray:
    """Base forecasts (aggregates × horizons) of each aggregate node's own sales history.

    ``history`` is units × periods in ``hierarchy.units`` order, the last column ``end``;
    a unit's missing periods count as no sales. ``member`` is a statsforecast member of
    :mod:`territory.models.statistical`.
    """
    from territory.models.statistical import statistical_forecasts

    summed = hierarchy.S[: hierarchy.n_aggregates] @ np.nan_to_num(history, nan=0.0)
    started = np.isfinite(history).any(axis=0).argmax()  # before the first sale: unknown
    summed[:, :started] = np.nan
    found = statistical_forecasts(summed, end, horizon, season, frequency, (member,),
                                  max_history=max_history)
    return found.point[member]


def _unit_matrix(rows: pd.DataFrame, column: str, units: list[str], horizon: int,
                 unit_col: str) -> np.ndarray:
    """``rows[column]`` as units × horizons (NaN where a unit or horizon has no row)."""
    wide = rows.pivot_table(index=unit_col, columns="horizon", values=column, aggfunc="first",
                            dropna=False)
    wide.index = wide.index.astype(str)
    return wide.reindex(index=units, columns=range(1, horizon + 1)).to_numpy(dtype=float)


def _future(values: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """Columns ``t + 1 .. t + horizon`` of ``values`` (NaN past its end)."""
    out = np.full((values.shape[0], horizon), np.nan)
    ahead = values[:, t + 1: t + 1 + horizon]
    out[:, : ahead.shape[1]] = ahead
    return out


def backtest_windows(
    hierarchy: Hierarchy,
    predictions: pd.DataFrame,
    history: pd.DataFrame,
    column: str,
    horizon: int,
    season: int,
    frequency: str,
    member: str = "auto_theta",
    unit_col: str = "unit_id",
    max_history: int | None = None,
) -> list[Window]:
    """One :class:`Window` per backtest origin of ``predictions``.

    ``predictions`` are the train stage's backtest rows (``origin``, ``horizon``,
    ``target_period`` and the published forecast's ``column``); ``history`` is wide
    sales (units × periods, up to the last target period), which gives every unit's
    actuals (a unit without a forecast row counts as 0, as in the published totals).
    The aggregates' base forecasts are ``member`` fit on their history up to each
    origin, never after it.
    """
    values = history.reindex(index=hierarchy.units).to_numpy(dtype=float)
    periods = pd.DatetimeIndex(history.columns)
    windows = []
    for origin in sorted(predictions["origin"].unique()):
        rows = predictions[predictions["origin"] == origin]
        t = periods.get_loc(pd.Timestamp(origin))
        past = values[:, : t + 1]
        agg = aggregate_forecasts(hierarchy, past, pd.Timestamp(origin), horizon, season,
                                  frequency, member, max_history)
        base = np.vstack([agg, _unit_matrix(rows, column, hierarchy.units, horizon, unit_col)])
        node_history = aggregate(hierarchy, past)
        node_history[hierarchy.idx_bottom] = past
        windows.append(Window(
            origin=pd.Timestamp(origin),
            base=base,
            actual=_future(values, t, horizon),
            periods=pd.date_range(periods[t], periods=horizon + 1, freq=frequency)[1:],
            scale=seasonal_naive_scale(node_history, season),
        ))
    return windows


def reconcile_scores(
    hierarchy: Hierarchy,
    scores: pd.DataFrame,
    aggregates: np.ndarray,
    method: str,
    calibration: tuple[np.ndarray, np.ndarray] | None,
    level: float = 0.8,
    unit_col: str = "unit_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The published scores reconciled with ``method``, and every node's forecast.

    ``scores`` are the score stage's rows (unit, ``horizon``, ``target_period``,
    ``forecast``, ``forecast_lo``, ``forecast_hi``); ``aggregates`` the aggregates' base
    forecasts (:func:`aggregate_forecasts`). With ``bottom_up`` the unit rows are
    returned as they are; otherwise each unit's forecast is the reconciled one and its
    interval moves with it (scaled by reconciled / base where the base is positive).
    Returns the scores and a table of every node (``node``, ``level``, ``horizon``,
    ``target_period``, ``forecast``, ``forecast_lo``, ``forecast_hi``, ``base_forecast``):
    the units' bounds are theirs, the aggregates' the library's conformal interval.
    """
    horizon = aggregates.shape[1]
    unknown = sorted(set(scores[unit_col].astype(str)) - set(hierarchy.units))
    if unknown:
        raise InputError("scores", f"every scored unit is in the hierarchy ({len(unknown)} "
                         "are not)", column=unit_col, rows=unknown[:5], n_rows=len(unknown),
                         hint="build the hierarchy on every unit the run scores")
    units = _unit_matrix(scores, "forecast", hierarchy.units, horizon, unit_col)
    base = _base(hierarchy, np.vstack([aggregates, units]))
    point, lo, hi = reconcile_with_intervals(hierarchy, base, method, calibration, level)
    out = scores.copy()
    if method != "bottom_up":
        key = out[unit_col].astype(str)
        where = pd.Index(hierarchy.units).get_indexer(key)
        new = point[hierarchy.idx_bottom][where, out["horizon"].to_numpy(dtype=int) - 1]
        old = out["forecast"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(old > 0, new / old, np.nan)
        for col in ("forecast_lo", "forecast_hi"):
            bound = out[col].to_numpy(dtype=float)
            out[col] = np.where(np.isfinite(ratio), bound * ratio, bound + (new - old))
        out["forecast"] = new
        if "white_space" in out and "potential" in out:
            out["white_space"] = out["potential"] - out["forecast"]
    unit_lo = _unit_matrix(out, "forecast_lo", hierarchy.units, horizon, unit_col)
    unit_hi = _unit_matrix(out, "forecast_hi", hierarchy.units, horizon, unit_col)
    lo[hierarchy.idx_bottom], hi[hierarchy.idx_bottom] = unit_lo, unit_hi
    periods = (scores.drop_duplicates("horizon").set_index("horizon")["target_period"]
               .reindex(range(1, horizon + 1)).to_numpy())
    n = len(hierarchy.nodes)
    nodes = pd.DataFrame({
        "node": np.repeat([n.split("/", 1)[-1] for n in hierarchy.nodes], horizon),
        "level": np.repeat(hierarchy.levels, horizon),
        "horizon": np.tile(np.arange(1, horizon + 1), n),
        "target_period": np.tile(periods, n),
        "forecast": point.ravel(),
        "forecast_lo": lo.ravel(),
        "forecast_hi": hi.ravel(),
        "base_forecast": base.ravel(),
    })
    return out, nodes


def check_coherent(nodes: pd.DataFrame, parent: pd.Series, child_level: str,
                   parent_level: str, rtol: float = 1e-9) -> float:
    """Largest relative gap between a ``parent_level`` node's forecast and the sum of its
    ``child_level`` nodes', over horizons (``parent`` maps a child node to its parent)."""
    kids = nodes[nodes["level"] == child_level]
    sums = (kids.assign(parent=kids["node"].map(parent))
            .groupby(["parent", "horizon"])["forecast"].sum())
    top = nodes[nodes["level"] == parent_level].set_index(["node", "horizon"])["forecast"]
    gap = (top.reindex(sums.index) - sums).abs() / np.maximum(sums.abs(), 1.0)
    return float(gap.max()) if len(gap) else 0.0


@dataclass
class Reconciliation:
    """What the run published: the method, its backtest record and every node's forecast.

    ``table``: WAPE and MASE by method and level on the backtest windows (None without
    a backtest: then BottomUp, with no interval for the aggregates); ``nodes``: see
    :func:`reconcile_scores`; ``cpu_seconds``: what reconciling cost (process CPU).
    ``chosen_in``: the training run whose method a scoring run applied (None: chosen here);
    ``fallback``: why it is BottomUp instead (``untagged``: that run chose none,
    ``no_errors``: its method needs backtest errors the run did not keep).
    """

    method: str
    table: pd.DataFrame | None
    nodes: pd.DataFrame
    cpu_seconds: float = 0.0
    chosen_in: str | None = None
    fallback: str | None = None

    def metrics(self) -> dict[str, float]:
        """Flat metrics for tracking: ``reconcile_<method>_wape_<level>`` and the cost."""
        out = {"reconcile_cpu_seconds": self.cpu_seconds,
               "reconcile_bottom_up": float(self.method == "bottom_up")}
        if self.table is not None:
            for row in self.table.itertuples():
                out[f"reconcile_{row.method}_wape_{row.level}"] = float(row.wape)
                out[f"reconcile_{row.method}_mase_{row.level}"] = float(row.mase)
        return out


def reconcile_published(
    hierarchy: Hierarchy,
    scores: pd.DataFrame,
    history: pd.DataFrame,
    predictions: pd.DataFrame | None,
    column: str,
    *,
    season: int,
    frequency: str,
    methods: tuple[str, ...] = METHODS,
    member: str = "auto_theta",
    level: str = "territory",
    tolerance: float = 0.0,
    unit_tolerance: float | None = 0.0,
    interval_level: float = 0.8,
    unit_col: str = "unit_id",
    max_history: int | None = None,
) -> tuple[pd.DataFrame, Reconciliation]:
    """Choose the method on the backtest ``predictions`` and reconcile the published scores.

    ``history`` is wide sales up to the as-of date (units × periods); ``column`` the
    published forecast's column in ``predictions``. Without predictions (no backtest),
    BottomUp. Returns the scores (unchanged with BottomUp) and the :class:`Reconciliation`.
    """
    started = time.process_time()
    horizon = int(scores["horizon"].max())
    windows = (backtest_windows(hierarchy, predictions, history, column, horizon, season,
                                frequency, member, unit_col, max_history)
               if predictions is not None and len(predictions) else [])
    method, table = "bottom_up", None
    level = level if level in hierarchy.levels else "total"
    if windows:
        method, table = choose_method(hierarchy, windows, methods, level=level,
                                      tolerance=tolerance, unit_tolerance=unit_tolerance)
    calibration = all_errors(hierarchy, windows)
    if windows:
        values = history.reindex(index=hierarchy.units).to_numpy(dtype=float)
        aggregates = aggregate_forecasts(hierarchy, values, pd.Timestamp(history.columns[-1]),
                                         horizon, season, frequency, member, max_history)
    else:  # nothing to choose or calibrate on: BottomUp needs no aggregate forecast
        aggregates = np.full((hierarchy.n_aggregates, horizon), np.nan)
    out, nodes = reconcile_scores(hierarchy, scores, aggregates, method, calibration,
                                  interval_level, unit_col)
    return out, Reconciliation(method, table, nodes, time.process_time() - started)
