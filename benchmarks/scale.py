"""Scale benchmark (issue #5): national data, local runner versus Dask on a LocalCluster.

The data: ``national_units(n, seed)`` (ZIP-like Voronoi units over a
US-sized extent, ``benchmarks/national_units.py``) with demographics, and 60
months of sales simulated the way ``features/demo.py`` does, vectorised:
full-capture demand (the unit's potential) × its rep area's penetration ×
seasonality × trend × a lognormal demand shock, drawn as compound Poisson
(orders × Gamma order values, so small units have zero months). 42,000 units
× 60 months is 2.52 M sales rows.

For each size and runner the pipeline's own stages run in a fresh process:
``build_features``, ``train_models`` (forecaster with early stopping,
conformal intervals and its final fit, potential model and its 3-fold CV;
the rolling-origin backtest is off by default, ``--backtest-windows 2`` as in
``configs/demo.yaml`` adds one more forecaster fit per window), ``score_units`` (forecasts,
intervals, potential and drivers of every unit) and ``design_territories``
(K=400, balanced on potential and workload). The Dask runner uses
``territory.pipelines.dask_runner`` on ``LocalCluster(n_workers=2,
threads_per_worker=1)``; territory design is the same sequential code for
both; its training rows stay on the workers (``dask_runner.worker_features``)
and the forecaster fits from them there (with backtest windows, the workers
write them to files and every fit, the backtest's included, reads them there).
``benchmarks/scale_flow.py`` measures the real Prefect ``train`` flow instead.
Reported per stage: wall time, CPU time of the driver process and of the
whole process tree (driver + Dask workers), and peak memory = the largest
sum of RSS over the process tree, sampled every 0.1 s.

Run (not part of the test suite; about 30 minutes on 2 cores)::

    .venv/bin/python benchmarks/scale.py --units 5000 10000 21000 42000
    .venv/bin/python benchmarks/scale.py --units 42000 --runners dask   # one cell

Results go to ``benchmarks/scale_results.json`` (merged by size and runner),
a table on stdout and ``benchmarks/scale.png`` (log-log CPU time per stage:
on a shared machine it extrapolates better than wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TERRITORY_SCALE_CACHE", "/tmp/territory-scale"))
RESULTS = ROOT / "benchmarks" / "scale_results.json"
STAGES = ("build_features", "train_models", "score_units", "design_territories")
TARGETS_S = {"build_features": 60.0, "train_models": 300.0, "score_units": 60.0}
TARGET_PEAK_GB = 8.0
N_MONTHS = 60
SEED = 0


# -- data -----------------------------------------------------------------------
def make_data(n_units: int, folder: Path, seed: int = SEED) -> None:
    """Units, demographics, sales and truth files for ``n_units`` units."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from national_units import national_units

    from territory.features.demo import DEMAND_SHOCK_SD, ORDER_VALUE_SHAPE, SEASONALITY

    rng = np.random.default_rng(seed + 1)
    units = national_units(n_units, seed)
    n = len(units)
    ids = units["unit_id"].to_numpy()
    area_km2 = units.geometry.area.to_numpy() / 1e6
    population = units["population"].to_numpy(dtype=float)
    potential = units["potential"].to_numpy(dtype=float)  # full capture, per year
    propensity = potential / (40.0 * population)
    income = np.round(52_000 * propensity ** 0.8 * np.exp(rng.normal(0, 0.1, n)), 2)
    growth_decade = np.clip(rng.normal(0.05 + 0.05 * np.log(propensity), 0.08), -0.3, 0.6)
    demographics = pd.DataFrame({
        "unit_id": ids,
        "population": population.astype(np.int64),
        "population_growth": growth_decade,
        "median_family_income": income,
        "unemployment_rate": np.clip(rng.normal(6.5 - 1.5 * np.log(propensity), 1.5), 1, 25),
        "median_age": np.clip(rng.normal(38 - 2 * np.log(propensity), 4), 22, 60),
        "poverty_share": np.clip(rng.normal(14 - 6 * np.log(propensity), 4), 1, 60),
        "area_km2": area_km2,
        "population_density": population / np.maximum(area_km2, 1e-3),
    })
    # Rep areas: a coarse grid of cells, one penetration each.
    xy = np.column_stack([units.geometry.centroid.x, units.geometry.centroid.y])
    cell = (np.floor((xy[:, 0] - xy[:, 0].min()) / 200_000) * 100
            + np.floor((xy[:, 1] - xy[:, 1].min()) / 200_000)).astype(int)
    cells, cell_idx = np.unique(cell, return_inverse=True)
    penetration = rng.uniform(0.45, 1.0, len(cells))[cell_idx]
    growth = np.clip(0.03 + 0.3 * ((1 + growth_decade) ** 0.1 - 1), -0.01, 0.07)

    periods = pd.date_range("2021-01-01", periods=N_MONTHS + 12, freq="MS")
    t = np.arange(N_MONTHS + 12)
    season = SEASONALITY[periods.month.to_numpy() - 1]
    demand = (potential / 12.0)[:, None] * season[None, :] * (1 + growth[:, None]) ** (t / 12.0)
    true_potential = demand[:, N_MONTHS:].sum(axis=1)
    shock = rng.lognormal(-0.5 * DEMAND_SHOCK_SD**2, DEMAND_SHOCK_SD, (n, N_MONTHS))
    mu = demand[:, :N_MONTHS] * penetration[:, None] * shock
    order_value = 250.0 * (population / 20_000.0) ** -0.8
    orders = rng.poisson(mu / order_value[:, None])
    values = rng.gamma(ORDER_VALUE_SHAPE * np.maximum(orders, 1),
                       np.broadcast_to((order_value / ORDER_VALUE_SHAPE)[:, None], mu.shape))
    sales = np.round(np.where(orders > 0, values, 0.0), 2)
    accounts = rng.poisson(units["accounts"].to_numpy()[:, None]
                           * (1 + growth[:, None] / 2) ** (t[None, :N_MONTHS] / 12.0))
    frame = pd.DataFrame({
        "unit_id": np.repeat(ids, N_MONTHS),
        "period": np.tile(periods[:N_MONTHS].to_numpy(), n),
        "sales": sales.ravel(),
        "accounts": accounts.ravel().astype(np.int64),
    })
    folder.mkdir(parents=True, exist_ok=True)
    units[["unit_id", "geometry"]].to_parquet(folder / "units.parquet")
    demographics.to_parquet(folder / "demographics.parquet")
    frame.to_parquet(folder / "sales.parquet")
    pd.DataFrame({"unit_id": ids, "true_potential": true_potential}).to_parquet(
        folder / "truth.parquet")


