"""Benchmark: potential share error on moved units' sales, the real-data check (issue #19).

Real data has no true potential, but units do change rep. This benchmark
builds that natural experiment on the simulator and scores it with
:func:`territory.models.potential_rep_change.rep_change_share_error`, which
reads no truth:

1. the feature stage runs one year before the last month (as
   ``potential_next_year.py``), and the potential (``rep_adjusted``, and
   ``quantile`` for comparison) is fitted on that year with the alignment;
2. a realignment at that date: ``--share`` of the units on a territory
   boundary (seeded) move to a neighbouring territory. Their held-out year
   of sales is what the simulator says a unit sells under its new rep: its
   sales times the new rep's penetration over the old one's. (The truth file
   is read here only to build the experiment, as the simulator would.)
3. the metric: per receiving territory, the relative error of its share of
   the moved units' held-out sales, predicted as potential at the new
   territory's effect. For reference, the same groups' share error against
   the *true* potential (truth read after, to check the metric tracks it).

Run (not part of the test suite)::

    .venv/bin/python benchmarks/potential_rep_change.py --seeds demo 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from potential_next_year import year_before  # same folder
from true_balance import CONFIG, company_folder


def realignment(features, share: float, seed: int) -> pd.Series:
    """The alignment after moving ``share`` of the boundary units to a neighbouring
    territory (each picks one neighbour's territory at random)."""
    current = features.territory.reindex(features.market_table.index).astype(object)
    matrix = features.graph.matrix.tocsr()
    labels = current.to_numpy()
    rng = np.random.default_rng(seed)
    options = {}
    for i in range(len(labels)):
        nbrs = matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]]
        other = sorted({labels[j] for j in nbrs} - {labels[i]} - {None})
        if other and pd.notna(labels[i]):
            options[i] = other
    boundary = np.array(sorted(options))
    chosen = rng.choice(boundary, int(round(share * len(boundary))), replace=False)
    after = labels.copy()
    for i in chosen:
        after[i] = options[i][rng.integers(len(options[i]))]
    return pd.Series(after, index=current.index)


def run(seed: str, tmp: Path, share: float) -> dict:
    from territory.models.potential_rep import potential_factory
    from territory.models.potential_rep_change import moved_units, rep_change_share_error
    from territory.pipelines.config import load_config

    folder = company_folder(seed, tmp)
    features, next_year = year_before(folder, tmp / f"ws_{seed}")
    truth = pd.read_parquet(folder / "truth.parquet").set_index("unit_id")
    before = features.territory.reindex(features.market_table.index)
    after = realignment(features, share, seed=0)
    moved = moved_units(before, after)
    penetration = truth["rep_penetration"].groupby(truth["territory_id"]).first()
    ratio = (after.reindex(moved).map(penetration) / before.reindex(moved).map(penetration))
    sales_after = next_year.copy()
    sales_after.loc[moved] = next_year.loc[moved] * ratio.to_numpy(dtype=float)
    config = load_config(CONFIG).potential
    market = features.market_table
    out = {"moved_units": int(len(moved))}
    for method in ("rep_adjusted", "quantile"):
        start = time.process_time()
        model = potential_factory(config, method)()
        if method == "rep_adjusted":
            model.fit(market, features.annual_sales.to_numpy(), groups=before.to_numpy(),
                      split=features.annual_split.reindex(market.index).to_numpy())
        else:
            model.fit(market, features.annual_sales.to_numpy())
        metrics, table = rep_change_share_error(model, market, sales_after, before, after)
        cpu = time.process_time() - start
        # reference only: the same receiving groups' share of the moved units' true potential
        estimate = pd.Series(model.predict(market), index=market.index)
        true = truth["true_potential"]
        groups = after.reindex(moved).astype(str)
        groups = groups[groups.isin(table["territory"])]
        est_share = estimate.reindex(groups.index).groupby(groups).sum()
        true_share = true.reindex(groups.index).groupby(groups).sum()
        truth_error = ((est_share / est_share.sum() - true_share / true_share.sum()).abs()
                       / (true_share / true_share.sum()))
        out[method] = {**metrics, "truth_share_error_p90": float(truth_error.quantile(0.9)),
                       "cpu_s": cpu}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["demo", "1", "2"])
    parser.add_argument("--share", type=float, default=0.3,
                        help="share of the boundary units that move")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="rep_change_") as tmp:
        for seed in args.seeds:
            results[seed] = r = run(seed, Path(tmp), args.share)
            for method in ("rep_adjusted", "quantile"):
                m = r[method]
                print(f"[{seed}] {method:12s} {r['moved_units']} moved units into "
                      f"{m['potential_rep_change_territories']:.0f} territories: share error "
                      f"p50 {m['potential_rep_change_share_error_p50']:.1%} p90 "
                      f"{m['potential_rep_change_share_error_p90']:.1%}, log RMSE "
                      f"{m['potential_rep_change_log_rmse']:.3f}; same groups on the truth "
                      f"p90 {m['truth_share_error_p90']:.1%}; {m['cpu_s']:.1f} s CPU",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
