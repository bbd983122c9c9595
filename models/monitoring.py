"""Realised accuracy of earlier forecasts, and the alert rules of the nightly run.

Pure functions over DataFrames; :mod:`territory.pipelines.monitoring` finds
the published forecasts, calls these and writes the table. Each forecast row
is joined to the actual sales of its unit and target period; errors are
summed by forecast (``run_name``, ``source``, ``as_of``) at four levels:

- ``overall``: every unit and horizon;
- ``horizon``: one row per horizon;
- ``territory``: one row per territory of the alignment published with the
  forecast;
- ``horizon_territory``: both.

A row that stands for all horizons has ``horizon`` NA; one that stands for
all territories has ``territory_id`` NA. ``wape`` is the unit-level WAPE
(Σ|a − f| / Σa), ``bias`` is Σ(f − a) / Σa (positive: forecasts ran high),
``coverage`` the share of actuals inside the forecast interval, and
``territory_wape`` the WAPE of territory totals per period (what a territory
manager sees). Next to them, what the model's backtest promised
(:func:`promised_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from territory.features.config import ColumnsConfig
from territory.models.config import AlertRules

KEYS = ["run_name", "source", "as_of"]
LEVELS = {"overall": [], "horizon": ["horizon"], "territory": ["territory_id"],
          "horizon_territory": ["horizon", "territory_id"]}
ACCURACY_COLUMNS = [*KEYS, "level", "horizon", "territory_id", "model_version",
                    "actuals_through", "months_observed", "n_rows", "actual", "forecast",
                    "wape", "bias", "coverage", "territory_wape", "promised_wape",
                    "promised_coverage", "promise_source", "wape_vs_promised"]


def promised_accuracy(metrics: dict[str, float], horizon: int) -> dict:
    """What a model's evaluation promised: WAPE and interval coverage, overall and per horizon.

    The rolling-origin backtest's numbers (``backtest_wape``, ``backtest_wape_hNN``,
    ``backtest_coverage[_hNN]``) when the model was backtested, else those of its
    validation window (``valid_*``). Missing numbers are NaN.
    """
    source = "backtest" if np.isfinite(metrics.get("backtest_wape", np.nan)) else "validation"
    prefix = "backtest_" if source == "backtest" else "valid_"

    def get(key: str) -> float:
        value = metrics.get(key)
        return float(value) if value is not None and np.isfinite(value) else float("nan")

    overall = {"wape": get(f"{prefix}wape"), "coverage": get(f"{prefix}coverage")}
    by_horizon = {}
    for h in range(1, int(horizon) + 1):
        wape = get(f"{prefix}wape_h{h:02d}")
        cover = get(f"{prefix}coverage_h{h:02d}")
        by_horizon[str(h)] = {"wape": wape if np.isfinite(wape) else overall["wape"],
                              "coverage": cover if np.isfinite(cover) else overall["coverage"]}
    return {"source": source, **overall, "by_horizon": by_horizon}


def promise_table(promises: dict[tuple[str, str, str], dict]) -> pd.DataFrame:
    """Per forecast key and horizon (NA: all), the promised WAPE and coverage."""
    rows = []
    for (run_name, source, as_of), promise in promises.items():
        base = {"run_name": run_name, "source": source, "as_of": as_of,
                "promise_source": promise.get("source")}
        rows.append({**base, "horizon": pd.NA, "promised_wape": promise.get("wape"),
                     "promised_coverage": promise.get("coverage")})
        for h, value in (promise.get("by_horizon") or {}).items():
            rows.append({**base, "horizon": int(h), "promised_wape": value.get("wape"),
                         "promised_coverage": value.get("coverage")})
    table = pd.DataFrame(rows, columns=[*KEYS, "horizon", "promised_wape", "promised_coverage",
                                        "promise_source"])
    return table.astype({"horizon": "Int64", "promised_wape": float, "promised_coverage": float})


def _joined(forecasts: pd.DataFrame, actuals: pd.DataFrame, columns: ColumnsConfig,
            through: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Forecast rows with their actual, as integer keys and numbers (fast to group).

    Returns the rows (``_k`` forecast key, ``_t`` territory code, -1 for none,
    ``horizon``, ``target_period`` and the sums), the forecast keys by ``_k``
    (with their model version) and the territory ids by code.
    """
    u, t, y = columns.unit_col, columns.time_col, columns.target_col
    truth = actuals.loc[actuals[t] <= through, [u, t, y]].rename(
        columns={t: "target_period", y: "actual"})
    later = forecasts["target_period"] > through
    rows = (forecasts[~later] if later.any() else forecasts).merge(
        truth, on=[u, "target_period"], how="inner")
    known = rows["actual"].notna() & rows["forecast"].notna()
    rows = rows if known.all() else rows[known]
    key = rows.groupby(KEYS, sort=False).ngroup().to_numpy()
    keys = rows[[*KEYS, "model_version"]].assign(_k=key).drop_duplicates("_k") \
        .set_index("_k").sort_index()
    territory, territories = pd.factorize(rows["territory_id"])
    actual, forecast = rows["actual"].to_numpy(float), rows["forecast"].to_numpy(float)
    lo, hi = rows["forecast_lo"].to_numpy(float), rows["forecast_hi"].to_numpy(float)
    has = ~np.isnan(lo) & ~np.isnan(hi)
    frame = pd.DataFrame({
        "_k": key, "_t": territory, "horizon": rows["horizon"].to_numpy(),
        "target_period": rows["target_period"].to_numpy(), "actual": actual,
        "forecast": forecast, "abs_error": np.abs(actual - forecast), "error": forecast - actual,
        "inside": (has & (actual >= lo) & (actual <= hi)).astype(float),
        "has_interval": has.astype(float)})
    return frame, keys, np.asarray(territories, dtype=object)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(float)


