"""Benchmark: the compactness weight on the demo's published rung (issue #11).

The demo counties (``territory_demo.build_instance``: 3,085 units, K=50, the pipeline's
potential and workload) are designed with potential hard at ±5% and workload soft at
``--soft``, the shape limit 2.0 and one start, for each compactness weight and seed. Each
design's dispersion is set over potential-weighted k-means with the same K (the compact
optimum without balance).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_compactness.py --compactness 5 40 160 --seeds 42 1 2 3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import geopandas as gpd
    from sklearn.cluster import KMeans
    from territory_demo import build_instance

    from territory.models.territories import design_territories, evaluate_alignment
    from territory.pipelines.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--compactness", type=float, nargs="+", default=[5.0, 40.0, 160.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3])
    parser.add_argument("--soft", type=float, default=0.4, help="workload's soft tolerance")
    args = parser.parse_args()
    config = load_config(args.config)
    inst = build_instance(args.config)
    n, k = len(inst["xy"]), 50
    adjacency = sp.csr_matrix((np.ones(len(inst["adj_indices"])), inst["adj_indices"],
                               inst["adj_indptr"]), shape=(n, n))
    units = gpd.read_parquet(config.data.units).set_index(config.data.columns.unit_col)
    areas = units.geometry.to_crs("EPSG:5070").area.reindex(inst["unit_ids"]).to_numpy() / 1e6
    attrs = pd.DataFrame({"potential": inst["potential"], "workload": inst["workload"]})
    kmeans = KMeans(n_clusters=k, n_init=4, random_state=42).fit(
        inst["xy"], sample_weight=inst["potential"])
    best = evaluate_alignment(kmeans.labels_, inst["xy"], adjacency, attrs, tolerance=0.05,
                              n_territories=k).overall["total_dispersion"]
    rows = []
    for weight in args.compactness:
        for seed in args.seeds:
            started = time.process_time()
            res = design_territories(
                inst["xy"], adjacency, attrs, k, seed=seed, soft_attributes=("workload",),
                tolerances={"potential": 0.05, "workload": args.soft}, areas=areas,
                max_elongation=2.0, compactness_weight=weight, max_restarts=0,
                time_limit_s=120)
            o = res.report.overall
            rows.append({"compactness": weight, "seed": seed,
                         "dispersion_vs_kmeans": o["total_dispersion"] / best,
                         "potential_max_dev": o["max_abs_deviation_potential"],
                         "workload_max_dev": o["max_abs_deviation_workload"],
                         "median_elongation": o["median_elongation"],
                         "max_elongation": o["max_elongation"],
                         "violations": o["n_violations"], "cpu_s": time.process_time() - started})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(table.groupby("compactness")["dispersion_vs_kmeans"].mean().rename("mean dispersion"))
    print(f"machine: {platform.node()} {platform.machine()} Python {platform.python_version()}")


if __name__ == "__main__":
    main()
