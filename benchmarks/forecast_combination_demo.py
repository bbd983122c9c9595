"""Benchmark: what the published combination costs and gives on the demo run.

The train and score stages of ``configs/demo.yaml`` (3,085 units, 2 backtest
origins), once per member list given (``""`` = LightGBM alone): CPU seconds
of each stage (this process and its children), the backtest MASE of LightGBM,
the members and the combination, the gate's choice and the published
forecast's WAPE on the last 12 months (fitted without them).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/forecast_combination_demo.py "" auto_theta
"""

from __future__ import annotations

import argparse

from forecast_statsforecast import cpu_seconds  # same folder

from territory.models.config import CombinationConfig
from territory.pipelines import stages
from territory.pipelines.config import load_config

SHOWN = ("valid_wape", "backtest_wape", "backtest_mase", "backtest_mase_auto_theta",
         "backtest_mase_auto_ets", "backtest_mase_territory", "combination_gate_gap",
         "heldout_wape_published", "heldout_wape_lightgbm", "backtest_member_fallback_share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("members", nargs="+", help='comma-separated members; "" for none')
    parser.add_argument("--config", default="configs/demo.yaml")
    args = parser.parse_args()
    config = load_config(args.config)
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    for given in args.members:
        members = [m for m in given.split(",") if m]
        forecast = config.forecast.model_copy(
            update={"combination": CombinationConfig(members=members)})
        run = config.model_copy(update={"forecast": forecast})
        started = cpu_seconds()
        trained = stages.train_stage(run, features)
        train_cpu = cpu_seconds() - started
        started = cpu_seconds()
        stages.score_stage(run, features, trained)
        score_cpu = cpu_seconds() - started
        shown = {k: round(v, 4) for k, v in trained.metrics.items() if k in SHOWN}
        print(f"members {members}: train CPU {train_cpu:.1f} s, score CPU {score_cpu:.1f} s; "
              f"{shown}", flush=True)
        if trained.published is not None:
            print(f"  published {trained.published.name} ({trained.published.describe()}); "
                  f"gate {trained.published.gate}", flush=True)


if __name__ == "__main__":
    main()
