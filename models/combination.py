"""The published forecast: LightGBM and the statistical members, combined per horizon.

Weights are learned on backtest windows only, and never on the window they
are scored on: the combination at origin ``t`` uses the members' errors at
origins before ``t`` (calibration origins, run before the scored ones, give
the first scored origin its weights). For each horizon ``h`` a member's
weight is proportional to ``1 / MASE`` of that member at horizon ``h`` on the
earlier origins, raised to ``power``; members more than ``trim`` times worse
than the best at that horizon get no weight. With no earlier origin every
member has the same weight. Intervals combine the members' bounds with the
same weights (quantile averaging).

:func:`combination_weights` gives the weights, :func:`add_combination` adds
the combined column to backtest predictions, :func:`promotion_gate` compares
the combination with the best single member on the same windows.

The run pipeline publishes a :class:`PublishedForecast`: :func:`choose_published`
gates the combination on the train stage's backtest and keeps either it or
the best single member; at scoring, :func:`member_forecasts` refits the
statistical members on the history up to the as-of date and :func:`combine`
applies the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from territory.models.backtest import mase

COMBINED = "territory"
#: A series with less history than this many years at an origin is short (its own intervals).
SHORT_YEARS = 3


def bounds(member: str) -> tuple[str, str]:
    """Column names of a member's interval bounds in backtest predictions."""
    if member == "forecast":
        return "forecast_lo", "forecast_hi"
    return f"{member}_lo", f"{member}_hi"


def combination_weights(
    history: pd.DataFrame,
    members: Sequence[str],
    horizon: int,
    power: float = 1.0,
    trim: float = 1.5,
) -> pd.DataFrame:
    """Weights per horizon (rows ``1..horizon``) and member (columns), each row summing to 1.

    ``history`` holds backtest predictions of earlier origins: ``horizon``,
    ``actual``, ``scale`` and one column per member. A horizon without
    scored rows takes the weights of all horizons together; with no rows at
    all every member weighs the same.
    """
    members = list(members)
    equal = np.full(len(members), 1.0 / len(members))

    def weights_of(rows: pd.DataFrame) -> np.ndarray | None:
        scores = np.array([mase(rows["actual"], rows[m], rows["scale"]) for m in members])
        if not np.isfinite(scores).any():
            return None
        scores = np.where(np.isfinite(scores), scores, np.inf)
        keep = scores <= trim * scores.min()
        raw = np.where(keep, 1.0 / np.maximum(scores, 1e-9) ** power, 0.0)
        return raw / raw.sum()

    overall = weights_of(history) if len(history) else None
    rows = []
    for h in range(1, horizon + 1):
        at_h = history[history["horizon"] == h] if len(history) else history
        found = weights_of(at_h) if len(at_h) else None
        rows.append(found if found is not None else (overall if overall is not None else equal))
    return pd.DataFrame(rows, index=pd.RangeIndex(1, horizon + 1, name="horizon"),
                        columns=members)


