"""Potential share error against held-out sales where a unit's rep changed (issue #19)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from territory.features.errors import InputError
from territory.models.potential import PotentialEstimator
from territory.models.potential_rep import RepAdjustedPotential
from territory.models.potential_rep_change import moved_units, rep_change_share_error


class _Fixed:
    """A model whose log potential and territory effects are given (an oracle)."""

    def __init__(self, unit_log: pd.Series, effects: pd.Series | None, reference: float = 0.0):
        self._log, self.reference_effect_ = unit_log, reference
        if effects is not None:
            self.territory_effects_ = effects

    def unit_log(self, market):
        return self._log.reindex(market.index).to_numpy()

    def predict(self, market):
        return np.expm1(self.unit_log(market) + self.reference_effect_)


def _company(seed: int = 0, n: int = 240, n_territories: int = 8):
    """Market features, the true log market, territory effects, and an alignment change:
    a quarter of the units move to another territory."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"u{i:03d}" for i in range(n)], name="unit_id")
    market = pd.DataFrame({"population": rng.uniform(1, 10, n),
                           "income": rng.uniform(0, 1, n)}, index=ids)
    log_market = 3.0 + np.log(market["population"]) + 0.5 * market["income"]
    names = [f"T{k}" for k in range(n_territories)]
    effects = pd.Series(np.linspace(-0.4, 0.4, n_territories), index=names)
    before = pd.Series(rng.choice(names, n), index=ids)
    after = before.copy()
    move = rng.choice(n, n // 4, replace=False)
    after.iloc[move] = [names[(names.index(t) + 1 + rng.integers(n_territories - 1))
                              % n_territories] for t in before.iloc[move]]
    noise = lambda: rng.normal(0, 0.05, n)  # noqa: E731
    sales_before = np.expm1(log_market + effects.reindex(before).to_numpy() + noise())
    sales_after = np.expm1(log_market + effects.reindex(after).to_numpy() + noise())
    return market, log_market, effects, before, after, sales_before, pd.Series(sales_after,
                                                                               index=ids)


def test_moved_units_are_the_ones_that_changed_territory():
    before = pd.Series({"a": "T1", "b": "T1", "c": "T2", "d": None})
    after = pd.Series({"a": "T1", "b": "T2", "c": "T3", "d": "T1", "e": "T2"})
    assert list(moved_units(before, after)) == ["b", "c"]


def test_an_oracle_scores_near_zero_and_a_potential_with_the_old_rep_in_it_does_not():
    market, log_market, effects, before, after, _, sales_after = _company()
    oracle = _Fixed(log_market, effects)
    metrics, table = rep_change_share_error(oracle, market, sales_after, before, after,
                                            min_units=1)
    assert metrics["potential_rep_change_units"] == len(moved_units(before, after))
    assert metrics["potential_rep_change_share_error_p90"] < 0.03
    assert table["n_units"].sum() == metrics["potential_rep_change_units"]
    assert set(table["territory"]) <= set(effects.index)
    # the old rep's effect left in the market part: off by the two reps' ratio
    leaky = _Fixed(log_market + effects.reindex(before).to_numpy(), effects)
    worse, _ = rep_change_share_error(leaky, market, sales_after, before, after, min_units=1)
    assert worse["potential_rep_change_share_error_p90"] \
        > 3 * metrics["potential_rep_change_share_error_p90"]
    assert worse["potential_rep_change_log_rmse"] > 2 * metrics["potential_rep_change_log_rmse"]


def test_share_error_matches_a_hand_computation():
    ids = pd.Index(list("abcdef"))
    market = pd.DataFrame({"x": np.arange(6.0)}, index=ids)
    before = pd.Series(list("AAABBB"), index=ids)
    after = pd.Series(list("BBBAAA"), index=ids)
    model = _Fixed(pd.Series(np.log1p([10, 10, 10, 20, 20, 20.0]), index=ids), None)
    sales = pd.Series([10, 10, 10, 10, 10, 10.0], index=ids)
    metrics, table = rep_change_share_error(model, market, sales, before, after)
    by = table.set_index("territory")
    # predicted shares 1/3 (into B) and 2/3 (into A); actual 1/2 each
    assert by.loc["B", "share_error"] == pytest.approx(1 / 3)
    assert by.loc["A", "share_error"] == pytest.approx(1 / 3)
    assert metrics["potential_rep_change_territories"] == 2


def test_rep_adjusted_potential_predicts_moved_units_better_than_the_quantile():
    market, _, _, before, after, sales_before, sales_after = _company(seed=1)
    rep = RepAdjustedPotential(n_estimators=60, n_rounds=4, random_state=0).fit(
        market, sales_before, groups=before.to_numpy())
    quantile = PotentialEstimator(n_estimators=60, random_state=0).fit(market, sales_before)
    rep_metrics, _ = rep_change_share_error(rep, market, sales_after, before, after)
    q_metrics, _ = rep_change_share_error(quantile, market, sales_after, before, after)
    assert rep_metrics["potential_rep_change_share_error_p90"] \
        < q_metrics["potential_rep_change_share_error_p90"]
    # row order does not matter
    order = market.index[::-1]
    again, _ = rep_change_share_error(rep, market.loc[order], sales_after.loc[order],
                                      before.loc[order], after.loc[order])
    assert again == pytest.approx(rep_metrics)


def test_too_few_receiving_territories_or_negative_sales_are_clear_errors():
    market, log_market, effects, before, after, _, sales_after = _company()
    oracle = _Fixed(log_market, effects)
    with pytest.raises(InputError, match="two or more"):
        rep_change_share_error(oracle, market, sales_after, before, before)
    bad = sales_after.copy()
    moved = moved_units(before, after)
    bad[moved[0]] = -1.0
    with pytest.raises(InputError, match=">= 0") as err:
        rep_change_share_error(oracle, market, bad, before, after)
    assert moved[0] in str(err.value)
