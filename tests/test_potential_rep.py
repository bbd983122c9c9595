"""Behavioural tests of the rep-adjusted potential (issue #19): the market without the rep."""

import numpy as np
import pandas as pd
import pytest

from territory.features.errors import InputError
from territory.models import backtest
from territory.models.config import PotentialConfig
from territory.models.potential import PotentialEstimator
from territory.models.potential_rep import (
    RepAdjustedPotential,
    potential_factory,
    potential_method,
    rep_effect_cross_validation,
    spatial_folds,
)
from territory.models.scoring import territory_share_error


def _company(n_side=24, n_terr_side=4, seed=0):
    """Units on a grid; square territories, each with one rep's penetration (0.45-1.0).

    Returns market features, annual sales, territory per unit, xy, the true
    market (full capture) and the penetration per territory.
    """
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    ix, iy = np.divmod(np.arange(n), n_side)
    xy = np.column_stack([ix, iy]).astype(float)
    block = n_side // n_terr_side
    territory = np.array([f"T{a // block}{b // block}" for a, b in zip(ix, iy, strict=True)])
    population = rng.lognormal(10, 1.0, n)
    income = rng.normal(50, 10, n)
    X = pd.DataFrame({"population": population, "median_income": income,
                      "noise": rng.normal(size=n)},
                     index=pd.Index([f"u{i:03d}" for i in range(n)], name="unit_id"))
    market = population ** 0.6 * np.exp(0.02 * (income - 50))
    names = np.unique(territory)
    penetration = pd.Series(rng.uniform(0.45, 1.0, len(names)), index=names)
    sales = market * penetration.reindex(territory).to_numpy() * rng.lognormal(0, 0.1, n)
    return X, sales, territory, xy, pd.Series(market, index=X.index), penetration


@pytest.fixture(scope="module")
def company():
    return _company()


@pytest.fixture(scope="module")
def fitted(company):
    X, y, territory, *_ = company
    return RepAdjustedPotential(n_estimators=150, learning_rate=0.1, min_child_samples=10,
                                random_state=0).fit(X, y, groups=territory)


def test_rep_effects_follow_the_reps_penetration(company, fitted):
    *_, penetration = company
    effects = fitted.territory_effects_.reindex(penetration.index)
    assert np.corrcoef(effects, np.log(penetration))[0, 1] > 0.9
    assert abs(effects.mean()) < 0.05  # centred: the market part holds the level


def test_territory_shares_closer_to_the_market_than_the_quantile_model(company, fitted):
    X, y, territory, _, market, _ = company
    groups = pd.Series(territory, index=X.index)
    ours = territory_share_error(pd.Series(fitted.predict(X), index=X.index), market, groups)
    quantile = PotentialEstimator(n_estimators=150, learning_rate=0.1, min_child_samples=10,
                                  random_state=0).fit(X, y).predict(X)
    theirs = territory_share_error(pd.Series(quantile, index=X.index), market, groups)
    assert ours.quantile(0.9) < 0.5 * theirs.quantile(0.9), (ours.quantile(0.9),
                                                             theirs.quantile(0.9))
    assert backtest.spearman(fitted.predict(X), market.to_numpy()) > 0.95


def test_potential_is_stated_at_a_good_rep(company, fitted):
    X, y, territory, *_ = company
    # the reference effect is the 0.9 quantile: most units sell below their potential
    assert np.mean(y <= fitted.predict(X)) > 0.7
    with_rep = fitted.predict_sales(X, territory)
    assert np.corrcoef(np.log1p(with_rep), np.log1p(y))[0, 1] > 0.9


def test_more_population_does_not_lower_potential_on_average(company, fitted):
    X, *_ = company
    bigger = X.assign(population=X["population"] * 1.5)
    assert np.mean(fitted.predict(bigger) >= fitted.predict(X)) > 0.8


def test_row_order_and_territory_names_do_not_matter(company, fitted):
    X, y, territory, *_ = company
    order = np.random.default_rng(1).permutation(len(X))
    renamed = np.char.add("zone-", territory)
    other = RepAdjustedPotential(n_estimators=150, learning_rate=0.1, min_child_samples=10,
                                 random_state=0).fit(
        X.iloc[order], y[order], groups=renamed[order])
    np.testing.assert_allclose(other.predict(X), fitted.predict(X), rtol=1e-9)


def test_unassigned_units_are_left_out_and_still_get_a_potential(company):
    X, y, territory, *_ = company
    groups = territory.astype(object)
    groups[:10] = None
    model = RepAdjustedPotential(n_estimators=50, n_rounds=2).fit(X, y, groups=groups)
    assert np.isfinite(model.predict(X.iloc[:10])).all()
    assert model.territory_effects_.index.notna().all()


def test_without_groups_is_a_clear_error_and_training_falls_back(company):
    X, y, *_ = company
    with pytest.raises(InputError, match="current territory"):
        RepAdjustedPotential().fit(X, y)
    with pytest.warns(UserWarning, match="no current alignment"):
        assert potential_method(PotentialConfig(), None) == "quantile"
    assert potential_method(PotentialConfig(method="quantile"), None) == "quantile"
    assert isinstance(potential_factory(PotentialConfig())(), RepAdjustedPotential)
    assert isinstance(potential_factory(PotentialConfig(), "quantile")(), PotentialEstimator)


def test_held_out_sales_are_better_with_the_rep_effect(company):
    X, y, territory, xy, *_ = company
    cv, territories = rep_effect_cross_validation(
        lambda: RepAdjustedPotential(n_estimators=150, learning_rate=0.1, n_rounds=3,
                                     min_child_samples=10),
        X, y, territory, xy, n_folds=3, blocks_per_fold=8, seed=0)
    assert cv["potential_cv_log_rmse_rep"] < 0.85 * cv["potential_cv_log_rmse_market"], cv
    assert 0.0 <= cv["potential_cv_sales_share_error_p50"] <= cv[
        "potential_cv_sales_share_error_p90"]
    assert len(territories) == len(np.unique(territory))
    assert territories["n_units"].sum() == len(X)


def test_spatial_folds_keep_neighbours_together():
    xy = np.column_stack(np.divmod(np.arange(100), 10)).astype(float)
    fold = spatial_folds(xy, n_folds=2, n_blocks=4, seed=0)
    assert set(fold) == {0, 1}
    same = [fold[i] == fold[i + 1] for i in range(99) if (i + 1) % 10]  # horizontal neighbours
    assert np.mean(same) > 0.8


def test_territory_share_error_by_hand():
    index = pd.Index(["a", "b", "c", "d"])
    est = pd.Series([1.0, 1.0, 1.0, 1.0], index=index)
    actual = pd.Series([1.0, 1.0, 2.0, 0.0], index=index)
    territory = pd.Series(["T1", "T1", "T2", "T2"], index=index)
    error = territory_share_error(est, actual, territory)
    # both shares estimated 0.5; true shares 0.5 and 0.5
    np.testing.assert_allclose(error.to_numpy(), [0.0, 0.0])
    actual = pd.Series([1.0, 2.0, 1.0, 0.0], index=index)  # true shares 0.75, 0.25
    np.testing.assert_allclose(territory_share_error(est, actual, territory).to_numpy(),
                               [0.25 / 0.75, 0.25 / 0.25])