def realised_accuracy(forecasts: pd.DataFrame, actuals: pd.DataFrame, columns: ColumnsConfig,
                      through: pd.Timestamp, promises: pd.DataFrame | None = None
                      ) -> pd.DataFrame:
    """Realised WAPE, bias and coverage of earlier forecasts, with the actuals up to ``through``.

    Parameters
    ----------
    forecasts
        Published forecast rows: ``run_name``, ``source``, ``as_of``,
        ``model_version``, the unit column, ``horizon``, ``target_period``,
        ``forecast``, ``forecast_lo``, ``forecast_hi`` and ``territory_id``
        (NaN for a unit without one).
    actuals
        Sales history (unit, period, sales); only periods up to ``through`` are read.
    through
        The last period whose actuals may be used (the as-of date of the run
        that measures).
    promises
        :func:`promise_table` rows; adds ``promised_wape``, ``promised_coverage``
        and ``wape_vs_promised`` (realised ÷ promised − 1).

    Returns
    -------
    DataFrame
        :data:`ACCURACY_COLUMNS`, one row per forecast key, level, horizon and
        territory that has at least one actual; empty when none has.
    """
    rows, keys, territories = _joined(forecasts, actuals, columns, pd.Timestamp(through))
    sums = ["actual", "forecast", "abs_error", "error", "inside", "has_interval"]
    parts = []
    by_territory = rows[rows["_t"] >= 0]
    totals = by_territory.groupby(["_k", "_t", "horizon", "target_period"])[
        ["actual", "forecast"]].sum().reset_index()
    totals["total_error"] = (totals["actual"] - totals["forecast"]).abs()
    for level, extra in LEVELS.items():
        extra = ["_t" if c == "territory_id" else c for c in extra]
        source = by_territory if "_t" in extra else rows
        if source.empty:
            continue
        grouped = source.groupby(["_k", *extra])
        part = grouped[sums].sum()
        part["n_rows"] = grouped.size()
        part["months_observed"] = grouped["target_period"].nunique()
        total = totals.groupby(["_k", *extra])[["total_error", "actual"]].sum()
        part["territory_wape"] = _ratio(total["total_error"], total["actual"]).reindex(part.index)
        part = part.reset_index().assign(level=level)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=ACCURACY_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table = table.join(keys, on="_k")
    codes = table["_t"].to_numpy() if "_t" in table else np.full(len(table), np.nan)
    table["territory_id"] = pd.Series(
        [territories[int(c)] if c == c and c >= 0 else None for c in codes], dtype=object)
    table = table.drop(columns=["_k", "_t"], errors="ignore")
    table["wape"] = _ratio(table["abs_error"], table["actual"])
    table["bias"] = _ratio(table["error"], table["actual"])
    table["coverage"] = _ratio(table["inside"], table["has_interval"])
    table["actuals_through"] = pd.Timestamp(through)
    table = table.reindex(columns=[c for c in ACCURACY_COLUMNS
                                   if not c.startswith(("promise", "wape_vs"))])
    table["horizon"] = table["horizon"].astype("Int64")
    table = _with_promises(table, promises)
    return table.reindex(columns=ACCURACY_COLUMNS).sort_values(
        [*KEYS, "level", "horizon", "territory_id"], na_position="first", kind="stable"
    ).reset_index(drop=True)


