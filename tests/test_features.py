"""Feature code against naive pandas oracles, and the no-leakage rule."""

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from shapely.geometry import box

from territory.features.build import build_forecast_table, build_market_table, training_origins
from territory.features.config import FeaturesConfig
from territory.features.errors import InputError
from territory.features.panel import make_panel, to_wide
from territory.features.spatial import AdjacencyGraph, build_adjacency, link_islands, spatial_lag
from territory.features.temporal import origin_features

CONFIG = FeaturesConfig(lags=[1, 2, 3], rolling_windows=[2, 4], rolling_stats=["mean", "std",
                        "min", "max"], spatial_lag_columns=["sales_roll_mean_w4"])


def _sales(n_units=3, n_periods=30, seed=0, gaps=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    periods = pd.date_range("2020-01-01", periods=n_periods, freq="MS")
    rows = []
    for u in range(n_units):
        for p in periods:
            rows.append((f"u{u}", p, float(rng.gamma(2.0, 10.0 * (u + 1)))))
    frame = pd.DataFrame(rows, columns=["unit_id", "period", "sales"])
    if gaps:
        frame = frame.drop(index=[5, 17]).reset_index(drop=True)
    return frame


def test_panel_makes_gaps_explicit():
    sales = _sales()
    panel = make_panel(sales, ["u0", "u1", "u2", "u9"], "MS")
    assert len(panel) == 4 * 30
    assert panel["observed"].sum() == len(sales)
    assert panel.loc[panel["unit_id"] == "u9", "sales"].isna().all()


def test_lags_and_rolling_match_naive_pandas():
    sales = _sales()
    panel = make_panel(sales, ["u0", "u1", "u2"], "MS")
    wide = to_wide(panel, "sales")
    feats = origin_features(wide, CONFIG)
    for i, unit in enumerate(wide.index):
        series = panel.loc[panel["unit_id"] == unit].set_index("period")["sales"]
        for lag in CONFIG.lags:
            expected = series.shift(lag - 1).to_numpy()
            np.testing.assert_allclose(feats[f"sales_lag_{lag}"][i], expected, equal_nan=True)
        for w in CONFIG.rolling_windows:
            roll = series.rolling(w)
            for stat, oracle in (("mean", roll.mean()), ("std", roll.std()),
                                 ("min", roll.min()), ("max", roll.max())):
                np.testing.assert_allclose(
                    feats[f"sales_roll_{stat}_w{w}"][i], oracle.to_numpy(), equal_nan=True,
                    rtol=1e-9,
                )


def _grid_units(n: int) -> gpd.GeoDataFrame:
    cells = [box(i, 0, i + 1, 1) for i in range(n)]
    return gpd.GeoDataFrame({"unit_id": [f"u{i}" for i in range(n)]}, geometry=cells,
                            crs="EPSG:3857")


def test_no_feature_looks_past_the_origin():
    sales = _sales(gaps=False)
    graph = build_adjacency(_grid_units(3), projected_crs="EPSG:3857")
    origin = pd.Timestamp("2021-06-01")
    changed = sales.copy()
    after = changed["period"] > origin
    changed.loc[after, "sales"] = changed.loc[after, "sales"] * 7 + 100

    def table(frame):
        panel = make_panel(frame, ["u0", "u1", "u2"], "MS")
        out = build_forecast_table(panel, CONFIG, horizon=6, origins=[origin], graph=graph)
        return out.drop(columns=["target"])

    pd.testing.assert_frame_equal(table(sales), table(changed))


def test_forecast_table_targets_and_seasonal_values():
    sales = _sales(gaps=False)
    panel = make_panel(sales, ["u0", "u1", "u2"], "MS")
    origin = pd.Timestamp("2021-06-01")
    out = build_forecast_table(panel, CONFIG, horizon=3, origins=[origin])
    assert len(out) == 3 * 3
    row = out[(out["unit_id"] == "u1") & (out["horizon"] == 2)].iloc[0]
    series = sales[sales["unit_id"] == "u1"].set_index("period")["sales"]
    assert row["target_period"] == pd.Timestamp("2021-08-01")
    assert row["target"] == pytest.approx(series[pd.Timestamp("2021-08-01")])
    assert row["sales_same_period_1y"] == pytest.approx(series[pd.Timestamp("2020-08-01")])
    assert row["month"] == 8
    # Beyond the panel the target is unknown, not zero.
    last = build_forecast_table(panel, CONFIG, horizon=2, origins=[panel["period"].max()])
    assert last["target"].isna().all()


def test_history_shorter_than_widest_feature_is_a_clear_error():
    sales = _sales(n_periods=3, gaps=False)
    panel = make_panel(sales, ["u0", "u1", "u2"], "MS")
    with pytest.raises(InputError, match="widest feature needs 4"):
        build_forecast_table(panel, CONFIG, horizon=2)


def test_training_origins_leave_room_for_growth_feature():
    periods = pd.date_range("2020-01-01", periods=20, freq="MS")
    origins = training_origins(periods, CONFIG)
    assert origins[0] == periods[7]  # two windows of 4


def test_spatial_lag_and_island_linking():
    units = gpd.GeoDataFrame(
        {"unit_id": ["u0", "u1", "u2", "island"]},
        geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 0, 3, 1), box(10, 0, 11, 1)],
        crs="EPSG:3857",
    )
    graph = build_adjacency(units, projected_crs="EPSG:3857")
    assert graph.island_links == [("island", "u2")]
    values = pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0]}, index=units["unit_id"])
    lag = spatial_lag(graph, values)
    assert lag.loc["u0", "x_nbr_mean"] == 2.0
    assert lag.loc["u1", "x_nbr_mean"] == 2.5
    assert lag.loc["island", "x_nbr_mean"] == 4.0


def test_link_islands_connects_every_component():
    matrix = sp.csr_matrix((5, 5))
    xy = np.array([[0, 0], [1, 0], [5, 0], [6, 0], [20, 0]], dtype=float)
    linked, links = link_islands(matrix, xy)
    n_comp, _ = sp.csgraph.connected_components(linked, directed=False)
    assert n_comp == 1 and len(links) == 4


def test_market_table_has_neighbour_means_and_rejects_unknown_columns():
    demo = pd.DataFrame({"unit_id": ["u0", "u1", "u2"], "population": [10.0, 20.0, 40.0]})
    graph = AdjacencyGraph(np.array(["u0", "u1", "u2"]),
                           sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])))
    table = build_market_table(demo, graph)
    assert table.loc["u1", "population_nbr_mean"] == 25.0
    with pytest.raises(InputError, match="income"):
        build_market_table(demo, graph, demographic_columns=["income"])