def config_for(folder: Path, runner: str, backtest_windows: int = 0):
    """``configs/demo.yaml`` on the generated files, K=400, runner as given."""
    import yaml

    from territory.pipelines.config import load_config

    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw["workspace"] = str(folder / "workspace")
    raw["as_of"] = None
    raw["progress"] = "none"
    raw["data"] = {"units": "units.parquet", "sales": "sales.parquet",
                   "demographics": "demographics.parquet", "truth": "truth.parquet",
                   "projected_crs": "EPSG:5070", "columns": raw["data"]["columns"]}
    raw["territories"].update(n_territories=400, keep_rep_homes=False)
    raw["forecast"]["backtest"]["windows"] = backtest_windows
    raw["runner"] = runner
    raw["dask"] = {"n_workers": 2, "threads_per_worker": 1}
    path = folder / f"config-{runner}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


# -- measuring -------------------------------------------------------------------
class TreePeak:
    """Largest sum of RSS over this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        import psutil

        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(self._interval)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of this process and its live descendants."""
        import psutil

        total = sum(self._proc.cpu_times()[:2])
        for child in self._proc.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    def reset(self) -> None:
        self.peak = self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_one(n_units: int, runner: str, backtest_windows: int = 0) -> dict:
    """Every stage once, in this process; returns the measurements."""
    from territory.pipelines import stages

    folder = CACHE / f"units-{n_units}"
    if not (folder / "sales.parquet").exists():
        make_data(n_units, folder)
    config = config_for(folder, runner, backtest_windows)
    peak = TreePeak()
    out: dict = {"n_units": n_units, "runner": runner, "backtest_windows": backtest_windows,
                 "stages": {}}

    def timed(name, fn, *args):
        peak.reset()
        w0, c0, t0 = time.perf_counter(), time.process_time(), peak.cpu_s()
        result = fn(*args)
        out["stages"][name] = {"wall_s": round(time.perf_counter() - w0, 2),
                               "cpu_s": round(time.process_time() - c0, 2),
                               "tree_cpu_s": round(peak.cpu_s() - t0, 2),
                               "peak_gb": round(peak.peak / 1e9, 2)}
        print(f"  {runner} {n_units}: {name} {out['stages'][name]}", flush=True)
        return result

    inputs = timed("load_inputs", stages.load_inputs, config)
    out["sales_rows"] = len(inputs.sales)
    if runner == "dask":
        import distributed

        from territory.pipelines import dask_runner

        cluster = distributed.LocalCluster(**dask_runner.cluster_kwargs(config.dask))
        client = distributed.Client(cluster)
        # the training rows stay on the workers; the forecaster fits from them there
        features, parts = timed("build_features", dask_runner.worker_features, config, inputs,
                                client)
        trained = timed("train_models", dask_runner.distributed_training, config, features,
                        client, parts)
        scores = timed("score_units", dask_runner.partitioned_scores, config, features, trained,
                       client)
    else:
        features = timed("build_features", stages.feature_stage, config, inputs)
        trained = timed("train_models", stages.train_stage, config, features)
        scores = timed("score_units", stages.score_stage, config, features, trained)
    design = timed("design_territories", stages.design_stage, config, inputs, features,
                   scores)
    if runner == "dask":
        client.close()
        cluster.close()
    peak.stop()
    from territory.models.distributed import n_fit_rows

    if runner == "dask":  # the driver never held the training rows
        out["train_rows"] = parts.n_rows
        out["final_fit_rows"] = parts.stats.get("fit_rows")
        out["backtest_fit_rows"] = parts.stats.get("backtest_fit_rows")  # one per origin
    else:
        out["train_rows"] = len(features.train_table)
        out["final_fit_rows"] = n_fit_rows(trained.forecaster, features.train_table)
    out["lightgbm_dask"] = trained.forecaster.booster_.params.get("tree_learner") == "data"
    out["valid_wape"] = round(trained.metrics["valid_wape"], 4)
    out["backtest_wape"] = round(trained.metrics.get("backtest_wape", float("nan")), 4)
    out["potential_spearman_vs_truth"] = round(
        scores.metrics.get("potential_spearman_vs_truth", float("nan")), 4)
    out["max_dev_potential"] = design.overall.get("max_abs_deviation_potential")
    out["contiguous"] = design.overall.get("contiguous")
    out["peak_gb"] = max(s["peak_gb"] for s in out["stages"].values())
    return out