def _with_promises(table: pd.DataFrame, promises: pd.DataFrame | None) -> pd.DataFrame:
    """Per-horizon rows get their horizon's promise; a row over several horizons gets the
    promise of the horizons it observed (weighted by actual sales for WAPE, by rows for
    coverage), so a forecast with one month of actuals is held to the first month's promise."""
    if promises is None or promises.empty:
        return table.assign(promised_wape=np.nan, promised_coverage=np.nan, promise_source=None,
                            wape_vs_promised=np.nan)
    keyed = promises.assign(_h=promises["horizon"].astype("Int64").fillna(-1)).drop(
        columns="horizon")
    table = table.assign(_h=table["horizon"].fillna(-1)).merge(keyed, on=[*KEYS, "_h"],
                                                               how="left").drop(columns="_h")
    per_h = table[table["horizon"].notna()].assign(
        _t=lambda d: d["territory_id"].fillna("\0all"),
        _pw=lambda d: d["promised_wape"] * d["actual"],
        _w=lambda d: d["actual"].where(d["promised_wape"].notna(), 0.0),
        _pc=lambda d: d["promised_coverage"] * d["n_rows"],
        _n=lambda d: d["n_rows"].where(d["promised_coverage"].notna(), 0.0))
    sums = per_h.groupby([*KEYS, "_t"])[["_pw", "_w", "_pc", "_n"]].sum()
    weighted = pd.DataFrame({"_wape": _ratio(sums["_pw"], sums["_w"]),
                             "_cover": _ratio(sums["_pc"], sums["_n"])}).reset_index()
    table = table.assign(_t=table["territory_id"].fillna("\0all")).merge(
        weighted, on=[*KEYS, "_t"], how="left")
    over = table["horizon"].isna()
    table.loc[over, "promised_wape"] = table.loc[over, "_wape"].fillna(
        table.loc[over, "promised_wape"])
    table.loc[over, "promised_coverage"] = table.loc[over, "_cover"].fillna(
        table.loc[over, "promised_coverage"])
    table = table.drop(columns=["_t", "_wape", "_cover"])
    table["wape_vs_promised"] = _ratio(table["wape"], table["promised_wape"]) - 1
    return table


def merge_history(history: pd.DataFrame | None, update: pd.DataFrame) -> pd.DataFrame:
    """The accuracy history with ``update``'s forecasts measured again.

    Every row of a forecast key (``run_name``, ``source``, ``as_of``) that
    ``update`` measures is replaced by its rows; the other keys stay as they
    were. Sorted by key, level, horizon and territory.
    """
    if history is None or history.empty:
        merged = update
    elif update.empty:
        merged = history
    else:
        measured = pd.MultiIndex.from_frame(update[KEYS].drop_duplicates())
        keep = ~pd.MultiIndex.from_frame(history[KEYS]).isin(measured)
        kept = history[keep]
        merged = pd.concat([kept, update], ignore_index=True) if len(kept) else update
    merged = merged.reindex(columns=ACCURACY_COLUMNS)
    merged["horizon"] = merged["horizon"].astype("Int64")
    return merged.sort_values([*KEYS, "level", "horizon", "territory_id"], na_position="first",
                              kind="stable").reset_index(drop=True)


def overall_history(history: pd.DataFrame) -> pd.DataFrame:
    """One row per as-of date: the overall row, the nightly one where a backfill measured it too."""
    if history is None or history.empty:
        return pd.DataFrame(columns=ACCURACY_COLUMNS)
    overall = history[history["level"] == "overall"].copy()
    overall["_nightly"] = overall["source"] == "nightly"
    overall = overall.sort_values(["as_of", "_nightly"]).drop_duplicates("as_of", keep="last")
    return overall.drop(columns="_nightly").reset_index(drop=True)


HORIZON_SUMMARY_COLUMNS = ["horizon", "forecasts", "actual", "wape", "promised_wape", "bias",
                           "coverage", "promised_coverage"]


