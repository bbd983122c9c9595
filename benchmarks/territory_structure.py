"""Benchmark: how the demo's difficulty grows with the divergence of its two attributes.

The demo instance (``benchmarks/territory_demo.py``: 3,085 US counties, K=50,
±5% on both attributes) is hard because potential and workload diverge by
region: the metropolitan north-east is potential-heavy and short of accounts,
the rural south and plains the reverse. This benchmark keeps the geography
and the potential and blends the workload towards the potential::

    workload_a = potential_share ** (1 - a) * workload_share ** a   (rescaled)

so ``a = 0`` makes the two attributes proportional (one balance problem) and
``a = 1`` is the demo itself; the column ``sd log ratio`` is the spread of
``log(potential / workload)`` over counties. For each ``a`` it runs a fresh
design and a minimal-disruption rebalance of the current alignment, both with
the pipeline's settings (seed 42, ``max_chains`` 100), and reports the
violations, the worst deviations, the moved units and the CPU time. The
largest tolerance named by the report's diagnosis
(``report.diagnosis``: the tolerance a block of violated territories would
need with its own units) is shown as ``block needs``.

Run (not part of the test suite)::

    .venv/bin/python benchmarks/territory_structure.py
"""

from __future__ import annotations

import argparse
import platform
import re
import time

import numpy as np
import pandas as pd
from territory_demo import _markdown, load_instance


def blended(attrs: pd.DataFrame, a: float) -> pd.DataFrame:
    """Workload moved towards the potential by ``1 - a`` in log space, same total."""
    p, w = attrs["potential"].to_numpy(), attrs["workload"].to_numpy()
    mix = (p / p.sum()) ** (1 - a) * (w / w.sum()) ** a
    return pd.DataFrame({"potential": p, "workload": mix / mix.sum() * w.sum()})


def main() -> None:
    from territory.models.territories import design_territories

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blend", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--time-limit", type=float, default=1000.0)
    args = parser.parse_args()
    xy, adj, attrs, current, _homes, unit_ids, source = load_instance()
    print(f"instance: {len(xy)} units, K=50, tau=5%; potential from {source}")
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    rows = []
    for a in (float(x) for x in args.blend.split(",")):
        values = blended(attrs, a)
        spread = float(np.log(values["potential"] / values["workload"]).std())
        for name, kw in (("fresh", {}), ("rebalance", {"current_labels": current})):
            c0, t0 = time.process_time(), time.perf_counter()
            res = design_territories(xy, adj, values, 50, 0.05, args.seed, unit_ids=unit_ids,
                                     max_restarts=0, max_chains=100,
                                     time_limit_s=args.time_limit, **kw)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            o = res.report.overall
            needs = [float(x) for d in res.report.diagnosis
                     for x in re.findall(r"tolerance of ±([\d.]+)%", d)]
            rows.append({
                "a": a, "sd log ratio": f"{spread:.2f}", "run": name,
                "violations": o["n_violations"],
                "max dev potential": f"{100 * o['max_abs_deviation_potential']:.1f}%",
                "max dev workload": f"{100 * o['max_abs_deviation_workload']:.1f}%",
                "units moved": f"{100 * float((res.labels != current).mean()):.1f}%",
                "block needs": f"±{max(needs):.1f}%" if needs else "-",
                "cpu s": f"{cpu:.1f}", "wall s": f"{wall:.1f}",
            })
            print(rows[-1], flush=True)
    print(_markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