def combine(frame: pd.DataFrame, weights: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Weighted point forecast and bounds of ``frame``'s rows (by their ``horizon``).

    A member without a value in a row leaves it; the others' weights are
    renormalised. Returns point, lower and upper bound.
    """
    members = list(weights.columns)
    w = weights.reindex(frame["horizon"].to_numpy()).to_numpy()
    out = []
    for cols in (members, [bounds(m)[0] for m in members], [bounds(m)[1] for m in members]):
        values = np.column_stack([
            frame[c].to_numpy(dtype=float) if c in frame else np.full(len(frame), np.nan)
            for c in cols])
        present = np.isfinite(values)
        mass = np.where(present, w, 0.0).sum(axis=1)
        total = np.where(present, values * w, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(mass > 0, total / mass, np.nan))
    return tuple(out)


def add_combination(
    predictions: pd.DataFrame,
    members: Sequence[str],
    horizon: int,
    power: float = 1.0,
    trim: float = 1.5,
    level: float | None = None,
    short_periods: int | None = None,
    adaptive: bool = True,
) -> tuple[pd.DataFrame, dict[pd.Timestamp, pd.DataFrame]]:
    """Add the ``territory`` column (and its bounds) to backtest predictions.

    Each origin's rows are combined with weights from the origins before it, on the
    rows whose target period is not after it (an earlier window that overlaps
    this one lends only the actuals known at this origin).
    With ``level``, the bounds are conformal: :func:`conformal_table` on the
    errors that the combination with this origin's weights made at the
    origins before (the same predictor that is scored), series shorter than
    ``short_periods`` apart; the first origin, with none before it, keeps
    the members' bounds averaged with the weights. With ``adaptive`` (the
    default), each horizon's quantiles are read at the level
    :func:`adaptive_level` finds on that horizon's errors at those earlier
    origins instead of at ``level`` (:func:`adaptive_table`; chosen on early
    origins of four real panels: ``benchmarks/RESULTS.md``). Returns the predictions
    with ``territory``, ``territory_lo`` and ``territory_hi``, and the
    weights used at each origin (with the quantile levels read there, per
    horizon, in their ``attrs["interval_level"]`` when the bounds are conformal).
    """
    out = predictions.copy()
    lo_col, hi_col = bounds(COMBINED)
    for col in (COMBINED, lo_col, hi_col):
        out[col] = np.nan
    used: dict[pd.Timestamp, pd.DataFrame] = {}
    for origin in sorted(out["origin"].unique()):
        earlier = out[out["origin"] < origin]
        if "target_period" in earlier:  # with --step below the horizon: only actuals known then
            earlier = earlier[earlier["target_period"] <= origin]
        weights = combination_weights(earlier, members, horizon, power, trim)
        at = (out["origin"] == origin).to_numpy()
        point, lo, hi = combine(out.loc[at], weights)
        out.loc[at, COMBINED] = point
        if level is not None and len(earlier):
            # the errors the combination with these weights made at the earlier origins
            refit = earlier.assign(**{COMBINED: combine(earlier, weights)[0]})
            table = (adaptive_table(refit, COMBINED, level, horizon, short_periods) if adaptive
                     else conformal_table(refit, COMBINED, level, horizon, short_periods))
            rows = out.loc[at].assign(**{COMBINED: point})
            lo, hi = conformal_bounds(rows, COMBINED, table, short_periods, lo, hi)
            # the quantile level read at this origin, per horizon
            weights.attrs["interval_level"] = table.attrs.get("levels", [level] * horizon)
        out.loc[at, lo_col], out.loc[at, hi_col] = lo, hi
        used[pd.Timestamp(origin)] = weights
    return out, used


# -- conformal intervals ---------------------------------------------------------------
#: Fewest errors a quantile is read from; fewer borrow from the wider pool (see conformal_table).
MIN_ERRORS = 50


def _log_ratio(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """log((a + c) / (f + c)), c = 5% of the forecast: defined for zero sales."""
    f = np.maximum(np.asarray(forecast, dtype=float), 0.0)
    c = 0.05 * f + 1e-9
    return np.log((np.maximum(np.asarray(actual, dtype=float), 0.0) + c) / (f + c))


def _quantiles(errors: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 ∓ level)/2 quantiles, widened by split conformal's (n + 1)/n."""
    n = len(errors)
    if not n:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * (n + 1) / n
    upper = min(1.0, 1.0 - tail) if tail < 0.5 else 0.5
    return (float(np.quantile(errors, 1.0 - upper)), float(np.quantile(errors, upper)))


