"""Coherent unit -> territory -> region -> total forecasts (issue #14, item 4)."""

import numpy as np
import pandas as pd
import pytest

from territory.features.errors import InputError
from territory.models.reconcile import (
    Window,
    aggregate,
    backtest_windows,
    build_hierarchy,
    check_coherent,
    choose_method,
    pick_method,
    reconcile,
    reconcile_scores,
)


def _alignment(n_units=12, n_terr=4, seed=0):
    rng = np.random.default_rng(seed)
    terr = np.repeat(np.arange(n_terr), n_units // n_terr)
    rng.shuffle(terr)
    return pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(n_units)],
        "territory_id": [f"T{t}" for t in terr],
        "region": ["north" if t < n_terr // 2 else "south" for t in terr],
    })


def _assert_coherent(h, forecast):
    np.testing.assert_allclose(forecast, aggregate(h, forecast[h.idx_bottom]), rtol=1e-9,
                               atol=1e-6)


def test_hierarchy_levels_and_shape():
    align = _alignment()
    h = build_hierarchy(align, align["unit_id"], region_col="region")
    assert h.levels.count("total") == 1
    assert h.levels.count("region") == 2
    assert h.levels.count("territory") == 4
    assert h.S.shape == (1 + 2 + 4 + 12, 12)
    assert np.allclose(h.S[h.idx_bottom], np.eye(12))
    # each territory row sums its own units, each region row its territories
    terr = h.level_rows("territory")
    reg = h.level_rows("region")
    assert np.allclose(h.S[terr].sum(axis=0), 1.0)
    assert np.allclose(h.S[reg].sum(axis=0), 1.0)


@pytest.mark.parametrize("method", ["bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink"])
def test_reconciled_forecasts_add_up_at_every_horizon(method):
    align = _alignment(seed=1)
    h = build_hierarchy(align, align["unit_id"], region_col="region")
    rng = np.random.default_rng(1)
    base = aggregate(h, rng.gamma(2.0, 10.0, size=(12, 3)))
    base = base + rng.normal(0, 5.0, size=base.shape)  # incoherent base forecasts
    errors = None
    if method in ("wls_var", "mint_shrink"):
        actual = aggregate(h, rng.gamma(2.0, 10.0, size=(12, 8)))
        errors = (actual, actual + rng.normal(0, 3.0, size=actual.shape))
    rec = reconcile(h, base, method, errors)
    assert rec.shape == base.shape
    _assert_coherent(h, rec)
    assert (rec[h.idx_bottom] >= 0).all()
    if method == "bottom_up":
        np.testing.assert_allclose(rec[h.idx_bottom], np.maximum(base[h.idx_bottom], 0))


def test_mint_shrink_without_errors_is_a_clear_error():
    align = _alignment()
    h = build_hierarchy(align, align["unit_id"])
    with pytest.raises(ValueError, match="mint_shrink needs the base forecasts' errors"):
        reconcile(h, np.ones((len(h.nodes), 2)), "mint_shrink")


def _windows(h, n_units, noise_units, noise_aggs, seed, n=3, horizon=2):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        actual = rng.gamma(2.0, 10.0, size=(n_units, horizon))
        base = aggregate(h, actual)
        agg = np.arange(h.n_aggregates)
        base[h.idx_bottom] += rng.normal(0, noise_units, size=(n_units, horizon))
        base[agg] += rng.normal(0, noise_aggs, size=(len(agg), horizon))
        origin = pd.Timestamp("2024-01-01") + pd.DateOffset(months=horizon * k)
        periods = pd.date_range(origin, periods=horizon + 1, freq="MS")[1:]
        out.append(Window(origin, np.maximum(base, 0), actual, periods,
                          np.full(len(h.nodes), 10.0)))
    return out


def test_method_choice_prefers_mintrace_when_unit_forecasts_are_noisy():
    align = _alignment(n_units=40, n_terr=4, seed=2)
    h = build_hierarchy(align, align["unit_id"], region_col="region")
    windows = _windows(h, 40, noise_units=15.0, noise_aggs=0.0, seed=2)
    method, table = choose_method(h, windows, ("bottom_up", "ols", "wls_struct"))
    assert method != "bottom_up"
    terr = table[table["level"] == "territory"].set_index("method")["wape"]
    assert terr[method] < terr["bottom_up"]


