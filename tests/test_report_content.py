"""The report's words: periods from the data's frequency, no "nan" in any sentence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from territory.pipelines.config import RunConfig
from territory.pipelines.report_content import period_words, quality_sentences


@pytest.mark.parametrize(("frequency", "n", "words"), [
    ("MS", 12, "12 months"), ("QS", 4, "4 quarters"), ("YS", 3, "3 years"),
    ("W-MON", 52, "52 weeks"), ("MS", 1, "1 month"), ("W-MON", 1, "1 week"),
])
def test_period_words(frequency, n, words):
    assert period_words(frequency, n) == words


def _config(frequency: str, validation_periods: int) -> RunConfig:
    return RunConfig(data={"units": "u.parquet", "sales": "s.parquet"},
                     features={"frequency": frequency, "lags": [1], "rolling_windows": [2],
                               "spatial_lag_columns": []},
                     forecast={"horizon": validation_periods,
                               "validation_periods": validation_periods})


def test_quality_sentences_name_the_held_out_window_in_the_data_s_periods():
    trained = SimpleNamespace(metrics={"valid_wape": 0.123, "valid_wape_seasonal_naive": 0.2,
                                       "valid_bias": -0.01})
    text = " ".join(quality_sentences(_config("QS", 4), trained, SimpleNamespace(metrics={})))
    assert "Over the last 4 quarters held out from training" in text
    assert "±12% of actual sales" in text and "repeating last year's quarters" in text
    assert "months" not in text


def test_quality_sentences_leave_out_what_could_not_be_computed():
    nan = float("nan")
    trained = SimpleNamespace(metrics={"valid_wape": 0.1, "valid_wape_seasonal_naive": nan,
                                       "valid_bias": nan, "backtest_coverage_h01": nan})
    sentences = quality_sentences(_config("W-MON", 8), trained,
                                  SimpleNamespace(metrics={"potential_spearman_vs_truth": nan}))
    text = " ".join(sentences)
    assert "nan" not in text.lower() and "last 8 weeks" in text
    assert "too short to compare" in text and "Forecasts ran" not in text
    assert "In the backtest" not in text and "rank correlation" not in text
    none = quality_sentences(_config("MS", 12), SimpleNamespace(metrics={"valid_wape": nan}),
                             SimpleNamespace(metrics={}))
    assert none[0].startswith("The forecast could not be scored on the last 12 months")


def _record(method: str, with_table: bool = True):
    import pandas as pd

    from territory.models.reconcile import Reconciliation

    table = pd.DataFrame({
        "method": ["base", "bottom_up", "bottom_up", "wls_struct", "wls_struct"],
        "level": ["territory", "territory", "unit", "territory", "unit"],
        "wape": [0.05, 0.037, 0.1, 0.027, 0.1], "mase": [0.9, 0.8, 1.0, 0.7, 1.0],
        "windows": 3}) if with_table else None
    nodes = pd.DataFrame({
        "node": ["total", "total", "T2", "T2", "T1", "T1", "u1", "u1"],
        "level": ["total", "total", "territory", "territory", "territory", "territory",
                  "unit", "unit"],
        "horizon": [1, 2] * 4,
        "target_period": pd.to_datetime(["2024-01-01", "2024-04-01"] * 4),
        "forecast": [30.0, 31.0, 20.0, 21.0, 10.0, 10.0, 10.0, 10.0],
        "forecast_lo": [25.0, 26.0, 16.0, 17.0, 8.0, 8.0, 8.0, 8.0],
        "forecast_hi": [35.0, 36.0, 24.0, 25.0, 12.0, 12.0, 12.0, 12.0],
        "base_forecast": [29.0, 30.0, 20.0, 21.0, 10.0, 10.0, 10.0, 10.0]})
    return SimpleNamespace(metrics={}, reconciliation=Reconciliation(method, table, nodes))


def test_the_report_says_which_reconciliation_was_published_and_why():
    from territory.pipelines.report_content import reconcile_sentences

    chosen = " ".join(reconcile_sentences(_record("wls_struct")))
    assert "WLS (structural)" in chosen and "territory WAPE 3.7% → 2.7%" in chosen
    assert "3 backtest windows" in chosen
    kept = " ".join(reconcile_sentences(_record("bottom_up")))
    assert "no reconciliation beat it" in kept and "3.7%" in kept and "2.7%" in kept
    none = " ".join(reconcile_sentences(_record("bottom_up", with_table=False)))
    assert "no backtest" in none and "nan" not in none.lower()
    assert reconcile_sentences(SimpleNamespace(metrics={})) == []
    trained = SimpleNamespace(metrics={"valid_wape": 0.1})
    text = " ".join(quality_sentences(_config("QS", 4), trained, _record("wls_struct")))
    assert "2.7%" in text


def test_the_territory_forecast_table_holds_each_territory_s_range_per_horizon():
    from territory.pipelines.report_content import territory_forecast_table

    table = territory_forecast_table(_record("wls_struct"))
    assert list(table["territory"]) == ["T1", "T1", "T2", "T2"]
    assert list(table["horizon"]) == [1, 2, 1, 2]
    assert list(table.columns) == ["territory", "horizon", "target_period", "forecast",
                                   "forecast_lo", "forecast_hi", "reconciled_with"]
    assert set(table["reconciled_with"]) == {"WLS (structural)"}  # the workbook says it too
    assert (table["forecast_lo"] <= table["forecast"]).all()
    assert (table["forecast"] <= table["forecast_hi"]).all()
    assert territory_forecast_table(SimpleNamespace(metrics={})) is None
    assert list(table["target_period"]) == ["2024-01-01", "2024-04-01"] * 2
