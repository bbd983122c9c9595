"""Benchmark: our territory designer head to head with PySAL spopt and k-means (issue #6, 2).

Identical instances for every method (same graph, same attribute, same K):

* ``lattice-400``: 20 x 20 rook lattice, 1 km spacing, K=10;
* ``lattice-900``: 30 x 30 rook lattice, K=10;
* ``counties``: the demo's 3,085 US counties (``data/demo/counties.parquet``),
  queen contiguity with islands linked to their nearest county
  (``territory.features.spatial.build_adjacency``), EPSG:5070, K=50.

The attribute is ``potential``: gamma(shape 2, scale 50) on the lattices
(seeded); on the counties the per-unit horizon total of ``potential`` in the
latest ``workspace/runs/demo-*/scores.parquet``, or, when there is no run,
county ``population`` from ``data/demo/demographics.parquet`` as a documented
proxy (the table says which).

Methods: ours (``TerritoryDesigner``, tau = 5%, defaults otherwise), spopt
``RegionKMeansHeuristic``, ``Skater``, ``AZP``, ``MaxPHeuristic`` (threshold =
total / K, so it makes at most K regions; its K is whatever it finds) and
``WardSpatial``, all clustering on the potential, and scikit-learn ``KMeans``
on the coordinates. Each method runs in its own subprocess with a wall-clock
limit (``--timeout``, default 120 s) and reports ``>T s`` when it exceeds it.
Time is the method's own wall and CPU time (instance building and imports
excluded).

Every alignment is scored by ``territory.models.territories.evaluate_alignment`` on the
same graph: max balance deviation (|W_k / mean - 1|), contiguity (territories
in one piece), dispersion (sum potential x distance to the weighted medoid,
relative to ours), K found.

Run (not part of the test suite; needs ``pip install -e .[bench]``)::

    .venv/bin/python benchmarks/territory_spopt.py [--timeout 120] [--instances lattice-400 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = {"lattice-400": (20, 10), "lattice-900": (30, 10), "counties": (None, 50)}
METHODS = ["ours", "RegionKMeans", "SKATER", "AZP", "MaxP", "Ward", "KMeans-xy"]
SEED = 0


def build_instance(name: str) -> dict:
    """xy (metres), adjacency (CSR), potential, K and where the potential came from."""
    side, k = INSTANCES[name]
    if side is not None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.lattice import lattice  # the rook lattice the tests use

        xy, adj = lattice(side, side)
        potential = np.random.default_rng(SEED).gamma(2.0, 50.0, side * side)
        return {"xy": xy, "adj": adj, "potential": potential, "k": k,
                "source": "gamma(2, 50), seed 0"}
    from territory_planning_demo import demo_instance  # the same counties, adjacency, potential

    demo = demo_instance()
    return {"xy": demo["xy"], "adj": demo["adj"],
            "potential": demo["attrs"]["potential"].to_numpy(), "k": k, "source": demo["source"]}


def run_method(method: str, inst: dict) -> np.ndarray:
    """Labels of one method on one instance (called inside the worker subprocess)."""
    xy, adj, pot, k = inst["xy"], inst["adj"], inst["potential"], inst["k"]
    if method == "ours":
        from territory.models.territories import TerritoryDesigner

        d = TerritoryDesigner(n_territories=k, tolerance=0.05, seed=SEED)
        return d.fit(xy, adj, pd.DataFrame({"potential": pot})).labels_
    if method == "KMeans-xy":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=10, random_state=SEED).fit(xy).labels_
    import geopandas as gpd
    from libpysal.weights import WSP
    from spopt import region

    w = WSP(sp.csr_matrix(adj, dtype=float)).to_W(silence_warnings=True)
    gdf = gpd.GeoDataFrame({"potential": pot}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]))
    attrs = ["potential"]
    if method == "RegionKMeans":
        m = region.RegionKMeansHeuristic(pot.reshape(-1, 1), k, w, seed=SEED)
    elif method == "SKATER":
        m = region.Skater(gdf, w, attrs, n_clusters=k)
    elif method == "AZP":
        m = region.AZP(gdf, w, attrs, n_clusters=k, random_state=SEED)
    elif method == "MaxP":
        m = region.MaxPHeuristic(gdf, w, attrs, "potential", pot.sum() / k, top_n=2)
    elif method == "Ward":
        m = region.WardSpatial(gdf, w, attrs, n_clusters=k)
    else:
        raise ValueError(method)
    np.random.seed(SEED)  # MaxP draws from the global state
    m.solve()
    return np.asarray(m.labels_)


def worker(method: str, instance: str, out: str) -> None:
    warnings.filterwarnings("ignore")
    inst = build_instance(instance)
    t0, c0 = time.perf_counter(), time.process_time()
    labels = run_method(method, inst)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(out, np.asarray(labels))
    Path(out + ".json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))


def score(labels: np.ndarray, inst: dict) -> dict:
    from territory.models.territories import evaluate_alignment

    _, lab = np.unique(labels, return_inverse=True)  # spopt may skip or shift label ids
    lab = lab.astype(np.int64)
    k = int(lab.max()) + 1
    rep = evaluate_alignment(lab, inst["xy"], inst["adj"],
                             pd.DataFrame({"potential": inst["potential"]}), 0.05)
    return {
        "k_found": k,
        "max_dev": rep.overall["max_abs_deviation_potential"],
        "contiguous": rep.overall["contiguous"],
        "n_noncontiguous": rep.overall["n_noncontiguous"],
        "dispersion": rep.overall["total_dispersion"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per method")
    parser.add_argument("--instances", nargs="*", default=list(INSTANCES))
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "INSTANCE", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.instances:
            inst = build_instance(name)
            print(f"# {name}: n={len(inst['xy'])}, K={inst['k']}, {inst['source']}", flush=True)
            for method in args.methods:
                out = str(Path(tmp) / f"{name}-{method}.npy")
                row = {"instance": name, "n": len(inst["xy"]), "K": inst["k"], "method": method}
                try:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--worker", method, name, out],
                        timeout=args.timeout, env=env, capture_output=True, text=True,
                    )
                except subprocess.TimeoutExpired:
                    row.update(time=f">{args.timeout:.0f} s", wall_s=np.nan, cpu_s=np.nan)
                    rows.append(row)
                    print(f"  {method}: timed out", flush=True)
                    continue
                if proc.returncode != 0:
                    row.update(time="error", wall_s=np.nan, cpu_s=np.nan,
                               error=proc.stderr.strip().splitlines()[-1][:120])
                    rows.append(row)
                    print(f"  {method}: error {row['error']}", flush=True)
                    continue
                timing = json.loads(Path(out + ".json").read_text())
                row.update(score(np.load(out, allow_pickle=True), inst))
                row.update(wall_s=timing["wall_s"], cpu_s=timing["cpu_s"],
                           time=f"{timing['wall_s']:.2f} s")
                rows.append(row)
                print(f"  {method}: {row['time']}, max dev {row['max_dev']:.1%}, "
                      f"contiguous {row['contiguous']}", flush=True)
    table = pd.DataFrame(rows)
    ours = table[table["method"] == "ours"].set_index("instance")["dispersion"]
    table["dispersion_vs_ours"] = table["dispersion"] / table["instance"].map(ours)
    show = table.reindex(columns=["instance", "n", "K", "method", "k_found", "max_dev",
                                  "contiguous", "dispersion_vs_ours", "time", "cpu_s"])
    print()
    print(f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(show.to_markdown(index=False, floatfmt=".3f") if _has_tabulate()
          else show.to_string(index=False))

    # the target: ours within 5% and contiguous everywhere, faster than every spopt
    # method except Ward and RegionKMeans
    verdicts = []
    for name, grp in table.groupby("instance", sort=False):
        g = grp.set_index("method")
        ok_bal = g.loc["ours", "max_dev"] <= 0.05 + 1e-9 and bool(g.loc["ours", "contiguous"])
        ours_t = g.loc["ours", "wall_s"]
        slower = [m for m in ("SKATER", "AZP", "MaxP") if m in g.index
                  and not np.isnan(g.loc[m, "wall_s"]) and g.loc[m, "wall_s"] <= ours_t]
        verdicts.append(f"{name}: ours max dev {g.loc['ours', 'max_dev']:.2%}, contiguous "
                        f"{bool(g.loc['ours', 'contiguous'])} -> balance target "
                        f"{'MET' if ok_bal else 'NOT MET'}; speed target "
                        f"{'MET' if not slower else 'NOT MET (faster: ' + ', '.join(slower) + ')'}")
    print("\n".join(verdicts))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
