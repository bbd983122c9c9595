"""Behavioural tests of the forecaster and the potential model."""

import numpy as np
import pandas as pd
import pytest

from territory.features.build import build_forecast_table, training_origins
from territory.features.config import FeaturesConfig
from territory.features.errors import InputError
from territory.features.panel import make_panel
from territory.models import backtest
from territory.models.forecast import SalesForecaster
from territory.models.potential import PotentialEstimator, describe_drivers

FEATURES = FeaturesConfig(lags=[1, 2, 3, 12], rolling_windows=[3, 12], rolling_stats=["mean"])


def _seasonal_sales(n_units=40, n_periods=60, seed=1) -> pd.DataFrame:
    """Stable levels, strong seasonality, noisy months: seasonal naive copies the noise."""
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2019-01-01", periods=n_periods, freq="MS")
    season = 1 + 0.4 * np.sin(2 * np.pi * periods.month.to_numpy() / 12)
    level = rng.lognormal(3, 1, n_units)
    values = level[:, None] * season[None, :] * rng.lognormal(0, 0.25, (n_units, n_periods))
    return pd.DataFrame({
        "unit_id": np.repeat([f"u{i:02d}" for i in range(n_units)], n_periods),
        "period": np.tile(periods, n_units),
        "sales": values.ravel(),
    })


@pytest.fixture(scope="module")
def seasonal_tables():
    sales = _seasonal_sales()
    units = sorted(sales["unit_id"].unique())
    cutoff = pd.Timestamp("2022-12-01")
    history = make_panel(sales, units, "MS", end=cutoff)
    periods = pd.DatetimeIndex(sorted(history["period"].unique()))
    train = build_forecast_table(history, FEATURES, 12, training_origins(periods, FEATURES))
    full = make_panel(sales, units, "MS")
    test = build_forecast_table(full, FEATURES, 12, [cutoff])
    return train, test


@pytest.fixture(scope="module")
def fitted(seasonal_tables):
    train, _ = seasonal_tables
    return SalesForecaster(n_estimators=200, learning_rate=0.1, validation_periods=6,
                           early_stopping_rounds=20, random_state=3).fit(train)


def test_forecaster_beats_seasonal_naive(fitted, seasonal_tables):
    _, test = seasonal_tables
    forecast = fitted.predict(test)
    ours = backtest.wape(test["target"], forecast)
    naive = backtest.wape(test["target"], test["sales_same_period_1y"])
    assert ours < 0.85 * naive, (ours, naive)


def test_intervals_bracket_the_forecast_and_cover_roughly(fitted, seasonal_tables):
    _, test = seasonal_tables
    point, lo, hi = fitted.predict_interval(test)
    assert (lo <= point + 1e-9).all() and (point <= hi + 1e-9).all()
    cover = backtest.coverage(test["target"].to_numpy(), lo, hi)
    assert 0.6 <= cover <= 0.97


def test_row_order_does_not_change_predictions(fitted, seasonal_tables):
    _, test = seasonal_tables
    shuffled = test.sample(frac=1.0, random_state=0)
    np.testing.assert_allclose(fitted.predict(shuffled), fitted.predict(test.loc[shuffled.index]))


def test_same_seed_same_model(seasonal_tables):
    train, test = seasonal_tables
    kwargs = dict(n_estimators=30, validation_periods=6, random_state=7)
    a = SalesForecaster(**kwargs).fit(train).predict(test)
    b = SalesForecaster(**kwargs).fit(train).predict(test)
    np.testing.assert_array_equal(a, b)


def test_predict_before_fit_and_missing_features(seasonal_tables, fitted):
    _, test = seasonal_tables
    with pytest.raises(Exception, match="not fitted"):
        SalesForecaster().predict(test)
    with pytest.raises(InputError, match="sales_lag_1"):
        fitted.predict(test.drop(columns=["sales_lag_1"]))


def test_too_little_history_is_a_clear_error(seasonal_tables):
    train, _ = seasonal_tables
    with pytest.raises(InputError, match="full history"):
        SalesForecaster().fit(train.head(50))


