"""Rolling-origin backtest, baselines and metrics: oracles and the no-look-ahead rule."""

import numpy as np
import pandas as pd
import pytest

from territory.features.build import build_forecast_table, training_origins
from territory.features.config import FeaturesConfig
from territory.features.errors import InputError
from territory.features.panel import make_panel
from territory.models import backtest
from territory.models.forecast import SalesForecaster
from territory.models.statistical import MEMBERS, statistical_forecasts

FEATURES = FeaturesConfig(lags=[1, 2, 12], rolling_windows=[3, 12], rolling_stats=["mean"],
                          spatial_lag_columns=[])


def _sales(n_units=6, n_periods=48, seed=0, zeros=False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2020-01-01", periods=n_periods, freq="MS")
    season = 1 + 0.3 * np.sin(2 * np.pi * periods.month.to_numpy() / 12)
    level = rng.lognormal(3, 0.5, n_units)
    values = level[:, None] * season * rng.lognormal(0, 0.1, (n_units, n_periods))
    if zeros:
        values[rng.random(values.shape) < 0.2] = 0.0
    return pd.DataFrame({
        "unit_id": np.repeat([f"u{i}" for i in range(n_units)], n_periods),
        "period": np.tile(periods, n_units),
        "sales": values.ravel(),
    })


def _panel(**kwargs) -> pd.DataFrame:
    sales = _sales(**kwargs)
    return make_panel(sales, sorted(sales["unit_id"].unique()), "MS")


class SpyEstimator:
    """Records what it was fit on; forecasts the last observed value."""

    fits: list[pd.Timestamp] = []

    def fit(self, table: pd.DataFrame) -> "SpyEstimator":
        known = table.dropna(subset=["target"])
        SpyEstimator.fits.append((known["target_period"].max(), table["origin"].max()))
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        return table["sales_lag_1"].to_numpy(dtype=float)


def test_windows_never_train_on_data_after_their_origin():
    SpyEstimator.fits = []
    panel = _panel()
    result = backtest.rolling_origin_backtest(panel, FEATURES, 6, SpyEstimator, n_windows=3,
                                              step=4)
    assert len(SpyEstimator.fits) == 3
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    assert result.origins == [periods[-7 - 8], periods[-7 - 4], periods[-7]]
    for (max_target, max_origin), origin in zip(SpyEstimator.fits, result.origins, strict=True):
        assert max_target <= origin
        assert max_origin < origin
    preds = result.predictions
    for origin, grp in preds.groupby("origin"):
        assert (grp["target_period"] > origin).all()
        assert sorted(grp["horizon"].unique()) == list(range(1, 7))
    assert len(preds) == 3 * 6 * 6
    assert not preds["actual"].isna().any()


def test_sliced_table_equals_a_table_rebuilt_on_the_truncated_panel():
    panel = _panel()
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    full = build_forecast_table(panel, FEATURES, 6, training_origins(periods, FEATURES))
    origin = periods[35]
    cut = panel[panel["period"] <= origin]
    rebuilt = build_forecast_table(cut, FEATURES, 6,
                                   training_origins(periods[:36], FEATURES))
    rebuilt = rebuilt.dropna(subset=["target"]).reset_index(drop=True)
    sliced = full[full["target_period"] <= origin].reset_index(drop=True)
    pd.testing.assert_frame_equal(sliced, rebuilt)
    # the test rows: features from the truncated panel, same as the slice
    test_cut = build_forecast_table(cut, FEATURES, 6, [origin]).drop(columns="target")
    test_full = full[full["origin"] == origin].drop(columns="target").reset_index(drop=True)
    pd.testing.assert_frame_equal(test_full, test_cut)


def test_mase_against_hand_computed_values():
    # history of one series, season 2: in-sample naive MAE = mean(|3-1|, |2-2|, |5-3|) = 4/3
    history = np.array([[1.0, 2.0, 3.0, 2.0, 5.0]])
    scale = backtest.seasonal_naive_scale(history, season=2)
    assert scale[0] == pytest.approx(4 / 3)
    actual = np.array([4.0, 6.0])
    forecast = np.array([5.0, 4.0])
    assert backtest.mase(actual, forecast, np.repeat(scale, 2)) == pytest.approx(1.5 / (4 / 3))
    # rows without a usable scale are ignored
    assert backtest.mase([4.0, 1.0], [5.0, 9.0], [1.0, 0.0]) == pytest.approx(1.0)


def test_pinball_rmse_and_naive_forecasts_against_hand_computed_values():
    assert backtest.pinball([10.0, 10.0], [8.0, 12.0], 0.8) == pytest.approx((1.6 + 0.4) / 2)
    assert backtest.rmse([1.0, 3.0], [2.0, 1.0]) == pytest.approx(np.sqrt(2.5))
    history = np.arange(1.0, 15.0)[None, :]  # 14 periods
    naive = backtest.seasonal_naive_forecast(history, 14, season=12)
    np.testing.assert_array_equal(naive[0, :12], np.arange(3.0, 15.0))
    np.testing.assert_array_equal(naive[0, 12:], [3.0, 4.0])
    ma = backtest.moving_average_forecast(history, 2, window=4)
    np.testing.assert_array_equal(ma, [[12.5, 12.5]])


def test_statistical_members_forecast_a_seasonal_series_and_fall_back_per_unit():
    t = np.arange(60)  # AutoTheta's seasonality test needs about five seasons
    y = 100 + 0.5 * t + 20 * np.sin(2 * np.pi * t / 12)
    history = np.vstack([y, y, y, y, y])
    history[1, :48] = np.nan  # 12 periods: too short for a seasonal model
    history[2, ::2] = 0.0  # intermittent
    history[3, 5] = np.nan  # a gap inside the history
    history[4, -1] = np.nan  # no value at the origin
    stat = statistical_forecasts(history, pd.Timestamp("2024-12-01"), 12, 12, "MS")
    truth = 100 + 0.5 * (t[-1] + 1 + np.arange(12)) + 20 * np.sin(
        2 * np.pi * (t[-1] + 1 + np.arange(12)) / 12)
    for member in MEMBERS:
        assert np.abs(stat.point[member][0] - truth).mean() < 3.0, member
        assert (stat.lo[member][:4] <= stat.point[member][:4]).all()
        assert (stat.point[member][:4] <= stat.hi[member][:4]).all()
        assert np.isnan(stat.point[member][4]).all()
        assert (stat.point[member][:4] >= 0).all()
    assert list(stat.fallback) == ["", "adida", "croston_sba", "", ""]
    assert stat.interpolated == 1 and list(stat.no_history) == [False] * 4 + [True]
    # the fallback is the same for every member (one per-unit model)
    np.testing.assert_array_equal(stat.point["auto_ets"][1], stat.point["auto_theta"][1])
    with pytest.raises(ValueError, match="unknown statistical members"):
        statistical_forecasts(history, pd.Timestamp("2023-04-01"), 3, 12, "MS", ("prophet",))


def test_backtest_counts_member_fallbacks_and_scores_every_model():
    SpyEstimator.fits = []
    sales = _sales(n_units=3, n_periods=40)
    panel = make_panel(sales, ["u0", "u1", "u2", "ghost"], "MS")  # ghost never sold
    result = backtest.rolling_origin_backtest(
        panel, FEATURES, 3, SpyEstimator, n_windows=2, step=2,
        baselines=("seasonal_naive", "moving_average", "ets", "auto_theta"))
    assert result.member_series == 2 * 4
    assert result.member_fallbacks == 0  # the ghost has no history: no forecast at all
    assert result.predictions.loc[result.predictions["unit_id"] == "ghost", "auto_ets"].isna().all()
    table = result.table(by=None).set_index("model")
    assert set(table.index) == {"forecast", "seasonal_naive", "moving_average", "auto_ets",
                                "auto_theta"}
    assert np.isfinite(table["mase"]).all()
    assert {"auto_ets_lo", "auto_theta_hi"} <= set(result.predictions.columns)
    summary = result.summary()
    assert {"backtest_wape", "backtest_mase_auto_ets", "backtest_wape_h03",
            "backtest_member_fallbacks"} <= set(summary)
    assert result.windows_key.startswith("backtest[") and result.windows_key.endswith("]h3")


def test_too_short_history_for_the_windows_is_a_clear_error():
    with pytest.raises(InputError, match="backtest windows"):
        backtest.rolling_origin_backtest(_panel(n_periods=30), FEATURES, 12, SpyEstimator,
                                         n_windows=10, step=3)


def test_panel_recovered_from_a_table_matches_the_panel():
    panel = _panel()
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    table = build_forecast_table(panel, FEATURES, 3, training_origins(periods, FEATURES))
    recovered = backtest.panel_from_table(table)
    first = table["origin"].min()
    expected = panel[panel["period"] >= first][["unit_id", "period", "sales"]]
    np.testing.assert_allclose(recovered["sales"].to_numpy(), expected["sales"].to_numpy(),
                               rtol=1e-6)


def test_sales_only_mode_end_to_end():
    """No demographics, no graph: the forecaster still fits, forecasts and explains."""
    sales = _sales(n_units=30, n_periods=48, seed=3)
    panel = make_panel(sales, sorted(sales["unit_id"].unique()), "MS")
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    table = build_forecast_table(panel, FEATURES, 6, training_origins(periods, FEATURES))
    assert not any(c.endswith("_nbr_mean") for c in table.columns)

    def make() -> SalesForecaster:
        return SalesForecaster(horizon=6, validation_periods=6, n_estimators=40,
                               learning_rate=0.2, early_stopping_rounds=10, random_state=0)

    model = make().fit(table)
    score = table[table["origin"] == periods[-1]]
    point, lo, hi = model.predict_interval(score)
    assert np.isfinite(point).all() and (lo <= point).all() and (point <= hi).all()
    drivers = model.drivers(score)
    assert len(drivers) == 30 and drivers.str.count(";").eq(2).all()
    result = backtest.rolling_origin_backtest(panel, FEATURES, 6, make, n_windows=2, step=3,
                                              table=table)
    assert np.isfinite(result.summary()["backtest_coverage"])
    assert result.summary()["backtest_mase"] < result.summary()["backtest_mase_moving_average"]


def test_promotion_gate_compares_only_the_same_backtest_windows(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from territory.models import tracking

    tracking.setup_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "gate", tmp_path / "art")
    client = MlflowClient()
    client.create_registered_model("m")

    def challenger(score: float, windows: str, margin: float = 0.1) -> dict:
        with tracking.training_run("r") as run_id:
            tracking.log_tags({"evaluation_windows": windows})
            tracking.log_metrics({"backtest_wape": score})
            version = client.create_model_version("m", f"runs:/{run_id}/x", run_id).version
            return tracking.promote_if_better("m", version, "backtest_wape", score, windows,
                                              margin=margin)

    windows = "backtest[2024-01-01,2024-04-01]h12"
    try:
        assert challenger(0.20, windows)["promoted"]  # no champion yet
        kept = challenger(0.19, windows)  # better, but not by the 10% margin
        assert not kept["promoted"] and kept["champion_score"] == pytest.approx(0.20)
        assert challenger(0.17, windows)["promoted"]
        assert not challenger(0.01, "backtest[2023-01-01]h12")["promoted"]  # other windows
        assert not challenger(float("nan"), windows)["promoted"]
        assert str(client.get_model_version_by_alias("m", tracking.CHAMPION).version) == "3"
    finally:
        mlflow.set_tracking_uri("")


def test_the_fit_at_each_origin_can_be_supplied():
    """``origin_forecasts`` replaces the fit on the table at each origin (the Dask runner
    fits where the workers hold the rows): on the same rows, in another order, the
    backtest is the same; the table is not read."""
    panel = _panel()
    periods = pd.DatetimeIndex(sorted(panel["period"].unique()))
    table = build_forecast_table(panel, FEATURES, 6, training_origins(periods, FEATURES))
    shuffled = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    calls: list = []

    def elsewhere(estimator, origin):
        calls.append((type(estimator), origin))
        return backtest.table_forecasts(shuffled, "unit_id")(estimator, origin)

    SpyEstimator.fits = []
    ours = backtest.rolling_origin_backtest(panel, FEATURES, 6, SpyEstimator, n_windows=2,
                                            step=3, table=table.iloc[:0],
                                            origin_forecasts=elsewhere)
    theirs = backtest.rolling_origin_backtest(panel, FEATURES, 6, SpyEstimator, n_windows=2,
                                              step=3, table=table)
    assert calls == [(SpyEstimator, o) for o in theirs.origins]
    key = ["unit_id", "origin", "horizon"]
    pd.testing.assert_frame_equal(
        ours.predictions.sort_values(key).reset_index(drop=True),
        theirs.predictions.sort_values(key).reset_index(drop=True), check_exact=True)


def test_an_origin_without_forecasts_is_a_clear_error():
    def nothing(estimator, origin):
        return pd.DataFrame(columns=["unit_id", *backtest.FORECAST_COLUMNS])

    with pytest.raises(InputError, match="too little history"):
        backtest.rolling_origin_backtest(_panel(), FEATURES, 6, SpyEstimator, n_windows=2,
                                         step=3, origin_forecasts=nothing)
