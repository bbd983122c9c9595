"""Realised accuracy, drift and alert rules on hand-written frames (the flows: test_flows)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from territory.features import drift
from territory.features.config import ColumnsConfig
from territory.features.errors import InputError
from territory.models import monitoring as mon
from territory.models.config import AlertRules
from territory.pipelines import monitoring

COLS = ColumnsConfig()
JAN, FEB, MAR = (pd.Timestamp(f"2025-0{m}-01") for m in (1, 2, 3))


def forecasts(as_of=JAN, source="nightly") -> pd.DataFrame:
    """Two units in territories A and B, forecast as of ``as_of`` for the next two months."""
    rows = []
    for unit, territory, f in (("u1", "A", 10.0), ("u2", "B", 20.0)):
        for h in (1, 2):
            rows.append({"run_name": "r", "source": source, "as_of": as_of,
                         "model_version": "3", "unit_id": unit, "horizon": h,
                         "target_period": as_of + pd.DateOffset(months=h), "forecast": f,
                         "forecast_lo": f - 2, "forecast_hi": f + 2, "territory_id": territory})
    return pd.DataFrame(rows)


ACTUALS = pd.DataFrame({"unit_id": ["u1", "u2", "u1", "u2"], "period": [FEB, FEB, MAR, MAR],
                        "sales": [12.0, 20.0, 8.0, 30.0]})


def row(table, level, horizon=None, territory=None):
    pick = table["level"] == level
    pick &= table["horizon"].isna() if horizon is None else table["horizon"] == horizon
    by_territory = table["territory_id"] == territory
    pick &= table["territory_id"].isna() if territory is None else by_territory
    assert pick.sum() == 1
    return table[pick].iloc[0]


def test_realised_accuracy_by_level_with_only_the_actuals_so_far():
    promises = mon.promise_table({("r", "nightly", JAN): mon.promised_accuracy(
        {"valid_wape": 0.1, "valid_wape_h01": 0.05, "valid_coverage": 0.8}, 2)})
    table = mon.realised_accuracy(forecasts(), ACTUALS, COLS, FEB, promises)
    # only February is known on Feb 1: horizon 1, |12-10| + |20-20| over 32
    assert set(table["level"]) == set(mon.LEVELS) and table["horizon"].dropna().eq(1).all()
    overall = row(table, "overall")
    assert overall["wape"] == pytest.approx(2 / 32) and overall["bias"] == pytest.approx(-2 / 32)
    assert overall["coverage"] == 1.0 and overall["months_observed"] == 1
    # held to the promise of the horizons observed: horizon 1's
    assert overall["promised_wape"] == 0.05 and overall["wape_vs_promised"] == pytest.approx(
        (2 / 32) / 0.05 - 1)
    assert row(table, "horizon", 1)["promised_wape"] == 0.05
    assert row(table, "territory", territory="A")["wape"] == pytest.approx(2 / 12)
    assert row(table, "territory", territory="B")["wape"] == 0.0

    later = mon.realised_accuracy(forecasts(), ACTUALS, COLS, MAR, promises)
    overall = row(later, "overall")  # + March: |8-10| + |30-20| -> 14 over 70
    assert overall["wape"] == pytest.approx(14 / 70) and overall["months_observed"] == 2
    assert overall["coverage"] == pytest.approx(0.75)  # 8 sits on u1's lower bound
    # horizon 2 has no promise of its own: the overall 10%; weighted by actuals 32 and 38
    assert overall["promised_wape"] == pytest.approx((0.05 * 32 + 0.1 * 38) / 70)
    assert overall["promised_coverage"] == pytest.approx(0.8)
    # territory totals per month: A |12-10|,|8-10|, B 0,|30-20| -> 14 over 70 as well
    assert overall["territory_wape"] == pytest.approx(14 / 70)
    assert row(later, "horizon", 2)["wape"] == pytest.approx(12 / 38)
    assert row(later, "horizon_territory", 2, "B")["bias"] == pytest.approx(-10 / 30)


def test_realised_accuracy_ignores_row_order_and_is_empty_without_actuals():
    table = mon.realised_accuracy(forecasts(), ACTUALS, COLS, MAR)
    shuffled = mon.realised_accuracy(forecasts().sample(frac=1, random_state=1),
                                     ACTUALS.sample(frac=1, random_state=2), COLS, MAR)
    pd.testing.assert_frame_equal(table, shuffled)
    assert mon.realised_accuracy(forecasts(), ACTUALS, COLS, JAN).empty


def test_merge_history_replaces_what_was_measured_again_and_keeps_the_rest():
    first = mon.realised_accuracy(pd.concat([forecasts(JAN), forecasts(FEB)]), ACTUALS, COLS,
                                  FEB)
    assert set(first["as_of"]) == {JAN}  # nothing after February is known yet
    later = mon.realised_accuracy(pd.concat([forecasts(JAN), forecasts(FEB)]), ACTUALS, COLS,
                                  MAR)
    merged = mon.merge_history(first, later)
    assert set(merged["as_of"]) == {JAN, FEB}
    assert row(merged[merged["as_of"] == JAN], "overall")["months_observed"] == 2
    backfill = mon.realised_accuracy(forecasts(JAN, "backfill"), ACTUALS, COLS, MAR)
    both = mon.merge_history(merged, backfill)
    assert len(both) == len(merged) + len(backfill)
    assert list(mon.overall_history(both)["source"]) == ["nightly", "nightly"]


def test_horizon_summary_pools_the_forecasts_like_one_wape_over_their_rows():
    promises = mon.promise_table({
        ("r", "nightly", JAN): mon.promised_accuracy(
            {"valid_wape": 0.1, "valid_wape_h01": 0.05, "valid_coverage": 0.8}, 2),
        ("r", "nightly", FEB): mon.promised_accuracy(
            {"valid_wape": 0.3, "valid_wape_h01": 0.2, "valid_coverage": 0.6}, 2)})
    both = pd.concat([forecasts(JAN), forecasts(FEB)], ignore_index=True)
    history = mon.realised_accuracy(both, ACTUALS, COLS, MAR, promises)
    summary = mon.horizon_summary(history).set_index("horizon")
    # the naive oracle: every forecast row with its actual, one WAPE per horizon
    joined = both.merge(ACTUALS.rename(columns={"period": "target_period", "sales": "actual"}),
                        on=["unit_id", "target_period"])
    for h, rows in joined.groupby("horizon"):
        assert summary.loc[h, "wape"] == pytest.approx(
            (rows["actual"] - rows["forecast"]).abs().sum() / rows["actual"].sum())
        inside = (rows["actual"] >= rows["forecast_lo"]) & (rows["actual"] <= rows["forecast_hi"])
        assert summary.loc[h, "coverage"] == pytest.approx(inside.mean())
        assert summary.loc[h, "forecasts"] == rows["as_of"].nunique()
    assert list(summary.index) == [1, 2] and summary.loc[1, "wape"] == pytest.approx(14 / 70)
    # promises weighted like the errors: January's 5% on 32 of sales, February's 20% on 38
    assert summary.loc[1, "promised_wape"] == pytest.approx((0.05 * 32 + 0.2 * 38) / 70)
    assert summary.loc[2, "promised_wape"] == pytest.approx(0.1)  # only January has h2
    assert summary.loc[1, "promised_coverage"] == pytest.approx(0.7)
    assert mon.horizon_summary(history[history["level"] == "overall"]).empty


def test_backfill_retrains_every_n_months_only():
    from territory.pipelines.deploy import retrain_due

    model = {"as_of": "2025-01-01", "version": "1"}
    assert retrain_due(None, pd.Timestamp("2025-03-01"), 3)
    assert not retrain_due(model, pd.Timestamp("2025-03-01"), 3)
    assert retrain_due(model, pd.Timestamp("2025-04-01"), 3)
    assert retrain_due(model, pd.Timestamp("2025-02-01"), 1)
    assert not retrain_due(model, pd.Timestamp("2025-01-01"), 1)


# --- drift ------------------------------------------------------------------------------------

def test_psi_is_zero_on_the_same_values_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(ref, rng.normal(size=5000)) < 0.02  # another sample of the same law
    small, large = drift.psi(ref, ref + 0.2), drift.psi(ref, ref + 1.0)
    assert 0.02 < small < 0.25 < large
    assert drift.psi(ref, rng.permutation(ref + 1.0)) == pytest.approx(large)  # order-free
    assert drift.psi(np.r_[ref, np.nan], np.r_[ref + 1.0, np.nan]) == pytest.approx(large)
    assert np.isnan(drift.psi(ref, np.array([np.nan])))
    assert drift.ks_statistic(ref, ref + 5.0) > 0.95 and drift.ks_statistic(ref, ref) == 0.0
    # a feature with two values (binary) gets two bins, not ten empty ones
    binary = np.r_[np.zeros(900), np.ones(100)]
    assert drift.psi(binary, binary) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(binary, np.r_[np.zeros(500), np.ones(500)]) > 0.25


def _reference(rng, n=2000):
    market = pd.DataFrame({"population": rng.lognormal(10, 1, n), "income": rng.normal(50, 5, n)})
    sales = pd.DataFrame({"sales_lag_1": rng.gamma(2, 100, n)})
    units = [f"u{i}" for i in range(n)]
    ref = drift.build_reference({"market": market, "forecast": sales}, units,
                                {"zero_share": 0.01, "zero_coded_units": 0.0},
                                pd.Timestamp("2025-01-01"), 1000, seed=0,
                                schema_tables={"demographics": market.assign(unit_id=units)})
    return ref, market, sales, units


def test_drift_table_names_the_shifted_column_and_nothing_else():
    ref, market, sales, units = _reference(np.random.default_rng(1))
    assert len(ref.tables["market"]) == 1000 and ref.columns["demographics"]["unit_id"] == "object"
    fresh = np.random.default_rng(2)
    same = {"market": pd.DataFrame({"population": fresh.lognormal(10, 1, 2000),
                                    "income": fresh.normal(50, 5, 2000)}),
            "forecast": pd.DataFrame({"sales_lag_1": fresh.gamma(2, 100, 2000)})}
    quiet = drift.drift_table(ref, same, 5000, seed=0)
    assert (quiet["psi"] < 0.1).all() and len(quiet) == 3
    moved = {**same, "market": same["market"].assign(income=same["market"]["income"] + 5)}
    table = drift.drift_table(ref, moved, 5000, seed=0)
    top = table.iloc[0]
    assert (top["table"], top["feature"]) == ("market", "income") and top["psi"] > 0.25
    assert top["mean_change"] == pytest.approx(0.1, abs=0.01)
    assert (table["psi"].iloc[1:] < 0.1).all()


def test_schema_changes_list_new_missing_and_retyped_columns_and_units():
    ref, market, _, units = _reference(np.random.default_rng(1))
    demo = market.assign(unit_id=units).drop(columns="income").assign(
        population=lambda d: d["population"].astype(str), households=1.0)
    changes = drift.schema_changes(ref, {"demographics": demo}, units[3:] + ["new1"])
    found = {(r.table, r.name, r.change) for r in changes.itertuples()}
    assert ("demographics", "households", "new") in found
    assert ("demographics", "income", "missing") in found
    assert ("demographics", "population", "type float64 -> object") in found
    assert ("units", "new1", "1 new since training") in found
    assert ("units", "u0, u1, u2", "3 missing since training") in found
    same = market.assign(unit_id=units, income=market["income"].astype("float32"))
    assert drift.schema_changes(ref, {"demographics": same}, units).empty  # float32 is a number


def test_data_quality_counts_zeros_gaps_and_zero_coded_units():
    periods = pd.date_range("2021-01-01", periods=48, freq="MS")
    sales = pd.DataFrame({"unit_id": np.repeat(["a", "b"], 48), "period": np.tile(periods, 2),
                          "sales": np.r_[np.full(48, 5.0), np.full(36, 5.0), np.zeros(12)]})
    sales = sales.drop(index=[0])  # one missing month, long before the last year
    quality = drift.data_quality(sales, ["a", "b"], COLS, 12, periods[-1], "MS")
    assert quality == {"zero_share": 0.5, "missing_share": 0.0, "zero_coded_units": 1.0}
    before = drift.data_quality(sales, ["a", "b"], COLS, 12, periods[35], "MS")
    assert before == {"zero_share": 0.0, "missing_share": 0.0, "zero_coded_units": 0.0}
    short = drift.data_quality(sales[sales["period"] != periods[-1]], ["a", "b"], COLS, 12,
                               periods[-1], "MS")
    assert short["missing_share"] == pytest.approx(2 / 24)


# --- alert rules ------------------------------------------------------------------------------

def _overall(wapes, promised=0.10, coverage=0.8):
    rows = [{"run_name": "r", "source": "nightly", "as_of": pd.Timestamp(f"2025-0{i + 1}-01"),
             "level": "overall", "horizon": pd.NA, "territory_id": None, "months_observed": 3,
             "wape": w, "promised_wape": promised, "wape_vs_promised": w / promised - 1,
             "coverage": coverage} for i, w in enumerate(wapes)]
    return pd.DataFrame(rows).reindex(columns=mon.ACCURACY_COLUMNS)


def test_realised_wape_rule_needs_n_runs_in_a_row_and_coverage_its_floor():
    rules = AlertRules(wape_excess=0.25, wape_runs=2, coverage_floor=0.5)
    assert mon.accuracy_alerts(_overall([0.11, 0.14]), rules) == []  # one run worse only
    fired = mon.accuracy_alerts(_overall([0.13, 0.14]), rules)
    assert [a.rule for a in fired] == ["realised_wape"]
    assert fired[0].value == pytest.approx(0.4) and fired[0].detail["wape"] == [0.13, 0.14]
    assert mon.accuracy_alerts(_overall([0.20, 0.13, 0.12]), rules) == []  # not the last two
    low = mon.accuracy_alerts(_overall([0.1], coverage=0.4), rules)
    assert [(a.rule, a.value) for a in low] == [("coverage", 0.4)]
    off = AlertRules(wape_excess=None, coverage_floor=None)
    assert mon.accuracy_alerts(_overall([0.5, 0.5], coverage=0.1), off) == []
    assert mon.accuracy_alerts(None, rules) == []


def test_input_rules_fire_on_the_injected_drift_only():
    ref, market, sales, units = _reference(np.random.default_rng(1))
    rules = AlertRules()
    fresh = np.random.default_rng(3)
    now = {"market": pd.DataFrame({"population": fresh.lognormal(10, 1, 2000),
                                   "income": fresh.normal(50, 5, 2000)}),
           "forecast": pd.DataFrame({"sales_lag_1": fresh.gamma(2, 100, 2000)})}
    schema = {"demographics": market.assign(unit_id=units)}

    def fired(tables, quality):
        table = drift.drift_table(ref, tables, 5000, seed=0)
        changes = drift.schema_changes(ref, schema, units)
        return {(a.rule, a.subject) for a in mon.input_alerts(table, changes, quality,
                                                              ref.quality, rules)}

    assert fired(now, dict(ref.quality)) == set()  # no injection: nothing fires
    shifted = {**now, "market": now["market"].assign(income=now["market"]["income"] * 1.25)}
    assert fired(shifted, dict(ref.quality)) == {("drift", "market.income")}
    zeros = now["forecast"].copy()
    zeros.iloc[:400] = 0.0  # a block of units reporting zeros
    # 20% zeros move the lowest decile bin only (PSI about 0.2): the zeros rules catch it
    found = fired({**now, "forecast": zeros}, {"zero_share": 0.2, "zero_coded_units": 40.0})
    assert {("zeros", "sales"), ("zero_coded", "sales")} <= found
    assert not {subject for _, subject in found if subject.startswith("market.")}


def test_monitoring_config_is_checked_once_with_words(tmp_path, demo_slice_dir):
    from territory.pipelines.config import load_config
    from tests.conftest import write_slice_config

    ok = load_config(write_slice_config(demo_slice_dir, tmp_path / "ok"))
    assert ok.monitoring.alerts.drift_psi == 0.25 and ok.monitoring.webhook is None
    for section, words in (({"alerts": {"coverage_floor": 0.9}}, "below forecast.interval"),
                           ({"webhook": "ftp://x"}, "not an http(s) URL"),
                           ({"alerts": {"drift": 0.1}}, "monitoring.alerts.drift")):
        path = write_slice_config(demo_slice_dir, tmp_path / "bad", monitoring=section)
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_config(path)


# --- the pipeline's history: published folders, skipping, rewriting --------------------------

def _publish(workspace, kind, name, as_of, version="3"):
    folder = workspace / kind / f"{name}-{as_of:%Y-%m-%d}"
    folder.mkdir(parents=True)
    rows = forecasts(as_of).drop(columns=["run_name", "source", "model_version"])
    rows.drop(columns="territory_id").to_parquet(folder / "scores.parquet")
    rows[["unit_id", "territory_id"]].drop_duplicates().to_parquet(folder / "alignment.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "model": {"version": version},
        "monitoring": monitoring.promise({"valid_wape": 0.1, "valid_coverage": 0.8}, 2)}))
    return folder


def test_history_finds_the_published_forecasts_and_measures_each_once(tmp_path, demo_slice_dir):
    from territory.pipelines.config import load_config
    from tests.conftest import write_slice_config

    config = load_config(write_slice_config(demo_slice_dir, tmp_path / "ws", run_name="r"))
    ws = Path(config.workspace)
    _publish(ws, "nightly", "r", JAN)
    _publish(ws, "backfill", "r-backfill", JAN)
    _publish(ws, "nightly", "other", JAN)  # another run name
    _publish(ws, "nightly", "r", MAR)  # made after February: not measured on Feb 1
    found = [(p.source, p.as_of) for p in monitoring.published_forecasts(config, FEB)]
    assert found == [("nightly", JAN), ("backfill", JAN)]
    first = monitoring.measure(config, ACTUALS, FEB)
    assert set(first["source"]) == {"nightly", "backfill"}
    assert (first["actuals_through"] == FEB).all()
    monitoring.save_accuracy(config, first)
    assert monitoring.measure(config, ACTUALS, FEB).empty  # nothing new since
    later = monitoring.measure(config, ACTUALS, MAR)
    history = monitoring.save_accuracy(config, later)
    overall = history[history["level"] == "overall"]
    assert list(overall["months_observed"]) == [2, 2]
    assert len(history) == 2 * 9  # replaced: 1 + 2 horizons + 2 territories + 4, per source
    # a re-published forecast (another model version) is measured again
    shutil.rmtree(ws / "nightly" / "r-2025-01-01")
    _publish(ws, "nightly", "r", JAN, version="4")
    again = monitoring.measure(config, ACTUALS, MAR)
    assert set(again["model_version"]) == {"4"} and set(again["source"]) == {"nightly"}
    # a damaged table stops nothing: the report says what to do
    monitoring.accuracy_path(config).write_text("not parquet")
    with pytest.raises(InputError, match="delete it"):
        monitoring.read_accuracy(config)


def test_sales_features_are_compared_with_the_same_season_of_training(tmp_path, demo_slice_dir):
    from territory.pipelines.config import load_config
    from tests.conftest import write_slice_config

    config = load_config(write_slice_config(demo_slice_dir, tmp_path / "ws"))
    origins = pd.date_range("2023-01-01", periods=36, freq="MS")
    assert list(monitoring.season_position(origins[:13], config)) == [*range(12), 0]
    rng = np.random.default_rng(0)
    # December sales twice the rest of the year: seasonality, not drift
    level = np.where(np.repeat(origins.month, 200) == 12, 2.0, 1.0)
    rows = pd.DataFrame({"sales_lag_1": level * rng.gamma(5, 100, len(level)),
                         monitoring.SEASON: monitoring.season_position(
                             np.repeat(origins, 200), config)})
    ref = drift.build_reference({"forecast": rows}, [], {}, origins[-1], 10_000, seed=0)
    december = {"forecast": pd.DataFrame({"sales_lag_1": 2.0 * rng.gamma(5, 100, 200)})}
    whole_year = drift.drift_table(ref, december, 10_000, seed=0)
    assert whole_year["psi"].iloc[0] > 1.0  # against every month: looks like a huge shift
    seasonal = drift.drift_table(monitoring.same_season(ref, config, pd.Timestamp("2025-12-01")),
                                 december, 10_000, seed=0)
    assert seasonal["psi"].iloc[0] < 0.1 and list(seasonal["feature"]) == ["sales_lag_1"]
