"""Coherent forecasts in the nightly run and in runs with sales forces (issue #14, item 4),
on the demo slice under Prefect's test harness and a real MLflow SQLite store.

The training runs may choose only ``wls_struct`` (``forecast.reconcile.methods``), so the
path under test is a MinTrace method's, never BottomUp's.
"""

from __future__ import annotations

from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from territory.pipelines import flows
from territory.pipelines.config import load_config
from territory.pipelines.publish import tracking_uri
from territory.pipelines.report_content import METHOD_WORDS
from tests.conftest import FAST_MODELS, write_slice_config

FORECAST = {**FAST_MODELS["forecast"], "backtest": {"windows": 2, "step": 3,
                                                    "baselines": ["seasonal_naive"]},
            "reconcile": {"methods": ["wls_struct"]}}


def _champion_run(config) -> str:
    client = MlflowClient(tracking_uri=tracking_uri(config))
    return client.get_model_version_by_alias(config.tracking.registered_model,
                                             "champion").run_id


def _assert_coherent_and_reconciled(folder: Path, n_territories: int, horizon: int) -> None:
    """Territory = sum of units to 1e-9 in the node table, the scores and the territory
    recommendations; the units moved away from their own (BottomUp) forecasts; the
    aggregates carry an interval."""
    nodes = pd.read_csv(folder / "forecast_hierarchy.csv", dtype={"node": str})
    scores = pd.read_parquet(folder / "scores.parquet")
    alignment = pd.read_parquet(folder / "alignment.parquet").set_index("unit_id")
    territory_of = alignment["territory_id"].astype(str)
    sums = (scores.assign(t=scores["unit_id"].map(territory_of))
            .groupby(["t", "horizon"])["forecast"].sum())
    terr = nodes[nodes["level"] == "territory"].set_index(["node", "horizon"])["forecast"]
    assert len(terr) == n_territories * horizon
    pd.testing.assert_series_equal(terr.reindex(sums.index), sums, check_names=False,
                                   rtol=1e-9)
    units = nodes[nodes["level"] == "unit"].set_index(["node", "horizon"])
    by_unit = scores.set_index(["unit_id", "horizon"])["forecast"]
    pd.testing.assert_series_equal(units["forecast"].reindex(by_unit.index), by_unit,
                                   check_names=False, rtol=1e-9)
    total = nodes[nodes["level"] == "total"].set_index("horizon")["forecast"]
    pd.testing.assert_series_equal(total, terr.groupby(level="horizon").sum(),
                                   check_names=False, rtol=1e-9)
    recs = pd.read_csv(folder / "territory_recommendations.csv", dtype={"territory": str})
    pd.testing.assert_series_equal(recs.set_index("territory")["forecast"].sort_index(),
                                   terr.groupby(level="node").sum().sort_index(),
                                   check_names=False, rtol=1e-9)
    # different from BottomUp: the units' reconciled forecasts are not their base forecasts
    moved = (units["forecast"] - units["base_forecast"]).abs()
    assert moved.max() > 1e-6 * units["base_forecast"].abs().max()
    bottom_up = (units["base_forecast"].groupby(units.index.get_level_values("node")
                                                .map(territory_of)).sum())
    assert not np.allclose(terr.groupby(level="node").sum().reindex(bottom_up.index),
                           bottom_up, rtol=1e-6)
    upper = nodes[nodes["level"] != "unit"]
    assert upper["forecast_lo"].notna().all()
    assert (upper["forecast_lo"] <= upper["forecast"] + 1e-9).all()
    assert (upper["forecast"] <= upper["forecast_hi"] + 1e-9).all()


# --- One sales force: the train flow, then the nightly run on its champion -------------------


