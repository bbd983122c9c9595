"""Benchmark: the rep-change stage of a run with ``data.previous_alignment`` (issue #19, item 2).

Real data has no true potential; a run with an earlier alignment scores its
potential on the units whose rep changed
(:mod:`territory.pipelines.rep_change`): one extra potential fit on the year
before ``changed_at``. This script measures, on the demo's 3,085 units and
on companies simulated with other seeds (``true_balance.company_folder``):

* the CPU cost of that stage (user + system time of the process and its
  children, LightGBM's threads included; wall time in the JSON only),
  beside the feature stage and the run's own potential fit (``fit_potential``,
  with its cross-validation), the stage's price in a training run;
* the metric it gives (p50 / p90 of the receiving territories' share error)
  against what the truth says: the same metric with the moved units' expected
  sales under their new rep (the truth's ``expected_sales_horizon``) in place
  of their noisy sales, and the run's potential's
  share error on the current territories against the truth (as
  ``benchmarks/true_balance.py`` computes it for the current alignment).

The company's history comes from the simulator: ``--share`` of the boundary
units had a neighbouring territory until 12 months before the last month
(:func:`territory.features.demo_rep_change.with_rep_changes`, seeded), with
the sales that rep made, as ``territory make-demo-data --rep-changes`` writes
it. The truth file is read after the stages, for the comparison only.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/rep_change_stage.py --seeds demo 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml
from true_balance import CONFIG, company_folder, plan_truth_metrics  # same folder


def with_history(folder: Path, out: Path, share: float, seed: int) -> tuple[Path, str]:
    """``folder``'s company with the simulator's rep changes, written to ``out``; returns the
    earlier alignment's path and ``changed_at``."""
    import geopandas as gpd

    from territory.features.demo import DemoData
    from territory.features.demo_rep_change import with_rep_changes

    data = DemoData(gpd.read_parquet(folder / "counties.parquet"),
                    pd.read_parquet(folder / "demographics.parquet"),
                    pd.read_parquet(folder / "sales.parquet"),
                    pd.read_csv(folder / "alignment.csv", dtype=str),
                    pd.read_csv(folder / "reps.csv", dtype={"territory_id": str}),
                    pd.read_parquet(folder / "truth.parquet"))
    data, earlier, changed_at = with_rep_changes(data, share, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("counties.parquet", "demographics.parquet", "truth.parquet"):
        (out / name).write_bytes((folder / name).read_bytes())
    for name in ("alignment.csv", "reps.csv"):
        (out / name).write_bytes((folder / name).read_bytes())
    data.sales.to_parquet(out / "sales.parquet", index=False)
    earlier.to_csv(out / "alignment_previous.csv", index=False)
    return out / "alignment_previous.csv", changed_at


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(seed: str, tmp: Path, share: float, settings: list[str]) -> dict:
    from territory.models.potential_rep import fit_potential
    from territory.pipelines import stages
    from territory.pipelines.config import load_config
    from territory.pipelines.rep_change import rep_change_stage

    folder = with_history(company_folder(seed, tmp), tmp / f"history_{seed}", share, seed=0)
    earlier, changed_at = folder
    data_dir = earlier.parent
    raw = yaml.safe_load(CONFIG.read_text())
    for name in ("units", "demographics", "sales", "alignment", "reps"):
        raw["data"][name] = str(data_dir / Path(raw["data"][name]).name)
    raw["data"]["truth"] = None
    raw["data"]["previous_alignment"] = {"path": str(earlier), "changed_at": changed_at}
    raw["workspace"] = str(tmp / f"ws_{seed}")
    raw["progress"] = "none"
    for item in settings:
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    config = load_config(CONFIG, raw)
    inputs = stages.load_inputs(config)
    cpu, wall = cpu_seconds(), time.perf_counter()
    features = stages.feature_stage(config, inputs)
    features_cpu, features_wall = cpu_seconds() - cpu, time.perf_counter() - wall
    cpu, wall = cpu_seconds(), time.perf_counter()
    metrics, table = rep_change_stage(config, inputs, features)
    stage_cpu, stage_wall = cpu_seconds() - cpu, time.perf_counter() - wall
    cpu = cpu_seconds()
    potential, _, _ = fit_potential(config.potential, features.market_table,
                                    features.annual_sales.to_numpy(), features.territory,
                                    features.xy, features.annual_split)
    potential_cpu = cpu_seconds() - cpu

    # after the stages: the truth, for the comparison only
    cols = config.data.columns
    truth = pd.read_parquet(data_dir / "truth.parquet").set_index(cols.unit_col)
    market = features.market_table
    estimated = pd.Series(potential.predict(market), index=market.index).reindex(truth.index)
    current = inputs.alignment.set_index(cols.unit_col)[cols.territory_col].reindex(truth.index)
    run_truth = plan_truth_metrics(estimated, truth["true_potential"], current)
    before = inputs.previous_alignment.set_index(cols.unit_col)[cols.territory_col]
    moved = before.index[before.reindex(current.index).to_numpy() != current.to_numpy()]
    groups = current.reindex(moved).astype(str)
    expected = truth["expected_sales_horizon"].reindex(moved).groupby(groups.to_numpy()).sum()
    scored = table.set_index("territory")
    expected = expected.reindex(scored.index) / expected.reindex(scored.index).sum()
    noiseless = ((scored["predicted_share"] - expected).abs() / expected)
    return {"changed_at": changed_at, "moved_units": int(len(moved)),
            "noiseless_p50": float(noiseless.quantile(0.5)),
            "noiseless_p90": float(noiseless.quantile(0.9)),
            "metrics": metrics, "table": table.to_dict(orient="list"),
            "run_potential_vs_truth": run_truth,
            "features_cpu_s": features_cpu, "stage_cpu_s": stage_cpu,
            "features_wall_s": features_wall, "stage_wall_s": stage_wall,
            "n_units": int(len(features.market_table)),
            "train_rows": int(len(features.train_table)),
            "run_potential_cpu_s": potential_cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["demo", "1", "2"])
    parser.add_argument("--share", type=float, default=0.3,
                        help="share of the boundary units that had another territory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. potential.method=quantile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    print("| company | moved units: scored (receiving territories) | rep-change share error "
          "p50 / p90 | the same on expected sales (truth) p50 / p90 | run potential vs truth, "
          "current territories p50 / p90 | stage CPU s | run's potential fit CPU s | "
          "features CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rep_change_stage_") as tmp:
        for seed in args.seeds:
            results[seed] = r = run(seed, Path(tmp), args.share, args.set)
            m, t = r["metrics"], r["run_potential_vs_truth"]
            print(f"| {seed} | {r['moved_units']}: {m['potential_rep_change_units']:.0f} "
                  f"({m['potential_rep_change_territories']:.0f}) | "
                  f"{m['potential_rep_change_share_error_p50']:.1%} / "
                  f"{m['potential_rep_change_share_error_p90']:.1%} | "
                  f"{r['noiseless_p50']:.1%} / {r['noiseless_p90']:.1%} | "
                  f"{t['share_error_p50']:.1%} / {t['share_error_p90']:.1%} | "
                  f"{r['stage_cpu_s']:.1f} | {r['run_potential_cpu_s']:.1f} | "
                  f"{r['features_cpu_s']:.1f} |", flush=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "share": args.share, "settings": args.set}
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2,
                                        default=str))


if __name__ == "__main__":
    main()
