"""Priorities (hard and soft attributes), the price-of-balance plans and territory shapes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from territory.models import plans
from territory.models.alignment import Geography
from territory.models.config import TerritoryConfig
from territory.models.territories import evaluate_alignment, territory_elongation
from tests.lattice import lattice

ROWS, COLS = 12, 12


def _diverging_instance(seed: int = 3, strength: float = 3.0):
    """A lattice where potential rises west to east and workload east to west."""
    xy, adjacency = lattice(ROWS, COLS)
    rng = np.random.default_rng(seed)
    x = xy[:, 0] / xy[:, 0].max()
    potential = (1.0 + strength * x**2) * rng.uniform(0.5, 1.5, len(xy))
    workload = (1.0 + strength * (1 - x) ** 2) * rng.uniform(0.5, 1.5, len(xy))
    measures = {"potential": potential, "workload": workload, "units": np.ones(len(xy)),
                "forecast": potential}
    geo = Geography(np.array([f"u{i}" for i in range(len(xy))], dtype=object), xy,
                    adjacency, np.ones(len(xy)))  # 1 km² cells
    return geo, measures


def _config(**kwargs) -> TerritoryConfig:
    base = {"n_territories": 6, "seed": 0, "time_limit_s": 60, "keep_rep_homes": False,
            "balance": [{"attribute": "potential", "tolerance": 0.05, "role": "hard"},
                        {"attribute": "workload", "tolerance": 0.05, "role": "soft"}],
            "frontier": [0.5, 0.2, 0.05]}
    return TerritoryConfig(**{**base, **kwargs})


def test_old_keys_still_work_and_mean_every_attribute_hard():
    config = TerritoryConfig(balance_attributes=["potential", "workload"], tolerance=0.08)
    assert config.tolerances == {"potential": 0.08, "workload": 0.08}
    assert config.soft_attributes == [] and plans.soft_ladder(config) == [None]
    again = TerritoryConfig.model_validate(config.model_dump())  # dumps carry both forms
    assert again == config


@pytest.mark.parametrize(("raw", "message"), [
    ({"balance": [{"attribute": "potential"}], "tolerance": 0.1}, "not both"),
    ({"balance": []}, "at least one attribute"),
    ({"balance": [{"attribute": "workload", "role": "soft"}]}, "at least one hard"),
    ({"balance": [{"attribute": "potential"}, {"attribute": "potential"}]}, "twice"),
    ({"balance": [{"attribute": "potential", "role": "maybe"}]}, "role"),
    ({"frontier": [1.5]}, "frontier"),
])
def test_bad_balance_rules_name_the_keys(raw, message):
    with pytest.raises(ValidationError, match=message):
        TerritoryConfig(**raw)


def test_soft_ladder_runs_loose_to_tight_down_to_the_soft_tolerance():
    config = _config(frontier=[0.1, 0.4, 0.02, 0.2])
    assert plans.soft_ladder(config) == [plans.UNCONSTRAINED, 0.4, 0.2, 0.1, 0.05]


def test_every_rung_holds_the_hard_attribute_on_an_easy_instance():
    geo, measures = _diverging_instance()
    config = _config(max_elongation=None)  # balance alone; the shape limit is tested below
    tried = plans.price_of_balance(geo, measures, config)
    assert [p.soft_tolerance for p in tried] == [plans.UNCONSTRAINED, 0.5, 0.2, 0.05]
    chosen = plans.chosen_plan(tried, config)
    assert chosen is tried[-1] and chosen.hard_violations == 0  # the tightest that holds
    table = plans.plans_table(tried, config, chosen)
    assert table["published"].tolist() == [False, False, False, True]
    assert (table["potential_max_abs_deviation"] <= 0.05 + 1e-9).all()
    assert (table["potential_within_tolerance"] == 1.0).all()
    assert table["workload_max_abs_deviation"].iloc[-1] <= 0.05 + 1e-9
    assert table["workload_max_abs_deviation"].iloc[0] > 0.05  # what balancing it cost
    assert {"median_elongation", "max_elongation", "cpu_s", "units_moved_pct"} <= set(table)


def test_best_plan_is_the_tightest_that_holds_the_hard_attribute_and_the_shape_limit():
    geo, measures = _diverging_instance()  # strips: tight workload costs shape here
    config = _config(max_elongation=2.0)
    tried = plans.price_of_balance(geo, measures, config)
    chosen = plans.chosen_plan(tried, config)
    assert chosen.hard_violations == 0 and chosen.shape_over_limit == 0
    at = tried.index(chosen)
    assert all(p.hard_violations or p.shape_over_limit for p in tried[at + 1:])
    assert at < len(tried) - 1  # the premise: the tightest rung breaks the shape limit
    table = plans.plans_table(tried, config, chosen)
    assert table["shape_over_limit"].tolist() == [p.shape_over_limit for p in tried]
    assert (table.loc[table["shape_over_limit"] == 0, "max_elongation"] <= 2.0 + 1e-9).all()
    design = plans.publishable_design(geo, measures, config)
    assert design.overall["shape_over_limit"] == 0
    assert not [v for v in design.violations if "shape limit" in v]
    tightest = tried[-1].design
    assert any("over the shape limit of 2" in v for v in tightest.violations)


def test_the_ladder_stops_where_the_soft_attribute_breaks_the_hard_one():
    geo, measures = _diverging_instance(strength=8.0)
    config = _config(n_territories=12)
    tried = plans.price_of_balance(geo, measures, config)
    broken = [p.hard_violations > 0 for p in tried]
    assert broken[-1] and not any(broken[:-1])  # the first rung that breaks it is the last
    assert len(tried) < len(plans.soft_ladder(config))  # no tighter rung tried
    chosen = plans.chosen_plan(tried, config)
    assert chosen.hard_violations == 0 and chosen in tried[:-1]  # never the broken rung
    table = plans.plans_table(tried, config, chosen)
    assert table["hard_violations"].tolist()[-1] > 0
    assert table["potential_within_tolerance"].iloc[-1] < 1.0


def test_publishable_design_carries_the_plans_and_keeps_soft_lines_out_of_violations():
    geo, measures = _diverging_instance()
    config = _config()
    design = plans.publishable_design(geo, measures, config)
    assert design.plans is not None and design.plans["published"].sum() == 1
    assert design.overall["hard_violations"] == 0
    assert not any(": workload " in v for v in design.violations)
    assert "median_elongation" in design.overall and "elongation" in design.summary
    same = plans.publishable_design(geo, measures, config)  # seeded: same plan
    pd.testing.assert_series_equal(design.proposed, same.proposed)


def test_a_named_plan_is_the_one_published():
    geo, measures = _diverging_instance()
    config = _config(plan=0.5)
    tried = plans.price_of_balance(geo, measures, config)
    assert [p.soft_tolerance for p in tried] == [plans.UNCONSTRAINED, 0.5]
    assert plans.chosen_plan(tried, config).soft_tolerance == 0.5


def test_only_hard_attributes_give_one_plan():
    geo, measures = _diverging_instance()
    config = TerritoryConfig(n_territories=4, balance_attributes=["potential"], tolerance=0.1,
                             keep_rep_homes=False, seed=0)
    design = plans.publishable_design(geo, measures, config)
    assert len(design.plans) == 1 and design.plans["plan"].item() == "balanced"


def test_elongation_is_span_over_the_equal_area_circle():
    # a 1 x 8 strip of 1 km² cells against a 3 x 3 block, as two territories
    xy, adjacency = lattice(3, 11)
    labels = np.full(len(xy), -1)
    row, col = np.divmod(np.arange(len(xy)), 11)
    labels[(row == 0) & (col < 8)] = 0  # the snake
    labels[col >= 8] = 1  # the block
    areas = np.ones(len(xy))
    report = evaluate_alignment(labels, xy, adjacency, pd.DataFrame({"units": np.ones(len(xy))}),
                                tolerance=0.99, areas=areas, n_territories=2)
    snake, block = report.territories["elongation"]
    assert snake == pytest.approx(7.0 / (2 * np.sqrt(8 / np.pi)))
    assert block == pytest.approx(np.hypot(2, 2) / (2 * np.sqrt(9 / np.pi)))
    assert snake > 2.0 > block
    assert report.overall["max_elongation"] == pytest.approx(snake)
    with pytest.raises(ValueError, match="areas"):
        territory_elongation(np.ones(2), areas[:-1], labels, 2)


def test_without_a_plan_that_holds_the_fewest_hard_violations_win():
    tried = [plans.Plan(0.99, None, 0.1, 3), plans.Plan(0.5, None, 0.1, 2)]
    assert plans.chosen_plan(tried, _config()) is tried[1]


def test_a_composite_index_is_balanced_as_one_attribute():
    from territory.features.errors import InputError
    from territory.models.alignment import composite_index, unit_measures

    geo, measures = _diverging_instance()
    index = composite_index(measures, {"workload": 3.0, "units": 1.0})
    expected = 0.75 * measures["workload"] / measures["workload"].mean() + 0.25
    np.testing.assert_allclose(index, expected)
    assert index.mean() == pytest.approx(1.0)  # an average unit scores 1
    config = _config(balance=[{"attribute": "potential", "tolerance": 0.05, "role": "hard"},
                              {"attribute": "index", "tolerance": 0.05, "role": "soft"}],
                     index={"workload": 3.0, "units": 1.0}, frontier=[0.5, 0.3])
    design = plans.publishable_design(geo, {**measures, "index": index}, config)
    assert "index_deviation" in design.summary.columns
    assert design.summary["potential_deviation"].abs().max() <= 0.05 + 1e-9
    assert set(design.plans.columns) >= {"index_max_abs_deviation"}
    totals = pd.DataFrame({"potential": measures["potential"], "forecast": measures["potential"]},
                          index=geo.unit_ids)
    built = unit_measures(totals, pd.Series(measures["workload"], index=geo.unit_ids),
                          geo.unit_ids, {"workload": 3.0, "units": 1.0})
    np.testing.assert_allclose(built["index"], index)
    with pytest.raises(ValidationError, match="define it with territories.index"):
        _config(balance=[{"attribute": "potential"}, {"attribute": "index", "role": "soft"}])
    with pytest.raises(ValidationError, match="greater than 0"):
        _config(index={"workload": 0.0})
    with pytest.raises(InputError, match="zero for every unit"):
        composite_index({"workload": np.zeros(3), "units": np.ones(3)}, {"workload": 1.0})
