"""Sales forces: per-segment potential, per-force scores, one run with two forces, and
the two-line demo (issue #18, parts 3 to 5; parts 1 and 2 are in test_segments.py).

Code tests on hand-written frames; the one end-to-end run with two forces is
``test_two_forces_run_end_to_end``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from territory.models import forces as mf
from territory.pipelines.config import load_config

# --- 3. Per-segment potential and per-force scores ------------------------------------------


def test_force_scores_split_the_forecast_and_sum_the_potential():
    scores = pd.DataFrame({"unit_id": ["a", "a", "b"], "horizon": [1, 2, 1],
                           "forecast": [10.0, 10.0, 4.0], "forecast_lo": [8.0, 8.0, 3.0],
                           "forecast_hi": [12.0, 12.0, 5.0], "potential": [0.0, 0.0, 0.0],
                           "white_space": [0.0, 0.0, 0.0], "drivers": ["", "", ""]})
    share = mf.force_share(pd.Series({"a": 30.0, "b": 0.0}), pd.Series({"a": 40.0, "b": 0.0}))
    assert share["a"] == 0.75 and share["b"] == pytest.approx(0.75)  # b: the overall share
    other = mf.force_share(pd.Series({"a": 10.0, "b": 0.0}), pd.Series({"a": 40.0, "b": 0.0}))
    np.testing.assert_allclose(share + other, 1.0)  # the forces' forecasts add up to the total
    frame, totals = mf.force_scores(scores, share, pd.Series({"a": 120.0, "b": 24.0}),
                                    pd.Series({"a": "x", "b": "y"}), 12, "unit_id")
    assert frame["forecast"].tolist() == [7.5, 7.5, 3.0]
    assert totals.loc["a", "potential"] == pytest.approx(20.0)  # 2 periods of 120 / 12
    assert (frame["white_space"] == frame["potential"] - frame["forecast"]).all()


def test_segment_potential_follows_each_segments_own_market():
    rng = np.random.default_rng(0)
    n = 300
    market = pd.DataFrame({"density": rng.uniform(0, 1, n), "income": rng.uniform(0, 1, n)},
                          index=[f"u{i}" for i in range(n)])
    urban = 100 * np.exp(1.5 * market["density"]) * rng.lognormal(0, 0.05, n)
    rural = 100 * np.exp(-1.5 * market["density"]) * rng.lognormal(0, 0.05, n)
    annual = pd.DataFrame({"urban": urban, "rural": rural})
    from territory.models.config import PotentialConfig

    potential, drivers, metrics, by_segment, models = mf.fit_segment_potential(
        PotentialConfig(method="quantile", n_estimators=100), market, annual,
        {"urban": None, "rural": None}, rng.uniform(0, 1000, (n, 2)))
    dense = market["density"] > 0.5
    assert potential.loc[dense, "urban"].mean() > potential.loc[~dense, "urban"].mean()
    assert potential.loc[dense, "rural"].mean() < potential.loc[~dense, "rural"].mean()
    assert list(drivers.columns) == ["urban", "rural"] and "segment" not in drivers.iloc[0, 0]
    # pooled, density predicts nothing (the two lines cancel): one model per segment wins
    assert metrics["potential_per_segment_models"] == 1.0
    assert metrics["potential_cv_pinball_per_segment"] < metrics["potential_cv_pinball_global"]
    assert set(by_segment) == {"urban", "rural"} and "potential_cv_pinball" in by_segment["rural"]
    pooled = mf.pool_metrics([(by_segment["urban"], 300.0), (by_segment["rural"], 300.0)])
    assert pooled["potential_cv_pinball"] == pytest.approx(metrics["potential_cv_pinball"])


def test_overlay_names_each_forces_rep_and_the_distance_between_homes():
    xy = pd.DataFrame({"x": [0.0, 3000.0, 6000.0], "y": [0.0, 4000.0, 0.0]},
                      index=["a", "b", "c"])
    proposed = {"one": pd.Series({"a": "T1", "b": "T1", "c": "T2"}),
                "two": pd.Series({"a": "S1", "b": "S1", "c": "S1"})}
    reps = {"one": pd.DataFrame({"territory_id": ["T1", "T2"], "rep_id": ["r1", "r2"],
                                 "home_unit_id": ["a", "c"]}),
            "two": pd.DataFrame({"territory_id": ["S1"], "rep_id": ["s1"],
                                 "home_unit_id": ["b"]})}
    sold = pd.DataFrame({"one": [5.0, 0.0, 2.0], "two": [1.0, 3.0, 4.0]}, index=xy.index)
    out = mf.overlay(proposed, reps, sold, xy)
    assert out["one_rep"].tolist() == ["r1", "r1", "r2"] and set(out["two_rep"]) == {"s1"}
    assert out["shared"].tolist() == [True, False, True]
    np.testing.assert_allclose(out["homes_km_one_two"], [5.0, 5.0, 5.0])  # 3-4-5 triangles

    from territory.pipelines.report_forces import forces_index_html

    page = forces_index_html("Run <x>", "as of", {
        "one": ({"territories": 2}, pd.DataFrame({"territory": ["T1", "T2"]})),
        "two": ({"territories": 1}, pd.DataFrame({"territory": ["S1"]}))}, out)
    assert '<option value="one">' in page and 'href="forces/two/report.html"' in page
    assert "Run &lt;x&gt;" in page and "2 of 3 units are shared" in page
    assert "5 km apart at the median" in page and "http:" not in page and "https:" not in page


# --- 6. Serving: answers carry the force ----------------------------------------------------


def _two_segment_fit(models: str):
    from territory.models.config import PotentialConfig

    rng = np.random.default_rng(1)
    n = 80
    market = pd.DataFrame({"density": rng.uniform(0, 1, n), "income": rng.uniform(0, 1, n)},
                          index=pd.Index([f"u{i}" for i in range(n)], name="unit_id"))
    annual = pd.DataFrame({"urban": 100 * np.exp(1.5 * market["density"]),
                           "rural": 100 * np.exp(-1.5 * market["density"])}) \
        * rng.lognormal(0, 0.05, (n, 2))
    fit = mf.fit_segment_potential(
        PotentialConfig(method="quantile", n_estimators=30, min_child_samples=5), market,
        annual, {"urban": None, "rural": None}, rng.uniform(0, 1000, (n, 2)), models=models)
    return market, fit


@pytest.mark.parametrize("models", ["global", "per_segment"])
def test_force_potential_is_the_sum_of_its_segments_models(models):
    from territory.models.force_recommender import ForcePotential

    market, (potential, drivers, _, _, fitted) = _two_segment_fit(models)
    both = ForcePotential(fitted)
    assert both.feature_names_ == ["density", "income"]  # never the segment code
    np.testing.assert_allclose(both.predict(market), potential.sum(axis=1), rtol=1e-6)
    rural = ForcePotential({"rural": fitted["rural"]})
    np.testing.assert_allclose(rural.predict(market), potential["rural"], rtol=1e-6)
    # a unit's drivers are its largest segment's, as in the run's scores
    from territory.models.potential import describe_drivers

    largest = potential.idxmax(axis=1)
    served = describe_drivers(both.contributions(market))
    expected = [drivers.at[u, s] for u, s in largest.items()]
    assert served.tolist() == expected


def test_served_recommender_answers_with_the_force_and_for_one_force_on_request():
    from mlflow.exceptions import MlflowException

    from territory.models.force_recommender import ForcePotential, ForcesRecommender
    from territory.models.recommender import build_bundle
    from territory.models.tracking import TerritoryRecommender

    market, (potential, _, _, _, fitted) = _two_segment_fit("per_segment")
    bundles = {}
    for force, segment, territories in (("city-team", "urban", ["A", "B"]),
                                        ("farm-team", "rural", ["F", "G"])):
        units = pd.DataFrame({"potential": potential[segment]}, index=market.index)
        units["forecast"] = 0.7 * units["potential"]
        units["forecast_lo"], units["forecast_hi"] = 0.5 * units["forecast"], units["potential"]
        units["penetration"] = units["forecast"] / units["potential"]
        half = market["density"] > 0.5
        units["current_territory"] = np.where(half, territories[0], territories[1])
        units["proposed_territory"] = units["current_territory"]
        bundles[force] = build_bundle(ForcePotential({segment: fitted[segment]}), units,
                                      market_features=market)
    model = TerritoryRecommender(ForcesRecommender(bundles))
    request = market.head(3).reset_index()

    every = model.predict(None, request)
    assert every.columns[0] == "force" and len(every) == 6
    assert every["force"].tolist() == ["city-team"] * 3 + ["farm-team"] * 3
    assert every["unit_id"].tolist() == ["u0", "u1", "u2"] * 2
    farm = model.predict(None, request, {"force": "farm-team"})
    assert set(farm["force"]) == {"farm-team"} and farm["unit_id"].tolist() == ["u0", "u1", "u2"]
    np.testing.assert_allclose(farm["potential"], potential["rural"].head(3), rtol=1e-6)
    assert set(farm["proposed_territory"]) <= {"F", "G"}
    pd.testing.assert_frame_equal(farm, every.iloc[3:].reset_index(drop=True))
    assert len(model.predict(None, request, {"force": ""})) == 6  # the default: every force
    with pytest.raises(MlflowException, match="unknown force 'sales'.*city-team, farm-team"):
        model.predict(None, request, {"force": "sales"})
    with pytest.raises(MlflowException, match="missing feature column"):  # checks kept
        model.predict(None, request.drop(columns="income"), {"force": "city-team"})


# --- 4. One alignment per force, end to end ---------------------------------------------------


def _two_line_slice(slice_dir: Path, out: Path) -> None:
    """The slice's sales split into two product lines, one urban-led, one rural-led, with a
    second, fresh force (no alignment) for the rural line."""
    sales = pd.read_parquet(slice_dir / "sales.parquet")
    demo = pd.read_parquet(slice_dir / "demographics.parquet").set_index("unit_id")
    density = np.log(demo["population_density"]).rank(pct=True)
    urban_share = (0.2 + 0.6 * density).reindex(sales["unit_id"]).to_numpy()
    lines = []
    for segment, share in (("devices", urban_share), ("feed", 1 - urban_share)):
        part = sales.copy()
        part["sales"] = (part["sales"] * share).round(2)
        part["accounts"] = np.ceil(part["accounts"] * share).astype(int)
        part["segment"] = segment
        lines.append(part)
    pd.concat(lines).to_parquet(out / "sales_lines.parquet")


def test_two_forces_run_end_to_end(prefect_session, demo_slice_dir, tmp_path):
    from territory.pipelines.flows import territory_pipeline
    from tests.conftest import FAST_MODELS, write_slice_config

    _two_line_slice(demo_slice_dir, tmp_path)
    forces = [
        {"name": "devices-team", "segments": ["devices"], "alignment":
         str(demo_slice_dir / "alignment.csv"), "reps": str(demo_slice_dir / "reps.csv")},
        {"name": "feed-team", "segments": ["feed"], "territories": {"n_territories": 3}},
    ]
    path = write_slice_config(demo_slice_dir, tmp_path / "workspace", forces=forces,
                              forecast=FAST_MODELS["forecast"], potential=FAST_MODELS["potential"])
    raw = yaml.safe_load(path.read_text())
    raw["data"]["sales"] = str(tmp_path / "sales_lines.parquet")
    raw["data"].pop("alignment"), raw["data"].pop("reps")
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    result = territory_pipeline(config)

    run_dir = result["run_dir"]
    units = set(pd.read_parquet(demo_slice_dir / "counties.parquet")["unit_id"])
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    assert alignment.columns[0] == "force"
    for force, k in (("devices-team", 4), ("feed-team", 3)):
        own = alignment[alignment["force"] == force]
        assert sorted(own["unit_id"]) == sorted(units)  # each unit once per force
        assert own["territory_id"].nunique() == k
        assert result["forces"][force]["territories"]["contiguous"]
        assert (run_dir / "forces" / force / "report.html").is_file()
    assert alignment.loc[alignment["force"] == "feed-team", "current_territory"].isna().all()
    cover = pd.read_csv(run_dir / "overlay.csv", dtype=str)
    assert sorted(cover["unit_id"]) == sorted(units)
    assert {"devices-team_territory", "devices-team_rep", "feed-team_territory",
            "shared"} <= set(cover.columns)
    page = (run_dir / "report.html").read_text()
    assert '<option value="feed-team">' in page and "shared customers" in page
    for name in ("scores.parquet", "territory_summary.csv", "moves.csv", "recommendations.csv"):
        table = (pd.read_parquet if name.endswith(".parquet") else pd.read_csv)(run_dir / name)
        assert set(table["force"]) <= {"devices-team", "feed-team"}, name
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert set(scores["force"]) == {"devices-team", "feed-team"}
    assert len(scores) == 2 * len(units) * config.forecast.horizon
    # a force's potential is the sum of its segments' (here: one each)
    segment_potential = pd.read_csv(run_dir / "segment_potential.csv", dtype={"unit_id": str})
    assert set(segment_potential.columns) == {"unit_id", "devices", "feed"}
    devices = scores[scores["force"] == "devices-team"].groupby("unit_id")["potential"].sum()
    expected = segment_potential.set_index("unit_id")["devices"].reindex(devices.index)
    np.testing.assert_allclose(devices.to_numpy(), expected.to_numpy(), rtol=1e-6)
    # one force has a current alignment, the other not: one potential model per segment
    assert result["metrics"]["segment_potential_per_segment_models"] == 1.0

    # served: the registered recommender answers for every force, or for the one asked for
    from territory.features.spatial import build_adjacency
    from territory.models.tracking import load_champion
    from territory.pipelines.publish import setup_tracking
    from territory.pipelines.stages import load_inputs, market_table

    setup_tracking(config)
    # the run logs its segment models beside the forecaster, for the scoring flows
    from territory.models.tracking import load_logged_potential

    logged = load_logged_potential(result["mlflow_run_id"])
    assert logged.segments() == {"devices-team": ["devices"], "feed-team": ["feed"]}
    model = load_champion()
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, projected_crs=config.data.projected_crs)
    columns = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    rows = market_table(config, inputs, graph).head(3).reset_index(names="unit_id")[columns]
    every = model.predict(rows)
    assert every["force"].tolist() == ["devices-team"] * 3 + ["feed-team"] * 3
    feed = model.predict(rows, params={"force": "feed-team"})
    assert feed["force"].tolist() == ["feed-team"] * 3
    # its potential: the feed line's model on the unit's market features, as in the run
    annual = segment_potential.set_index("unit_id")["feed"].reindex(feed["unit_id"])
    np.testing.assert_allclose(feed["potential"].to_numpy(), annual.to_numpy(), rtol=1e-6)


# --- 5. The two-line demo --------------------------------------------------------------------


def test_committed_product_lines_regenerate_and_lead_where_they_should():
    import geopandas as gpd

    from territory.features.demo_lines import LINES, simulate_product_lines
    from territory.pipelines.demo_data import DEFAULT_SEED

    demo = Path(__file__).resolve().parents[1] / "data" / "demo"
    lines_dir = demo.parent / "demo_lines"
    counties = gpd.read_parquet(demo / "counties.parquet")
    demographics = pd.read_parquet(demo / "demographics.parquet")
    lines = simulate_product_lines(counties, demographics, DEFAULT_SEED)
    pd.testing.assert_frame_equal(lines.sales, pd.read_parquet(lines_dir / "sales.parquet"))
    pd.testing.assert_frame_equal(lines.truth, pd.read_parquet(lines_dir / "truth.parquet"))
    for line, (_, k) in LINES.items():
        committed = pd.read_csv(lines_dir / f"alignment_{line}.csv", dtype=str)
        pd.testing.assert_frame_equal(lines.alignments[line], committed)
        assert committed["territory_id"].nunique() == k
    density = np.log(demographics.set_index("unit_id")["population_density"])
    by_line = lines.truth.set_index("unit_id")
    urban = by_line["true_potential_diagnostics"] / (
        by_line["true_potential_diagnostics"] + by_line["true_potential_animal-health"])
    assert urban.corr(density.reindex(urban.index), method="spearman") > 0.8
