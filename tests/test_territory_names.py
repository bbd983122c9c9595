"""One name per territory: the engine's text uses the names the alignment publishes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from territory.models.alignment import Geography, propose_alignment
from territory.models.config import TerritoryConfig
from territory.models.territories import design_territories, evaluate_alignment
from tests.lattice import lattice

ENGINE_NAME = re.compile(r"\bT\d{2,}\b")  # what the engine calls territories nobody named


def _strips() -> np.ndarray:
    return np.tile(np.arange(8) // 2, 8)  # four 2-column strips of an 8x8 lattice


def test_violations_and_diagnosis_use_the_given_names():
    xy, adj = lattice(8, 8)
    left = xy[:, 0] < 4000
    values = pd.DataFrame({"potential": np.where(left, 2.0, 1.0),
                           "workload": np.where(left, 1.0, 2.0)})
    names = ["West", "Midwest", "Plains", "East"]
    rep = evaluate_alignment(_strips(), xy, adj, values, 0.05, territory_names=names)
    assert rep.territories["name"].tolist() == names
    assert rep.violations and rep.diagnosis
    assert all(v.split(":")[0] in names for v in rep.violations)
    assert rep.diagnosis[0].startswith("West, Midwest (2 territories, 32 units)")
    assert not any(ENGINE_NAME.search(t) for t in rep.violations + rep.diagnosis)


def test_unnamed_territories_are_numbered_from_one():
    xy, adj = lattice(8, 8)
    rep = evaluate_alignment(_strips(), xy, adj, pd.DataFrame({"potential": np.ones(64)}))
    assert rep.territories["name"].tolist() == ["T01", "T02", "T03", "T04"]


@pytest.mark.parametrize(("names", "message"), [
    (["a", "b", "c"], "has 3 names, expected 4"),
    (["a", "b", "c", "a"], "distinct"),
])
def test_bad_territory_names_are_refused(names, message):
    xy, adj = lattice(8, 8)
    with pytest.raises(ValueError, match=message):
        evaluate_alignment(_strips(), xy, adj, pd.DataFrame({"potential": np.ones(64)}),
                           territory_names=names)


def test_design_names_its_final_labels_through_the_callable():
    xy, adj = lattice(8, 8)
    potential = np.ones(64)
    potential[0] = 40.0  # a giant unit: the diagnosis names its territory
    seen = []

    def namer(labels, k):
        seen.append(labels.copy())
        return [f"Zone {chr(65 + t)}" for t in range(k)]

    result = design_territories(xy, adj, pd.DataFrame({"potential": potential}), 4, seed=0,
                                time_limit_s=30, territory_names=namer)
    np.testing.assert_array_equal(seen[-1], result.labels)
    own = f"Zone {chr(65 + result.labels[0])}"
    assert any(own in line for line in result.report.diagnosis), result.report.diagnosis
    assert not any(ENGINE_NAME.search(t)
                   for t in result.report.violations + result.report.diagnosis)


def test_a_fresh_design_keeps_the_company_ids_in_every_table_and_sentence():
    """Current ids kept by one-to-one overlap, new ids for the rest, and nothing else."""
    xy, adj = lattice(10, 10)
    rng = np.random.default_rng(1)
    potential = rng.uniform(0.5, 1.5, 100)
    potential[55] = 60.0  # a giant unit: violations and a diagnosis that name territories
    current = pd.Series(np.where(xy[:, 0] < 5000, "West", "East"),
                        index=[f"u{i}" for i in range(100)])
    geo = Geography(current.index.to_numpy(dtype=object), xy, adj)
    measures = {"potential": potential, "workload": np.ones(100), "units": np.ones(100),
                "forecast": potential}
    config = TerritoryConfig(n_territories=5, seed=0, time_limit_s=30, keep_rep_homes=False,
                             max_radius_km=3.0,  # too tight: violations name territories
                             balance=[{"attribute": "potential", "tolerance": 0.05}])
    design = propose_alignment(geo, measures, config, current)
    ids = set(design.proposed)
    assert {"West", "East"} <= ids and len(ids) == 5
    assert ids - {"West", "East"} == {"N01", "N02", "N03"}
    assert set(design.summary["territory"]) == ids and "name" not in design.summary
    assert set(design.current_summary["territory"]) == {"West", "East"}
    assert design.violations and design.diagnosis
    assert not any(ENGINE_NAME.search(t) for t in design.violations + design.diagnosis)
    assert all(line.split(":")[0] in ids for line in design.violations), design.violations
    giant_line = design.diagnosis[0]
    assert giant_line.startswith("unit u55 alone holds")
    assert f"territory {design.proposed['u55']} " in giant_line


def test_a_rep_without_a_territory_is_not_placed():
    """A rep with a blank territory (``validate`` warns) pins no home and names nothing: the
    other reps' homes still pin their territories, and the rep table lists it with no units."""
    from territory.models.recommend import rep_changes

    xy, adj = lattice(6, 6)
    ids = np.array([f"u{i}" for i in range(36)], dtype=object)
    potential = np.random.default_rng(3).uniform(0.5, 1.5, 36)
    measures = {"potential": potential, "workload": np.ones(36), "units": np.ones(36),
                "forecast": potential}
    reps = pd.DataFrame({"territory_id": ["North", "South", "Middle", None],
                         "rep_id": ["r1", "r2", "r3", "new hire"],
                         "home_unit_id": ["u2", "u33", "u15", "u20"]})
    config = TerritoryConfig(n_territories=3, seed=0, time_limit_s=30, keep_rep_homes=True,
                             max_elongation=None,
                             balance=[{"attribute": "potential", "tolerance": 0.1}])
    design = propose_alignment(Geography(ids, xy, adj), measures, config, reps=reps)
    assert set(design.proposed) == {"North", "South", "Middle"}
    for territory, home in [("North", "u2"), ("South", "u33"), ("Middle", "u15")]:
        assert design.proposed[home] == territory  # every placed rep's home is pinned
    recs = pd.DataFrame({"current_territory": design.proposed,
                         "proposed_territory": design.proposed, "potential": potential})
    xy_frame = pd.DataFrame(xy, index=ids, columns=["x", "y"])
    table = rep_changes(reps, recs, pd.Series(1.0, index=ids), xy_frame).set_index("rep_id")
    assert table.loc["new hire", ["units_before", "units_after"]].tolist() == [0, 0]
    assert table.drop("new hire")["units_after"].sum() == 36