def test_method_choice_keeps_bottom_up_when_units_are_exact():
    align = _alignment(seed=3)
    h = build_hierarchy(align, align["unit_id"])
    windows = _windows(h, 12, noise_units=0.0, noise_aggs=10.0, seed=3)
    method, table = choose_method(h, windows)
    assert method == "bottom_up"
    # wls_var and mint_shrink are scored only where earlier windows give errors: the
    # first window is left out, for every method
    assert set(table["windows"]) == {2}
    assert {"wls_var", "mint_shrink"} <= set(table["method"])


def test_method_choice_keeps_the_unit_forecasts_no_worse():
    """A method that helps territories but hurts the units (WAPE or MASE) is not published."""
    table = pd.DataFrame({
        "method": ["base", "base", "bottom_up", "bottom_up", "ols", "ols", "wls_struct",
                   "wls_struct"],
        "level": ["territory", "unit"] * 4,
        "wape": [0.02, 0.150, 0.04, 0.150, 0.025, 0.152, 0.028, 0.149],
        "mase": [0.5, 0.80, 0.9, 0.80, 0.60, 0.79, 0.700, 0.790],
    })
    assert pick_method(table) == "wls_struct"  # ols: unit WAPE 0.152 > 0.150
    assert pick_method(table, unit_tolerance=None) == "ols"
    assert pick_method(table, unit_tolerance=0.02) == "ols"
    assert pick_method(table, tolerance=0.02) == "bottom_up"  # a gain of 0.012 is too little
    by_mase = table.assign(mase=np.where(table["method"] == "wls_struct", 0.81, table["mase"]))
    assert pick_method(by_mase) == "bottom_up"  # wls_struct: unit MASE 0.81 > 0.80


def test_method_choice_needs_windows_and_known_methods():
    align = _alignment()
    h = build_hierarchy(align, align["unit_id"])
    with pytest.raises(ValueError, match="no backtest windows"):
        choose_method(h, [])
    with pytest.raises(ValueError, match="unknown methods"):
        choose_method(h, _windows(h, 12, 1.0, 1.0, 0), ("top_down",))


def test_unit_without_territory_is_a_clear_error():
    align = _alignment()
    with pytest.raises(InputError, match=r"(?s)alignment, column 'territory_id': every "
                                         r"forecast unit has a territory \(1 have none\).*u99"):
        build_hierarchy(align, list(align["unit_id"]) + ["u99"])


def test_unit_assigned_twice_is_a_clear_error():
    align = _alignment()
    twice = pd.concat([align, align.iloc[[0]].assign(territory_id="T9")])
    with pytest.raises(InputError, match="(?s)column 'unit_id': each unit is assigned to one "
                                         "territory.*offending rows: u0"):
        build_hierarchy(twice, align["unit_id"])


def test_territory_across_regions_is_a_clear_error():
    align = _alignment()
    rows = align.index[align["territory_id"] == align.loc[0, "territory_id"]]
    align.loc[rows[0], "region"], align.loc[rows[1], "region"] = "east", "west"
    with pytest.raises(InputError, match="column 'region': a territory sits in one region"):
        build_hierarchy(align, align["unit_id"], region_col="region")


def _panel(n_units=9, n_periods=48, seed=4):
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2020-01-01", periods=n_periods, freq="MS")
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(n_periods) / 12)
    level = rng.gamma(5.0, 20.0, size=(n_units, 1))
    values = level * season * rng.lognormal(0, 0.1, size=(n_units, n_periods))
    return pd.DataFrame(values, index=[f"u{i}" for i in range(n_units)], columns=periods)


