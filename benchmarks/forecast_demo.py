"""Benchmark: forecast and potential on the demo company (configs/demo.yaml inputs).

Runs the pipeline's own stages: load, features, then ``train_models``, which
fits the forecaster and the potential model and runs the rolling-origin
backtest configured in ``forecast.backtest`` (overridable here), then scores
units to compare potential with the simulated truth. Reports:

* backtest WAPE / MASE of LightGBM vs seasonal naive and moving average,
  out of sample, and the coverage of the 80% interval;
* Spearman and WAPE of estimated vs true potential;
* wall time of training + backtest, and peak memory (max RSS).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_demo.py --windows 4 --step 3
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

from territory.pipelines import stages
from territory.pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--step", type=int, default=3)
    parser.add_argument("--objective", default=None)
    parser.add_argument("--ets", action="store_true",
                        help="add the ETS baseline (slow: one fit per series)")
    args = parser.parse_args()

    config = load_config(args.config)
    fc = config.forecast.model_dump()
    fc["backtest"] = {**fc["backtest"], "windows": args.windows, "step": args.step}
    if args.ets:
        fc["backtest"]["baselines"] = [*fc["backtest"]["baselines"], "ets"]
    if args.objective:
        fc["objective"] = args.objective
    config = config.model_copy(update={"forecast": type(config.forecast).model_validate(fc)})

    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    inputs = stages.load_inputs(config)
    t1 = time.perf_counter()
    features = stages.feature_stage(config, inputs)
    t2, c2 = time.perf_counter(), time.process_time()
    trained = stages.train_stage(config, features)
    t3, c3 = time.perf_counter(), time.process_time()
    scores = stages.score_stage(config, features, trained)
    t4 = time.perf_counter()

    res = trained.backtest
    table = res.table(by=None).set_index("model")[["wape", "mase", "rmse", "bias"]]
    intervals = res.interval_table(by=None)
    m = {**trained.metrics, **scores.metrics}
    print(f"demo: {features.market_table.shape[0]:,} units; objective {config.forecast.objective}; "
          f"backtest origins {', '.join(f'{o:%Y-%m}' for o in res.origins)}; "
          f"horizon {res.horizon}")
    print(table.round(4).to_string())
    ours, naive = table.loc["forecast", "wape"], table.loc["seasonal_naive", "wape"]
    print(f"LightGBM WAPE vs seasonal naive: {ours / naive - 1:+.1%}")
    if res.member_series:
        print(f"statistical members' per-unit fallbacks (ADIDA/CrostonSBA): "
              f"{res.member_fallbacks}/{res.member_series}")
    per_h = res.table().query("horizon != 'all'")
    per_h = per_h.pivot(index="horizon", columns="model", values="wape").join(
        res.interval_table().query("horizon != 'all'").set_index("horizon")["coverage"])
    print("WAPE and interval coverage by horizon")
    print(per_h.round(3).to_string())
    print(f"{config.forecast.interval_level:.0%} interval, out of sample: coverage "
          f"{intervals['coverage'].iloc[0]:.3f}, pinball {intervals['pinball'].iloc[0]:.3f}")
    print(f"validation-window WAPE {m['valid_wape']:.4f} vs seasonal naive "
          f"{m['valid_wape_seasonal_naive']:.4f}")
    print(f"potential: Spearman vs truth {m['potential_spearman_vs_truth']:.4f}, WAPE vs truth "
          f"{m['potential_wape_vs_truth']:.4f}, out-of-fold pinball@{config.potential.quantile} "
          f"{m['potential_cv_pinball']:.2f} (share of units below "
          f"{m['potential_cv_share_below']:.3f})")
    print(f"time: load {t1 - t0:.1f} s, features {t2 - t1:.1f} s, "
          f"training + backtest {t3 - t2:.1f} s wall, {c3 - c2:.1f} s CPU (backtest fits "
          f"{res.fit_seconds:.1f} s, baselines {res.baseline_seconds:.1f} s), scoring "
          f"{t4 - t3:.1f} s; load average {load_start:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end, {os.cpu_count()} CPUs")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"{platform.machine()}, python {platform.python_version()}")
    print(trained.forecaster.drivers(features.score_table).head(5).to_string())


if __name__ == "__main__":
    main()
