"""Benchmark: the two-force demo end to end against the one-force demo (issue #18).

Runs ``territory run`` on ``configs/demo.yaml`` and on
``configs/demo_two_forces.yaml``, each on a fresh workspace (a copy of the
config pointing at a temporary folder), and reports per run the wall time,
the CPU seconds of the command's process tree (``resource.getrusage`` of the
children) and their ratio; then each published plan's balance and shape
numbers from the run's ``plans.csv`` and ``territory_summary.csv`` (per
force for the two-force run), and with ``data/demo_lines/truth.parquet``
each force's balance on the true potential of its line.

Run (not part of the test suite; about 5-10 minutes on 2 cores)::

    .venv/bin/python benchmarks/forces_demo.py [--only two]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"one": ROOT / "configs" / "demo.yaml", "two": ROOT / "configs" / "demo_two_forces.yaml"}
LINE_OF_FORCE = {"diagnostics-team": "diagnostics", "animal-health-team": "animal-health"}


def _config_copy(source: Path, workspace: Path) -> Path:
    """``source`` with absolute paths and ``workspace`` as its workspace."""
    raw = yaml.safe_load(source.read_text())
    base = source.parent

    def absolute(value):
        return None if value is None else str((base / value).resolve())

    for key in ("units", "sales", "demographics", "alignment", "reps", "truth"):
        raw["data"][key] = absolute(raw["data"].get(key))
    for force in raw.get("forces") or []:
        for key in ("alignment", "reps"):
            force[key] = absolute(force.get(key))
    raw["workspace"], raw["progress"] = str(workspace), "rich"  # stage times on stderr
    path = workspace.parent / source.name
    path.write_text(yaml.safe_dump(raw))
    return path


def run_once(name: str, tmp: Path) -> dict:
    """One ``territory run`` on a fresh workspace: wall, CPU and where its outputs are."""
    workspace = tmp / name / "workspace"
    workspace.mkdir(parents=True)
    config = _config_copy(CONFIGS[name], workspace)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "territory"), "run", "--config",
                           str(config)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{name}: territory run failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_dir = next((workspace / "runs").glob("*-*"))
    stages = [line.strip() for line in done.stderr.splitlines() if "✓" in line]
    return {"name": name, "wall_s": wall, "cpu_s": cpu, "run_dir": run_dir,
            "stdout": done.stdout, "stages": stages}


def plan_numbers(folder: Path, label: str, truth: pd.Series | None) -> dict:
    """Balance and shape of the published plan in ``folder`` (a run's or a force's)."""
    plans = pd.read_csv(folder / "plans.csv")
    plan = plans[plans["published"]].iloc[0]
    row = {"design": label, "K": len(pd.read_csv(folder / "territory_summary.csv")),
           "plan": plan["plan"],
           "potential max dev": f"{plan['potential_max_abs_deviation']:.1%}",
           "potential within ±5%": f"{plan['potential_within_tolerance']:.0%}",
           "workload max dev": f"{plan['workload_max_abs_deviation']:.1%}",
           "contiguous": bool(plan["contiguous"]),
           "median / max elongation": f"{plan['median_elongation']:.2f} / "
                                      f"{plan['max_elongation']:.2f}",
           "over shape limit": int(plan["shape_over_limit"]),
           "units moved": f"{plan['units_moved_pct'] / 100:.0%}",
           "design CPU s (all plans)": f"{plans['cpu_s'].sum():.1f}"}
    if truth is not None:
        alignment = pd.read_parquet(folder / "alignment.parquet").set_index("unit_id")
        true = truth.reindex(alignment.index).groupby(alignment["territory_id"]).sum()
        dev = (true / true.mean() - 1).abs()
        row["true potential max dev"] = f"{dev.max():.1%}"
        row["true within ±10%"] = f"{(dev <= 0.10).mean():.0%}"
    return row


def markdown(rows: list[dict]) -> str:
    """``rows`` as a markdown table (the union of their keys as columns)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    args = parser.parse_args()
    names = [args.only] if args.only else ["one", "two"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    truth = pd.read_parquet(ROOT / "data" / "demo_lines" / "truth.parquet").set_index("unit_id")
    with tempfile.TemporaryDirectory(prefix="forces_bench_") as tmp:
        runs = {name: run_once(name, Path(tmp)) for name in names}
        rows = []
        for name, run in runs.items():
            print(f"{name} force(s): wall {run['wall_s']:.1f} s, CPU {run['cpu_s']:.1f} s")
            print("\n".join(f"  {line}" for line in run["stages"]))
            if name == "one":
                rows.append(plan_numbers(run["run_dir"], "one force (demo.yaml)", None))
            else:
                for folder in sorted((run["run_dir"] / "forces").iterdir()):
                    line = truth[f"true_potential_{LINE_OF_FORCE[folder.name]}"]
                    rows.append(plan_numbers(folder, folder.name, line))
        if len(runs) == 2:
            one, two = runs["one"], runs["two"]
            print(f"ratio two / one: CPU {two['cpu_s'] / one['cpu_s']:.2f}x, wall "
                  f"{two['wall_s'] / one['wall_s']:.2f}x (target at most 1.6x)")
        print(markdown(rows))
        if "two" in runs:
            text = runs["two"]["stdout"]
            print("\n".join(line for line in text.splitlines() if "WAPE" in line
                            or "Spearman" in line))


if __name__ == "__main__":
    main()