def test_published_scores_and_node_table_add_up():
    """From backtest rows to published scores: the units' and the node table's forecasts
    add up to territories, regions and the total at every horizon."""
    history = _panel()
    align = _alignment(n_units=9, n_terr=3, seed=4)
    h = build_hierarchy(align, history.index, region_col="region")
    horizon, rows = 3, []
    rng = np.random.default_rng(5)
    for origin in history.columns[[-7, -4]]:
        t = history.columns.get_loc(origin)
        for unit in history.index:
            for k in range(1, horizon + 1):
                rows.append({"unit_id": unit, "origin": origin, "horizon": k,
                             "forecast": history.loc[unit].iloc[t] * rng.lognormal(0, 0.2)})
    predictions = pd.DataFrame(rows)
    windows = backtest_windows(h, predictions, history, "forecast", horizon, 12, "MS")
    assert len(windows) == 2 and windows[0].base.shape == (len(h.nodes), horizon)
    np.testing.assert_allclose(windows[1].actual, history.iloc[:, -3:].to_numpy())
    method, _ = choose_method(h, windows, ("bottom_up", "ols", "wls_struct"))
    as_of = history.columns[-1]
    scores = pd.DataFrame([
        {"unit_id": u, "horizon": k, "target_period": as_of + pd.DateOffset(months=k),
         "forecast": history.loc[u].iloc[-1], "forecast_lo": 0.8 * history.loc[u].iloc[-1],
         "forecast_hi": 1.2 * history.loc[u].iloc[-1]}
        for u in history.index for k in range(1, horizon + 1)])
    aggregates = windows[1].base[: h.n_aggregates] * 1.1  # any incoherent base
    for chosen in (method, "wls_struct"):
        out, nodes = reconcile_scores(h, scores, aggregates, chosen,
                                      (aggregate(h, windows[0].actual), windows[0].base))
        by_unit = align.set_index("unit_id")
        terr_of = by_unit["territory_id"]
        region_of = by_unit.drop_duplicates("territory_id").set_index("territory_id")["region"]
        assert check_coherent(nodes, terr_of, "unit", "territory") < 1e-9
        assert check_coherent(nodes, region_of, "territory", "region") < 1e-9
        assert check_coherent(nodes, pd.Series("total", index=region_of.unique()), "region",
                              "total") < 1e-9
        sums = out.assign(t=out["unit_id"].map(terr_of)).groupby(["t", "horizon"])["forecast"]
        terr = nodes[nodes["level"] == "territory"].set_index(["node", "horizon"])["forecast"]
        np.testing.assert_allclose(sums.sum().to_numpy(), terr.reindex(sums.sum().index))
        assert (out["forecast_lo"] <= out["forecast"]).all()
        assert (out["forecast"] <= out["forecast_hi"]).all()
        upper = nodes[nodes["level"] != "unit"]
        assert upper["forecast_lo"].notna().all()
        assert (upper["forecast_lo"] <= upper["forecast"] + 1e-9).all()
        if chosen == "bottom_up":
            pd.testing.assert_frame_equal(out, scores)


def test_scores_of_a_unit_outside_the_hierarchy_are_a_clear_error():
    align = _alignment(n_units=6, n_terr=2)
    h = build_hierarchy(align, align["unit_id"])
    scores = pd.DataFrame({"unit_id": ["u0", "u7"], "horizon": [1, 1],
                           "target_period": pd.Timestamp("2025-01-01"), "forecast": [1.0, 2.0],
                           "forecast_lo": [0.5, 1.0], "forecast_hi": [2.0, 3.0]})
    with pytest.raises(InputError, match="(?s)every scored unit is in the hierarchy.*u7"):
        reconcile_scores(h, scores, np.ones((h.n_aggregates, 1)), "bottom_up", None)


def test_aggregate_intervals_widen_with_the_horizon_of_their_errors():
    """Errors that grow like sqrt(h) give bounds that grow like sqrt(h); pooled, they do
    not grow at all."""
    from territory.models.reconcile import reconcile_with_intervals

    align = _alignment(n_units=8, n_terr=2, seed=6)
    h = build_hierarchy(align, align["unit_id"])
    rng = np.random.default_rng(6)
    steps = np.tile(np.arange(1, 5), 200)
    actual_units = rng.gamma(5.0, 10.0, size=(8, len(steps)))
    actual = aggregate(h, actual_units)
    forecast = actual + rng.normal(0, 1.0, size=actual.shape) * np.sqrt(steps) * 5.0
    base = aggregate(h, np.full((8, 4), 50.0))
    point, lo, hi = reconcile_with_intervals(h, base, "bottom_up", (actual, forecast, steps))
    width = (hi - lo)[0]  # the total
    assert width[3] / width[0] == pytest.approx(2.0, rel=0.05)
    assert (lo <= point).all() and (point <= hi).all()
    _, lo2, hi2 = reconcile_with_intervals(h, base, "bottom_up", (actual, forecast))
    assert np.allclose((hi2 - lo2)[0], (hi2 - lo2)[0, 0])
