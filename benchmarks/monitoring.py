"""Monitoring benchmark (issue #16): the nightly run's monitoring step against the nightly run.

Data: ``benchmarks/scale.py``'s national units (ZIP-like, 60 months of sales,
cached in ``$TERRITORY_SCALE_CACHE``), ``configs/demo.yaml`` on them. The
nightly run is timed as its own stages: ``load_inputs``, ``feature_stage``
and, with ``--train``, ``score_stage`` with a freshly trained model (training
is the weekly flow's cost, not the nightly's, and is not counted), then the
current alignment (400 k-means territories), the recommendations and the
outputs with the report (``publish.write_outputs``). Without
``--train`` the nightly is load + features only: a smaller denominator, so
the ratio is an upper bound.

The monitoring step is timed as the nightly flow runs it:

- ``measure``: 12 earlier published forecasts (one per month before the
  as-of date, ``horizon`` rows per unit each, with an alignment of 400
  territories and a manifest) joined with their actuals and summed at the
  four levels (:func:`territory.pipelines.monitoring.accuracy_watch`);
- ``check_inputs``: PSI, KS, schema and data quality against the drift
  reference (:func:`territory.pipelines.monitoring.check_inputs`) and the
  alert rules;
- ``publish``: the accuracy table written and logged to MLflow (SQLite in the
  workspace) (:func:`territory.pipelines.monitoring.publish_watch`).

``build_reference`` (paid once per training run) is reported beside them.
CPU seconds are ``time.process_time`` of this process (everything here runs in it).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/monitoring.py --units 10000 --train
    .venv/bin/python benchmarks/monitoring.py --units 42000
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import CACHE, config_for, make_data  # noqa: E402

N_EARLIER = 12


def timed(out: dict, name: str, fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    out[name] = {"wall_s": round(time.perf_counter() - w0, 2),
                 "cpu_s": round(time.process_time() - c0, 2)}
    print(f"  {name}: {out[name]}", flush=True)
    return result


def write_alignment(folder: Path) -> Path:
    """400 territories by k-means on the unit centroids (seeded), as ``alignment.csv``."""
    import geopandas as gpd
    from sklearn.cluster import KMeans

    path = folder / "alignment.csv"
    if not path.exists():
        units = gpd.read_parquet(folder / "units.parquet")
        xy = np.column_stack([units.geometry.centroid.x, units.geometry.centroid.y])
        labels = KMeans(400, n_init=1, random_state=0).fit_predict(xy)
        pd.DataFrame({"unit_id": units["unit_id"],
                      "territory_id": [f"T{k:03d}" for k in labels]}).to_csv(path, index=False)
    return path


def publish_earlier_forecasts(config, inputs, as_of: pd.Timestamp, horizon: int) -> None:
    """Forecast folders for the ``N_EARLIER`` months before ``as_of`` (seasonal naive with
    a ±20% range), each with an alignment of 400 territories and a manifest."""
    from territory.pipelines import monitoring

    cols = config.data.columns
    sales = inputs.sales.set_index([cols.unit_col, cols.time_col])[cols.target_col]
    units = inputs.units[cols.unit_col].to_numpy()
    territory = pd.DataFrame({cols.unit_col: units,
                              cols.territory_col: [f"T{i % 400:03d}" for i in range(len(units))]})
    promise = monitoring.promise({"backtest_wape": 0.2, "backtest_coverage": 0.8}, horizon)
    for k in range(1, N_EARLIER + 1):
        origin = as_of - pd.DateOffset(months=k)
        targets = [origin + pd.DateOffset(months=h) for h in range(1, horizon + 1)]
        last_year = [t - pd.DateOffset(months=12) for t in targets]
        index = pd.MultiIndex.from_product([units, last_year])
        naive = sales.reindex(index).to_numpy()
        frame = pd.DataFrame({cols.unit_col: np.repeat(units, horizon), "as_of": origin,
                              "horizon": np.tile(np.arange(1, horizon + 1), len(units)),
                              "target_period": np.tile(targets, len(units)),
                              "forecast": naive, "forecast_lo": naive * 0.8,
                              "forecast_hi": naive * 1.2})
        folder = Path(config.workspace) / "nightly" / f"{config.run_name}-{origin:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / "scores.parquet", index=False)
        territory.to_parquet(folder / "alignment.parquet", index=False)
        (folder / "manifest.json").write_text(json.dumps(
            {"model": {"version": "1"}, "monitoring": promise}))


def run(n_units: int, train: bool) -> dict:
    from territory.pipelines import alerts, monitoring, stages

    folder = CACHE / f"units-{n_units}"
    if not (folder / "sales.parquet").exists():
        make_data(n_units, folder)
    config = config_for(folder, "local")
    if train:  # the nightly recommends on the current alignment: 400 k-means territories
        config = config.model_copy(update={"data": config.data.model_copy(
            update={"alignment": write_alignment(folder)})})
    shutil.rmtree(config.workspace, ignore_errors=True)
    nightly: dict = {}
    step: dict = {}
    inputs = timed(nightly, "load_inputs", stages.load_inputs, config)
    features = timed(nightly, "build_features", stages.feature_stage, config, inputs)
    if train:
        from territory.pipelines import publish

        trained = stages.train_stage(config, features)
        scores = timed(nightly, "score_units", stages.score_stage, config, features, trained)
        design = timed(nightly, "current_alignment", stages.current_alignment_stage, config,
                       inputs, features, scores)
        recs = timed(nightly, "recommend", stages.recommend_stage, config, inputs, features,
                     scores, design)
        out = Path(config.workspace) / "bench-report"
        out.mkdir(parents=True, exist_ok=True)
        timed(nightly, "write_outputs", publish.write_outputs, out, config, inputs, features,
              trained, scores, design, recs)
    publish_earlier_forecasts(config, inputs, features.as_of, config.forecast.horizon)
    from territory.models import tracking

    tracking.connect(config.tracking.tracking_uri, config.workspace,
                     config.tracking.experiment)  # the store exists on a nightly: not timed
    reference = timed(step, "build_reference (training)", monitoring.build_reference, config,
                      inputs, features)
    found = timed(step, "measure", monitoring.accuracy_watch, config, inputs.sales,
                  features.as_of)

    def check():
        found.inputs = monitoring.check_inputs(config, inputs, features, reference)
        found.alerts = alerts.evaluate(config, found.history, found.inputs)

    timed(step, "check_inputs", check)
    timed(step, "publish", monitoring.publish_watch, config, found)
    nightly_cpu = sum(v["cpu_s"] for v in nightly.values())
    step_cpu = sum(v["cpu_s"] for k, v in step.items() if not k.startswith("build_reference"))
    return {"n_units": n_units, "train": train, "sales_rows": len(inputs.sales),
            "forecast_rows_measured": int(found.accuracy["n_rows"][
                found.accuracy["level"] == "overall"].sum()),
            "accuracy_rows": len(found.history), "alerts": [a.rule for a in found.alerts],
            "nightly": nightly, "step": step, "nightly_cpu_s": round(nightly_cpu, 2),
            "step_cpu_s": round(step_cpu, 2), "ratio": round(step_cpu / nightly_cpu, 4),
            "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
            "when": datetime.now(UTC).isoformat(timespec="minutes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--train", action="store_true",
                        help="train a model and count scoring in the nightly run")
    args = parser.parse_args()
    result = run(args.units, args.train)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
