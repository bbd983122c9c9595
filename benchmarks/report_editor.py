"""Benchmark: how fast the report's plan editor answers an edit, in headless Chromium.

The page is demo-sized: the 3,085 demo counties drawn as the report draws them
(:func:`territory.pipelines.report_map.interactive_map`, the proposed layer plus a
value layer, outlines simplified at 1.5 km), the demo's current alignment as the plan
(50 territories), potential and workload from ``data/demo/truth.parquet`` (the
simulator's true potential and expected accounts: the editor's cost does not depend
on where the numbers come from), queen contiguity with islands linked, and the
editor (:mod:`territory.pipelines.report_editor`).

Each edit moves a seeded random unit to a seeded random other territory through
``territoryEditor.assign`` (what the Assign button calls) and waits for the next
frame: balance, violations (contiguity included), the table, the chart and the map
markers are all redrawn by then. Measured per edit: wall milliseconds in the page
(``performance.now``) and Chromium's own CPU time for the page's work
(``Performance.getMetrics`` ``TaskDuration``). Also: the page's size, and the CPU
seconds of building the editor's data in Python.

Run (not part of the test suite; needs Debian's chromium)::

    .venv/bin/python benchmarks/report_editor.py --edits 40
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.browser: the Chromium driver the tests use

from territory.features.spatial import build_adjacency  # noqa: E402
from territory.models.territories import evaluate_alignment  # noqa: E402
from territory.pipelines import report as rpt  # noqa: E402
from territory.pipelines.report_editor import (  # noqa: E402
    EDITOR_JS,
    editor_payload,
    payload_json,
)
from territory.pipelines.report_map import interactive_map  # noqa: E402
from tests.browser import Page  # noqa: E402

DEMO = ROOT / "data" / "demo"
TOLERANCES = {"potential": 0.05, "workload": 0.05}


def demo_page(out: Path) -> tuple[Path, float, int, int]:
    """Write the demo-sized page; returns its path, the payload's CPU seconds, the units
    and the bytes the editor adds (its data and script)."""
    units = gpd.read_parquet(DEMO / "counties.parquet").to_crs("EPSG:5070")
    ids = units["unit_id"].astype(str).to_numpy()
    plan = pd.read_csv(DEMO / "alignment.csv", dtype=str).set_index("unit_id")[
        "territory_id"].reindex(ids)
    truth = pd.read_parquet(DEMO / "truth.parquet").set_index("unit_id").reindex(ids)
    measures = {"potential": truth["true_potential"].to_numpy(dtype=float),
                "workload": truth["expected_accounts"].to_numpy(dtype=float)}
    graph = build_adjacency(units, "unit_id", "queen", "EPSG:5070")
    xy = np.column_stack([units.geometry.centroid.x, units.geometry.centroid.y])
    names = sorted(plan.unique())
    labels = plan.map({t: i for i, t in enumerate(names)}).to_numpy()
    t0 = time.process_time()
    report = evaluate_alignment(labels, xy, graph.matrix, pd.DataFrame(measures),
                                tolerances=TOLERANCES, territory_names=names)
    summary = report.territories.assign(territory=report.territories["name"])
    unit_names = units["name"].astype(str) + ", " + units["region"].astype(str)
    payload = editor_payload(ids, plan.set_axis(ids), summary, measures, TOLERANCES,
                             graph.matrix, soft=["workload"],
                             unit_names=pd.Series(unit_names.to_numpy(), index=ids),
                             map_figure="figure-1")
    payload_cpu = time.process_time() - t0
    fig = interactive_map(units.reset_index(drop=True),
                          {"Proposed territories": plan.reset_index(drop=True)},
                          {"Potential": pd.Series(measures["potential"])},
                          pd.Series(unit_names.to_numpy()))
    content = rpt.ReportContent(title="Editor benchmark", subtitle="demo counties",
                                headline=[], quality_sentences=[], figures={"Map": fig},
                                editor=payload)
    path = out / "report.html"
    path.write_text(rpt.render_html(content), encoding="utf-8")
    added = len(payload_json(payload).encode()) + EDITOR_JS.stat().st_size
    return path, payload_cpu, len(ids), added


EDIT = """(async () => {
  const t0 = performance.now();
  territoryEditor.assign(%s, %s);
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
})()"""


def task_seconds(page: Page) -> float:
    metrics = page.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path, payload_cpu, n_units, added = demo_page(Path(tmp))
        size_mb = path.stat().st_size / 2**20
        with Page() as page:
            page.open(path, settle_s=3.0)
            page.send("Performance.enable")
            data = page.evaluate("JSON.parse(document.getElementById('editor-data')"
                                 ".textContent)")
            wall, cpu = [], []
            for _ in range(args.edits):
                unit = int(rng.integers(n_units))
                others = [t for t in range(len(data["territories"])) if t != data["plan"][unit]]
                territory = data["territories"][int(rng.choice(others))]
                before = task_seconds(page)
                wall.append(page.evaluate(EDIT % (json.dumps(data["units"][unit]),
                                                  json.dumps(territory))))
                cpu.append(1000 * (task_seconds(page) - before))
            errors = page.console_errors
    wall_ms, cpu_ms = np.array(wall), np.array(cpu)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{platform.system()} {platform.release()}; python {platform.python_version()}")
    print(f"page: {n_units:,} units, {len(data['territories'])} territories, "
          f"{size_mb:.2f} MB, of which the editor {added / 2**20:.2f} MB; editor data built in "
          f"{payload_cpu:.2f} CPU s")
    print(f"{args.edits} edits: wall median {np.median(wall_ms):.0f} ms, p95 "
          f"{np.percentile(wall_ms, 95):.0f} ms, max {wall_ms.max():.0f} ms; Chromium task "
          f"CPU median {np.median(cpu_ms):.0f} ms, max {cpu_ms.max():.0f} ms "
          f"(CPU / wall {np.median(cpu_ms) / np.median(wall_ms):.2f})")
    print(f"target 200 ms: {'met' if wall_ms.max() <= 200 else 'missed'}; console errors: "
          f"{errors or 'none'}")


if __name__ == "__main__":
    main()
