"""Benchmark: national-scale territory design (issue #6, benchmark 4).

42,000 ZIP-like Voronoi units over a US-sized extent
(:func:`benchmarks.national_units.national_units`, seeded; metro clusters
and a rural background, EPSG:5070 metres), queen contiguity with islands
linked (``territory.features.spatial.contiguity_matrix`` + ``link_islands``), K=400,
balancing ``potential`` (lognormal, correlated with density) and
``accounts`` (the workload) at tau = 5% each, with ``TerritoryDesigner``
defaults except the safety-net ``time_limit_s`` (``--time-limit``, default
600 s, so the reported time is what the search needed).

Reported: time of each step (generate units, adjacency, design) wall and
CPU, violations, max deviation per attribute, contiguity, max diameter, and
peak memory: the process's peak resident set size (``getrusage`` ru_maxrss,
which covers numpy/GEOS allocations that tracemalloc does not see), sampled
before and after the design. Targets: under 5 minutes and under 4 GB peak.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_national.py [--units 42000 --k 400 --seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from national_units import national_units  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def watch_memory(step_mb: float = 1024.0) -> None:
    """Print where the main thread is each time the RSS grows by another ``step_mb``."""
    main_id = threading.get_ident()
    t0 = time.perf_counter()
    mark = [step_mb]

    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def loop() -> None:
        while True:
            time.sleep(0.25)
            now = rss_mb()
            if now > mark[0]:
                mark[0] = now + step_mb
                frame = sys._current_frames().get(main_id)
                where = "".join(traceback.format_stack(frame)[-3:]) if frame else "?"
                print(f"[memory] {time.perf_counter() - t0:.0f} s: RSS {now:,.0f} MB at\n{where}",
                      flush=True)

    threading.Thread(target=loop, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=42_000)
    parser.add_argument("--k", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--polsby-popper", action="store_true",
                        help="also report Polsby-Popper (dissolves 42k polygons; not timed)")
    args = parser.parse_args()
    if Path("/proc/self/status").exists():
        watch_memory()

    from territory.features.spatial import contiguity_matrix, link_islands
    from territory.models.territories import TerritoryDesigner, evaluate_alignment

    steps = {}
    t0, c0 = time.perf_counter(), time.process_time()
    units = national_units(args.units, args.seed)
    steps["generate units"] = (time.perf_counter() - t0, time.process_time() - c0)

    t0, c0 = time.perf_counter(), time.process_time()
    pts = units.geometry.representative_point()
    xy = np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()])
    adj = contiguity_matrix(units, "queen")
    adj, links = link_islands(adj, xy)
    steps["queen adjacency"] = (time.perf_counter() - t0, time.process_time() - c0)
    attrs = units[["potential", "accounts"]].astype(float).reset_index(drop=True)
    rss_before = peak_rss_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    d = TerritoryDesigner(n_territories=args.k, tolerance=0.05, seed=args.seed,
                          time_limit_s=args.time_limit)
    d.fit(xy, adj, attrs, unit_ids=units["unit_id"].to_numpy())
    steps["design (fit)"] = (time.perf_counter() - t0, time.process_time() - c0)
    rss_after = peak_rss_mb()

    ov, terr = d.report_.overall, d.report_.territories
    total_wall = sum(w for w, _ in steps.values())
    total_cpu = sum(c for _, c in steps.values())
    print(f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"Instance: {len(units):,} units, {adj.nnz // 2:,} queen edges, {len(links)} island "
          f"links, K={args.k}, seed {args.seed}, mean units per territory "
          f"{len(units) / args.k:.0f}")
    print(f"Largest unit / territory mean: potential "
          f"{attrs['potential'].max() / (attrs['potential'].sum() / args.k):.1%}, accounts "
          f"{attrs['accounts'].max() / (attrs['accounts'].sum() / args.k):.1%}")
    print()
    print("| step | wall s | CPU s |\n|---|---:|---:|")
    for name, (w, c) in steps.items():
        print(f"| {name} | {w:.1f} | {c:.1f} |")
    print(f"| total | {total_wall:.1f} | {total_cpu:.1f} |")
    print()
    print("| measure | value |\n|---|---:|")
    print(f"| violations | {ov['n_violations']} |")
    print(f"| max deviation potential | {ov['max_abs_deviation_potential']:.2%} |")
    print(f"| max deviation accounts | {ov['max_abs_deviation_accounts']:.2%} |")
    print(f"| contiguous | {ov['contiguous']} ({ov['n_noncontiguous']} split territories) |")
    print(f"| balance index | {ov['balance_index']:.1f} |")
    print(f"| max / median diameter | {terr['diameter_km'].max():.0f} km / "
          f"{terr['diameter_km'].median():.0f} km |")
    print(f"| peak RSS before design / at end | {rss_before:,.0f} MB / {rss_after:,.0f} MB |")
    if d.report_.violations:
        print("\nfirst violations:", "; ".join(d.report_.violations[:5]))
    print()
    print(f"under 5 minutes (total {total_wall:.0f} s, design {steps['design (fit)'][0]:.0f} s): "
          f"{'MET' if total_wall < 300 else 'NOT MET'}")
    print(f"under 4 GB peak RSS ({rss_after / 1024:.2f} GB): "
          f"{'MET' if rss_after < 4096 else 'NOT MET'}")
    print(f"zero violations: {'MET' if ov['n_violations'] == 0 else 'NOT MET'}")
    if args.polsby_popper:
        rep = evaluate_alignment(d.labels_, xy, adj, attrs, 0.05, polygons=units.geometry)
        pp = rep.territories["polsby_popper"]
        print(f"Polsby-Popper: median {pp.median():.3f}, min {pp.min():.3f}")


if __name__ == "__main__":
    main()
