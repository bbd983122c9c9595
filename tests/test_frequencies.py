"""Annual, quarterly, monthly and weekly data: features, backtest, words, and real runs.

Unit checks on hand-made panels: features count periods of the data's own
frequency (season, lags, level), the backtest's seasonal naive and MASE scale
use the data's season, the forecaster's derived features and drivers follow
it, and demographics with a year column are joined as of each origin. Two
real panels then go through ``territory init``, ``validate`` and the real
flow with no hand edits: libpysal's ``us_income`` (48 states, annual,
1929-2009, ``data/us_income``) and the demo slice summed to quarters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from territory.features.build import build_forecast_table, build_market_table
from territory.features.config import FeaturesConfig
from territory.features.errors import InputError
from territory.features.frequency import FREQUENCIES, periods_in_words
from territory.features.io import validate_sales
from territory.features.panel import make_panel
from territory.models import backtest
from territory.models.forecast import SalesForecaster, readable_feature
from territory.models.statistical import statistical_forecasts
from territory.pipelines.cli import app
from territory.pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]
US_INCOME = ROOT / "data" / "us_income"


def _panel(frequency: str, n_periods: int, n_units: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("1990-01-01", periods=n_periods, freq=frequency)
    rows = [{"unit_id": f"u{u}", "period": p, "sales": float(100 * (u + 1) + i + rng.random())}
            for u in range(n_units) for i, p in enumerate(periods)]
    return make_panel(pd.DataFrame(rows), [f"u{u}" for u in range(n_units)], frequency)


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(FREQUENCIES))
def test_defaults_count_periods_of_the_frequency(code):
    config = FeaturesConfig(frequency=code)
    spec = FREQUENCIES[code]
    assert config.lags == list(spec.lags) and config.rolling_windows == list(spec.windows)
    assert config.level_window in config.rolling_windows
    assert config.spatial_lag_features("sales") == [f"sales_roll_mean_w{config.level_window}"]
    assert config.season == {"YS": 1, "QS": 4, "MS": 12, "W-MON": 52}[code]


def test_a_level_window_outside_the_windows_is_added_to_them():
    config = FeaturesConfig(frequency="QS", rolling_windows=[2], level_window=4)
    assert config.rolling_windows == [2, 4] and config.level_column("rev") == "rev_roll_mean_w4"
    assert FeaturesConfig(rolling_windows=[3, 6]).level_window == 6  # no 12: the widest


def test_period_words():
    assert periods_in_words(12, "MS") == "12 months"
    assert periods_in_words(1, "YS") == "1 year" and periods_in_words(3, "YS") == "3 years"
    assert periods_in_words(4, "QS") == "4 quarters" and periods_in_words(13, "W-MON") == "13 weeks"


# --- features ------------------------------------------------------------------------------


def test_quarterly_same_period_last_year_is_four_quarters_back():
    config = FeaturesConfig(frequency="QS", lags=[1, 4], rolling_windows=[2, 4], trend=False)
    panel = _panel("QS", 16)
    table = build_forecast_table(panel, config, horizon=4, origins=[panel["period"].max()])
    wide = panel.pivot(index="unit_id", columns="period", values="sales")
    t = wide.shape[1] - 1
    for h in range(1, 5):
        rows = table[table["horizon"] == h].set_index("unit_id")
        np.testing.assert_allclose(rows["sales_same_period_1y"], wide.iloc[:, t + h - 4])
        np.testing.assert_allclose(rows["sales_same_period_2y"], wide.iloc[:, t + h - 8])
    assert set(table["month"]) <= {1, 4, 7, 10}
    np.testing.assert_allclose(table["sales_roll_mean_w4"].iloc[:3],
                               wide.iloc[:, t - 3:t + 1].mean(axis=1))


def test_annual_data_has_no_season_and_no_calendar():
    config = FeaturesConfig(frequency="YS")
    panel = _panel("YS", 12)
    table = build_forecast_table(panel, config, horizon=3)
    assert not any(c.startswith(("month", "week")) or "same_period" in c for c in table.columns)
    assert {"sales_lag_3", "sales_roll_mean_w3", "sales_growth_w3"} <= set(table.columns)
    assert list(table["target_period"].dt.year.unique()) == [2002, 2003, 2004]


def test_weekly_data_gets_its_week_of_year():
    config = FeaturesConfig(frequency="W-MON", lags=[1, 52], rolling_windows=[4, 52],
                            trend=False)
    table = build_forecast_table(_panel("W-MON", 110), config, horizon=2)
    assert {"week_sin", "week_cos", "sales_same_period_1y"} <= set(table.columns)


# --- backtest ------------------------------------------------------------------------------


def test_backtest_scale_and_naive_use_the_data_season():
    config = FeaturesConfig(frequency="QS", lags=[1, 2, 4], rolling_windows=[2, 4])
    panel = _panel("QS", 40)
    result = backtest.rolling_origin_backtest(
        panel, config, 4, lambda: _NaiveEstimator(), n_windows=2, step=2,
        baselines=("seasonal_naive",))
    wide = panel.pivot(index="unit_id", columns="period", values="sales").to_numpy()
    first = result.predictions[result.predictions["origin"] == result.origins[0]]
    t = list(pd.DatetimeIndex(sorted(panel["period"].unique()))).index(result.origins[0])
    expected = backtest.seasonal_naive_scale(wide[:, : t + 1], season=4)
    np.testing.assert_allclose(first.groupby("unit_id")["scale"].first(), expected)
    h1 = first[first["horizon"] == 1].sort_values("unit_id")
    np.testing.assert_allclose(h1["seasonal_naive"], wide[:, t + 1 - 4])


def test_annual_members_follow_the_trend_without_season():
    series = 100 + 3.0 * np.arange(40) + np.random.default_rng(1).normal(0, 1, 40)
    stat = statistical_forecasts(series[None, :], pd.Timestamp("2020-01-01"), 3, 1, "YS")
    assert stat.fallback[0] == ""
    for member, forecast in stat.point.items():
        forecast = forecast[0]
        assert np.all(forecast > series[-1] - 5) and np.all(np.diff(forecast) > 0), member
    naive = backtest.seasonal_naive_forecast(series[None, :], 3, season=1)[0]
    np.testing.assert_allclose(naive, series[-1])


class _NaiveEstimator:
    """The last value, for backtest plumbing tests."""

    def fit(self, table):
        return self

    def predict(self, table):
        return table["sales_lag_1"].to_numpy()


# --- forecaster ----------------------------------------------------------------------------


def test_derived_features_are_keyed_to_the_season():
    n = 5
    X = pd.DataFrame({f"sales_lag_{k}": np.full(n, 10.0 + k) for k in (1, 2, 3, 5, 6, 7)})
    X["sales_roll_mean_w4"], X["sales_roll_mean_w8"] = 12.0, 11.0
    X["sales_same_period_1y"], X["sales_same_period_2y"] = 13.0, 12.5
    quarterly = SalesForecaster(season=4)._derived(X, np.full(n, 12.0))
    assert {"yoy_growth_w4", "yoy_growth_w3", "yoy_growth_w1", "naive_with_growth",
            "season_index_mean"} <= set(quarterly)
    monthly = SalesForecaster(season=12)._derived(X, np.full(n, 12.0))
    assert "yoy_growth_w4" not in monthly and "yoy_growth_w1" not in monthly


@pytest.mark.parametrize(("season", "lag", "ahead"), [
    (12, "last month", "months ahead"), (4, "last quarter", "quarters ahead"),
    (1, "last year", "years ahead"), (52, "last week", "weeks ahead")])
def test_drivers_speak_the_frequency(season, lag, ahead):
    assert readable_feature("sales_lag_1", season=season) == lag
    assert readable_feature("horizon", season=season) == ahead
    assert readable_feature("sales_roll_mean_w3", season=season).endswith(ahead.split()[0])


# --- validation ----------------------------------------------------------------------------


def test_yearly_dates_under_a_monthly_config_are_refused():
    rows = pd.DataFrame({"unit_id": ["a"] * 5, "period": [1990, 1991, 1992, 1993, 1994],
                         "sales": [1.0, 2, 3, 4, 5]})
    with pytest.raises(InputError) as err:
        validate_sales(rows, "income.csv", ["a"], frequency="MS")
    text = str(err.value)
    assert "income.csv" in text and "period" in text and "1 year apart" in text
    assert "features.frequency: YS" in text
    assert len(validate_sales(rows, "income.csv", ["a"], frequency="YS")) == 5


def test_monthly_dates_under_a_quarterly_config_are_summed():
    rows = pd.DataFrame({"unit_id": ["a"] * 6, "period": pd.date_range("2020-01-01",
                                                                      periods=6, freq="MS"),
                         "sales": [1.0] * 6})
    out = validate_sales(rows, "s.csv", ["a"], frequency="QS")
    assert list(out["sales"]) == [3.0, 3.0]


# --- demographics over time ----------------------------------------------------------------


def test_demographics_with_years_are_joined_as_of_each_origin():
    """17 years of demographics: one row per (unit, origin, horizon), each with the latest
    year at or before the origin's (the old join gave 17x the rows)."""
    config = FeaturesConfig(frequency="YS", trend=False)
    panel = _panel("YS", 20, n_units=4)  # 1990..2009
    years = range(1992, 2009)
    demo = pd.DataFrame([{"unit_id": f"u{u}", "year": y, "population": 1000.0 * u + y}
                         for u in range(4) for y in years if not (u == 3 and y < 2000)])
    origins = list(pd.DatetimeIndex(sorted(panel["period"].unique()))[3:])
    with_demo = build_forecast_table(panel, config, 3, origins, demo)
    without = build_forecast_table(panel, config, 3, origins)
    assert len(with_demo) == len(without) == 4 * len(origins) * 3
    year = with_demo["origin"].dt.year
    unit = with_demo["unit_id"].str[1:].astype(int)
    known = np.minimum(year, 2008)
    expected = np.where((unit == 3) & (year < 2000), np.nan, 1000.0 * unit + known)
    np.testing.assert_allclose(with_demo["population"], expected.astype(np.float32))
    assert "year" not in with_demo.columns
    market = build_market_table(demo, as_of=pd.Timestamp("1999-01-01"))
    assert market.loc["u0", "population"] == 1999.0 and "u3" not in market.index


