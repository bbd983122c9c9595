"""Benchmark: is the published plan balanced in truth? (issue #19)

The engine balances territories on *estimated* potential. The demo simulator
knows the true potential of every county (``truth.parquet``), so this script
runs the real pipeline stages (load, features, training, scoring, design;
``territory.pipelines.stages``) with ``configs/demo.yaml`` and measures the
published plan against the truth:

* the largest deviation of a territory's true potential from the mean, and
  the share of territories within ±5% and ±10% of it;
* each territory's potential share error: ``|estimated share - true share| /
  true share`` (p50, p90), for the published plan and the current alignment;
* the unit-level Spearman correlation of estimated and true potential.

Companies: the committed demo (``data/demo``) and demo companies simulated
with other seeds (:func:`territory.features.demo.simulate_company` on the
committed geography, the function behind ``territory make-demo-data``),
written to a temporary folder. The truth is read here, after the run, and by
the score stage's truth metrics; no fit or choice reads it.

The forecast does not enter the design (it balances potential and workload),
so by default the forecaster is fitted quickly (no rolling backtest, 100
trees); ``--full-forecast`` keeps the config's forecast settings.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/true_balance.py --seeds demo 1 2
    .venv/bin/python benchmarks/true_balance.py --seeds demo --set potential.method=quantile
    .venv/bin/python benchmarks/true_balance.py --seeds demo 1 2 --set territories.robust=true
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
CONFIG = ROOT / "configs" / "demo.yaml"


def plan_truth_metrics(estimated: pd.Series, true: pd.Series, labels: pd.Series) -> dict:
    """Balance of a plan on the true potential, and its territories' share errors.

    Parameters
    ----------
    estimated, true
        Potential per unit (same index): what the engine balanced, and the truth.
    labels
        Territory per unit (same index).
    """
    from territory.models.scoring import territory_share_error

    frame = pd.DataFrame({"est": estimated, "true": true, "territory": labels}).dropna()
    sums = frame.groupby("territory")[["est", "true"]].sum()
    deviation = (sums["true"] / sums["true"].mean() - 1.0).abs()
    share_error = territory_share_error(frame["est"], frame["true"], frame["territory"])
    return {
        "n_territories": int(len(sums)),
        "max_deviation": float(deviation.max()),
        "within_5": float((deviation <= 0.05).mean()),
        "within_10": float((deviation <= 0.10).mean()),
        "share_error_p50": float(share_error.quantile(0.5)),
        "share_error_p90": float(share_error.quantile(0.9)),
        "est_max_deviation": float((sums["est"] / sums["est"].mean() - 1.0).abs().max()),
    }


def plan_uncertainty_check(summary: pd.DataFrame, true: pd.Series, labels: pd.Series,
                           tolerance: float) -> dict:
    """The plan's stated uncertainty against the truth: the mean stated chance of being
    within ±``tolerance`` against the share of territories that are, and how often each
    territory's interval (relative to the mean territory) holds its true relative potential.
    Empty when the summary has no uncertainty columns."""
    if "p_within_tolerance" not in summary:
        return {}
    table = summary.set_index("territory")
    true_sums = true.groupby(labels).sum().reindex(table.index)
    true_rel = true_sums / true_sums.mean()
    mean_est = table["potential_total"].mean()
    inside = ((table["potential_lo"] / mean_est <= true_rel)
              & (true_rel <= table["potential_hi"] / mean_est))
    return {"mean_p_within": float(table["p_within_tolerance"].mean()),
            "median_p_within": float(table["p_within_tolerance"].median()),
            "min_p_within": float(table["p_within_tolerance"].min()),
            "true_within": float(((true_rel - 1.0).abs() <= tolerance).mean()),
            "interval_coverage": float(inside.mean())}


def company_folder(seed: str, tmp: Path) -> Path:
    """``data/demo`` for ``demo``; else a company simulated with that seed on the demo geography."""
    if seed == "demo":
        return DEMO
    import geopandas as gpd

    from territory.features.demo import simulate_company

    out = tmp / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    counties = gpd.read_parquet(DEMO / "counties.parquet")
    demographics = pd.read_parquet(DEMO / "demographics.parquet")
    data = simulate_company(counties, demographics, int(seed))
    data.counties.to_parquet(out / "counties.parquet", index=False)
    data.demographics.to_parquet(out / "demographics.parquet", index=False)
    data.sales.to_parquet(out / "sales.parquet", index=False)
    data.alignment.to_csv(out / "alignment.csv", index=False)
    data.reps.to_csv(out / "reps.csv", index=False)
    data.truth.to_parquet(out / "truth.parquet", index=False)
    return out


def _deep_set(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def run_company(folder: Path, workspace: Path, settings: list[str], full_forecast: bool) -> dict:
    """The pipeline's stages on one company; the published plan measured on its truth."""
    from territory.pipelines import stages
    from territory.pipelines.config import load_config

    raw = yaml.safe_load(CONFIG.read_text())
    for name in ("units", "demographics", "sales", "alignment", "reps", "truth"):
        old = Path(raw["data"][name])
        raw["data"][name] = str(folder / old.name)
    raw["workspace"] = str(workspace)
    raw["progress"] = "none"
    if not full_forecast:
        _deep_set(raw, "forecast.backtest.windows", 0)
        _deep_set(raw, "forecast.n_estimators", 100)
    for item in settings:
        key, value = item.split("=", 1)
        _deep_set(raw, key, yaml.safe_load(value))
    config = load_config(CONFIG, {k: raw[k] for k in raw})
    times = {}
    start = time.perf_counter()
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    times["features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    trained = stages.train_stage(config, features)
    scores = stages.score_stage(config, features, trained)
    times["train_score_s"] = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    design = stages.design_stage(config, inputs, features, scores)
    times["design_s"] = time.perf_counter() - start
    times["design_cpu_s"] = time.process_time() - cpu

    cols = config.data.columns
    truth = pd.read_parquet(folder / "truth.parquet").set_index(cols.unit_col)
    estimated = scores.unit_totals["potential"].reindex(truth.index)
    true = truth["true_potential"]
    current = inputs.alignment.set_index(cols.unit_col)[cols.territory_col]
    from territory.models.backtest import spearman

    result = {
        "plan": plan_truth_metrics(estimated, true, design.proposed.reindex(truth.index)),
        "plan_uncertainty": plan_uncertainty_check(
            design.summary, true, design.proposed.reindex(truth.index),
            config.territories.tolerances.get("potential", 0.05)),
        "current": plan_truth_metrics(estimated, true, current.reindex(truth.index)),
        "unit_spearman": float(spearman(estimated.to_numpy(), true.to_numpy())),
        "balance_mode": design.overall.get("balance_mode", "estimate (robust off)"),
        "plan_shape": {k: design.overall.get(k) for k in (
            "max_abs_deviation_workload", "total_dispersion", "median_elongation",
            "max_elongation", "disruption_units_pct")},
        "robust_candidates": design.overall.get("robust_candidates"),
        "train_metrics": {k: v for k, v in trained.metrics.items() if k.startswith("potential")},
        **times,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["demo", "1", "2"],
                        help="'demo' (data/demo) or simulator seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. potential.method=quantile")
    parser.add_argument("--full-forecast", action="store_true",
                        help="keep the config's forecaster (backtest included)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="true_balance_") as tmp:
        for seed in args.seeds:
            folder = company_folder(seed, Path(tmp))
            results[seed] = run_company(folder, Path(tmp) / f"ws_{seed}", args.set,
                                        args.full_forecast)
            r = results[seed]
            p, c = r["plan"], r["current"]
            print(f"[{seed}] plan on truth: max dev {p['max_deviation']:.1%}, within ±5% "
                  f"{p['within_5']:.0%}, ±10% {p['within_10']:.0%}; share error p50 "
                  f"{p['share_error_p50']:.1%} p90 {p['share_error_p90']:.1%}; current "
                  f"alignment share error p90 {c['share_error_p90']:.1%}, within ±10% "
                  f"{c['within_10']:.0%}; unit Spearman {r['unit_spearman']:.3f}; "
                  f"(estimated max dev {p['est_max_deviation']:.1%}; "
                  f"{r['train_score_s']:.0f}s train+score, {r['design_s']:.0f}s design, "
                  f"{r['design_cpu_s']:.1f}s design CPU; balance mode {r['balance_mode']})",
                  flush=True)
            if r["plan_uncertainty"]:
                u = r["plan_uncertainty"]
                print(f"[{seed}] stated chance within ±tol: mean {u['mean_p_within']:.0%} "
                      f"(least {u['min_p_within']:.0%}); on truth {u['true_within']:.0%} are; "
                      f"intervals hold the truth for {u['interval_coverage']:.0%}", flush=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "settings": args.set, "full_forecast": args.full_forecast}
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