def conformal_table(
    rows: pd.DataFrame,
    column: str,
    level: float,
    horizon: int,
    short_periods: int | None = None,
    min_errors: int = MIN_ERRORS,
) -> pd.DataFrame:
    """Quantiles of ``log(actual / forecast)`` per horizon, for short and long series.

    ``rows`` are scored backtest rows (``actual``, ``horizon``,
    ``history_periods`` and ``column``). A series is short with fewer than
    ``short_periods`` periods of history at its origin. A class with fewer
    than ``min_errors`` errors at a horizon (the fallback for series with
    too little history) takes the other class's quantiles there, stretched
    by how much wider its own errors are than the other class's at the same
    horizons; a class with fewer than ``min_errors`` errors in all takes
    the quantiles of every series at that horizon. Returns columns
    ``short_lo``, ``short_hi``, ``long_lo``, ``long_hi`` indexed by horizon.
    """
    rows = rows[rows["actual"].notna() & rows[column].notna()]
    errors = _log_ratio(rows["actual"].to_numpy(), rows[column].to_numpy())
    h = rows["horizon"].to_numpy().astype(int)
    short = (rows["history_periods"].to_numpy() < short_periods if short_periods
             else np.zeros(len(rows), dtype=bool))
    steps = range(1, horizon + 1)
    pooled = {k: _quantiles(errors[h == k], level) for k in steps}

    def own(in_class: np.ndarray) -> dict[int, tuple[float, float]]:
        """The class's quantiles per horizon, every series' where it has too few errors."""
        return {k: (_quantiles(errors[in_class & (h == k)], level)
                    if (in_class & (h == k)).sum() >= min_errors else pooled[k]) for k in steps}

    table = {}
    for name, in_class in (("short", short), ("long", ~short)):
        mine, ref = own(in_class), own(~in_class)
        if in_class.sum() >= min_errors:
            ref_lo = np.array([ref.get(k, (np.nan, np.nan))[0] for k in h[in_class]])
            ref_hi = np.array([ref.get(k, (np.nan, np.nan))[1] for k in h[in_class]])
            with np.errstate(divide="ignore", invalid="ignore"):
                low = errors[in_class] / np.abs(ref_lo)
                high = errors[in_class] / ref_hi
            ok = np.isfinite(low) & np.isfinite(high)
            stretch = (_quantiles(low[ok], level)[0], _quantiles(high[ok], level)[1])
        else:
            stretch = (np.nan, np.nan)
        lo, hi = [], []
        for k in steps:
            if (in_class & (h == k)).sum() >= min_errors or not np.isfinite(stretch).all():
                q = mine[k]
            else:
                q = (stretch[0] * abs(ref[k][0]), stretch[1] * ref[k][1])
            lo.append(min(q[0], 0.0))
            hi.append(max(q[1], 0.0))
        table[f"{name}_lo"], table[f"{name}_hi"] = lo, hi
    return pd.DataFrame(table, index=pd.RangeIndex(1, horizon + 1, name="horizon"))


#: Quantile levels :func:`adaptive_level` chooses from.
LEVEL_GRID = tuple(np.round(np.arange(0.50, 0.981, 0.02), 2))


def adaptive_level(
    rows: pd.DataFrame,
    column: str,
    level: float,
    horizon: int,
    short_periods: int | None = None,
    grid: Sequence[float] = LEVEL_GRID,
) -> float:
    """The quantile level whose intervals covered ``level`` of the actuals at earlier origins.

    ``rows`` are scored backtest rows of the origins before the one to
    forecast (``origin``, ``target_period``, ``actual``, ``horizon``,
    ``history_periods`` and ``column``). Each of them but the first is
    scored as if it were the origin: its intervals come from
    :func:`conformal_table` on the origins before it (targets known at it),
    at each level of ``grid``. The level whose pooled coverage over those
    origins is closest to ``level`` is returned (the one nearest ``level``
    among ties); with fewer than two origins, ``level`` itself. Adaptive
    conformal prediction in its batch form: a spread that drifts from origin
    to origin is corrected by the same amount it missed by before.
    """
    rows = rows[rows["actual"].notna() & rows[column].notna()]
    origins = sorted(rows["origin"].unique())
    if len(origins) < 2:
        return level
    grid = np.asarray(grid, dtype=float)
    inside, total = np.zeros(len(grid)), np.zeros(len(grid))
    for origin in origins[1:]:
        before = rows[rows["origin"] < origin]
        if "target_period" in before:  # windows that overlap lend only the actuals known then
            before = before[before["target_period"] <= origin]
        at = rows[rows["origin"] == origin]
        actual = at["actual"].to_numpy(dtype=float)
        nan = np.full(len(at), np.nan)
        for k, q in enumerate(grid):
            table = conformal_table(before, column, float(q), horizon, short_periods)
            lo, hi = conformal_bounds(at, column, table, short_periods, nan, nan)
            known = np.isfinite(lo) & np.isfinite(hi)  # horizons the origins before lent errors
            inside[k] += np.sum(known & (actual >= lo) & (actual <= hi))
            total[k] += known.sum()
    if not total.min():
        return level
    miss = np.abs(inside / total - level)
    best = np.flatnonzero(np.isclose(miss, miss.min()))
    return float(grid[best[np.argmin(np.abs(grid[best] - level))]])


