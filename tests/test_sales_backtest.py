"""`territory backtest`: the combination's weights, every frequency end to end, bad inputs."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from territory.features.errors import InputError
from territory.models import combination
from territory.models.sales_backtest import backtest_sales
from territory.pipelines.cli import app

SEASON = {"YS": 1, "QS": 4, "MS": 12, "W-MON": 52}


def _sales(frequency: str, n_periods: int, n_units: int = 4, seed: int = 0,
           short_unit: int | None = None) -> pd.DataFrame:
    """Trend × season × noise per unit; ``short_unit`` periods of history for one more unit."""
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2001-01-01", periods=n_periods, freq=frequency)
    t = np.arange(n_periods)
    season = max(SEASON[frequency], 2)
    rows = []
    for u in range(n_units):
        y = (rng.lognormal(3, 0.5) * (1 + 0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / season))
             * rng.lognormal(0, 0.05, n_periods))
        rows.append(pd.DataFrame({"unit_id": f"u{u}", "period": periods, "sales": y}))
    if short_unit:
        rows.append(pd.DataFrame({"unit_id": "short", "period": periods[-short_unit:],
                                  "sales": rng.lognormal(3, 0.1, short_unit)}))
    return pd.concat(rows, ignore_index=True)


def _predictions(errors: dict[str, list[float]]) -> pd.DataFrame:
    """Two origins × one unit × horizon 1; member errors per origin, actual 10, scale 1."""
    origins = pd.to_datetime(["2020-01-01", "2021-01-01"])
    frame = pd.DataFrame({"unit_id": "a", "origin": origins, "horizon": 1, "actual": 10.0,
                          "scale": 1.0})
    for member, errs in errors.items():
        frame[member] = 10.0 + np.asarray(errs)
        lo, hi = combination.bounds(member)
        frame[lo], frame[hi] = frame[member] - 1, frame[member] + 1
    return frame


def test_weights_are_inverse_mase_per_horizon_trimmed_and_equal_without_history():
    history = pd.DataFrame({"horizon": [1, 1, 2, 2], "actual": 10.0, "scale": 1.0,
                            "a": [11.0, 9.0, 12.0, 8.0], "b": [12.0, 8.0, 11.0, 9.0],
                            "c": [20.0, 0.0, 20.0, 0.0]})
    weights = combination.combination_weights(history, ["a", "b", "c"], 3, trim=2.5)
    # horizon 1: MASE a 1, b 2, c 10 (> 2.5 × best: no weight)
    np.testing.assert_allclose(weights.loc[1], [2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(weights.loc[2], [1 / 3, 2 / 3, 0.0])
    # horizon 3 has no rows: the weights of all horizons together (a and b both MASE 1.5)
    np.testing.assert_allclose(weights.loc[3], [0.5, 0.5, 0.0])
    empty = combination.combination_weights(history.iloc[:0], ["a", "b"], 2)
    np.testing.assert_allclose(empty.to_numpy(), 0.5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_an_origin_is_combined_with_weights_from_earlier_origins_only():
    # a is perfect at the second origin and bad at the first; b the other way round
    frame = _predictions({"a": [4.0, 0.0], "b": [1.0, 3.0]})
    out, weights = combination.add_combination(frame, ["a", "b"], 1, trim=5.0)
    first, second = sorted(weights)
    np.testing.assert_allclose(weights[first].loc[1], [0.5, 0.5])  # nothing earlier
    np.testing.assert_allclose(weights[second].loc[1], [0.2, 0.8])  # from the first only
    assert out["territory"].iloc[0] == pytest.approx(10 + 0.5 * 4 + 0.5 * 1)
    assert out["territory"].iloc[1] == pytest.approx(10 + 0.2 * 0 + 0.8 * 3)
    assert out["territory_lo"].iloc[1] == pytest.approx(out["territory"].iloc[1] - 1)
    _, trimmed = combination.add_combination(frame, ["a", "b"], 1)  # a: 4 × b's MASE
    np.testing.assert_allclose(trimmed[second].loc[1], [0.0, 1.0])
    gate = combination.promotion_gate(out, ["a", "b"])
    assert gate["best_member"] == "a" and gate["passed"] is False


def test_overlapping_windows_lend_only_the_actuals_known_at_the_origin():
    """With a step below the horizon, the earlier window's targets after this origin are
    still in the future there: they give no weight (the weights would peek ahead)."""
    origins = pd.to_datetime(["2020-01-01", "2020-02-01"])
    frame = pd.DataFrame({"unit_id": "a", "origin": origins.repeat(2), "horizon": [1, 2] * 2,
                          "target_period": pd.to_datetime(["2020-02-01", "2020-03-01",
                                                           "2020-03-01", "2020-04-01"]),
                          "actual": 10.0, "scale": 1.0})
    frame["a"] = 10.0 + np.array([1.0, 0.0, 0.0, 0.0])  # a: good on 2020-03, known only later
    frame["b"] = 10.0 + np.array([1.0, 4.0, 0.0, 0.0])
    _, weights = combination.add_combination(frame, ["a", "b"], 2, trim=10.0)
    np.testing.assert_allclose(weights[origins[1]].to_numpy(), [[0.5, 0.5], [0.5, 0.5]])


def test_a_member_without_a_forecast_leaves_the_combination_to_the_others():
    frame = _predictions({"a": [1.0, 1.0], "b": [2.0, 2.0]})
    frame.loc[1, "b"] = np.nan
    point, _, _ = combination.combine(frame, pd.DataFrame({"a": [0.5], "b": [0.5]}, index=[1]))
    np.testing.assert_allclose(point, [11.5, 11.0])


@pytest.mark.parametrize("frequency, n_periods, horizon, windows", [
    ("YS", 40, 3, 2), ("QS", 64, 4, 2), ("MS", 120, 6, 2), ("W-MON", 200, 8, 1),
])
def test_every_frequency_scores_every_method_on_the_same_rows(frequency, n_periods, horizon,
                                                              windows):
    sales = _sales(frequency, n_periods, short_unit=2)
    result = backtest_sales(sales, frequency, horizon, windows)
    assert len(result.origins) == windows
    assert result.origins[-1] == sorted(sales["period"].unique())[-1 - horizon]
    table = result.table
    assert set(table["method"]) == set(result.methods)
    assert {"territory", "lightgbm", "seasonal_naive", "auto_ets"} <= set(result.methods)
    assert set(table["horizon"]) == {"all", *map(str, range(1, horizon + 1))}
    assert table.groupby("horizon")["rows"].nunique().eq(1).all()  # the same rows for all
    assert np.isfinite(table.loc[table["method"] != "seasonal_naive", "coverage"]).all()
    fc = result.forecasts
    assert {"unit_id", "origin", "period", "method", "forecast", "lo", "hi"} <= set(fc.columns)
    # the combination is a weighted mean of the members: within their range
    wide = fc.pivot_table(index=["unit_id", "origin", "period"], columns="method",
                          values="forecast")
    members = wide[[m for m in result.methods if m not in ("territory", "seasonal_naive")]]
    assert (wide["territory"] >= members.min(axis=1) - 1e-9).all()
    assert (wide["territory"] <= members.max(axis=1) + 1e-9).all()
    # nothing dropped silently: every unit and origin is scored or listed with a reason
    scored = set(map(tuple, fc[["unit_id", "origin"]].drop_duplicates().to_numpy()))
    listed = set(map(tuple, result.skipped[["unit_id", "origin"]].to_numpy()))
    units = sales["unit_id"].unique()
    assert scored | listed == {(u, o) for u in units for o in result.origins}
    assert ("short", result.origins[-1]) in listed
    assert result.skipped["reason"].str.len().gt(10).all()
    for weights in result.weights.values():
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_too_short_a_history_for_the_windows_is_a_clear_error():
    with pytest.raises(InputError, match="too few for 4 windows of horizon 8"):
        backtest_sales(_sales("QS", 30), "QS", 8, 4)


def _write(tmp_path, frame: pd.DataFrame, name: str = "sales.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_cli_reads_own_column_names_and_date_format_and_writes_every_table(tmp_path):
    sales = _sales("QS", 48)
    own = pd.DataFrame({"store": sales["unit_id"],
                        "quarter": sales["period"].dt.strftime("%d/%m/%Y"),
                        "revenue": sales["sales"]})
    path = _write(tmp_path, own)
    out = tmp_path / "results"
    args = ["backtest", "--sales", str(path), "--frequency", "QS", "--horizon", "4",
            "--windows", "2", "--out", str(out), "--unit-col", "store", "--time-col", "quarter",
            "--target-col", "revenue"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert "pass --date-format, e.g. '%d/%m/%Y'" in " ".join(refused.output.split())
    result = CliRunner().invoke(app, [*args, "--date-format", "%d/%m/%Y"])
    assert result.exit_code == 0, result.output
    assert "territory" in result.output and "MASE by horizon" in result.output
    for name in ("metrics.csv", "forecasts.csv", "skipped.csv", "weights.csv",
                 "coverage_by_length.csv"):
        assert (out / name).is_file()
    forecasts = pd.read_csv(out / "forecasts.csv")
    by_length = pd.read_csv(out / "coverage_by_length.csv")
    assert set(by_length["history"]) == {"< 12 quarters", ">= 12 quarters", "all"}
    short = by_length.query("method == 'territory' and history == '< 12 quarters'")
    assert short["rows"].tolist() == [0]  # 48 quarters: no short series, said in words
    assert "by history: < 12 quarters no rows, >= 12 quarters 0." in " ".join(
        result.output.split())
    every = by_length[by_length["history"] == "all"].set_index("method")["rows"]
    assert (every == len(forecasts) // forecasts["method"].nunique()).all()
    assert set(forecasts["method"]) >= {"territory", "lightgbm", "auto_ets", "auto_theta"}
    assert forecasts["unit_id"].str.startswith("u").all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == len(set(forecasts["method"])) * 5  # all + 4 horizons


def test_cli_reads_quarter_strings_ragged_series_zeros_and_numeric_looking_ids(tmp_path):
    """The reviewers' form (QS, quarters written '1998 Q1'), on an untidy panel: series of
    different lengths, zeros, one too short to score, ids such as '007' kept as text."""
    sales = _sales("QS", 48, n_units=5, short_unit=6)
    sales["unit_id"] = sales["unit_id"].replace({"u0": "007", "u1": "7"})
    sales = sales[~((sales["unit_id"] == "u2") & (sales["period"] < "2004-01-01"))]
    sales.loc[sales.index[::7], "sales"] = 0.0
    quarters = sales["period"].dt.year.astype(str) + " Q" + sales["period"].dt.quarter.astype(str)
    path = _write(tmp_path, sales.assign(period=quarters))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["backtest", "--sales", str(path), "--frequency", "QS",
                                      "--horizon", "4", "--windows", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_csv(out / "forecasts.csv", dtype={"unit_id": str})
    assert {"007", "7", "u2"} <= set(forecasts["unit_id"])
    assert pd.to_datetime(forecasts["period"]).dt.is_quarter_start.all()
    skipped = pd.read_csv(out / "skipped.csv", dtype={"unit_id": str})
    assert set(skipped["unit_id"]) == {"short"}
    assert set(skipped["reason"]) == {"no sales before the origin",
                                      "2 periods of history before the origin; the MASE scale "
                                      "needs more than 4"}


def test_every_quarter_spelling_is_its_first_day_and_other_text_is_untouched():
    from territory.features._dates import parse_dates

    text = pd.Series(["1998 Q1", "1998Q2", "1998-Q3", "1998 q4", "Q1 1999", "Q2-1999", None])
    parsed, problem = parse_dates(text, "period")
    assert problem is None
    expected = ["1998-01-01", "1998-04-01", "1998-07-01", "1998-10-01", "1999-01-01",
                "1999-04-01"]
    assert parsed.iloc[:6].tolist() == pd.to_datetime(expected).tolist()
    assert pd.isna(parsed.iloc[6])
    _, problem = parse_dates(pd.Series(["1998 Q1", "1998 Q0"]), "period")
    assert problem is not None and problem.positions.tolist() == [1]


def test_a_quarter_out_of_range_is_refused_with_its_row(tmp_path):
    sales = _sales("QS", 40, n_units=2)
    quarters = sales["period"].dt.year.astype(str) + "Q" + sales["period"].dt.quarter.astype(str)
    path = _write(tmp_path, sales.assign(period=quarters.where(sales.index != 5, "2003Q5")))
    result = CliRunner().invoke(app, ["backtest", "--sales", str(path), "--frequency", "QS",
                                      "--horizon", "4", "--windows", "1",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "period" in result.output and "line 7" in result.output and "2003Q5" in result.output


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="sales"), "sales"),
    (lambda f: f.assign(sales=-1.0), "sales"),
    (lambda f: f.assign(period="not a date"), "period"),
])
def test_cli_bad_files_are_refused_with_the_file_and_column(tmp_path, change, message):
    path = _write(tmp_path, change(_sales("QS", 40)))
    result = CliRunner().invoke(app, ["backtest", "--sales", str(path), "--frequency", "QS",
                                      "--horizon", "4", "--windows", "1",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert str(path) in result.output and message in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, flag", [
    (["--frequency", "MS", "--unit-col", "store"], "pass --frequency QS"),
    (["--frequency", "QS", "--unit-col", "shop"], "--unit-col, --time-col or --target-col"),
])
def test_cli_errors_name_the_flags_that_fix_them_not_config_settings(tmp_path, args, flag):
    sales = _sales("QS", 40).rename(columns={"unit_id": "store"})
    path = _write(tmp_path, sales)
    result = CliRunner().invoke(app, ["backtest", "--sales", str(path), "--horizon", "4",
                                      "--out", str(tmp_path / "r"), *args])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and flag in said, said
    assert "features.frequency" not in said and "columns config" not in said


def test_cli_refuses_an_unknown_frequency_and_bad_numbers(tmp_path):
    path = _write(tmp_path, _sales("QS", 40))
    base = ["backtest", "--sales", str(path), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*base, "--frequency", "Q", "--horizon", "4"])
    assert result.exit_code == 2 and "YS, QS, MS, W-MON" in result.output
    result = CliRunner().invoke(app, [*base, "--frequency", "QS", "--horizon", "0"])
    assert result.exit_code == 2 and "--horizon" in result.output
    missing = CliRunner().invoke(app, ["backtest", "--sales", str(tmp_path / "nope.csv"),
                                       "--frequency", "QS", "--horizon", "4"])
    assert missing.exit_code == 2 and "file not found" in missing.output


def test_the_gate_publishes_the_combination_only_when_it_beats_every_member():
    # a and b err in opposite directions: their mean beats both, so it is published
    frame = _predictions({"forecast": [2.0, 2.0], "b": [-2.0, -2.2]})
    published, combined = combination.choose_published(frame, ["b"], 1, 12, "MS", 0.8)
    assert published.method == combination.COMBINED and published.gate["passed"]
    assert published.needs_members
    assert list(published.intervals.columns) == ["short_lo", "short_hi", "long_lo", "long_hi"]
    np.testing.assert_allclose(published.weights.sum(axis=1), 1.0)
    assert combination.COMBINED in combined
    # b is far better and errs on the same side: b alone, one-hot weights
    frame = _predictions({"forecast": [4.0, 4.0], "b": [1.0, 1.0]})
    published, _ = combination.choose_published(frame, ["b"], 1, 12, "MS", 0.8)
    assert published.method == "b" and not published.gate["passed"]
    assert published.weights.loc[1].to_dict() == {"forecast": 0.0, "b": 1.0}
    assert published.name == "b" and published.describe() == "b 1.00"
    assert published.intervals is None  # a member alone keeps its own interval
    # LightGBM far better: LightGBM alone, and no member needs refitting at scoring
    frame = _predictions({"forecast": [0.5, 0.5], "b": [3.0, 3.0]})
    published, _ = combination.choose_published(frame, ["b"], 1, 12, "MS", 0.8)
    assert published.name == "lightgbm" and not published.needs_members




def _errors_frame(rng, n_long: int, n_short: dict[int, int]) -> pd.DataFrame:
    """Forecast 100; actual = 100·exp(e), e ~ N(0, σ), σ growing with h, 4× on short series."""
    rows = []
    for h in (1, 2):
        for short, n in ((False, n_long), (True, n_short[h])):
            sigma = 0.05 * h * (4 if short else 1)
            rows.append(pd.DataFrame({"horizon": h, "history_periods": 10 if short else 100,
                                      "territory": 100.0,
                                      "actual": 100.0 * np.exp(rng.normal(0, sigma, n))}))
    return pd.concat(rows, ignore_index=True)


def test_conformal_intervals_cover_short_and_long_series_per_horizon():
    rng = np.random.default_rng(0)
    # short series: enough errors at h=1, too few at h=2 (that horizon borrows from all)
    earlier = _errors_frame(rng, 400, {1: 120, 2: 10})
    table = combination.conformal_table(earlier, "territory", 0.8, 2, short_periods=36)
    assert (table["short_hi"] > table["long_hi"]).all()  # short series get wider intervals
    assert table.loc[2, "long_hi"] > table.loc[1, "long_hi"]  # and later horizons too
    fresh = _errors_frame(rng, 4000, {1: 4000, 2: 4000})
    lo, hi = combination.conformal_bounds(fresh, "territory", table, 36,
                                          np.full(len(fresh), np.nan), np.full(len(fresh), np.nan))
    inside = (fresh["actual"] >= lo) & (fresh["actual"] <= hi)
    by = inside.groupby([fresh["history_periods"] < 36, fresh["horizon"]]).mean()
    assert by.loc[(False, 1)] == pytest.approx(0.8, abs=0.05)
    assert by.loc[(False, 2)] == pytest.approx(0.8, abs=0.05)
    assert by.loc[(True, 1)] == pytest.approx(0.8, abs=0.06)
    assert by.loc[(True, 2)] >= 0.7  # the fallback
    # a horizon the table lacks keeps the given bounds
    lo, _ = combination.conformal_bounds(fresh.assign(horizon=3), "territory", table, 36,
                                         np.full(len(fresh), -1.0), np.zeros(len(fresh)))
    assert (lo == -1.0).all()


def _drifting(rng, sigmas: list[float], n: int = 300) -> pd.DataFrame:
    """One origin per sigma (a year apart), horizon 1: forecast 100, log error ~ N(0, sigma)."""
    origins = pd.date_range("2015-01-01", periods=len(sigmas), freq="YS")
    return pd.concat([pd.DataFrame({
        "origin": origin, "target_period": origin + pd.DateOffset(months=1), "horizon": 1,
        "history_periods": 100, "territory": 100.0,
        "actual": 100.0 * np.exp(rng.normal(0, sigma, n))})
        for origin, sigma in zip(origins, sigmas, strict=True)], ignore_index=True)


def test_adaptive_level_follows_the_drift_of_the_errors_and_is_nominal_without_it():
    rng = np.random.default_rng(0)
    steady = combination.adaptive_level(_drifting(rng, [0.1] * 4), "territory", 0.8, 1)
    assert steady == pytest.approx(0.8, abs=0.05)
    # errors growing from origin to origin: the nominal quantile under-covers, so it widens
    growing = combination.adaptive_level(_drifting(rng, [0.05, 0.08, 0.12, 0.18]), "territory",
                                         0.8, 1)
    shrinking = combination.adaptive_level(_drifting(rng, [0.18, 0.12, 0.08, 0.05]),
                                           "territory", 0.8, 1)
    assert growing > 0.88 and shrinking < 0.72
    # the chosen level's coverage at the earlier origins (each from those before it) beats
    # the nominal level's, computed here the long way
    rows = _drifting(np.random.default_rng(1), [0.05, 0.08, 0.12, 0.18])

    def cover(q):
        inside = []
        for origin in sorted(rows["origin"].unique())[1:]:
            table = combination.conformal_table(rows[rows["origin"] < origin], "territory", q, 1)
            at = rows[rows["origin"] == origin]
            lo, hi = combination.conformal_bounds(at, "territory", table, None,
                                                  np.full(len(at), np.nan),
                                                  np.full(len(at), np.nan))
            inside.append((at["actual"] >= lo) & (at["actual"] <= hi))
        return pd.concat(inside).mean()

    chosen = combination.adaptive_level(rows, "territory", 0.8, 1)
    assert abs(cover(chosen) - 0.8) < abs(cover(0.8) - 0.8)
    # one origin (nothing to score it on) or none: the nominal level
    assert combination.adaptive_level(rows[rows["origin"] == rows["origin"].min()],
                                      "territory", 0.8, 1) == 0.8


def test_adaptive_intervals_of_an_origin_do_not_see_its_own_actuals():
    rng = np.random.default_rng(2)
    frame = _drifting(rng, [0.05, 0.08, 0.12, 0.18], n=100)
    frame = frame.assign(unit_id=np.tile(np.arange(100), 4).astype(str), scale=1.0,
                         a=frame["territory"], a_lo=90.0, a_hi=110.0).drop(columns="territory")
    out, _ = combination.add_combination(frame, ["a"], 1, level=0.8, short_periods=36)
    last = frame["origin"] == frame["origin"].max()
    shocked = frame.assign(actual=np.where(last, 1e6, frame["actual"]))
    moved, _ = combination.add_combination(shocked, ["a"], 1, level=0.8, short_periods=36)
    np.testing.assert_array_equal(out["territory_hi"], moved["territory_hi"])
    # and the intervals widen with the drift: the last origin's are wider than pooled ones
    pooled, _ = combination.add_combination(frame, ["a"], 1, level=0.8, short_periods=36,
                                            adaptive=False)
    assert (out.loc[last, "territory_hi"] > pooled.loc[last, "territory_hi"]).all()


def test_a_published_combination_reads_its_quantiles_at_the_adaptive_level():
    frame = _drifting(np.random.default_rng(3), [0.01, 0.02, 0.04, 0.08], n=100)
    frame = frame.assign(unit_id=np.tile(np.arange(100), 4).astype(str), scale=1.0,
                         forecast=110.0, forecast_lo=100.0, forecast_hi=120.0,
                         b=90.0, b_lo=80.0, b_hi=100.0).drop(columns="territory")
    adapted, _ = combination.choose_published(frame, ["b"], 1, 12, "MS", 0.8, short_periods=36)
    pooled, _ = combination.choose_published(frame, ["b"], 1, 12, "MS", 0.8, short_periods=36,
                                             adaptive=False)
    assert adapted.method == pooled.method == combination.COMBINED
    # errors that grow from origin to origin: a wider interval than the nominal quantiles
    assert adapted.intervals.loc[1, "long_hi"] > pooled.intervals.loc[1, "long_hi"]
    assert adapted.intervals.loc[1, "long_lo"] < pooled.intervals.loc[1, "long_lo"]


def test_each_horizon_gets_its_own_adaptive_level():
    rng = np.random.default_rng(4)
    steady = _drifting(rng, [0.1] * 4)
    growing = _drifting(rng, [0.05, 0.08, 0.12, 0.18]).assign(horizon=2)
    rows = pd.concat([steady, growing], ignore_index=True)
    table = combination.adaptive_table(rows, "territory", 0.8, 2)
    low, high = table.attrs["levels"]
    assert low == pytest.approx(0.8, abs=0.05) and high > 0.88
    # each horizon's quantiles are those of its own errors at its own level
    alone = combination.conformal_table(growing, "territory", high, 2)
    np.testing.assert_allclose(table.loc[2], alone.loc[2])
    assert list(table.index) == [1, 2]
