"""Benchmark: what reconciling with the champion's method costs the demo's nightly run
(issue #14, item 4).

The train flow of ``configs/demo.yaml`` (3,085 units, 50 current territories, its backtest
windows) in a fresh workspace, which records its reconciliation method (chosen on the
current alignment) and keeps its backtest forecasts; then the nightly flow on its
champion, ``--repeats`` times each way:

* ``off``: ``forecast.reconcile.enabled: false`` (no node table);
* ``bottom_up``: the champion read as if its run had recorded nothing: BottomUp, no
  aggregate forecast, no interval (what every nightly run published before);
* ``champion``: the champion's method, the aggregates refitted on the nightly's data and
  their intervals calibrated on the kept backtest forecasts (what it publishes now).

Printed: CPU seconds (this process and its finished children) of each whole nightly flow,
of its reconcile step (``reconcile_cpu_seconds``), the method, the largest unit ->
territory and territory -> total gaps, and the cost the choice adds to the train flow.

Run (not part of the test suite; a few minutes of CPU)::

    nice .venv/bin/python benchmarks/reconcile_nightly.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
from forecast_statsforecast import cpu_seconds  # same folder

from territory.models.reconcile import check_coherent
from territory.models.reconcile_runs import ChampionChoice
from territory.models.tracking import reconcile_record
from territory.pipelines import publish, reconcile_runs
from territory.pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _gaps(folder: Path) -> tuple[float, float]:
    nodes = pd.read_csv(folder / "forecast_hierarchy.csv", dtype={"node": str})
    alignment = pd.read_parquet(folder / "alignment.parquet").set_index("unit_id")
    territory_of = alignment["territory_id"].astype(str)
    terr = nodes.loc[nodes["level"] == "territory", "node"].unique()
    return (check_coherent(nodes, territory_of, "unit", "territory"),
            check_coherent(nodes, pd.Series("total", index=terr), "territory", "total"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from territory.pipelines import flows

    tmp = Path(tempfile.mkdtemp(prefix="reconcile_nightly_"))
    config = load_config(args.config, {"workspace": str(tmp / "workspace"), "progress": "none"})
    off = config.model_copy(update={"forecast": config.forecast.model_copy(update={
        "reconcile": config.forecast.reconcile.model_copy(update={"enabled": False})})})
    choose_cpu = []
    chooser = reconcile_runs.train_choices

    def timed_choices(*a, **kw):
        started = time.process_time()
        out = chooser(*a, **kw)
        choose_cpu.append(time.process_time() - started)
        return out

    rows = []
    with temporary_settings({PREFECT_HOME: tmp / "prefect",
                             PREFECT_LOCAL_STORAGE_PATH: tmp / "prefect" / "storage"}):
        with prefect_test_harness(server_startup_timeout=300):
            publish.reconcile_runs.train_choices = timed_choices
            started = cpu_seconds()
            summary = flows.train(config)
            train_cpu = cpu_seconds() - started
            publish.reconcile_runs.train_choices = chooser
            loader = reconcile_record.load_choice
            for k in range(args.repeats):
                for way in ("off", "bottom_up", "champion"):
                    reconcile_record.load_choice = (
                        (lambda run_id: ChampionChoice(run_id)) if way == "bottom_up"
                        else loader)
                    started = cpu_seconds()
                    result = flows.nightly_forecast(off if way == "off" else config)
                    spent = cpu_seconds() - started
                    reconcile_record.load_choice = loader
                    metrics = result["metrics"]
                    gaps = _gaps(result["folder"]) if way != "off" else (float("nan"),) * 2
                    method = ("-" if way == "off" else
                              pd.read_excel(result["folder"] / "report.xlsx",
                                            sheet_name="Territory forecast")["Reconciled with"]
                              .iloc[0])
                    rows.append({"repeat": k + 1, "nightly": way, "flow_cpu_s": spent,
                                 "reconcile_cpu_s": metrics.get("reconcile_cpu_seconds",
                                                                float("nan")),
                                 "method": method, "gap_unit_territory": gaps[0],
                                 "gap_territory_total": gaps[1]})
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(f"train flow: {train_cpu:.1f} s CPU, of which choosing the method "
          f"{sum(choose_cpu):.1f} s; recorded {summary.get('mlflow_run_id', '')[:8]}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    best = table.groupby("nightly")[["flow_cpu_s", "reconcile_cpu_s"]].min()
    print("\nfastest of the repeats:\n" + best.to_string(float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
