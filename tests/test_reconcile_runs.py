"""Coherent forecasts in the runs that choose no method themselves (issue #14, item 4):
scoring runs apply their champion's method, and runs with sales forces reconcile each
force's hierarchy. Code tests on hand-made panels here; the flows in
``tests/test_reconcile_flows.py``."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from territory.models.reconcile import build_hierarchy, check_coherent
from territory.models.reconcile_runs import (
    ChampionChoice,
    backtest_forecasts,
    force_backtest,
    force_history,
    reconcile_with,
)
from tests.test_reconcile import _alignment, _panel

HORIZON = 3


def _backtest(history: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """Noisy forecasts of every unit at two origins (what a training run keeps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for origin in history.columns[[-10, -7, -4]]:
        t = history.columns.get_loc(origin)
        for unit in history.index:
            for k in range(1, HORIZON + 1):
                rows.append({"unit_id": unit, "origin": origin, "horizon": k,
                             "lightgbm": history.loc[unit].iloc[t] * rng.lognormal(0, 0.3)})
    return backtest_forecasts(pd.DataFrame(rows), "lightgbm")


def _scores(history: pd.DataFrame) -> pd.DataFrame:
    as_of = history.columns[-1]
    return pd.DataFrame([
        {"unit_id": u, "horizon": k, "target_period": as_of + pd.DateOffset(months=k),
         "forecast": history.loc[u].iloc[-1], "forecast_lo": 0.8 * history.loc[u].iloc[-1],
         "forecast_hi": 1.2 * history.loc[u].iloc[-1]}
        for u in history.index for k in range(1, HORIZON + 1)])


@pytest.fixture
def setting():
    history = _panel()
    align = _alignment(n_units=9, n_terr=3, seed=4)
    h = build_hierarchy(align, history.index, region_col="region")
    return h, history, align, _scores(history), _backtest(history)


def test_the_champion_s_mintrace_method_is_applied_coherent_and_not_bottom_up(setting):
    h, history, align, scores, backtest = setting
    kw = {"season": 12, "frequency": "MS"}
    out, record = reconcile_with(h, scores, history, backtest, "wls_struct", chosen_in="run1",
                                 **kw)
    assert record.method == "wls_struct" and record.chosen_in == "run1"
    assert record.fallback is None and record.table is None
    terr_of = align.set_index("unit_id")["territory_id"]
    assert check_coherent(record.nodes, terr_of, "unit", "territory") < 1e-9
    sums = out.assign(t=out["unit_id"].map(terr_of)).groupby(["t", "horizon"])["forecast"].sum()
    terr = record.nodes[record.nodes["level"] == "territory"].set_index(["node", "horizon"])
    np.testing.assert_allclose(sums.to_numpy(), terr["forecast"].reindex(sums.index), rtol=1e-9)
    # reconciled: the units moved away from their (BottomUp) forecasts
    assert np.abs(out["forecast"].to_numpy() - scores["forecast"].to_numpy()).max() > 1e-3
    # the aggregates' intervals are calibrated on the kept backtest forecasts
    upper = record.nodes[record.nodes["level"] != "unit"]
    assert upper["forecast_lo"].notna().all()
    assert (upper["forecast_lo"] <= upper["forecast"] + 1e-9).all()
    assert (upper["forecast"] <= upper["forecast_hi"] + 1e-9).all()
    # the base forecast of each aggregate is refitted on this run's history
    assert (upper["base_forecast"] != upper["forecast"]).any()


def test_a_champion_without_a_method_or_its_errors_publishes_bottom_up(setting):
    h, history, _, scores, backtest = setting
    kw = {"season": 12, "frequency": "MS", "chosen_in": "old"}
    out, record = reconcile_with(h, scores, history, None, None, **kw)
    assert (record.method, record.fallback) == ("bottom_up", "untagged")
    pd.testing.assert_frame_equal(out, scores)
    assert record.nodes.loc[record.nodes["level"] != "unit", "forecast_lo"].isna().all()
    _, kept = reconcile_with(h, scores, history, backtest, None, **kw)
    assert kept.nodes.loc[kept.nodes["level"] != "unit", "forecast_lo"].notna().all()
    out, record = reconcile_with(h, scores, history, None, "mint_shrink", **kw)
    assert (record.method, record.fallback) == ("bottom_up", "no_errors")
    pd.testing.assert_frame_equal(out, scores)
    _, record = reconcile_with(h, scores, history, backtest, "mint_shrink", **kw)
    assert (record.method, record.fallback) == ("mint_shrink", None)
    # a champion trained on later data than this run's (a backfill): origins it lacks drop
    early = history.iloc[:, :-8]
    _, record = reconcile_with(h, _scores(early), early, backtest, "mint_shrink", **kw)
    assert (record.method, record.fallback) == ("mint_shrink", None)  # the 1st origin is left
    _, record = reconcile_with(h, _scores(early), early.iloc[:, :-3], backtest, "mint_shrink",
                               **kw)
    assert (record.method, record.fallback) == ("bottom_up", "no_errors")


def test_a_force_s_backtest_share_uses_no_sales_after_the_origin():
    total = _panel(n_units=3, n_periods=30, seed=1)
    rng = np.random.default_rng(2)
    own = total * rng.uniform(0.2, 0.8, size=total.shape)
    own.iloc[0, 5] = np.nan  # sold, but nothing of this force: 0 for it
    own = force_history(own, total)
    assert own.iloc[0, 5] == 0.0
    origin = total.columns[20]
    backtest = pd.DataFrame({"unit_id": list(total.index), "origin": origin, "horizon": 1,
                             "forecast": [10.0, 20.0, 30.0]})
    out = force_backtest(backtest, own, total, season=12)
    window = slice(9, 21)
    share = own.iloc[:, window].sum(axis=1) / total.iloc[:, window].sum(axis=1)
    np.testing.assert_allclose(out["forecast"], backtest["forecast"] * share.to_numpy())
    later = own.copy()
    later.iloc[:, 21:] = 0.0  # what the force sold after the origin plays no part
    pd.testing.assert_frame_equal(force_backtest(backtest, later, total, season=12), out)


def test_the_champion_choice_answers_per_force():
    choice = ChampionChoice("r", {None: "ols", "feed-team": "wls_struct"})
    assert choice.method_for() == "ols" and choice.method_for("feed-team") == "wls_struct"
    assert choice.method_for("devices-team") is None


def test_the_report_says_which_method_the_champion_chose(setting):
    from territory.pipelines.report_content import reconcile_sentences, territory_forecast_table

    h, history, _, scores, backtest = setting
    kw = {"season": 12, "frequency": "MS", "chosen_in": "abcdef1234"}
    texts = {}
    for name, args in {"applied": (backtest, "wls_struct"), "untagged": (None, None),
                       "no_errors": (None, "mint_shrink")}.items():
        _, record = reconcile_with(h, scores, history, *args, **kw)
        texts[name] = " ".join(reconcile_sentences(SimpleNamespace(reconciliation=record)))
        table = territory_forecast_table(SimpleNamespace(reconciliation=record))
        assert set(table["reconciled_with"]) == {"WLS (structural)" if name == "applied"
                                                 else "BottomUp"}
    assert "reconciled with WLS (structural)" in texts["applied"]
    assert "champion's training run (abcdef12) chose" in texts["applied"]
    assert "calibrated on that run's backtest" in texts["applied"]
    assert "BottomUp" in texts["untagged"] and "recorded no reconciliation method" in \
        texts["untagged"] and "no forecast range" in texts["untagged"]
    assert "needs its backtest errors" in texts["no_errors"]
    assert all("nan" not in t.lower() for t in texts.values())


def test_the_report_words_a_choice_among_methods_without_bottom_up():
    from territory.models.reconcile import Reconciliation
    from territory.pipelines.report_content import reconcile_sentences

    table = pd.DataFrame({"method": ["base", "wls_struct"], "level": "territory",
                          "wape": [0.05, 0.027], "mase": [0.9, 0.7], "windows": 2})
    record = Reconciliation("wls_struct", table, pd.DataFrame())
    text = " ".join(reconcile_sentences(SimpleNamespace(reconciliation=record)))
    assert "reconciled with WLS (structural)" in text and "territory WAPE 2.7%" in text
    assert "nan" not in text.lower()


def test_a_run_that_recorded_no_reconciliation_reads_as_none(tmp_path):
    """An older champion's run: no tag, no kept backtest forecasts (not an error)."""
    import mlflow

    from territory.models import tracking
    from territory.models.tracking import reconcile_record

    before = mlflow.get_tracking_uri()
    tracking.connect(None, tmp_path, "old-runs")
    try:
        _record_and_read(mlflow, reconcile_record)
    finally:
        mlflow.set_tracking_uri(before)


def _record_and_read(mlflow, reconcile_record) -> None:
    with mlflow.start_run() as old:
        mlflow.set_tag("flow", "train")
    choice = reconcile_record.load_choice(old.info.run_id)
    assert (choice.methods, choice.backtest) == ({}, None)
    with mlflow.start_run() as new:
        reconcile_record.log_methods({None: "ols", "feed-team": "wls_struct"})
        reconcile_record.log_backtest_forecasts(pd.DataFrame(
            {"unit_id": ["u1"], "origin": [pd.Timestamp("2024-01-01")], "horizon": [1],
             "forecast": [2.5]}))
    choice = reconcile_record.load_choice(new.info.run_id)
    assert choice.methods == {None: "ols", "feed-team": "wls_struct"}
    assert choice.backtest["forecast"].tolist() == [2.5]