def _market(n=400, seed=0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    population = rng.lognormal(10, 1.2, n)
    income = rng.normal(50, 10, n)
    X = pd.DataFrame({"population": population, "median_income": income,
                      "noise": rng.normal(size=n)})
    market = population ** 0.6 * np.exp(0.02 * (income - 50))
    penetration = rng.uniform(0.4, 1.0, n)
    return X, market * penetration * rng.lognormal(0, 0.1, n)


def test_potential_sits_above_typical_sales_and_ranks_markets():
    X, y = _market()
    model = PotentialEstimator(n_estimators=200, random_state=0).fit(X, y)
    potential = model.predict(X)
    assert 0.65 <= np.mean(y <= potential) <= 0.92  # a high quantile, not the mean
    true_market = X["population"] ** 0.6 * np.exp(0.02 * (X["median_income"] - 50))
    assert backtest.spearman(potential, true_market.to_numpy()) > 0.9


def test_more_population_does_not_lower_potential_on_average():
    X, y = _market()
    model = PotentialEstimator(n_estimators=200, random_state=0).fit(X, y)
    richer = X.assign(population=X["population"] * 1.5)
    before, after = model.predict(X), model.predict(richer)
    assert after.mean() > before.mean()
    assert np.mean(after >= before * 0.98) > 0.9


def test_potential_ignores_row_order():
    X, y = _market()
    order = np.random.default_rng(1).permutation(len(X))
    a = PotentialEstimator(n_estimators=100).fit(X, y).predict(X)
    b = PotentialEstimator(n_estimators=100).fit(X.iloc[order], y[order]).predict(X)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_drivers_read_as_words():
    contributions = pd.DataFrame({"population": [0.166, -0.1],
                                  "median_income_nbr_mean": [0.01, 0.3]})
    text = describe_drivers(contributions, top=2)
    assert text.iloc[0] == "population +18%; median income (neighbours) +1%"
    assert text.iloc[1].startswith("median income (neighbours) +35%")


def test_metrics_against_hand_computed_values():
    actual = np.array([10.0, 0.0, 5.0, np.nan])
    forecast = np.array([8.0, 1.0, 5.0, 3.0])
    assert backtest.wape(actual, forecast) == pytest.approx(3 / 15)
    assert backtest.bias(actual, forecast) == pytest.approx(-1 / 15)
    assert backtest.mae(actual, forecast) == pytest.approx(1.0)
    assert backtest.coverage(actual, forecast - 1.5, forecast + 1.5) == pytest.approx(2 / 3)


def test_training_row_order_does_not_change_the_model(seasonal_tables):
    train, test = seasonal_tables
    kwargs = dict(n_estimators=30, validation_periods=6, random_state=7)
    a = SalesForecaster(**kwargs).fit(train).predict(test)
    b = SalesForecaster(**kwargs).fit(train.sample(frac=1.0, random_state=2)).predict(test)
    np.testing.assert_allclose(a, b)


def test_forecast_drivers_read_as_words_and_sum_to_the_forecast(fitted, seasonal_tables):
    from territory.models.forecast import readable_feature

    _, test = seasonal_tables
    assert readable_feature("sales_roll_mean_w3") == "last 3 months"
    assert readable_feature("sales_lag_1") == "last month"
    assert readable_feature("sales_roll_mean_w12_nbr_mean") == "last 12 months (neighbours)"
    assert readable_feature("month_sin") == readable_feature("month") == "season"
    assert readable_feature("median_income") == "median income"
    assert readable_feature("yoy_growth_w12") == "growth on last year"
    assert readable_feature("season_index_2y") == "season"
    contrib = fitted.driver_contributions(test)
    assert len(contrib) == test["unit_id"].nunique()
    assert "season" in contrib.columns and "month_cos" not in contrib.columns
    # contributions + bias = the booster's output, which maps back to the forecast
    raw = fitted.contributions(test)
    scale = fitted._scale(test)
    bias = fitted.booster_.predict(fitted._design(test, scale), pred_contrib=True)[:, -1]
    rebuilt = fitted._from_output((raw.sum(axis=1) + bias).to_numpy(), scale)
    np.testing.assert_allclose(rebuilt, fitted.predict(test), rtol=1e-4)
    text = fitted.drivers(test)
    assert text.index.equals(contrib.index)
    first = text.iloc[0].split("; ")
    assert len(first) == 3 and all(part.rsplit(" ", 1)[1].endswith("%") for part in first)


def test_log_ratio_target_handles_zero_months_and_an_all_zero_unit():
    sales = _seasonal_sales(n_units=30, n_periods=48, seed=5)
    rng = np.random.default_rng(0)
    sales.loc[rng.random(len(sales)) < 0.1, "sales"] = 0.0
    sales.loc[sales["unit_id"] == "u00", "sales"] = 0.0
    units = sorted(sales["unit_id"].unique())
    panel = make_panel(sales, units, "MS")
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    feats = FeaturesConfig(lags=[1, 2, 3, 12, 13], rolling_windows=[3, 12],
                           rolling_stats=["mean"])
    table = build_forecast_table(panel, feats, 12, training_origins(periods, feats))
    model = SalesForecaster(objective="l2_log_ratio", n_estimators=60, validation_periods=6,
                            early_stopping_rounds=10, random_state=0).fit(table)
    test = table[table["origin"] == periods[-1]]
    point, lo, hi = model.predict_interval(test)
    assert np.isfinite(point).all() and (lo >= 0).all() and (lo <= point).all()
    assert (point <= hi).all()
    zero_unit = (test["unit_id"] == "u00").to_numpy()
    # one silent unit among 30: forecast near zero (its level is floored at the 5% quantile)
    assert point[zero_unit].max() < 0.1 * np.median(point[~zero_unit])
    # the model's own derived features read only the row's (as-of) features, never the target
    scale = model._scale(test)
    pd.testing.assert_frame_equal(model._design(test, scale),
                                  model._design(test.assign(target=1e9), scale))
    assert {"yoy_growth_w1", "season_index_1y"} <= set(model._design(test, scale).columns)


def test_published_combination_weights_lightgbm_and_the_refit_member(fitted, seasonal_tables):
    """Scoring publishes the gate's choice: LightGBM alone, or weighted with AutoTheta
    refit on the history up to the as-of date."""
    import dataclasses

    from territory.features.panel import to_wide
    from territory.models import combination, scoring
    from territory.models.training import Trained

    _, test = seasonal_tables
    cutoff = pd.Timestamp("2022-12-01")
    sales = _seasonal_sales()
    history = to_wide(make_panel(sales, sorted(sales["unit_id"].unique()), "MS", end=cutoff),
                      "sales")
    weights = pd.DataFrame({"forecast": 0.25, "auto_theta": 0.75},
                           index=pd.RangeIndex(1, 13, name="horizon"))
    published = combination.PublishedForecast("territory", weights, ("auto_theta",), {}, 12,
                                              "MS", 0.8)
    rows = test.sample(frac=1.0, random_state=0)  # row order must not matter
    members = combination.member_forecasts(history, rows, published, cutoff)
    assert members.notna().all().all() and members.index.equals(rows.index)
    table = pd.concat([rows, members], axis=1)
    point, lo, hi = scoring.published_forecast(
        table, Trained(fitted, None, {}, pd.DataFrame(), "", published=published))
    lgb, lgb_lo, lgb_hi = fitted.predict_interval(rows)
    np.testing.assert_allclose(point, 0.25 * lgb + 0.75 * members["auto_theta"].to_numpy())
    np.testing.assert_allclose(lo, 0.25 * lgb_lo + 0.75 * members["auto_theta_lo"].to_numpy())
    assert (lo <= point + 1e-9).all() and (point <= hi + 1e-9).all()
    # skill: the combination is no worse than seasonal naive on the next year
    full = make_panel(sales, sorted(sales["unit_id"].unique()), "MS")
    actual = full.set_index(["unit_id", "period"])["sales"].reindex(
        pd.MultiIndex.from_arrays([rows["unit_id"], rows["target_period"]])).to_numpy()
    naive = backtest.seasonal_naive_forecast(history.to_numpy(), 12)[
        history.index.get_indexer(rows["unit_id"]), rows["horizon"].to_numpy() - 1]
    assert backtest.wape(actual, point) < backtest.wape(actual, naive)
    # with conformal quantiles: the interval is the combination's own, by history length
    quantiles = pd.DataFrame({"short_lo": -0.5, "short_hi": 0.5, "long_lo": -0.1,
                              "long_hi": 0.2}, index=pd.RangeIndex(1, 13, name="horizon"))
    assert (members["history_periods"] == 48).all()  # 2019-01..2022-12: long series
    conformal = dataclasses.replace(published, intervals=quantiles, short_periods=36)
    _, c_lo, c_hi = scoring.published_forecast(
        table, Trained(fitted, None, {}, pd.DataFrame(), "", published=conformal))
    np.testing.assert_allclose(c_lo, np.maximum(1.05 * point * np.exp(-0.1) - 0.05 * point, 0),
                               rtol=1e-6)
    np.testing.assert_allclose(c_hi, 1.05 * point * np.exp(0.2) - 0.05 * point, rtol=1e-6)
    alone = dataclasses.replace(published, method="forecast")
    point_alone, _, _ = scoring.published_forecast(
        table, Trained(fitted, None, {}, pd.DataFrame(), "", published=alone))
    np.testing.assert_allclose(point_alone, lgb)


def test_recency_half_life_halves_a_row_weight_per_half_life(seasonal_tables):
    train, _ = seasonal_tables
    flat = SalesForecaster(validation_periods=6)._prepare(train, None)
    recent = SalesForecaster(validation_periods=6, recency_half_life=1.0)._prepare(train, None)
    ratio = recent.weight / flat.weight
    age_years = (flat.periods.max() - flat.periods).days.to_numpy() / 365.25
    np.testing.assert_allclose(ratio, 0.5 ** age_years)
    latest = flat.periods == flat.periods.max()
    assert np.allclose(ratio[latest], 1.0) and ratio.min() < 0.5


def test_recency_half_life_must_be_positive():
    from pydantic import ValidationError

    from territory.models.config import ForecastConfig

    with pytest.raises(ValidationError, match="recency_half_life"):
        ForecastConfig(recency_half_life=0)
    assert ForecastConfig(recency_half_life=None).recency_half_life is None
