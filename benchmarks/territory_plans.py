"""Benchmark: the price of balance on the demo counties (issue #11).

The instance is the demo pipeline's (see ``territory_demo.py``: 3,085 US
counties, K=50, potential and workload per county), with county areas from
``data/demo/units.parquet`` in EPSG:5070. It runs the design stage's plans
(:func:`territory.models.plans.price_of_balance`) with the config's balance
rules (demo: potential hard at ±5%, workload soft, frontier 0.5 → 0.1),
prints the plans table, and sets beside it the compact optimum without
balance: potential-weighted k-means with the same K (k-means++ seeded with
the config's seed), evaluated by the same report.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_plans.py
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

    from territory.models import plans
    from territory.models.alignment import Geography
    from territory.models.territories import evaluate_alignment
    from territory.pipelines.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    args = parser.parse_args()
    config = load_config(args.config)
    tc = config.territories
    inst = build_instance(args.config)
    n = len(inst["xy"])
    adjacency = sp.csr_matrix((np.ones(len(inst["adj_indices"])), inst["adj_indices"],
                               inst["adj_indptr"]), shape=(n, n))
    units = gpd.read_parquet(config.data.units).set_index(config.data.columns.unit_col)
    areas = units.geometry.to_crs("EPSG:5070").area.reindex(inst["unit_ids"]).to_numpy() / 1e6
    geo = Geography(inst["unit_ids"], inst["xy"], adjacency, areas)
    measures = {"potential": inst["potential"], "workload": inst["workload"],
                "units": np.ones(n), "forecast": inst["potential"]}

    started = time.process_time()
    tried = plans.price_of_balance(geo, measures, tc)
    cpu = time.process_time() - started
    published = plans.chosen_plan(tried, tc)
    table = plans.plans_table(tried, tc, published)

    k = tc.n_territories
    kmeans = KMeans(n_clusters=k, n_init=4, random_state=tc.seed).fit(
        inst["xy"], sample_weight=inst["potential"])
    attrs = pd.DataFrame({"potential": inst["potential"], "workload": inst["workload"]})
    compact = evaluate_alignment(kmeans.labels_, inst["xy"], adjacency, attrs,
                                 tolerances=tc.tolerances, areas=areas, n_territories=k)
    best_dispersion = compact.overall["total_dispersion"]
    table["dispersion_vs_kmeans"] = table["total_dispersion"] / best_dispersion

    shown = table.drop(columns=[c for c in table if c.endswith("_role")])
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.float_format", "{:.3f}".format):
        print(shown.to_string(index=False))
    ko = compact.overall
    print(f"\nk-means (potential-weighted, K={k}): dispersion {best_dispersion:.4g}, "
          f"max potential deviation {ko['max_abs_deviation_potential']:.1%}, "
          f"workload {ko['max_abs_deviation_workload']:.1%}, contiguous {ko['contiguous']}, "
          f"median elongation {ko['median_elongation']:.2f}, max {ko['max_elongation']:.2f}")
    row = table[table["published"]].iloc[0]
    print(f"published: {row['plan']}; frontier CPU {cpu:.1f} s over {len(tried)} plans; "
          f"published plan's own CPU {row['cpu_s']:.1f} s")
    print(f"machine: {platform.node()} {platform.machine()} Python {platform.python_version()}")


if __name__ == "__main__":
    main()
