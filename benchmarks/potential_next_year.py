"""Benchmark: choose the rep-adjusted potential's settings on next year's sales (issue #19).

A criterion that real data has too, and that never reads the truth file:
the pipeline's feature stage runs with the as-of date one year before the
last month, the potential model is fitted on that year's sales, and each
unit's *next* year (the last 12 months, held out) is predicted as its
potential at its own territory's rep effect. Reported per setting:

* the unit-level RMSE of ``log1p`` next-year sales (after removing the
  common growth, i.e. the mean log error);
* the share error of next-year sales summed over regions: the current
  territories, and 50 k-means regions of nearby units (3 seeds), which stand
  in for a new plan's territories.

Settings compared: ``own_sales`` off (the market part only) and on, with
``market_variance`` 0.01, 0.03 and 0.1.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/potential_next_year.py --seeds demo 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.cluster import KMeans
from true_balance import CONFIG, company_folder  # same folder: the same companies

SETTINGS = {
    "market only": {"own_sales": False},
    "own sales, market_variance 0.01": {"market_variance": 0.01},
    "own sales, market_variance 0.03": {"market_variance": 0.03},
    "own sales, market_variance 0.1": {"market_variance": 0.1},
}


def share_errors(predicted: np.ndarray, actual: np.ndarray, labels: np.ndarray) -> pd.Series:
    """``|predicted share - actual share| / actual share`` per region."""
    frame = pd.DataFrame({"p": predicted, "y": actual, "k": labels}).dropna()
    sums = frame.groupby("k")[["p", "y"]].sum()
    actual_share = sums["y"] / sums["y"].sum()
    return (sums["p"] / sums["p"].sum() - actual_share).abs() / actual_share


def year_before(folder: Path, workspace: Path):
    """The feature set one year before the last month, and the held-out last year's sales."""
    from territory.pipelines import stages
    from territory.pipelines.config import load_config

    raw = yaml.safe_load(CONFIG.read_text())
    for name in ("units", "demographics", "sales", "alignment", "reps", "truth"):
        raw["data"][name] = str(folder / Path(raw["data"][name]).name)
    raw["data"]["truth"] = None
    raw["workspace"] = str(workspace)
    raw["progress"] = "none"
    sales = pd.read_parquet(folder / "sales.parquet")
    last = pd.Timestamp(sales["period"].max())
    raw["as_of"] = str((last - pd.DateOffset(months=12)).date())
    config = load_config(CONFIG, raw)
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    held_out = sales[pd.to_datetime(sales["period"]) > last - pd.DateOffset(months=12)]
    next_year = held_out.groupby("unit_id")["sales"].sum()
    return features, next_year.reindex(features.market_table.index)


def evaluate(features, next_year: pd.Series, settings: dict) -> dict:
    from territory.models.potential_rep import RepAdjustedPotential

    market = features.market_table
    groups = features.territory.reindex(market.index).to_numpy()
    start = time.process_time()
    model = RepAdjustedPotential(**settings).fit(
        market, features.annual_sales.to_numpy(), groups=groups,
        split=features.annual_split.reindex(market.index).to_numpy())
    cpu = time.process_time() - start
    effect = pd.Series(groups).astype(str).map(model.territory_effects_).fillna(0.0).to_numpy()
    log_pred = model.unit_log(market) + effect
    actual = next_year.to_numpy(dtype=float)
    error = np.log1p(actual) - log_pred
    error = error[np.isfinite(error)]
    predicted = np.expm1(log_pred)
    regions = [KMeans(50, n_init=1, random_state=r).fit_predict(features.xy) for r in range(3)]
    current = share_errors(predicted, actual, groups)
    nearby = [share_errors(predicted, actual, labels) for labels in regions]
    return {
        "log_rmse": float(np.sqrt(np.mean((error - error.mean()) ** 2))),
        "current_p90": float(current.quantile(0.9)),
        "regions_p90": float(np.mean([s.quantile(0.9) for s in nearby])),
        "regions_max": float(np.mean([s.max() for s in nearby])),
        "fit_cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["demo", "1"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="next_year_") as tmp:
        for seed in args.seeds:
            features, next_year = year_before(company_folder(seed, Path(tmp)),
                                              Path(tmp) / f"ws_{seed}")
            for name, settings in SETTINGS.items():
                r = evaluate(features, next_year, settings)
                results[f"{seed} | {name}"] = r
                print(f"[{seed}] {name:34s} next-year log RMSE {r['log_rmse']:.4f}; share "
                      f"error p90: current {r['current_p90']:.1%}, regions "
                      f"{r['regions_p90']:.1%} (max {r['regions_max']:.1%}); "
                      f"fit {r['fit_cpu_s']:.1f} s CPU", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