def adaptive_table(
    rows: pd.DataFrame,
    column: str,
    level: float,
    horizon: int,
    short_periods: int | None = None,
) -> pd.DataFrame:
    """A :func:`conformal_table` whose horizon ``h`` is read at its own adaptive level.

    For each horizon, :func:`adaptive_level` and :func:`conformal_table` see
    only the errors of ``rows`` at that horizon (short and long series apart,
    as there). The levels, one per horizon, are in ``attrs["levels"]``.
    """
    parts, levels = [], []
    for h in range(1, horizon + 1):
        at_h = rows[rows["horizon"] == h]
        levels.append(adaptive_level(at_h, column, level, horizon, short_periods))
        parts.append(conformal_table(at_h, column, levels[-1], horizon, short_periods).loc[[h]])
    table = pd.concat(parts)
    table.attrs["levels"] = levels
    return table


def conformal_bounds(
    rows: pd.DataFrame,
    column: str,
    table: pd.DataFrame,
    short_periods: int | None,
    lo_default: np.ndarray,
    hi_default: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``rows[column]`` from a :func:`conformal_table`; a row it lacks keeps the
    defaults."""
    f = np.maximum(rows[column].to_numpy(dtype=float), 0.0)
    c = 0.05 * f + 1e-9
    short = (rows["history_periods"].to_numpy() < short_periods if short_periods
             else np.zeros(len(rows), dtype=bool))
    at = table.reindex(rows["horizon"].to_numpy().astype(int))
    q_lo = np.where(short, at["short_lo"], at["long_lo"])
    q_hi = np.where(short, at["short_hi"], at["long_hi"])
    lo = np.maximum((f + c) * np.exp(q_lo) - c, 0.0)
    hi = (f + c) * np.exp(q_hi) - c
    known = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(f)
    return (np.where(known, lo, lo_default), np.where(known, hi, hi_default))


def promotion_gate(predictions: pd.DataFrame, members: Sequence[str]) -> dict[str, object]:
    """The combination against the best single member on the same rows (MASE).

    Returns the best member, both scores, the relative gap and whether the
    combination passes (is lower).
    """
    scores = {m: mase(predictions["actual"], predictions[m], predictions["scale"])
              for m in members}
    best = min(scores, key=lambda m: scores[m] if np.isfinite(scores[m]) else np.inf)
    ours = mase(predictions["actual"], predictions[COMBINED], predictions["scale"])
    return {"best_member": best, "best_member_mase": scores[best], "territory_mase": ours,
            "gap": ours / scores[best] - 1.0, "passed": bool(ours < scores[best])}


# -- what a run publishes -------------------------------------------------------------
LIGHTGBM = "forecast"  # LightGBM's column in backtest predictions


@dataclass(frozen=True)
class PublishedForecast:
    """What a run publishes: members and weights per horizon, and the gate that chose them.

    ``method`` is :data:`COMBINED` when the combination beat the best single
    member on the backtest windows, else that member's name (``"forecast"``
    is LightGBM). ``weights`` (rows: horizons ``1..horizon``; columns:
    ``"forecast"`` and the statistical ``members``) give the combination's
    weights learned on every backtest origin, or one-hot on the member
    published alone. ``season``, ``frequency``, ``level`` and
    ``max_history`` are how the members are refit at the as-of date.
    """

    method: str
    weights: pd.DataFrame
    members: tuple[str, ...]
    gate: dict
    season: int
    frequency: str
    level: float
    max_history: int | None = None
    # conformal quantiles of the combination (see conformal_table), for series shorter
    # than short_periods and the others; None: the members' bounds, averaged
    intervals: pd.DataFrame | None = None
    short_periods: int | None = None

    @property
    def name(self) -> str:
        """The published method in words: ``territory``, ``lightgbm`` or a member's name."""
        return "lightgbm" if self.method == LIGHTGBM else self.method

    @property
    def needs_members(self) -> bool:
        """Whether any statistical member has weight (then they are refit when scoring)."""
        return bool((self.weights[list(self.members)].to_numpy() > 0).any()) \
            if self.members else False

    def describe(self) -> str:
        """Weights in words, e.g. ``lightgbm 0.40, auto_theta 0.60`` (mean over horizons)."""
        mean = self.weights.mean()
        return ", ".join(f"{'lightgbm' if m == LIGHTGBM else m} {w:.2f}"
                         for m, w in mean.items() if w > 0)


