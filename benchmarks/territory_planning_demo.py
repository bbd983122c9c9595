"""Benchmark: auto-K and regions on the demo counties (issue #6, auto-K and hierarchy).

The demo instance as the pipeline builds it: 3,085 counties, queen contiguity
with islands linked, EPSG:5070; ``potential`` = horizon total per county from
the latest ``workspace/runs/demo-*/scores.parquet`` (population as a proxy when
there is no run; the output says which), ``workload`` = mean monthly
``accounts`` over the last 12 months of ``data/demo/sales.parquet`` (as
``territory.pipelines.stages.feature_stage`` computes it).

1. ``choose_n_territories`` with a rep capacity (``--capacity`` accounts per
   rep, default 850), balancing potential and workload at ±5%, the pipeline's
   designer settings (``max_chains`` 100, ``max_restarts`` 0); prints the
   explanation and the candidates tried.
2. ``design_regions`` nests the chosen territories into ``--regions`` regions
   (default 5) at ±10%, and checks nesting and unit-level contiguity.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_planning_demo.py [--capacity 850 --regions 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]


def demo_instance() -> dict:
    import geopandas as gpd

    from territory.features.spatial import build_adjacency, projected_xy

    units = gpd.read_parquet(ROOT / "data" / "demo" / "counties.parquet")
    ids = units["unit_id"].astype(str).to_numpy()
    graph = build_adjacency(units, "unit_id", "queen", "EPSG:5070")
    xy = projected_xy(units, "EPSG:5070")
    runs = sorted((ROOT / "workspace" / "runs").glob("demo-*/scores.parquet"))
    if runs:
        scores = pd.read_parquet(runs[-1], columns=["unit_id", "potential"])
        potential = scores.groupby("unit_id")["potential"].sum().reindex(ids).fillna(0.0)
        source = f"potential from {runs[-1].relative_to(ROOT)}"
    else:
        demo = pd.read_parquet(ROOT / "data" / "demo" / "demographics.parquet")
        potential = demo.set_index("unit_id")["population"].reindex(ids).fillna(0.0)
        source = "proxy: population (no demo run in workspace/runs)"
    sales = pd.read_parquet(ROOT / "data" / "demo" / "sales.parquet",
                            columns=["unit_id", "period", "accounts"])
    last = sales["period"].max()
    recent = sales[sales["period"] > last - pd.DateOffset(months=12)]
    workload = recent.groupby("unit_id")["accounts"].mean().reindex(ids).fillna(0.0)
    attrs = pd.DataFrame({"potential": potential.to_numpy(float),
                          "workload": workload.to_numpy(float)})
    return {"ids": ids, "xy": xy, "adj": graph.matrix.tocsr(), "attrs": attrs, "source": source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=float, default=850.0)
    parser.add_argument("--regions", type=int, default=5)
    parser.add_argument("--max-extra", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args()

    from territory.models.territory_planning import choose_n_territories, design_regions

    inst = demo_instance()
    xy, adj, attrs = inst["xy"], inst["adj"], inst["attrs"]
    print(f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"Demo counties: {len(xy):,} units; {inst['source']}; workload = mean monthly accounts")
    t0, c0 = time.perf_counter(), time.process_time()
    auto = choose_n_territories(
        xy, adj, attrs, workload="workload", rep_capacity=args.capacity, tolerance=0.05,
        max_extra=args.max_extra, seed=42, unit_ids=inst["ids"], workload_label="accounts",
        designer_params={"time_limit_s": args.time_limit, "max_chains": 100, "max_restarts": 0},
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"\nAuto-K ({wall:.1f} s wall, {cpu:.1f} s CPU):\n{auto.explanation}\n")
    print(auto.candidates.to_string(index=False, float_format=lambda x: f"{x:.3f}"))

    t0, c0 = time.perf_counter(), time.process_time()
    hier = design_regions(xy, adj, attrs, auto.labels, args.regions, tolerance=0.10, seed=42,
                          centres=auto.centres, unit_ids=inst["ids"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    nested = bool(np.array_equal(hier.unit_region, hier.territory_region[auto.labels]))
    pieces = [connected_components(adj[m][:, m], directed=False)[0]
              for m in (np.flatnonzero(hier.unit_region == r) for r in range(args.regions))]
    rep = hier.report
    print(f"\nRegions ({wall:.1f} s wall, {cpu:.1f} s CPU): {args.regions} regions of "
          f"{auto.n_territories} territories; nesting exact: {nested}; unit-level pieces per "
          f"region: {pieces}")
    cols = ["name", "n_territories", "n_units", "potential_deviation", "workload_deviation",
            "contiguous", "diameter_km"]
    print(rep.territories[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"max deviation potential {rep.overall['max_abs_deviation_potential']:.1%}, workload "
          f"{rep.overall['max_abs_deviation_workload']:.1%}; violations: "
          f"{rep.violations or 'none'}")


if __name__ == "__main__":
    main()
