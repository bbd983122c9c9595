"""Behavioural tests of the rep-adjusted potential (issue #19): the market without the rep."""

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from territory.features.errors import InputError
from territory.features.feature_set import annual_split_log_ratio
from territory.models import backtest
from territory.models.config import PotentialConfig
from territory.models.potential import PotentialEstimator
from territory.models.potential_rep import (
    RepAdjustedPotential,
    potential_factory,
    potential_method,
    rep_effect_cross_validation,
    sampling_variance,
    shared_log_variance,
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


def _noisy_company(seed=0):
    """:func:`_company` with a market term of each unit's own and sales noise that is larger
    in small units; annual sales come as two interleaved halves.

    Returns market features, annual sales, split-half log ratios, territory per unit, xy,
    the true market and each unit's noise sd.
    """
    X, _, territory, xy, market, penetration = _company(seed=seed)
    rng = np.random.default_rng(seed + 1)
    own = rng.normal(0.0, 0.3, len(X))
    population = X["population"].to_numpy()
    noise_sd = np.clip(0.15 * (population / np.median(population)) ** -0.5, 0.02, 0.6)
    expected = (market.to_numpy() * np.exp(own) * penetration.reindex(territory).to_numpy())
    halves = [expected / 2 * rng.lognormal(-0.5 * 2 * noise_sd**2, np.sqrt(2) * noise_sd)
              for _ in range(2)]
    split = np.log1p(halves[0]) - np.log1p(halves[1])
    true = pd.Series(market.to_numpy() * np.exp(own), index=X.index)
    return X, halves[0] + halves[1], split, territory, xy, true, noise_sd


def test_split_halves_give_each_unit_its_sales_noise():
    X, y, split, _, _, _, noise_sd = _noisy_company()
    noise = sampling_variance(np.log1p(y), split)
    assert np.corrcoef(np.log(noise), np.log(noise_sd))[0, 1] > 0.7  # pooled by size
    small, large = noise_sd > np.quantile(noise_sd, 0.8), noise_sd < np.quantile(noise_sd, 0.2)
    assert noise[small].mean() > 3 * noise[large].mean()
    # no usable ratios (annual data): unknown, not zero
    assert np.isnan(sampling_variance(np.log1p(y), np.full(len(y), np.nan))).all()


def test_own_sales_bring_potential_closer_to_the_true_market():
    X, y, split, territory, xy, true, noise_sd = _noisy_company()
    params = dict(n_estimators=150, learning_rate=0.05, n_rounds=4, random_state=0)
    with_own = RepAdjustedPotential(**params).fit(X, y, groups=territory, split=split)
    market_only = RepAdjustedPotential(own_sales=False, **params).fit(
        X, y, groups=territory, split=split)
    regions = pd.Series(KMeans(60, n_init=1, random_state=0).fit_predict(xy), index=X.index)
    errors, spread = {}, {}
    for name, model in (("own", with_own), ("market", market_only)):
        potential = pd.Series(model.predict(X), index=X.index)
        errors[name] = territory_share_error(potential, true, regions).quantile(0.9)
        spread[name] = np.std(np.log(potential / true))
    assert errors["own"] < 0.9 * errors["market"], errors
    assert spread["own"] < 0.85 * spread["market"], spread
    # the credit of a unit's own residual shrinks with its noise
    np.testing.assert_allclose(with_own.unit_log(X) - with_own.market_log(X),
                               with_own.own_credit_.reindex(X.index).to_numpy())
    assert np.corrcoef(with_own.unit_noise_.reindex(X.index), noise_sd)[0, 1] > 0.5
    assert (market_only.own_credit_ == 0).all()
    # a unit not in the fit gets the market part alone
    unknown = X.iloc[:3].set_axis(["new1", "new2", "new3"])
    np.testing.assert_allclose(with_own.unit_log(unknown), with_own.market_log(unknown))


def test_annual_split_log_ratio_by_hand():
    periods = pd.date_range("2024-01-01", periods=14, freq="MS")
    panel = pd.DataFrame({"unit_id": np.repeat(["a", "b"], 14),
                          "period": np.tile(periods, 2),
                          "sales": np.r_[np.full(14, 10.0), np.arange(14.0)]})
    panel.loc[(panel["unit_id"] == "b") & (panel["period"] == periods[-1]), "sales"] = np.nan
    ratio = annual_split_log_ratio(panel, periods, 12)
    # last 12 periods: positions 0, 2, ... are even, 1, 3, ... odd
    assert ratio["a"] == pytest.approx(0.0)
    assert np.isnan(ratio["b"])  # a missing month in the last year
    panel.loc[panel["sales"].isna(), "sales"] = 13.0
    odd, even = np.arange(3.0, 14.0, 2).sum(), np.arange(2.0, 14.0, 2).sum()
    assert annual_split_log_ratio(panel, periods, 12)["b"] == pytest.approx(
        np.log1p(odd) - np.log1p(even))
    assert annual_split_log_ratio(panel, periods, 1).isna().all()  # annual data


def test_shared_log_variance_recovers_a_territory_wide_error():
    rng = np.random.default_rng(0)
    n_terr, per = 200, 30
    groups = np.repeat([f"T{k}" for k in range(n_terr)], per)
    predicted = rng.lognormal(8, 0.5, n_terr * per)
    shared = np.repeat(rng.normal(0, 0.05, n_terr), per)
    actual = predicted * np.exp(shared + rng.normal(0, np.sqrt(0.03), len(predicted)))
    no_split = np.full(len(actual), np.nan)
    estimate = shared_log_variance(actual, predicted, groups, no_split, market_variance=0.03)
    assert estimate == pytest.approx(0.05**2, rel=0.3)
    # no territory-wide error: (close to) nothing shared
    independent = predicted * np.exp(rng.normal(0, np.sqrt(0.03), len(predicted)))
    assert shared_log_variance(independent, predicted, groups, no_split, 0.03) < 0.0005
