"""Backfill benchmark (issue #16): `territory backfill` over the last months of the demo.

Runs the ``territory backfill`` command on ``configs/demo.yaml``'s data (3,085
US counties) in a fresh workspace, as a child process, and measures its CPU
seconds (``resource.getrusage`` of the children: the command, its Prefect
server and every process they start). Then it reads the monitoring table the
backfill built (``<workspace>/monitoring/accuracy.parquet``) and prints its
shape and, per horizon, the realised against the promised WAPE and interval
coverage over the as-of dates whose forecasts have actuals.

Each as-of date sees only the data before it: its model is trained on the
periods up to that date (or, with ``--retrain-every N``, it is the model of
the latest retrain date at most N - 1 months earlier, as a nightly run scores
with the champion of the last retrain).

Run (not part of the test suite; about 1-2 CPU minutes per as-of month)::

    .venv/bin/python benchmarks/backfill_demo.py --months 12
    .venv/bin/python benchmarks/backfill_demo.py --months 12 --summary-only
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from territory.models.monitoring import horizon_summary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def demo_config(workspace: Path, extra: dict) -> Path:
    """configs/demo.yaml with absolute data paths and its own workspace."""
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for key, value in config["data"].items():
        if isinstance(value, str) and value.startswith("../"):
            config["data"][key] = str((ROOT / "configs" / value).resolve())
    config["workspace"] = str(workspace)
    config.update(extra)
    path = workspace.parent / f"{workspace.name}.yaml"
    workspace.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def month_window(months: int) -> tuple[str, str]:
    """The last ``months`` months of the demo's sales, as YYYY-MM."""
    periods = pd.read_parquet(ROOT / "data" / "demo" / "sales.parquet", columns=["period"])
    last = pd.Period(periods["period"].max(), "M")
    return f"{last - (months - 1)}", f"{last}"


def summarise(workspace: Path) -> None:
    history = pd.read_parquet(workspace / "monitoring" / "accuracy.parquet")
    print(f"monitoring table: {history.shape[0]} rows x {history.shape[1]} columns; "
          f"levels {history['level'].value_counts().to_dict()}")
    overall = history[(history["level"] == "overall") & (history["source"] == "backfill")]
    print("\noverall, per as-of date:")
    print(overall[["as_of", "model_version", "months_observed", "wape", "promised_wape",
                   "coverage", "promised_coverage", "territory_wape", "bias"]]
          .sort_values("as_of").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nper horizon, pooled over the as-of dates with actuals (horizon_summary):")
    backfill = history[history["source"] == "backfill"]
    print(horizon_summary(backfill).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/territory-backfill/ws"))
    parser.add_argument("--retrain-every", type=int, default=None,
                        help="pass --retrain-every to the command (default: its own)")
    parser.add_argument("--summary-only", action="store_true",
                        help="summarise the workspace of an earlier run")
    args = parser.parse_args()
    if not args.summary_only:
        start, end = month_window(args.months)
        config = demo_config(args.workspace, {"progress": "rich"})
        command = [str(BIN / "territory"), "backfill", "--config", str(config),
                   "--start", start, "--end", end]
        if args.retrain_every is not None:
            command += ["--retrain-every", str(args.retrain_every)]
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}: {' '.join(command)}",
              flush=True)
        wall = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, check=False)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"\nexit {done.returncode}; CPU {usage.ru_utime + usage.ru_stime:.1f} s "
              f"(user {usage.ru_utime:.1f}, system {usage.ru_stime:.1f}); wall "
              f"{time.perf_counter() - wall:.0f} s; load {os.getloadavg()[0]:.1f}", flush=True)
        if done.returncode:
            sys.exit(done.returncode)
    summarise(args.workspace)


if __name__ == "__main__":
    main()
