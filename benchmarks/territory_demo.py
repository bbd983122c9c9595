"""Benchmark: territory design on the demo counties (issue #6, benchmark 1).

The instance is exactly the one the demo pipeline designs
(``territory.pipelines.stages.design_stage`` with ``configs/demo.yaml``): 3,085 US
counties, queen contiguity with islands linked to their nearest unit, EPSG:5070
coordinates, attributes ``potential`` (horizon total per unit from the latest
``workspace/runs/demo-*/scores.parquet``; if there is no run, the project's
``PotentialEstimator`` is fitted as in ``train_models``) and ``workload``
(mean monthly ``accounts`` over the last year), K=50, +-5% on both. The
instance is cached in ``workspace/cache/territory_demo_instance.npz``.

Runs, each timed (wall and CPU):

* the current alignment (``data/demo/alignment.csv``), evaluated only;
* a fresh design;
* a minimal-disruption rebalance of the current alignment;
* a fresh design keeping each rep's home county (``reps.csv``) in their territory;
* the lower bounds on the units a rebalance must move
  (:func:`territory.models.territories.rebalance_lower_bound`).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_demo.py --time-limit 1000
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "workspace" / "cache" / "territory_demo_instance.npz"


def build_instance(config_path: Path) -> dict:
    """Assemble xy, adjacency, attributes, current labels and rep homes like the pipeline."""
    from territory.pipelines import stages
    from territory.pipelines.config import load_config

    config = load_config(config_path)
    cols = config.data.columns
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    unit_ids = inputs.units[cols.unit_col].astype(str).to_numpy()
    runs = sorted((ROOT / "workspace" / "runs").glob("demo-*/scores.parquet"))
    if runs:
        scores = pd.read_parquet(runs[-1])
        potential = scores.groupby(cols.unit_col)["potential"].sum().reindex(unit_ids)
        source = str(runs[-1].relative_to(ROOT))
    else:  # no run yet: fit the potential model exactly as train_models does
        from territory.models.potential_rep import fit_potential

        est, _metrics, _table = fit_potential(
            config.potential, features.market_table, features.annual_sales.to_numpy(),
            features.territory, features.xy, features.annual_split)
        potential = pd.Series(est.predict(features.market_table),
                              index=features.market_table.index).reindex(unit_ids)
        source = "fit_potential refit, as train_models"
    current = inputs.alignment.set_index(cols.unit_col)[cols.territory_col].reindex(unit_ids)
    names = sorted(current.unique())
    codes = pd.Categorical(current, categories=names).codes.astype(np.int64)
    reps = inputs.reps.set_index(cols.territory_col).reindex(names)
    position = {u: i for i, u in enumerate(unit_ids)}
    homes = np.array([position[str(h)] for h in reps["home_unit_id"]], dtype=np.int64)
    adj = sp.csr_matrix(features.graph.matrix)
    return {
        "unit_ids": unit_ids.astype(str),
        "xy": np.asarray(features.xy, dtype=float),
        "adj_indptr": adj.indptr, "adj_indices": adj.indices,
        "potential": potential.fillna(0.0).to_numpy(dtype=float),
        "workload": features.workload.reindex(unit_ids).fillna(0.0).to_numpy(dtype=float),
        "current": codes, "territory_names": np.array(names), "homes": homes,
        "source": np.array(source),
    }


def load_instance(config_path: Path = ROOT / "configs" / "demo.yaml", refresh: bool = False):
    """Cached instance: ``(xy, adjacency, attributes, current, homes, unit_ids, source)``."""
    if refresh or not CACHE.exists():
        inst = build_instance(config_path)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE.with_suffix(".tmp.npz")
        np.savez(tmp, **inst)
        tmp.replace(CACHE)
    z = np.load(CACHE, allow_pickle=False)
    n = len(z["xy"])
    adj = sp.csr_matrix((np.ones(len(z["adj_indices"])), z["adj_indices"], z["adj_indptr"]),
                        shape=(n, n))
    attrs = pd.DataFrame({"potential": z["potential"], "workload": z["workload"]})
    return (z["xy"], adj, attrs, z["current"], z["homes"], z["unit_ids"].astype(str),
            str(z["source"]))


def _row(name: str, report, wall: float, cpu: float) -> dict:
    o = report.overall
    return {
        "run": name,
        "violations": o["n_violations"],
        "max dev potential": f"{100 * o['max_abs_deviation_potential']:.1f}%",
        "max dev workload": f"{100 * o['max_abs_deviation_workload']:.1f}%",
        "contiguous": o["contiguous"],
        "units moved": f"{o['disruption_units_pct']:.1f}%",
        "potential moved": f"{o['disruption_potential_pct']:.1f}%",
        "dispersion (1e15)": f"{o['total_dispersion'] / 1e15:.2f}",
        "wall s": f"{wall:.1f}",
        "cpu s": f"{cpu:.1f}",
    }


def main() -> None:
    from territory.models.territories import (
        design_territories,
        evaluate_alignment,
        rebalance_lower_bound,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-chains", type=int, default=100,
                        help="ejection chains per repair round (the pipeline's setting)")
    parser.add_argument("--time-limit", type=float, default=1000.0,
                        help="wall-clock safety net per run (high: results must not depend on it)")
    parser.add_argument("--refresh", action="store_true", help="rebuild the cached instance")
    args = parser.parse_args()

    xy, adj, attrs, current, homes, unit_ids, source = load_instance(Path(args.config),
                                                                     args.refresh)
    k, tau = args.k, args.tolerance
    print(f"instance: {len(xy)} units, {adj.nnz // 2} adjacencies, K={k}, tau={tau:.0%} on "
          f"{list(attrs.columns)}; potential from {source}")
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    rows = []
    t0, c0 = time.perf_counter(), time.process_time()
    rep = evaluate_alignment(current, xy, adj, attrs, tau, current_labels=current,
                             n_territories=k)
    rows.append(_row("current alignment", rep, time.perf_counter() - t0, time.process_time() - c0))
    common = dict(unit_ids=unit_ids, max_restarts=0, max_chains=args.max_chains,
                  time_limit_s=args.time_limit)
    runs = {
        "fresh design": {},
        "rebalance (minimal disruption)": {"current_labels": current},
        "fresh, rep homes fixed": {"fixed_centres": {t: int(u) for t, u in enumerate(homes)}},
    }
    results = {}
    for name, kw in runs.items():
        t0, c0 = time.perf_counter(), time.process_time()
        res = design_territories(xy, adj, attrs, k, tau, args.seed, **common, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rep = res.report
        if "current_labels" not in kw:  # disruption against today's alignment, for comparison
            rep = evaluate_alignment(res.labels, xy, adj, attrs, tau, current_labels=current,
                                     centres=res.centres, n_territories=k)
        rows.append(_row(name, rep, wall, cpu))
        results[name] = res
    table = pd.DataFrame(rows)
    print(_markdown(table))
    bound = rebalance_lower_bound(current, attrs, k, tau)
    print(f"\nlower bound for any balanced rebalance (ignores contiguity): "
          f"{bound['units']} units ({bound['units_pct']:.1f}%), "
          f"{bound['potential_pct']:.1f}% of potential, {bound['workload_pct']:.1f}% of workload")
    for name, res in results.items():
        v = res.report.violations
        print(f"\n{name}: {len(v)} violations" + (": " + "; ".join(v[:6]) + " ..." if v else ""))
        for line in res.report.diagnosis:
            print(f"  why: {line}")


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
