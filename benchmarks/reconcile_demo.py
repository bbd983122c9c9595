"""Benchmark: coherent unit -> territory -> total forecasts on the demo (issue #14, item 4).

The train and score stages of ``configs/demo.yaml`` (3,085 units, the train
stage's backtest windows), then :mod:`territory.models.reconcile` on the
company's current alignment (``--design``: on the run's proposed alignment,
which costs a territory design more): the aggregates' own base forecasts
(AutoTheta on each territory's and the total's sales), every method on every
backtest window, the method the run would publish, its CPU cost, and whether
the published unit forecasts, the node table and the territory totals add up.

Printed: WAPE and MASE per method, level and window (``base`` = each level's own
base forecast: the published unit forecasts, the aggregates' AutoTheta), the
mean over the windows the choice compares, the choice, and the coherence gaps.

Run (not part of the test suite)::

    nice .venv/bin/python benchmarks/reconcile_demo.py
    nice .venv/bin/python benchmarks/reconcile_demo.py --windows 4   # + a held-out window
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import pandas as pd
from forecast_statsforecast import cpu_seconds  # same folder

from territory.models import reconcile
from territory.models.scoring import member_history
from territory.pipelines import stages
from territory.pipelines.config import load_config


def _alignment(config, inputs, features, scores, design: bool) -> pd.DataFrame:
    cols = config.data.columns
    if not design:
        return inputs.alignment[[cols.unit_col, cols.territory_col]]
    proposed = stages.design_stage(config, inputs, features, scores).proposed
    return pd.DataFrame({cols.unit_col: proposed.index.astype(str),
                         cols.territory_col: proposed.to_numpy()})


def held_out(hierarchy, windows, level: float) -> None:
    """The choice made on every window but the last, scored on the last (held out), and
    the aggregates' conformal coverage at the last two windows, calibrated on the errors
    known at each origin (earlier windows, targets up to the origin), with the errors
    scaled by sqrt(horizon) (the published rule) and pooled as they are."""
    last = windows[-1]
    method, _ = reconcile.choose_method(hierarchy, windows[:-1])
    scored = reconcile.score_windows(hierarchy, windows, reconcile.METHODS)
    scored = scored[(scored["origin"] == last.origin)
                    & scored["method"].isin(["base", "bottom_up", method])]
    print(f"\nheld out: chosen on the first {len(windows) - 1} windows: {method}; "
          f"the last window ({last.origin:%Y-%m}):")
    print(scored.pivot_table(index="method", columns="level", values=["wape", "mase"])
          .round(4).to_string())
    for w in windows[-2:]:  # the rule's choice window, then the reported one
        calibration = reconcile.earlier_errors(hierarchy, windows, w.origin)
        actual = reconcile.aggregate(hierarchy, w.actual)
        for name in ("bottom_up", method):
            for rule, cal in (("sqrt(h)", calibration), ("pooled", calibration[:2])):
                _, lo, hi = reconcile.reconcile_with_intervals(hierarchy, w.base, name, cal,
                                                               level)
                for lev in ("territory", "total"):
                    rows = hierarchy.level_rows(lev)
                    inside = (actual[rows] >= lo[rows]) & (actual[rows] <= hi[rows])
                    print(f"  {w.origin:%Y-%m} {name} {rule}: {lev} {level:.0%} coverage "
                          f"{inside.mean():.3f} ({inside.size} node-horizons; "
                          f"{calibration[0].shape[1]} calibration columns)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--windows", type=int, default=None, help="backtest windows")
    parser.add_argument("--design", action="store_true", help="the proposed alignment")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.windows:
        bt = config.forecast.backtest.model_copy(update={"windows": args.windows})
        config = config.model_copy(update={"forecast": config.forecast.model_copy(
            update={"backtest": bt})})
    cols, fc = config.data.columns, config.forecast
    print(f"{platform.machine()} {platform.python_version()}; {args.config}, "
          f"{fc.backtest.windows} windows, step {fc.backtest.step}, h {fc.horizon}", flush=True)
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    started = cpu_seconds()
    trained = stages.train_stage(config, features)
    train_cpu = cpu_seconds() - started
    started = cpu_seconds()
    scores = stages.score_stage(config, features, trained)
    score_cpu = cpu_seconds() - started
    align = _alignment(config, inputs, features, scores, args.design)
    history = member_history(features, config.features.frequency, cols)
    hierarchy = reconcile.build_hierarchy(align, history.index, unit_col=cols.unit_col,
                                          territory_col=cols.territory_col)
    column = trained.published.method if trained.published is not None else "forecast"
    season = config.features.season
    started = cpu_seconds()
    windows = reconcile.backtest_windows(
        hierarchy, trained.backtest.predictions, history, column, fc.horizon, season,
        config.features.frequency, "auto_theta", cols.unit_col, 10 * season)
    windows_cpu = cpu_seconds() - started
    started = cpu_seconds()
    per_window = reconcile.score_windows(hierarchy, windows, reconcile.METHODS)
    method, table = reconcile.choose_method(hierarchy, windows)
    choose_cpu = cpu_seconds() - started
    started = cpu_seconds()
    published, record = reconcile.reconcile_published(
        hierarchy, scores.scores, history, trained.backtest.predictions, column,
        season=season, frequency=config.features.frequency, unit_col=cols.unit_col,
        interval_level=fc.interval_level, max_history=10 * season)
    publish_cpu = cpu_seconds() - started
    pd.set_option("display.width", 160)
    pd.set_option("display.max_rows", 200)
    shown = per_window[per_window["level"].isin(["unit", "territory", "total"])]
    print(shown.pivot_table(index=["level", "method"], columns="origin",
                            values=["wape", "mase"]).round(4).to_string(), flush=True)
    print(f"\nmean over the {int(table['windows'].iloc[0])} window(s) every method is "
          "scored on:")
    print(table.pivot_table(index="method", columns="level", values=["wape", "mase"])
          .round(4).to_string())
    print(f"\nchosen: {method}; published: {record.method} (published column {column!r})")
    terr_of = align.set_index(cols.unit_col)[cols.territory_col].astype(str)
    nodes = record.nodes
    gaps = {
        "units -> territories": reconcile.check_coherent(nodes, terr_of, "unit", "territory"),
        "territories -> total": reconcile.check_coherent(
            nodes, pd.Series("total", index=terr_of.unique()), "territory", "total"),
    }
    sums = (published.assign(t=published[cols.unit_col].astype(str).map(terr_of))
            .groupby(["t", "horizon"])["forecast"].sum())
    terr = nodes[nodes["level"] == "territory"].set_index(["node", "horizon"])["forecast"]
    gaps["published scores -> territory nodes"] = float(
        ((terr.reindex(sums.index) - sums).abs() / np.maximum(sums.abs(), 1)).max())
    before = scores.scores["forecast"].to_numpy()
    change = published["forecast"].to_numpy() - before
    relative = np.abs(change) / np.maximum(before, 1.0)
    print(f"coherence (largest relative gap): {gaps}; largest change of a unit forecast: "
          f"{np.abs(change).max():.6g}; relative change median {np.median(relative):.3f}, "
          f"share > 25% {np.mean(relative > 0.25):.3f}, > 100% {np.mean(relative > 1):.4f}; "
          f"zero after clipping {np.mean(published['forecast'] == 0):.4f} "
          f"(before {np.mean(before == 0):.4f})")
    upper = nodes[nodes["level"] == "territory"]
    print(f"territory 80% interval width / forecast: "
          f"{((upper['forecast_hi'] - upper['forecast_lo']) / upper['forecast']).median():.3f}"
          " (median)")
    if len(windows) >= 3:
        held_out(hierarchy, windows, fc.interval_level)
    print(f"CPU s: train {train_cpu:.1f}, score {score_cpu:.1f}, windows (AutoTheta on "
          f"{hierarchy.n_aggregates} aggregates x {len(windows)}) {windows_cpu:.1f}, choice "
          f"{choose_cpu:.1f}, reconcile_published (all of it) {publish_cpu:.1f}", flush=True)


if __name__ == "__main__":
    main()
