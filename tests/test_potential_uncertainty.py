"""Uncertainty of potential carried into the plan (issue #19): pure functions, seeded."""

import numpy as np
import pandas as pd
import pytest

from territory.models.potential_uncertainty import (
    plan_balance,
    potential_draws,
    territory_balance,
    unit_intervals,
)

UNITS = pd.Index([f"u{i}" for i in range(8)], name="unit_id")


def _units(unit_var=0.01, group_var=0.02):
    potential = pd.Series([100.0, 120, 80, 90, 110, 100, 95, 105], index=UNITS)
    own = pd.Series(unit_var, index=UNITS)
    group = pd.Series(list("AAAABBBB"), index=UNITS)
    return potential, own, group, pd.Series({"A": group_var, "B": group_var})


def test_unit_intervals_hold_the_estimate_and_widen_with_either_variance():
    potential, own, group, group_var = _units()
    narrow = unit_intervals(potential, own, group, group_var * 0, level=0.8)
    wide = unit_intervals(potential, own, group, group_var, level=0.8)
    assert (narrow["potential_lo"] < potential).all() and (potential < narrow["potential_hi"]).all()
    assert (wide["potential_hi"] - wide["potential_lo"]
            > narrow["potential_hi"] - narrow["potential_lo"]).all()
    # lognormal: 80% of the draws fall inside the 80% interval
    draws = potential_draws(potential, own, group, group_var, n_draws=4000, seed=0)
    inside = (draws >= wide["potential_lo"].to_numpy()) & (draws <= wide["potential_hi"].to_numpy())
    assert inside.mean() == pytest.approx(0.8, abs=0.02)


def test_draws_are_seeded_and_share_the_current_territory_error():
    potential, own, group, group_var = _units(unit_var=0.001, group_var=0.04)
    first = potential_draws(potential, own, group, group_var, n_draws=2000, seed=3)
    np.testing.assert_array_equal(first, potential_draws(potential, own, group, group_var,
                                                         n_draws=2000, seed=3))
    logs = np.log(first)
    corr = np.corrcoef(logs.T)
    assert corr[0, 1] > 0.9  # u0, u1: both in A
    assert abs(corr[0, 5]) < 0.1  # u0 in A, u5 in B
    # a unit without a current territory has no shared error
    alone = potential_draws(potential, own, group.where(group.index != "u0"), group_var,
                            n_draws=2000, seed=3)
    assert np.log(alone[:, 0]).std() == pytest.approx(np.sqrt(0.001), rel=0.1)


def test_without_uncertainty_balance_is_certain_and_measured_exactly():
    potential, own, group, group_var = _units(unit_var=0.0, group_var=0.0)
    draws = potential_draws(potential, own, group, group_var, n_draws=20, seed=0)
    plan = pd.Series(list("XXYYZZWW"), index=UNITS)  # totals 220, 170, 210, 200: mean 200
    table = territory_balance(draws, plan, tolerance=0.06).set_index("territory")
    np.testing.assert_allclose(table["potential_lo"], [200, 220, 170, 210])  # W, X, Y, Z
    np.testing.assert_allclose(table["potential_lo"], table["potential_hi"])
    assert table["p_within_tolerance"].to_dict() == {"W": 1.0, "X": 0.0, "Y": 0.0, "Z": 1.0}


def test_a_territory_taken_from_one_current_territory_is_less_sure():
    potential = pd.Series(100.0, index=UNITS)
    own = pd.Series(0.0005, index=UNITS)
    group = pd.Series(list("AAAABBBB"), index=UNITS)
    group_var = pd.Series({"A": 0.01, "B": 0.01})
    draws = potential_draws(potential, own, group, group_var, n_draws=3000, seed=1)
    same = territory_balance(draws, pd.Series(list("PPQQRRSS"), index=UNITS), 0.05)
    mixed = territory_balance(draws, pd.Series(list("PQRSPQRS"), index=UNITS), 0.05)
    assert mixed["p_within_tolerance"].min() > same["p_within_tolerance"].max()
    with pytest.raises(ValueError, match="every unit needs a territory"):
        territory_balance(draws, pd.Series([None] + list("PQRSPQR"), index=UNITS), 0.05)


def test_plan_balance_reads_the_scores_and_skips_without_uncertainty():
    potential, own, group, group_var = _units()
    totals = pd.DataFrame({"potential": potential, "potential_log_var": own,
                           "potential_group": group,
                           "potential_group_var": group.map(group_var)})
    plan = pd.Series(list("XXYYZZWW"), index=UNITS)
    table = plan_balance(totals, plan, tolerance=0.05, n_draws=200, seed=0)
    direct = territory_balance(potential_draws(potential, own, group, group_var, 200, 0),
                               plan, 0.05)
    pd.testing.assert_frame_equal(table, direct)
    assert plan_balance(totals[["potential"]], plan, tolerance=0.05) is None
