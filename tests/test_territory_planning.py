"""Auto-K and region hierarchy (models.territory_planning): invariants, not magic labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pydantic import ValidationError
from scipy.sparse.csgraph import connected_components

from territory.models.config import TerritoryConfig
from territory.models.territories import TerritoryDesigner
from territory.models.territory_planning import (
    aggregate_attributes,
    capacity_bounds,
    choose_n_territories,
    design_regions,
    territory_graph,
    territory_points,
)
from tests.lattice import lattice


def attrs(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "potential": rng.integers(15, 101, n).astype(float),
        "workload": rng.integers(4, 21, n).astype(float),
    })


def n_pieces(adjacency: sp.csr_matrix, members: np.ndarray) -> int:
    return connected_components(adjacency[members][:, members], directed=False)[0]


# ---------------------------------------------------------------- auto-K


def test_capacity_bounds_arithmetic():
    assert capacity_bounds(12_400, 250) == (50, None)  # 49.6 -> 50
    assert capacity_bounds(12_500, 250) == (50, None)  # exactly 50 reps at 100%
    assert capacity_bounds(12_501, 250) == (51, None)
    assert capacity_bounds(0, 250) == (1, None)
    # potential one rep can cover raises the bound; a minimum potential caps K
    assert capacity_bounds(100, 10, total_potential=1_000, potential_per_rep=80) == (13, None)
    assert capacity_bounds(100, 10, total_potential=1_000, min_potential=90) == (10, 11)
    with pytest.raises(ValueError, match="rep_capacity"):
        capacity_bounds(100, 0)
    with pytest.raises(ValueError, match="need the potential"):
        capacity_bounds(100, 10, potential_per_rep=5)


def test_auto_k_picks_the_capacity_bound_and_explains_it():
    xy, adj = lattice(20, 20)
    a = attrs(400, 0)
    total = a["workload"].sum()
    capacity = total / 9.6  # 9.6 reps' worth of work -> at least 10
    res = choose_n_territories(xy, adj, a, workload="workload", rep_capacity=capacity, seed=0,
                               designer_params={"time_limit_s": 20})
    assert res.lower_bound == 10 == math.ceil(total / capacity)
    assert res.feasible and res.n_territories == 10
    # the chosen design is valid: every unit once, contiguous, balanced, under capacity
    labels = res.labels
    assert labels.shape == (400,) and set(np.unique(labels)) == set(range(10))
    assert all(n_pieces(adj, np.flatnonzero(labels == t)) == 1 for t in range(10))
    dev = a.groupby(labels).sum() / (a.sum() / 10) - 1
    assert dev.abs().to_numpy().max() <= 0.05 + 1e-9
    assert total / 10 <= capacity
    assert res.report.overall["n_violations"] == 0
    # the explanation gives the arithmetic and why one rep fewer will not do
    text = res.explanation
    assert f"{total:,.0f}" in text and "at least 10 reps" in text
    assert f"K=9 would put the average rep at {100 * total / 9 / capacity:.1f}%" in text
    assert "K=10 holds ±5% on potential and workload" in text
    row = res.candidates.iloc[0]
    assert row["n_territories"] == 10 and row["feasible"]
    assert row["mean_utilisation"] == pytest.approx(total / 10 / capacity)
    assert row["max_utilisation"] >= row["mean_utilisation"]
    # same seed, same answer
    again = choose_n_territories(xy, adj, a, workload="workload", rep_capacity=capacity, seed=0,
                                 designer_params={"time_limit_s": 20})
    np.testing.assert_array_equal(again.labels, res.labels)
    assert again.explanation == res.explanation


def path_graph(n: int) -> tuple[np.ndarray, sp.csr_matrix]:
    i = np.arange(n - 1)
    a = sp.csr_matrix((np.ones(n - 1), (i, i + 1)), shape=(n, n))
    xy = np.column_stack([np.arange(n) * 1000.0, np.zeros(n)])
    return xy, ((a + a.T) > 0).astype(np.int8).tocsr()


def test_auto_k_moves_up_when_the_bound_cannot_be_balanced():
    # 12 equal units on a line: K=5 needs 2.4 units per territory (no ±5% split),
    # K=6 splits them 2-2-2-2-2-2 exactly.
    xy, adj = path_graph(12)
    a = pd.DataFrame({"workload": np.ones(12)})
    res = choose_n_territories(xy, adj, a, workload="workload", rep_capacity=2.6, seed=0,
                               designer_params={"time_limit_s": 5})
    assert res.lower_bound == 5
    assert res.n_territories == 6 and res.feasible
    assert res.candidates["n_territories"].tolist() == [5, 6]
    assert res.candidates["feasible"].tolist() == [False, True]
    assert res.candidates["n_violations"].iloc[0] > 0
    assert np.bincount(res.labels).tolist() == [2] * 6
    assert "K=5 left" in res.explanation and "K=6 holds ±5%" in res.explanation


def test_auto_k_without_a_feasible_candidate_says_so_and_returns_the_closest():
    # 7 equal units on a line, capacity 2.2 -> K >= 4; 7/4, 7/5, 7/6 are not integers,
    # so no K in 4..6 holds ±5%: the one with the fewest violations is returned.
    xy, adj = path_graph(7)
    a = pd.DataFrame({"workload": np.ones(7)})
    res = choose_n_territories(xy, adj, a, workload="workload", rep_capacity=2.2, max_extra=2,
                               seed=0, designer_params={"time_limit_s": 5})
    assert not res.feasible
    assert res.candidates["n_territories"].tolist() == [4, 5, 6]
    fewest = res.candidates["n_violations"].min()
    assert res.report.overall["n_violations"] == fewest > 0
    assert res.n_territories == int(
        res.candidates.loc[res.candidates["n_violations"] == fewest, "n_territories"].min())
    assert "No K from 4 to 6 met ±5%" in res.explanation
    assert res.report.violations  # the violations are listed, not hidden


def test_auto_k_potential_per_rep_and_bad_arguments():
    xy, adj = lattice(6, 6)
    a = attrs(36, 1)
    # potential per rep binds harder than workload capacity
    per_rep = a["potential"].sum() / 3.5
    res = choose_n_territories(xy, adj, a, workload="workload", rep_capacity=1e9,
                               potential_per_rep=per_rep, tolerance=0.3, max_extra=0, seed=0,
                               designer_params={"time_limit_s": 5})
    assert res.lower_bound == 4 and res.n_territories == 4
    assert "at least 4" in res.explanation
    with pytest.raises(ValueError, match="not a column"):
        choose_n_territories(xy, adj, a, workload="visits", rep_capacity=10)
    with pytest.raises(ValueError, match="rep_capacity"):
        choose_n_territories(xy, adj, a, workload="workload", rep_capacity=-1)
    with pytest.raises(ValueError, match="length 36"):
        choose_n_territories(xy, adj, a, workload=np.ones(3), rep_capacity=10)


# ---------------------------------------------------------------- hierarchy


def test_territory_graph_aggregates_and_points_by_hand():
    # 2 x 3 lattice, territories by column pairs: [0 0 1] / [2 2 1]
    xy, adj = lattice(2, 3)
    labels = np.array([0, 0, 1, 2, 2, 1])
    g = territory_graph(labels, adj).toarray()
    np.testing.assert_array_equal(g, [[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    a = pd.DataFrame({"p": [1.0, 2, 3, 4, 5, 6]})
    np.testing.assert_array_equal(aggregate_attributes(labels, a)["p"].to_numpy(), [3, 9, 9])
    pts = territory_points(labels, xy, weights=a["p"].to_numpy())
    np.testing.assert_allclose(pts[0], [(0 * 1 + 1000 * 2) / 3, 0.0])
    np.testing.assert_allclose(territory_points(labels, xy, centres=[1, 2, 3]), xy[[1, 2, 3]])
    with pytest.raises(ValueError, match="every territory"):
        territory_graph(np.array([0, 0, 2, 2, 2, 2]), adj)


def test_regions_nest_exactly_are_contiguous_and_report_balance():
    xy, adj = lattice(24, 25)
    a = attrs(600, 3)
    design = TerritoryDesigner(n_territories=20, seed=1, time_limit_s=20).fit(xy, adj, a)
    hier = design_regions(xy, adj, a, design.labels_, 4, seed=0, centres=design.centres_)
    # nesting is exact: a unit's region is its territory's region
    np.testing.assert_array_equal(hier.unit_territory, design.labels_)
    np.testing.assert_array_equal(hier.unit_region, hier.territory_region[design.labels_])
    assert set(hier.territory_region) == set(range(4))
    assert hier.regions["n_territories"].sum() == 20
    # every region is one piece of the *unit* graph
    for r in range(4):
        assert n_pieces(adj, np.flatnonzero(hier.unit_region == r)) == 1
    assert hier.report.overall["contiguous"]
    # the report's balance is the unit totals per region against the mean
    totals = a.groupby(hier.unit_region).sum()
    dev = (totals / (a.sum() / 4) - 1).abs()
    for col in a.columns:
        assert hier.report.overall[f"max_abs_deviation_{col}"] == pytest.approx(dev[col].max())
    assert dev.to_numpy().max() <= 0.10 + 1e-9  # default region tolerance
    assert hier.regions["n_territories"].tolist() == [5, 5, 5, 5]  # span of control 20/4
    assert hier.report.territories["name"].tolist() == ["R01", "R02", "R03", "R04"]
    assert hier.report.territories["n_territories"].tolist() == [5, 5, 5, 5]
    frame = hier.frame([f"u{i}" for i in range(600)])
    assert frame.groupby("territory")["region"].nunique().max() == 1
    assert not hier.links and hier.report.violations == []
    # same seed, same regions
    again = design_regions(xy, adj, a, design.labels_, 4, seed=0, centres=design.centres_)
    np.testing.assert_array_equal(again.territory_region, hier.territory_region)


def test_count_tolerance_widens_to_allow_floor_and_ceil():
    xy, adj = lattice(10, 10)
    a = attrs(100, 4)
    labels = (np.arange(100) // 10)  # 10 row strips, each contiguous
    hier = design_regions(xy, adj, a, labels, 3, tolerance=0.5, seed=0)  # 10/3 = 3.33
    assert sorted(hier.regions["n_territories"]) == [3, 3, 4]
    for r in range(3):  # strips joined into regions must be consecutive
        assert n_pieces(adj, np.flatnonzero(hier.unit_region == r)) == 1


def test_impossible_regions_are_reported_with_region_names():
    # two separate 4x4 blocks, no edge between them: the territory graph is
    # linked to keep the designer going, and a region spanning both blocks is
    # reported as not contiguous at unit level.
    xy1, adj1 = lattice(4, 4)
    xy = np.vstack([xy1, xy1 + [50_000.0, 0.0]])
    adj = sp.block_diag([adj1, adj1]).tocsr()
    labels = np.concatenate([np.arange(16) // 8, 2 + np.arange(16) // 8])  # 4 territories
    a = pd.DataFrame({"p": np.r_[np.ones(16), 3 * np.ones(16)]})  # right block is heavier
    hier = design_regions(xy, adj, a, labels, 2, tolerance=0.05, seed=0)
    assert hier.links  # the territory graph was joined
    assert hier.report.violations  # one of balance or contiguity must fail
    assert all(v.startswith("R0") or v.startswith("unit") for v in hier.report.violations)
    assert hier.report.overall["n_violations"] == len(hier.report.violations)
    with pytest.raises(ValueError, match="n_regions"):
        design_regions(xy, adj, a, labels, 5)


# ---------------------------------------------------------------- config


def test_territory_config_auto_and_regions():
    auto = TerritoryConfig(n_territories="auto", rep_capacity=250, regions=5)
    assert auto.n_territories == "auto" and auto.regions == 5
    assert TerritoryConfig().n_territories == 50 and TerritoryConfig().regions is None
    # a capacity may also come from the reps file: checked with the run's config and inputs
    assert TerritoryConfig(n_territories="auto").rep_capacity is None
    with pytest.raises(ValidationError, match="rebalance"):
        TerritoryConfig(n_territories="auto", rep_capacity=1, mode="rebalance")
    with pytest.raises(ValidationError, match="cannot exceed"):
        TerritoryConfig(n_territories=4, regions=5)
    with pytest.raises(ValidationError):
        TerritoryConfig(n_territories="many")


def test_auto_k_takes_the_reps_capacity_and_needs_one(demo_slice_dir, tmp_path):
    from territory.features.errors import InputError
    from territory.models.alignment import rep_capacity
    from territory.pipelines import stages
    from territory.pipelines.config import load_config
    from tests.conftest import write_slice_config

    auto = {"n_territories": "auto", "time_limit_s": 10}
    data = {"units": str(demo_slice_dir / "counties.parquet"),
            "sales": str(demo_slice_dir / "sales.parquet")}
    with pytest.raises(InputError, match="needs a capacity per rep"):
        load_config(write_slice_config(demo_slice_dir, tmp_path / "a", data=data,
                                       territories=auto))
    reps = pd.read_csv(demo_slice_dir / "reps.csv", dtype=str)
    assert reps["capacity"].isna().all()  # the demo's reps file leaves capacity blank
    config = load_config(write_slice_config(demo_slice_dir, tmp_path / "b", territories=auto))
    with pytest.raises(InputError, match="no capacity is known") as err:
        stages.load_inputs(config)
    assert "reps.csv" in str(err.value) and "capacity" in str(err.value)
    reps["capacity"] = ["100", "300", "200", "200"][: len(reps)]
    assert rep_capacity(config.territories, reps) == pytest.approx(
        pd.to_numeric(reps["capacity"]).mean())
    explicit = config.territories.model_copy(update={"rep_capacity": 50.0})
    assert rep_capacity(explicit, reps) == 50.0


# ---------------------------------------------------------------- pipeline stage


def test_design_stage_with_auto_k_and_regions(demo_slice_dir, tmp_path):
    """The pipeline's design stage on the Iowa/Nebraska slice: auto K, 2 regions."""
    from territory.features.feature_set import FeatureSet
    from territory.features.spatial import build_adjacency, projected_xy
    from territory.models.scoring import Scores
    from territory.pipelines import stages
    from territory.pipelines.config import load_config
    from tests.conftest import write_slice_config

    base = load_config(write_slice_config(demo_slice_dir, tmp_path / "ws"))
    inputs = stages.load_inputs(base)
    uid = inputs.units["unit_id"].to_numpy()
    workload = inputs.sales.groupby("unit_id")["accounts"].mean().reindex(uid).fillna(0.0)
    truth = pd.read_parquet(demo_slice_dir / "truth.parquet").set_index("unit_id")
    totals = pd.DataFrame({"potential": truth["true_potential"].reindex(uid).to_numpy(),
                           "forecast": 0.0}, index=uid)
    graph = build_adjacency(inputs.units, "unit_id", "queen", "EPSG:5070")
    features = FeatureSet(graph, projected_xy(inputs.units, "EPSG:5070"), pd.Timestamp(0),
                                 None, None, None, None, workload)
    scores = Scores(pd.DataFrame(), totals)
    capacity = workload.sum() / 3.5  # -> at least 4 reps
    tc = base.territories.model_dump() | {
        "n_territories": "auto", "rep_capacity": capacity, "regions": 2,
        "balance": [{"attribute": "potential", "tolerance": 0.1},
                    {"attribute": "workload", "tolerance": 0.1}],
        "region_tolerance": 0.15, "time_limit_s": 20}
    config = base.model_copy(update={"territories": TerritoryConfig.model_validate(tc)})
    design = stages.design_stage(config, inputs, features, scores)
    assert design.n_territories >= 4 and "at least 4 reps" in design.auto_k
    assert design.proposed.nunique() == design.n_territories == len(design.summary)
    assert design.overall["n_territories"] == design.n_territories
    # regions: every territory in exactly one region, the unit column agrees
    per_terr = pd.DataFrame({"t": design.proposed, "r": design.region}).groupby("t")["r"]
    assert per_terr.nunique().max() == 1
    assert dict(zip(design.summary["territory"], design.summary["region"], strict=True)) == \
        per_terr.first().to_dict()
    assert len(design.region_summary) == 2
    assert set(design.region) == {"R01", "R02"}
    assert design.overall["n_regions"] == 2 and "region_contiguous" in design.overall
