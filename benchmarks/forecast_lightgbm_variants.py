"""Study: LightGBM settings for ``territory``, chosen on early origins only, on four panels.

Works on the captures of ``forecast_rule_study.py --capture`` (every origin's
member predictions, calibration origins included). Each variant refits LightGBM
alone at every captured origin (the same origins and history as
``territory backtest``) with some ``ForecastConfig`` settings replaced, swaps its
predictions in for the captured LightGBM, and combines the members with the
published rule (``combination.add_combination``: inverse MASE per horizon, weights
of earlier origins only). Scored: the row-mean MASE gap of ``territory`` to the
best of AutoETS, AutoTheta and AutoARIMA on the same rows, on the EARLY scored
origins (the first ``--early`` of each panel) and on the LATER ones. One variant
for every panel is chosen on the early origins, by the mean gap over panels; the
later origins play no part in the choice.

Run (not part of the test suite; LightGBM refits are cached per panel and variant)::

    nice .venv/bin/python benchmarks/forecast_lightgbm_variants.py
"""

from __future__ import annotations

import argparse
import pickle
import time

import forecast_rule_study as rs  # same folder
import forecast_statsforecast as fs
import numpy as np
import pandas as pd

from territory.models import combination as cb
from territory.models import sales_backtest

NAMED = ("auto_ets", "auto_theta", "auto_arima")
PANELS = ("aus_retail", "us_income", "tourism", "tourism_ragged")
VARIANTS: dict[str, dict] = {
    "default": {},
    "recency_5y": {"recency_half_life": 5.0},
    "recency_10y": {"recency_half_life": 10.0},
    "recency_20y": {"recency_half_life": 20.0},
    "l2_scaled": {"objective": "l2_scaled"},
    "huber": {"objective": "huber_log_ratio"},
    "tweedie": {"objective": "tweedie"},
    "equal": {"weighting": "equal"},
    "seed7": {"seed": 7},
    "tweedie_r10": {"objective": "tweedie", "recency_half_life": 10.0},
    "l2_scaled_r10": {"objective": "l2_scaled", "recency_half_life": 10.0},
    "seed7_r10": {"seed": 7, "recency_half_life": 10.0},
}
SECOND = "lightgbm_b"  # "a+b": variant a replaces LightGBM, variant b joins as a member


def lightgbm_predictions(name: str, variant: str) -> tuple[pd.DataFrame, float]:
    """LightGBM's predictions at every captured origin under ``variant``, and its CPU seconds."""
    path = fs.CACHE / f"lgbm_{name}_{variant}.pkl"
    if path.exists():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    captured: dict[str, pd.DataFrame] = {}
    original = cb.add_combination

    def keep(predictions, members, horizon, **kw):
        captured["predictions"] = predictions
        return original(predictions, members, horizon, **kw)

    loader, frequency, horizon, windows, step = fs.PANELS[name]
    sales = loader()
    if name.startswith("tourism"):
        sales = fs.read_as_the_cli_does(sales, frequency)
    started = time.process_time()
    sales_backtest.combination.add_combination = keep
    try:
        sales_backtest.backtest_sales(sales, frequency, horizon, windows, step, members=(),
                                      forecast=VARIANTS[variant])
    finally:
        sales_backtest.combination.add_combination = original
    cpu = time.process_time() - started
    pred = captured["predictions"][["unit_id", "origin", "horizon", "forecast",
                                    "forecast_lo", "forecast_hi"]]
    with open(path, "wb") as fh:
        pickle.dump((pred, cpu), fh)
    return pred, cpu


def _primary(name: str, primary: str) -> tuple[pd.DataFrame, float]:
    """LightGBM's predictions under ``primary``; "a&b" averages variants a and b (a seed bag)."""
    parts = [lightgbm_predictions(name, v) for v in primary.split("&")]
    if len(parts) == 1:
        return parts[0]
    keys = ["unit_id", "origin", "horizon"]
    stacked = pd.concat([p for p, _ in parts]).groupby(keys, sort=False).mean().reset_index()
    return stacked, sum(c for _, c in parts)


def gaps(name: str, variant: str, early: int) -> tuple[list[dict], float]:
    pred, members, horizon, kw, scored = rs.load(name)
    primary, _, second = variant.partition("+")
    keys = ["unit_id", "origin", "horizon"]
    lgbm, cpu = _primary(name, primary or "default")
    swapped = pred.drop(columns=["forecast", "forecast_lo", "forecast_hi"]).merge(
        lgbm, on=keys, how="left")
    if second:
        extra, more = lightgbm_predictions(name, second)
        swapped = swapped.merge(
            extra.rename(columns=lambda c: c.replace("forecast", SECOND)), on=keys, how="left")
        members, cpu = [*members, SECOND], cpu + more
    out, _ = cb.add_combination(swapped, members, horizon, **kw)
    named = [m for m in NAMED if m in out]
    lgbm_col = SECOND if second else "forecast"
    s = out[out["origin"].isin(scored)]
    s = s[s[["actual", "scale", "forecast", *named]].notna().all(axis=1) & (s["scale"] > 0)]
    part = np.where(s["origin"].isin(sorted(scored)[:early]), "early", "later")
    records = []
    for label, rows in (("early", s[part == "early"]), ("later", s[part == "later"]),
                        ("all", s)):
        err = {m: ((rows["actual"] - rows[m]).abs() / rows["scale"]).mean()
               for m in ["territory", lgbm_col, *named]}
        best = min(named, key=err.get)
        records.append({"panel": name, "variant": variant, "part": label,
                        "territory": err["territory"], "lightgbm": err[lgbm_col],
                        "best": best, "gap": err["territory"] / err[best] - 1})
    return records, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panels", default=",".join(PANELS))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated; 'a+b': a replaces LightGBM (empty: the "
                             "default), b joins as a second member")
    parser.add_argument("--early", type=int, default=2)
    args = parser.parse_args()
    records, cpu = [], {}
    for name in args.panels.split(","):
        for variant in args.variants.split(","):
            rows, cpu[(name, variant)] = gaps(name, variant, args.early)
            records += rows
            print(f"{name:15s} {variant:12s} LightGBM CPU {cpu[(name, variant)]:6.1f} s; " +
                  "; ".join(f"{r['part']} gap {100 * r['gap']:+.2f}% (LightGBM "
                            f"{r['lightgbm']:.4f})" for r in rows), flush=True)
    rows = pd.DataFrame(records)
    pd.set_option("display.width", 200)
    table = rows.pivot_table(index="variant", columns=["part", "panel"], values="gap") * 100
    choice = table["early"].mean(axis=1).sort_values()
    print("\nmean early gap over panels, best first (%):")
    print(choice.round(2).to_string())
    for part in ("early", "later", "all"):
        print(f"\n{part} origins: gap of territory to the best named statistical model (%)")
        print(table[part].round(2).to_string())
    lgbm = rows.pivot_table(index="variant", columns=["part", "panel"], values="lightgbm")
    print("\nLightGBM alone, row-mean MASE, all scored origins")
    print(lgbm["all"].round(4).to_string())
    print(f"\nchosen on early origins: {choice.index[0]}")


if __name__ == "__main__":
    main()