def horizon_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Realised against promised accuracy per horizon, pooled over the forecasts of ``history``.

    One row per horizon with an actual: how many forecasts (as-of dates and
    sources) it pools, their actual sales, the realised WAPE of them all
    (Σ|a − f| / Σa: each forecast's WAPE weighted by its actual sales), the
    promised WAPE weighted the same way, the bias, and the realised and
    promised interval coverage weighted by rows. Reads the ``horizon`` level
    (every territory together); pass the rows of the forecasts to pool.
    """
    rows = history[(history["level"] == "horizon") & history["actual"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=HORIZON_SUMMARY_COLUMNS)
    promised = rows["promised_wape"].notna()
    covered = rows["promised_coverage"].notna()
    weighted = pd.DataFrame({
        "horizon": rows["horizon"].astype(int), "actual": rows["actual"],
        "abs_error": rows["wape"] * rows["actual"], "error": rows["bias"] * rows["actual"],
        "promised": (rows["promised_wape"] * rows["actual"]).where(promised, 0.0),
        "promised_weight": rows["actual"].where(promised, 0.0),
        "inside": rows["coverage"] * rows["n_rows"], "n_rows": rows["n_rows"],
        "promised_inside": (rows["promised_coverage"] * rows["n_rows"]).where(covered, 0.0),
        "promised_rows": rows["n_rows"].where(covered, 0.0)})
    sums = weighted.groupby("horizon").sum()
    table = pd.DataFrame({
        "forecasts": rows.groupby(rows["horizon"].astype(int)).size(),
        "actual": sums["actual"], "wape": _ratio(sums["abs_error"], sums["actual"]),
        "promised_wape": _ratio(sums["promised"], sums["promised_weight"]),
        "bias": _ratio(sums["error"], sums["actual"]),
        "coverage": _ratio(sums["inside"], sums["n_rows"]),
        "promised_coverage": _ratio(sums["promised_inside"], sums["promised_rows"])})
    return table.reset_index().reindex(columns=HORIZON_SUMMARY_COLUMNS)


# --- Alert rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One rule that fired: which (``rule``), on what (``subject``), the measured ``value``
    against its ``threshold``, and the numbers behind it (``detail``). Words come later."""

    rule: str  # realised_wape | coverage | drift | zeros | zero_coded | schema
    subject: str
    value: float
    threshold: float
    detail: dict = field(default_factory=dict)


def accuracy_alerts(history: pd.DataFrame | None, rules: AlertRules) -> list[Alert]:
    """The realised WAPE and coverage rules on the accuracy history (overall rows)."""
    overall = overall_history(history)
    alerts: list[Alert] = []
    measured = overall.dropna(subset=["wape", "promised_wape"])
    if rules.wape_excess is not None and len(measured) >= rules.wape_runs:
        last = measured.tail(rules.wape_runs)
        if (last["wape"] > last["promised_wape"] * (1 + rules.wape_excess)).all():
            alerts.append(Alert(
                "realised_wape", "all units and horizons",
                float(last["wape_vs_promised"].iloc[-1]), rules.wape_excess,
                {"as_of": [f"{pd.Timestamp(d):%Y-%m-%d}" for d in last["as_of"]],
                 "wape": last["wape"].round(4).tolist(),
                 "promised_wape": last["promised_wape"].round(4).tolist()}))
    covered = overall.dropna(subset=["coverage"])
    if rules.coverage_floor is not None and len(covered):
        latest = covered.iloc[-1]
        if latest["coverage"] < rules.coverage_floor:
            alerts.append(Alert("coverage", "all units and horizons", float(latest["coverage"]),
                                rules.coverage_floor,
                                {"as_of": f"{pd.Timestamp(latest['as_of']):%Y-%m-%d}",
                                 "months_observed": int(latest["months_observed"])}))
    return alerts


def input_alerts(drift: pd.DataFrame, schema: pd.DataFrame, quality: dict[str, float],
                 reference_quality: dict[str, float], rules: AlertRules) -> list[Alert]:
    """The drift, zeros and schema rules on one run's input check."""
    alerts: list[Alert] = []
    if rules.drift_psi is not None:
        for row in drift[drift["psi"] > rules.drift_psi].itertuples():
            alerts.append(Alert("drift", f"{row.table}.{row.feature}", float(row.psi),
                                rules.drift_psi,
                                {"ks": round(float(row.ks), 4),
                                 "reference_mean": float(row.reference_mean),
                                 "current_mean": float(row.current_mean)}))
    if rules.zero_share_increase is not None:
        now, then = quality.get("zero_share", np.nan), reference_quality.get("zero_share", np.nan)
        if np.isfinite(now) and np.isfinite(then) and now - then > rules.zero_share_increase:
            alerts.append(Alert("zeros", "sales", float(now - then), rules.zero_share_increase,
                                {"zero_share": now, "reference_zero_share": then}))
        units, before = (quality.get("zero_coded_units", 0.0),
                         reference_quality.get("zero_coded_units", 0.0))
        if units > before:
            alerts.append(Alert("zero_coded", "sales", float(units), float(before),
                                {"units_now": units, "units_in_training": before}))
    if rules.schema_changes:
        for row in schema.itertuples():
            alerts.append(Alert("schema", f"{row.table}.{row.name}", float("nan"), float("nan"),
                                {"what": row.what, "change": row.change}))
    return alerts
