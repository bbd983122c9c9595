"""Peak memory of the real ``train`` flow under ``runner: dask`` (issue #13 item 8).

``benchmarks/scale.py`` chains the stage functions; this runs the Prefect
``train`` flow itself, as ``territory run`` starts it (Prefect's API on the
workspace, the flow on prefect-dask's ``DaskTaskRunner`` with a
``LocalCluster`` of 2 single-thread workers): inputs, the cached and
persisted feature build, training with the backtest, registration with the
drift reference. The data and config are ``scale.py``'s (``--units``,
``--backtest-windows``, 2 by default as in ``configs/demo.yaml``), in a fresh
workspace, so the feature cache misses.

Reported per flow step (the flow's own step names): wall seconds and the
peak of the summed RSS of this process and all its descendants (the Dask
workers and Prefect's API server), sampled every 0.1 s; and the peak of the
same sum without the Prefect server processes.

Run (not part of the test suite; about 20-30 minutes at 42,000 units on 2 cores)::

    nice .venv/bin/python benchmarks/scale_flow.py --units 42000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import CACHE, config_for, make_data  # noqa: E402


class Peaks:
    """Largest summed RSS of the process tree (and without Prefect's server), per step."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self.step, self.steps = "start", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> tuple[int, int]:
        import psutil

        total = without_server = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                rss = child.memory_info().rss
                server = any("uvicorn" in a or "prefect" in a and "server" in a
                             for a in child.cmdline())
            except psutil.Error:
                continue
            total += rss
            without_server += 0 if server else rss
        return total, without_server

    def _run(self) -> None:
        while not self._stop.is_set():
            total, without = self._sample()
            s = self.steps.setdefault(self.step, {"peak_gb": 0.0, "peak_gb_no_server": 0.0})
            s["peak_gb"] = max(s["peak_gb"], round(total / 1e9, 2))
            s["peak_gb_no_server"] = max(s["peak_gb_no_server"], round(without / 1e9, 2))
            time.sleep(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_train_flow(n_units: int, backtest_windows: int, members: bool = True) -> dict:
    folder = CACHE / f"units-{n_units}"
    if not (folder / "sales.parquet").exists():
        make_data(n_units, folder)
    config = config_for(folder, "dask", backtest_windows)
    workspace = folder / "workspace-flow"  # not scale.py's (one may run beside it)
    config = config.model_copy(update={"workspace": type(config.workspace)(workspace)})
    if not members:  # LightGBM alone: the backtest's fits without the statistical members
        forecast = config.forecast.model_copy(update={"combination": (
            config.forecast.combination.model_copy(update={"members": []}))})
        config = config.model_copy(update={"forecast": forecast})
    shutil.rmtree(workspace, ignore_errors=True)  # a fresh workspace: the feature cache misses
    workspace.mkdir(parents=True)

    from territory.pipelines.cli import prepare_environment

    prepare_environment(workspace)
    from territory.pipelines import flows
    from territory.pipelines.prefect_api import prefect_api

    peaks = Peaks()
    started: dict[str, float] = {}
    original = flows._step

    @contextmanager
    def timed_step(name, cfg):
        peaks.step, started[name] = name, time.perf_counter()
        with original(name, cfg):
            yield
        peaks.steps[name]["wall_s"] = round(time.perf_counter() - started[name], 1)

    flows._step = timed_step
    t0 = time.perf_counter()
    with prefect_api(workspace):
        summary = flows.with_runner(flows.train, config)(config)
    peaks.stop()
    tables = list((workspace / "prefect").rglob("features-*.tables/*.feather"))
    return {"n_units": n_units, "backtest_windows": backtest_windows, "members": members,
            "wall_s": round(time.perf_counter() - t0, 1), "steps": peaks.steps,
            "peak_gb": max(s["peak_gb"] for s in peaks.steps.values()),
            "peak_gb_no_server": max(s["peak_gb_no_server"] for s in peaks.steps.values()),
            "train_row_files": len(tables),
            "train_row_files_gb": round(sum(p.stat().st_size for p in tables) / 1e9, 2),
            "backtest_wape": summary.get("metrics", {}).get("backtest_wape"),
            "valid_wape": summary.get("metrics", {}).get("valid_wape"),
            "load_average_1m": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=42000)
    parser.add_argument("--backtest-windows", type=int, default=2)
    parser.add_argument("--no-members", action="store_true",
                        help="forecast.combination.members: [] (the members cost time, not memory)")
    args = parser.parse_args()
    result = run_train_flow(args.units, args.backtest_windows, not args.no_members)
    print(json.dumps(result, indent=1))
    print("| step | wall s | peak GB (tree) | peak GB (without Prefect's server) |")
    print("|---|---:|---:|---:|")
    for name, s in result["steps"].items():
        print(f"| {name} | {s.get('wall_s', '')} | {s['peak_gb']} | {s['peak_gb_no_server']} |")


if __name__ == "__main__":
    main()
