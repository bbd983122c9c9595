"""Recommendation logic on hand-written frames."""

import numpy as np
import pandas as pd
import pytest

from territory.models import recommend as rec
from territory.models.potential import PotentialEstimator
from territory.models.recommender import ScoringInputError, build_bundle


def _totals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "forecast": [90.0, 20.0, 50.0, 80.0, 10.0, 60.0],
            "forecast_lo": [70.0, 10.0, 40.0, 60.0, 5.0, 50.0],
            "forecast_hi": [110.0, 30.0, 60.0, 100.0, 15.0, 70.0],
            "potential": [100.0, 100.0, 60.0, 90.0, 40.0, 70.0],
            "drivers": ["a", "b", "c", "d", "e", "f"],
            "name": ["Ada", "Bly", "Cox", "Dee", "Eel", "Fox"],
        },
        index=pd.Index(["u1", "u2", "u3", "u4", "u5", "u6"], name="unit_id"),
    )


CURRENT = pd.Series(["A", "A", "A", "A", "B", "B"], index=_totals().index)
PROPOSED = pd.Series(["A", "A", "B", "A", "B", "B"], index=_totals().index)


def test_unit_actions_and_reasons():
    out = rec.unit_recommendations(_totals(), CURRENT, PROPOSED, under_served_ratio=0.7)
    assert out.index[0] == "u2"  # largest white space first
    assert out.loc["u3", "action"] == "move"
    # A holds 350 of 460 potential: mean 230, so A is 52% over balance.
    assert out.loc["u3", "reason"].startswith("move from A to B: A is 52% over potential balance")
    assert out.loc["u2", "action"] == "grow" and "penetration 20%" in out.loc["u2", "reason"]
    assert out.loc["u1", "action"] == "keep"
    assert out.loc["u2", "white_space"] == 80.0 and out.loc["u1", "penetration"] == 0.9


def test_moves_and_disruption():
    moves = rec.moves_table(_totals().index.to_numpy(), CURRENT.to_numpy(), PROPOSED.to_numpy(),
                            _totals()["potential"].to_numpy())
    assert list(moves["unit_id"]) == ["u3"]
    d = rec.disruption(CURRENT, PROPOSED, _totals()["potential"])
    assert d["disruption_units_pct"] == pytest.approx(100 / 6)
    assert d["disruption_potential_pct"] == pytest.approx(100 * 60 / 460)
    movement = rec.movement_by_territory(CURRENT, PROPOSED).set_index("territory")
    assert movement.loc["B", "moved_in"] == 1 and movement.loc["A", "moved_out"] == 1


def test_territory_and_rep_tables():
    units = rec.unit_recommendations(_totals(), CURRENT, PROPOSED)
    summary = pd.DataFrame({"territory": ["A", "B"], "potential_deviation": [0.1, -0.1],
                            "diameter_km": [5.0, 3.0]})
    terr = rec.territory_recommendations(units, summary).set_index("territory")
    assert terr.loc["B", "units"] == 3 and terr.loc["B", "potential"] == 170.0
    assert terr.loc["A", "top_white_space_units"].startswith("Bly")
    reps = pd.DataFrame({"territory_id": ["A", "B"], "rep_id": ["R1", "R2"],
                         "home_unit_id": ["u1", "u6"]})
    xy = pd.DataFrame({"x": np.arange(6) * 1000.0, "y": 0.0}, index=_totals().index)
    changes = rec.rep_changes(reps, units, pd.Series(1.0, index=_totals().index), xy)
    r2 = changes.set_index("rep_id").loc["R2"]
    assert r2["units_gained"] == 1 and r2["potential_change"] == 60.0
    assert r2["max_km_from_home_after"] == pytest.approx(3.0)
    assert "load_after" not in changes  # no capacity anywhere: no load


def test_rep_load_against_capacity():
    units = rec.unit_recommendations(_totals(), CURRENT, PROPOSED)
    # R1 says its own capacity; R2 gets the config's rep_capacity
    reps = pd.DataFrame({"territory_id": ["A", "B"], "rep_id": ["R1", "R2"],
                         "capacity": [2.0, np.nan]})
    workload = pd.Series([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], index=_totals().index)
    xy = pd.DataFrame({"x": np.arange(6) * 1000.0, "y": 0.0}, index=_totals().index)
    load = rec.rep_changes(reps, units, workload, xy, capacity=4.0).set_index("rep_id")
    assert load.loc["R1", "capacity"] == 2.0 and load.loc["R2", "capacity"] == 4.0
    assert load.loc["R1", "load_before"] == pytest.approx(4 / 2)  # 4 units of workload
    assert load.loc["R1", "load_after"] == pytest.approx(3 / 2)
    assert load.loc["R2", "load_after"] == pytest.approx(3 / 4)


def test_match_territory_ids_by_overlap():
    names = rec.match_territory_ids(np.array([1, 1, 0, 0, 2]), np.array(["A", "A", "B", "B", "B"]),
                                    np.ones(5))
    assert list(names) == ["A", "A", "B", "B", "N01"]