def choose_published(
    predictions: pd.DataFrame,
    members: Sequence[str],
    horizon: int,
    season: int,
    frequency: str,
    level: float,
    power: float = 1.0,
    trim: float = 1.5,
    max_history: int | None = None,
    short_periods: int | None = None,
    adaptive: bool = True,
) -> tuple[PublishedForecast, pd.DataFrame]:
    """Gate the combination against the best single member on the backtest windows.

    ``predictions`` are a backtest's rows with LightGBM (``forecast``) and
    the statistical ``members``. The combination at each origin uses weights
    from the origins before it only (the first origin's are equal); the
    gate compares it with each member on the rows every one of them
    forecast. The published weights are learned on every origin, and so are
    the published combination's conformal quantiles (from its errors with
    those weights; series shorter than ``short_periods`` apart; with ``adaptive``, each
    horizon's read at the level :func:`adaptive_level` finds on the backtest origins).

    Returns the published forecast and the predictions with the ``territory``
    column and its bounds added.
    """
    all_members = [LIGHTGBM, *members]
    combined, _ = add_combination(predictions, all_members, horizon, power, trim, level,
                                  short_periods, adaptive)
    complete = combined[["actual", "scale", COMBINED, *all_members]].notna().all(axis=1)
    gate = promotion_gate(combined[complete & (combined["scale"] > 0)], all_members)
    intervals = None
    if gate["passed"]:
        method = COMBINED
        weights = combination_weights(combined, all_members, horizon, power, trim)
        refit = combined.assign(**{COMBINED: combine(combined, weights)[0]})
        intervals = (adaptive_table(refit, COMBINED, level, horizon, short_periods) if adaptive
                     else conformal_table(refit, COMBINED, level, horizon, short_periods))
    else:
        method = str(gate["best_member"])
        weights = pd.DataFrame(0.0, index=pd.RangeIndex(1, horizon + 1, name="horizon"),
                               columns=all_members)
        weights[method] = 1.0
    gate = {**gate, "rows": int(complete.sum()), "published": method}
    published = PublishedForecast(method, weights, tuple(members), gate, season, frequency,
                                  level, max_history, intervals, short_periods)
    return published, combined


def member_forecasts(
    history: pd.DataFrame,
    rows: pd.DataFrame,
    published: PublishedForecast,
    as_of: pd.Timestamp,
    unit_col: str = "unit_id",
) -> pd.DataFrame:
    """The statistical members' forecasts (and bounds) from ``as_of`` for each of ``rows``.

    ``history`` is wide (units × periods, the last column ``as_of``);
    ``rows`` has ``unit_col`` and ``horizon``. Returns one column per member
    and per bound, aligned with ``rows``; a unit without history gets NaN
    (the combination then leaves it to LightGBM). ``history_periods`` counts
    each row's periods from the unit's first sale to ``as_of``.
    """
    from territory.models.statistical import statistical_forecasts

    members = published.members
    horizon = len(published.weights)
    stat = statistical_forecasts(history.to_numpy(dtype=float), as_of, horizon, published.season,
                                 published.frequency, members, level=published.level,
                                 max_history=published.max_history)
    where = history.index.get_indexer(rows[unit_col])
    hcol = rows["horizon"].to_numpy().astype(int) - 1
    known = where >= 0
    out = {}
    for m in members:
        lo_col, hi_col = bounds(m)
        for col, values in ((m, stat.point[m]), (lo_col, stat.lo[m]), (hi_col, stat.hi[m])):
            column = np.full(len(rows), np.nan)
            column[known] = values[where[known], hcol[known]]
            out[col] = column
    values = history.to_numpy(dtype=float)
    seen = ~np.isnan(values)
    first = np.where(seen.any(axis=1), seen.argmax(axis=1), values.shape[1])
    periods = np.zeros(len(rows))
    periods[known] = values.shape[1] - first[where[known]]
    out["history_periods"] = periods
    return pd.DataFrame(out, index=rows.index)
