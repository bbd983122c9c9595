"""Compare plans: the current alignment, the minimal change and the plans tried, side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from territory.models import plans
from territory.models.alignment import Geography
from territory.models.config import TerritoryConfig
from tests.lattice import lattice


def _case():
    xy, adjacency = lattice(6, 8)
    n = len(xy)
    ids = np.array([f"u{i:02d}" for i in range(n)], dtype=object)
    rng = np.random.default_rng(7)
    potential = rng.gamma(3.0, 30.0, n) * np.where(xy[:, 0] < 2000, 3.0, 1.0)  # west is rich
    measures = {"potential": potential, "forecast": potential / 2,
                "workload": rng.integers(1, 20, n).astype(float), "units": np.ones(n)}
    current = pd.Series(np.where(xy[:, 0] < 4000, "WEST", "EAST"), index=ids)
    config = TerritoryConfig(
        n_territories=4, balance=[{"attribute": "potential", "tolerance": 0.1, "role": "hard"},
                                  {"attribute": "workload", "tolerance": 0.2, "role": "soft"}],
        frontier=[0.3], max_elongation=None, time_limit_s=5, keep_rep_homes=False)
    return Geography(ids, xy, adjacency), measures, current, config


def test_comparison_puts_current_minimal_change_and_every_plan_side_by_side():
    geo, measures, current, config = _case()
    design = plans.publishable_design(geo, measures, config, current)
    table = design.comparison.set_index("plan")
    tried = design.plans.set_index("plan")
    proposed = [p for p in table.index if p.startswith("proposed")]
    assert table.index[:2].tolist() == ["current alignment", "minimal change"]
    assert len(proposed) == 1 and table["published"].sum() == 1
    assert len(table) == 2 + len(tried)
    assert table.loc["current alignment", "units_moved"] == 0
    assert table.loc["current alignment", "territories"] == 2
    assert table.loc["minimal change", "territories"] == 2  # today's territories, rebalanced
    row = table.loc[proposed[0]]
    assert row["territories"] == 4
    moved = int((current != design.proposed).sum())
    assert row["units_moved"] == moved and row["units_moved_pct"] == pytest.approx(
        100 * moved / len(current))
    assert row["rep_travel_km"] == pytest.approx(design.summary["mean_distance_km"].mean())
    published = tried[tried["published"]].iloc[0]
    for column in ("potential_max_abs_deviation", "workload_max_abs_deviation",
                   "potential_within_tolerance", "total_dispersion", "max_span_km",
                   "units_moved_pct"):
        assert row[column] == pytest.approx(published[column]), column
    # today's west holds 3x the potential: the rebalance improves it, the current is off
    assert table.loc["minimal change", "potential_max_abs_deviation"] < \
        table.loc["current alignment", "potential_max_abs_deviation"]


def test_no_minimal_change_without_a_current_alignment_or_when_switched_off():
    geo, measures, current, config = _case()
    assert plans.minimal_change(geo, measures, config, None) is None
    assert plans.minimal_change(geo, measures, config, current.where(current != "EAST")) is None
    off = config.model_copy(update={"minimal_change": False, "frontier": []})
    design = plans.publishable_design(geo, measures, off, current)
    assert "minimal change" not in set(design.comparison["plan"])


def test_a_first_design_has_no_units_moved_rather_than_zero(tmp_path, capsys, monkeypatch):
    from territory.pipelines import console_tables

    geo, measures, _, config = _case()
    design = plans.publishable_design(geo, measures, config.model_copy(update={"frontier": []}),
                                      None)
    table = design.comparison
    assert "current alignment" not in set(table["plan"])
    assert table["units_moved"].isna().all() and table["units_moved_pct"].isna().all()
    table.to_csv(tmp_path / "plan_comparison.csv", index=False)
    monkeypatch.setattr(console_tables.console, "width", 200)
    console_tables.print_plans(tmp_path)
    proposed = next(line for line in capsys.readouterr().out.splitlines() if "proposed" in line)
    assert "%" in proposed and not proposed.rstrip(" │").endswith("%")  # deviations, no moved


def test_the_run_prints_the_price_of_balance(tmp_path, capsys, monkeypatch):
    from territory.pipelines import console_tables as cli

    pd.DataFrame([
        {"plan": "current alignment", "published": False, "potential_max_abs_deviation": 0.74,
         "workload_max_abs_deviation": 1.36, "hard_violations": 40, "median_elongation": 1.32,
         "max_span_km": 1500.0, "units_moved_pct": 0.0},
        {"plan": "proposed (soft ±30%)", "published": True, "potential_max_abs_deviation": 0.05,
         "workload_max_abs_deviation": 0.31, "hard_violations": 0, "median_elongation": 1.41,
         "max_span_km": 1364.0, "units_moved_pct": 44.1},
    ]).to_csv(tmp_path / "plan_comparison.csv", index=False)
    monkeypatch.setattr(cli.console, "width", 200)
    cli.print_plans(tmp_path)
    out = capsys.readouterr().out
    assert "price of balance" in out and "proposed (soft ±30%)" in out
    assert "74.0%" in out and "31.0%" in out and "44.1%" in out and "1,364" in out
    cli.print_plans(tmp_path / "nowhere")  # a run without plans prints nothing
    assert capsys.readouterr().out == ""