def test_new_territory_ids_never_clash_with_current_ones():
    # the company already uses N01 and N02: the two new territories become N03 and N04
    proposed = np.array([0, 0, 1, 2, 3, 3])
    current = np.array(["N01", "N01", None, "N02", None, None], dtype=object)
    names = rec.territory_ids_by_overlap(proposed, current, np.ones(6), n_territories=5)
    assert names == ["N01", "N03", "N02", "N04", "N05"]  # territory 4 is empty: still named
    assert len(set(names)) == 5


def test_territory_ids_match_the_best_one_to_one_overlap():
    """The matching maximises the total shared potential (brute-force oracle)."""
    from itertools import permutations

    rng = np.random.default_rng(3)
    for _ in range(20):
        proposed = rng.integers(0, 4, 40)
        current = rng.choice(np.array(["A", "B", "C", "D"], dtype=object), 40)
        weight = rng.uniform(0, 10, 40)
        names = rec.territory_ids_by_overlap(proposed, current, weight, n_territories=4)
        overlap = {(p, c): weight[(proposed == p) & (current == c)].sum()
                   for p in range(4) for c in "ABCD"}
        best = max(sum(overlap[p, c] for p, c in enumerate(perm))
                   for perm in permutations("ABCD"))
        assert sum(overlap.get((p, n), 0.0) for p, n in enumerate(names)) == pytest.approx(best)


def test_served_bundle_validates_requests():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"population": rng.lognormal(10, 1, 60), "income": rng.normal(50, 5, 60)},
                     index=pd.Index([f"u{i}" for i in range(60)], name="unit_id"))
    y = X["population"] ** 0.5 * rng.uniform(0.5, 1, 60)
    model = PotentialEstimator(n_estimators=20, min_child_samples=5).fit(X, y)
    units = pd.DataFrame({"forecast": y * 0.8, "forecast_lo": y * 0.6, "forecast_hi": y,
                          "potential": model.predict(X), "current_territory": "A",
                          "proposed_territory": "A"}, index=X.index)
    units["penetration"] = units["forecast"] / units["potential"]
    bundle = build_bundle(model, units)
    request = X.head(3).reset_index()
    scored = bundle.score(request)
    assert list(scored["unit_id"]) == ["u0", "u1", "u2"]
    assert scored["potential"].to_numpy() == pytest.approx(model.predict(X.head(3)))
    with pytest.raises(ScoringInputError, match="missing feature column"):
        bundle.score(request.drop(columns=["income"]))
    with pytest.raises(ScoringInputError, match="unknown unit_id: zz"):
        bundle.score(request.assign(unit_id=["zz", "u1", "u2"]))
    bad = request.astype({"income": object})
    bad.loc[0, "income"] = "high"
    with pytest.raises(ScoringInputError, match="'income' must be numeric"):
        bundle.score(bad)

    # the user's own id column name is kept in the scores (data.columns.unit_col: FIPS)
    fips = build_bundle(model, units.rename_axis("FIPS"), unit_col="FIPS")
    scored = fips.score(request.rename(columns={"unit_id": "FIPS"}))
    assert list(scored.columns[:2]) == ["FIPS", "forecast"] and list(scored["FIPS"])[0] == "u0"


def test_cached_drivers_match_fresh_ones_and_change_with_features():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"population": rng.lognormal(10, 1, 40), "income": rng.normal(50, 5, 40)},
                     index=pd.Index([f"u{i}" for i in range(40)], name="unit_id"))
    y = X["population"] ** 0.5
    model = PotentialEstimator(n_estimators=20, min_child_samples=5).fit(X, y)
    units = pd.DataFrame({"forecast": y, "forecast_lo": y, "forecast_hi": y, "potential": y,
                          "penetration": 1.0, "current_territory": "A",
                          "proposed_territory": "A"}, index=X.index)
    cached = build_bundle(model, units, market_features=X)
    plain = build_bundle(model, units)
    request = X.head(5).reset_index()
    assert list(cached.score(request)["drivers"]) == list(plain.score(request)["drivers"])
    what_if = request.assign(population=request["population"] * 3)
    assert list(cached.score(what_if)["drivers"]) == list(plain.score(what_if)["drivers"])
    assert list(cached.score(what_if)["drivers"]) != list(cached.score(request)["drivers"])


def test_rep_load_is_workload_over_the_reps_capacity():
    from territory.models.recommend import rep_changes

    recs = pd.DataFrame({"current_territory": ["A", "A", "B"],
                         "proposed_territory": ["A", "B", "B"],
                         "potential": [1.0, 2.0, 3.0]}, index=["u1", "u2", "u3"])
    workload = pd.Series([10.0, 20.0, 30.0], index=recs.index)
    xy = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": 0.0}, index=recs.index)
    reps = pd.DataFrame({"territory_id": ["A", "B"], "rep_id": ["r1", "r2"],
                         "capacity": [40.0, None]})
    table = rep_changes(reps, recs, workload, xy).set_index("rep_id")
    assert table.loc["r1", "capacity"] == 40.0
    assert table.loc["r1", "load_before"] == pytest.approx(30 / 40)
    assert table.loc["r1", "load_after"] == pytest.approx(10 / 40)
    assert np.isnan(table.loc["r2", "load_after"])  # no capacity given: no load