# --- real panels end to end ----------------------------------------------------------------


def _init_validate(tmp_path: Path, *files: str) -> Path:
    out = tmp_path / "territory.yaml"
    result = CliRunner().invoke(app, ["init", *files, "--out", str(out)])
    assert result.exit_code == 0, result.output
    checked = CliRunner().invoke(app, ["validate", "--config", str(out)])
    assert checked.exit_code == 0, checked.output
    return out


def _check_run(config, result, n_units: int, ahead: str) -> None:
    run_dir = result["run_dir"]
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert len(scores) == n_units * config.forecast.horizon
    assert np.isfinite(scores["forecast"]).all() and (scores["forecast"] > 0).all()
    assert np.isfinite(result["metrics"]["valid_wape_seasonal_naive"])
    html = (run_dir / "report.html").read_text()
    assert f"next {ahead}" in html and "12 months" not in html
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    assert alignment["territory_id"].nunique() == config.territories.n_territories


def test_us_income_annual_runs_from_init(prefect_session, tmp_path):
    from territory.pipelines.flows import territory_pipeline

    path = _init_validate(tmp_path, "--units", str(US_INCOME / "us48.shp"),
                          "--sales", str(US_INCOME / "income.csv"))
    written = yaml.safe_load(path.read_text())
    assert written["features"]["frequency"] == "YS" and written["forecast"]["horizon"] == 3
    config = load_config(path)
    result = territory_pipeline(config)
    _check_run(config, result, 48, "3 years")
    scores = pd.read_parquet(result["run_dir"] / "scores.parquet")
    assert sorted(scores["target_period"].dt.year.unique()) == [2010, 2011, 2012]
    # no current alignment: nothing was moved, and neither table nor report says "0 moved"
    report = " ".join((result["run_dir"] / "report.html").read_text().split())
    assert "none: no current alignment, a first design" in report
    assert pd.read_csv(result["run_dir"] / "plan_comparison.csv")["units_moved"].isna().all()
    summary = pd.read_csv(result["run_dir"] / "territory_summary.csv")
    assert summary[["moved_in", "moved_out"]].isna().all().all()


def test_quarterly_panel_runs_from_init(prefect_session, demo_slice_dir, tmp_path):
    from territory.pipelines.flows import territory_pipeline

    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales["period"] = sales["period"].dt.to_period("Q").dt.start_time
    quarterly = (sales.groupby(["unit_id", "period"], as_index=False)
                 .agg(sales=("sales", "sum"), accounts=("accounts", "mean")))
    quarterly.to_csv(tmp_path / "sales_q.csv", index=False)
    path = _init_validate(
        tmp_path, "--units", str(demo_slice_dir / "counties.parquet"),
        "--sales", str(tmp_path / "sales_q.csv"),
        "--demographics", str(demo_slice_dir / "demographics.parquet"),
        "--alignment", str(demo_slice_dir / "alignment.csv"),
        "--reps", str(demo_slice_dir / "reps.csv"))
    written = yaml.safe_load(path.read_text())
    assert written["features"]["frequency"] == "QS"
    config = load_config(path)
    result = territory_pipeline(config)
    _check_run(config, result, 192, f"{config.forecast.horizon} quarters")
