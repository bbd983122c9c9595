"""Study: interval and weighting rules for ``territory`` on captured member predictions.

``--capture`` runs :func:`territory.models.sales_backtest.backtest_sales` once per
panel of :mod:`forecast_statsforecast` and keeps what the combination step
receives (every origin's member predictions, calibration origins included) in
the cache folder; the study then rebuilds the combination's 80% interval and
point forecast offline, in seconds, with errors and weights of the origins
before each scored one only. It prints coverage (overall, per origin, and on
series with < 3 years of history) per interval variant, and the gap to the
best statistical model per weighting rule. Choosing among them on the scored
origins would be tuning on them: this is a diagnosis, not a selection.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_rule_study.py --capture --panels us_income,tourism
    .venv/bin/python benchmarks/forecast_rule_study.py --panels us_income,tourism
"""

from __future__ import annotations

import argparse
import pickle

import forecast_statsforecast as fs  # same folder
import numpy as np
import pandas as pd

from territory.models import combination as cb
from territory.models import sales_backtest
from territory.models.statistical import MEMBERS

VARIANTS = ("current", "log_recent", "scaled", "scaled_recent", "shock")
RULES = ((1, 1.5), (2, 1.5), (1, 1.2), (2, 1.2), (4, 1.5), (1, 1.1))
Z80 = 1.2816  # the normal's 90% quantile: the 80% interval's half-width in sigmas


def capture(name: str) -> None:
    """Run the panel once; keep the combination step's input and the scored origins."""
    original = cb.add_combination

    def keep(predictions, members, horizon, **kw):
        with open(fs.CACHE / f"study_{name}.pkl", "wb") as fh:
            pickle.dump((predictions, list(members), horizon, kw), fh)
        return original(predictions, members, horizon, **kw)

    loader, frequency, horizon, windows, step = fs.PANELS[name]
    sales = loader()
    if name.startswith("tourism"):
        sales = fs.read_as_the_cli_does(sales, frequency)
    sales_backtest.combination.add_combination = keep
    try:
        result = sales_backtest.backtest_sales(sales, frequency, horizon, windows, step)
    finally:
        sales_backtest.combination.add_combination = original
    with open(fs.CACHE / f"study_{name}.origins.pkl", "wb") as fh:
        pickle.dump(result.origins, fh)


def load(name: str):
    with open(fs.CACHE / f"study_{name}.pkl", "rb") as fh:
        captured = pickle.load(fh)
    with open(fs.CACHE / f"study_{name}.origins.pkl", "rb") as fh:
        return (*captured, pickle.load(fh))


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    cum = np.cumsum(w[order]) / w.sum()
    return float(x[order][min(np.searchsorted(cum, q), len(x) - 1)])


def _quantiles(err: np.ndarray, wt: np.ndarray, origin: np.ndarray, variant: str, level: float):
    n = len(err)
    tail = (1 - level) / 2 * (n + 1) / n
    if variant == "shock":  # a shift shared by every series at an origin, plus the rest
        med = pd.Series(err).groupby(origin).median()
        rest = err - pd.Series(origin).map(med).to_numpy()
        shared = np.sqrt((med.to_numpy() ** 2).mean()) * Z80
        return (-np.hypot(min(np.quantile(rest, tail), 0), shared),
                np.hypot(max(np.quantile(rest, 1 - tail), 0), shared))
    return min(weighted_quantile(err, wt, tail), 0), max(weighted_quantile(err, wt, 1 - tail), 0)


def _bounds(at: pd.DataFrame, earlier: pd.DataFrame, variant: str, horizon: int, level: float):
    f = at["territory"].to_numpy()
    lo, hi = np.full(len(at), np.nan), np.full(len(at), np.nan)
    ages = {o: k for k, o in enumerate(sorted(earlier["origin"].unique(), reverse=True))}
    wt = (0.5 ** earlier["origin"].map(ages).to_numpy() if variant.endswith("recent")
          else np.ones(len(earlier)))
    scaled = variant.startswith("scaled")
    for h in range(1, horizon + 1):
        m, r = (earlier["horizon"] == h).to_numpy(), (at["horizon"] == h).to_numpy()
        e = earlier[m]
        err = (((e["actual"] - e["territory"]) / e["scale"]).to_numpy() if scaled
               else cb._log_ratio(e["actual"].to_numpy(), e["territory"].to_numpy()))
        ql, qh = _quantiles(err, wt[m], e["origin"].to_numpy(), variant, level)
        if scaled:
            s = at["scale"].to_numpy()[r]
            lo[r], hi[r] = np.maximum(f[r] + ql * s, 0), f[r] + qh * s
        else:
            c = 0.05 * np.maximum(f[r], 0) + 1e-9
            lo[r] = np.maximum((f[r] + c) * np.exp(ql) - c, 0)
            hi[r] = (f[r] + c) * np.exp(qh) - c
    return lo, hi


def coverage(name: str, variant: str):
    pred, members, horizon, kw, scored = load(name)
    out, used = cb.add_combination(pred, members, horizon, adaptive=False, **kw)
    parts = []
    for origin in scored:
        at = out[out["origin"] == origin].copy()
        earlier = out[(out["origin"] < origin) & (out["target_period"] <= origin)]
        earlier = earlier.assign(territory=cb.combine(earlier, used[origin])[0])
        earlier = earlier[earlier[["actual", "territory"]].notna().all(axis=1)
                          & (earlier["scale"] > 0)]
        if variant != "current":
            at["territory_lo"], at["territory_hi"] = _bounds(at, earlier, variant, horizon,
                                                             kw["level"])
        parts.append(at)
    rows = pd.concat(parts)
    rows = rows[rows[["actual", "territory"]].notna().all(axis=1) & (rows["scale"] > 0)]
    inside = (rows["actual"] >= rows["territory_lo"]) & (rows["actual"] <= rows["territory_hi"])
    short = rows["history_periods"] < kw["short_periods"]
    return inside.mean(), inside[short].mean(), int(short.sum()), inside.groupby(
        rows["origin"]).mean().round(3).tolist()


def gap(name: str, power: float, trim: float):
    pred, members, horizon, kw, scored = load(name)
    out, _ = cb.add_combination(pred, members, horizon, power=power, trim=trim)
    s = out[out["origin"].isin(scored)]
    needed = ["actual", "scale", "territory", *members, sales_backtest.SEASONAL_NAIVE]
    s = s[s[needed].notna().all(axis=1) & (s["scale"] > 0)]
    mase = {m: ((s["actual"] - s[m]).abs() / s["scale"]).mean() for m in ["territory", *members]}
    best = min((m for m in members if m in MEMBERS), key=mase.get)
    return mase["territory"], best, mase[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panels", default="aus_retail,us_income,tourism,tourism_ragged")
    parser.add_argument("--capture", action="store_true")
    args = parser.parse_args()
    for name in args.panels.split(","):
        if args.capture:
            capture(name)
        for variant in VARIANTS:
            c, c_short, n_short, by_origin = coverage(name, variant)
            print(f"{name:15s} {variant:14s} coverage {c:.3f}; < 3 years {c_short:.3f} "
                  f"({n_short} rows); by origin {by_origin}")
        for power, trim in RULES:
            ours, best, theirs = gap(name, power, trim)
            print(f"{name:15s} power {power} trim {trim}: territory {ours:.4f} vs {best} "
                  f"{theirs:.4f}, gap {ours / theirs - 1:+.2%}")


if __name__ == "__main__":
    main()
