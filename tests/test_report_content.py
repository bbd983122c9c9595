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