@pytest.fixture(scope="module")
def config(prefect_session, demo_slice_dir, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("reconcile_flows") / "workspace"
    return load_config(write_slice_config(
        demo_slice_dir, workspace, run_name="reconcile-nightly", **{**FAST_MODELS,
                                                                    "forecast": FORECAST},
        tracking={"experiment": "reconcile-flows", "registered_model": "reconcile-forecaster"}))


@pytest.fixture(scope="module")
def trained(config):
    return flows.train(config)


def test_the_train_flow_chooses_on_the_current_alignment_and_keeps_its_backtest(trained,
                                                                                config):
    from territory.models.tracking.reconcile_record import load_choice
    from territory.pipelines.publish import setup_tracking

    setup_tracking(config)
    choice = load_choice(_champion_run(config))
    assert choice.methods == {None: "wls_struct"}
    assert set(choice.backtest.columns) == {"unit_id", "origin", "horizon", "forecast"}
    assert choice.backtest["origin"].nunique() == 2
    run = MlflowClient(tracking_uri=tracking_uri(config)).get_run(choice.run_id)
    assert run.data.tags["reconcile_method"] == "wls_struct"


def test_the_nightly_run_publishes_the_champion_s_reconciled_forecasts(trained, config):
    result = flows.nightly_forecast(config)
    folder = result["folder"]
    n_territories = pd.read_csv(config.data.alignment)["territory_id"].nunique()
    _assert_coherent_and_reconciled(folder, n_territories, config.forecast.horizon)
    html = unescape((folder / "report.html").read_text())
    assert "reconciled with WLS (structural)" in html
    assert f"the method the champion's training run ({result['model_run_id'][:8]}) chose" in html
    sheet = pd.read_excel(folder / "report.xlsx", sheet_name="Territory forecast")
    assert set(sheet["Reconciled with"]) == {METHOD_WORDS["wls_struct"]}
    assert result["metrics"]["reconcile_bottom_up"] == 0.0


def test_a_champion_without_the_tag_publishes_bottom_up_and_says_so(trained, config):
    client = MlflowClient(tracking_uri=tracking_uri(config))
    run_id = _champion_run(config)
    client.delete_tag(run_id, "reconcile_method")
    try:
        folder = flows.nightly_forecast(config)["folder"]
    finally:
        client.set_tag(run_id, "reconcile_method", "wls_struct")
    nodes = pd.read_csv(folder / "forecast_hierarchy.csv", dtype={"node": str})
    units = nodes[nodes["level"] == "unit"]
    np.testing.assert_allclose(units["forecast"], units["base_forecast"], rtol=1e-12)
    html = unescape((folder / "report.html").read_text())
    assert "recorded no reconciliation method" in html and "BottomUp" in html
    sheet = pd.read_excel(folder / "report.xlsx", sheet_name="Territory forecast")
    assert set(sheet["Reconciled with"]) == {"BottomUp"}


# --- Sales forces: the pipeline reconciles each force, the nightly run applies its methods ----


@pytest.fixture(scope="module")
def force_config(prefect_session, demo_slice_dir, tmp_path_factory):
    from tests.test_force_flows import _two_force_config
    from tests.test_forces import _two_line_slice

    out = tmp_path_factory.mktemp("reconcile_forces")
    _two_line_slice(demo_slice_dir, out)
    path = _two_force_config(out, demo_slice_dir)
    raw = yaml.safe_load(path.read_text())
    raw["forecast"] = FORECAST
    raw["tracking"] = {"experiment": "reconcile-forces", "registered_model": "reconcile-forces"}
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture(scope="module")
def force_run(force_config):
    return flows.pipeline(force_config)


def _force_territories(config, name: str) -> int:
    force = next(f for f in config.forces if f.name == name)
    return int(force.territories.n_territories)


def test_a_run_with_forces_reconciles_each_force_s_hierarchy(force_run, force_config):
    run_dir = force_run["run_dir"]
    run = MlflowClient(tracking_uri=tracking_uri(force_config)).get_run(
        force_run["mlflow_run_id"])
    horizon = force_config.forecast.horizon
    for force in ("devices-team", "feed-team"):
        folder = run_dir / "forces" / force
        _assert_coherent_and_reconciled(folder, _force_territories(force_config, force), horizon)
        assert run.data.tags[f"reconcile_method.{force}"] == "wls_struct"
        assert f"{force}_reconcile_wls_struct_wape_territory" in run.data.metrics
        html = (folder / "report.html").read_text()
        assert "reconciled with WLS (structural)" in html and "territory WAPE" in html, html
    # each force's forecasts are its own: the two forces' totals add up to the run's
    totals = [pd.read_csv(run_dir / "forces" / f / "forecast_hierarchy.csv")
              .query("level == 'total'")["forecast"].to_numpy() for f in ("devices-team",
                                                                          "feed-team")]
    assert not np.allclose(totals[0], totals[1])


def test_the_nightly_run_with_forces_applies_each_force_s_method(force_run, force_config):
    result = flows.nightly_forecast(force_config)
    folder = result["folder"]
    for force in ("devices-team", "feed-team"):
        own = folder / "forces" / force  # the devices team's current alignment, not redesigned
        n_territories = pd.read_parquet(own / "alignment.parquet")["territory_id"].nunique()
        _assert_coherent_and_reconciled(own, n_territories, force_config.forecast.horizon)
        html = (own / "report.html").read_text()
        assert "reconciled with WLS (structural)" in html
        sheet = pd.read_excel(own / "report.xlsx", sheet_name="Territory forecast")
        assert set(sheet["Reconciled with"]) == {METHOD_WORDS["wls_struct"]}


def test_the_train_flow_with_forces_chooses_per_force_on_its_current_alignment(
        force_run, force_config):
    """The devices team has a current alignment: its method is chosen on it; the feed team
    has none, so nothing is recorded for it (its scoring runs publish BottomUp)."""
    from territory.models.tracking.reconcile_record import load_choice
    from territory.pipelines.publish import setup_tracking

    summary = flows.train(force_config)
    setup_tracking(force_config)
    choice = load_choice(summary["mlflow_run_id"])
    assert choice.methods == {"devices-team": "wls_struct"}
    assert choice.backtest is not None and choice.backtest["origin"].nunique() == 2