# -- reporting --------------------------------------------------------------------
def _key(r: dict) -> tuple:
    """One row per size, runner and number of backtest windows."""
    return r["n_units"], r["runner"], r.get("backtest_windows") or 0


def table(results: list[dict]) -> str:
    head = ("| units | runner | features s | training s | scoring s | design s | peak GB "
            "| train rows | final fit rows (lightgbm.dask) | valid WAPE |")
    # each stage cell: wall seconds / CPU seconds of the process tree; ✗ = wall over target
    lines = [head, "|" + "---|" * 10]
    for r in sorted(results, key=_key):
        def cell(name, s=r["stages"]):
            v, cpu = s[name]["wall_s"], s[name].get("tree_cpu_s", s[name]["cpu_s"])
            target = TARGETS_S.get(name)
            return f"{v:.0f} / {cpu:.0f}" + (" ✗" if target and v > target else "")

        peak = f"{r['peak_gb']:.1f}" + (" ✗" if r["peak_gb"] > TARGET_PEAK_GB else "")
        runner = r["runner"] + (f", backtest {w}" if (w := r.get("backtest_windows")) else "")
        fit_rows = "-" if r["final_fit_rows"] is None else f"{r['final_fit_rows']:,}"
        lines.append(
            f"| {r['n_units']:,} | {runner} | {cell('build_features')} | "
            f"{cell('train_models')} | {cell('score_units')} | {cell('design_territories')} | "
            f"{peak} | {r['train_rows']:,} | {fit_rows} "
            f"({'yes' if r['lightgbm_dask'] else 'no'}) | {r['valid_wape']:.3f} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for runner, style in (("local", "-o"), ("dask", "--s")):
        rows = sorted((r for r in results if r["runner"] == runner), key=lambda r: r["n_units"])
        if not rows:
            continue
        for name, colour in zip(STAGES, ("C0", "C1", "C2", "C3"), strict=True):
            cpu = [r["stages"][name].get("tree_cpu_s", r["stages"][name]["cpu_s"]) for r in rows]
            ax.plot([r["n_units"] for r in rows], cpu,
                    style, color=colour, label=f"{name} ({runner})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("units (60 months each)")
    ax.set_ylabel("CPU time of driver + workers (s)")
    ax.set_title("Scale: CPU time per stage (wall times were inflated by load)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, nargs="+", default=[5000, 10000, 21000, 42000])
    parser.add_argument("--runners", nargs="+", default=["local", "dask"],
                        choices=["local", "dask"])
    parser.add_argument("--backtest-windows", type=int, default=0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one size, one runner
        result = run_one(args.units[0], args.runners[0], args.backtest_windows)
        print("RESULT " + json.dumps(result), flush=True)
        return

    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"results": []}
    results = {_key(r): r for r in previous["results"]}
    for n in args.units:
        for runner in args.runners:
            print(f"== {n} units, {runner} runner", flush=True)
            proc = subprocess.run(
                [sys.executable, __file__, "--one", "--units", str(n), "--runners", runner,
                 "--backtest-windows", str(args.backtest_windows)],
                capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            print("\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith("  ")))
            if proc.returncode != 0 or not lines:
                print(proc.stderr[-3000:])
                failed = {"n_units": n, "runner": runner,
                          "backtest_windows": args.backtest_windows, "error": proc.stderr[-500:]}
                results[_key(failed)] = failed
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            r["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            r["load_average_1m"] = round(os.getloadavg()[0], 1)
            results[_key(r)] = r
            RESULTS.write_text(json.dumps(
                {"machine": f"{platform.node()}, {os.cpu_count()} CPU, {platform.platform()}",
                 "results": list(results.values())}, indent=1))
    ok = [r for r in results.values() if "error" not in r]
    print(table(ok))
    if ok:
        plot([r for r in ok if not r.get("backtest_windows")], ROOT / "benchmarks" / "scale.png")


if __name__ == "__main__":
    main()
