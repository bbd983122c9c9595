"""The train, nightly and scenario flows with sales forces (issue #18, step 1).

The train flow logs the segment potential models beside the forecaster; the
nightly forecast and the scenario flow score each segment with the
champion's models (nothing refitted) and write the outputs as the pipeline
does with forces: every table with its ``force``, each force in
``forces/<force>/``. Code tests first; then the flows on the two-line slice
of ``test_forces.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from territory.features.errors import InputError
from territory.models.force_recommender import ForcePotential, SegmentPotentials
from territory.models.tracking import SEGMENT_POTENTIAL_ARTIFACT, load_logged_potential
from territory.pipelines import force_runs
from territory.pipelines.config import load_config
from territory.pipelines.forces import check_champion_segments

# --- Code tests: the scenario's config, the champion's segments ------------------------------


def _two_force_config(tmp_path: Path, slice_dir: Path | None = None):
    from tests.conftest import FAST_MODELS, write_slice_config

    slice_dir = slice_dir or tmp_path
    forces = [
        {"name": "devices-team", "segments": ["devices"], "alignment":
         str(slice_dir / "alignment.csv"), "reps": str(slice_dir / "reps.csv")},
        {"name": "feed-team", "segments": ["feed"], "territories": {"n_territories": 3}},
    ]
    path = write_slice_config(slice_dir, tmp_path / "workspace", forces=forces,
                              run_name="forces-flows",
                              tracking={"experiment": "force-flows",
                                        "registered_model": "force-flows-forecaster"},
                              forecast=FAST_MODELS["forecast"], potential=FAST_MODELS["potential"])
    raw = yaml.safe_load(path.read_text())
    raw["data"]["sales"] = str(tmp_path / "sales_lines.parquet")
    raw["data"].pop("alignment"), raw["data"].pop("reps"), raw["data"].pop("truth")
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def paper_config(tmp_path):
    """A two-force config over files that need not exist (``load_config`` only)."""
    for name in ("counties.parquet", "sales.parquet", "sales_lines.parquet",
                 "demographics.parquet", "alignment.csv", "reps.csv"):
        (tmp_path / name).write_text("")
    return load_config(_two_force_config(tmp_path))


def test_a_scenario_with_forces_replaces_the_named_forces_territories(paper_config):
    from territory.models.config import TerritoryConfig

    scenario = TerritoryConfig(n_territories=2)
    config = force_runs.scenario_config(paper_config, scenario, "two", "feed-team")
    by_name = {f.name: f for f in config.forces}
    assert by_name["feed-team"].territories.n_territories == 2
    assert by_name["devices-team"].territories == {
        f.name: f for f in paper_config.forces}["devices-team"].territories
    assert force_runs.scenario_config(paper_config, None, "base") is paper_config
    for scenario_, force, message in ((scenario, None, "no force is named"),
                                      (scenario, "sales-team", "unknown force 'sales-team'"),
                                      (None, "feed-team", "no scenario is given")):
        with pytest.raises(InputError, match=message) as info:
            force_runs.scenario_config(paper_config, scenario_, "x", force)
        assert "devices-team, feed-team" in str(info.value)
    one_force = paper_config.model_copy(update={"forces": None})
    with pytest.raises(InputError, match="config has no forces"):
        force_runs.scenario_config(one_force, scenario, "x", "feed-team")
    with pytest.raises(InputError, match="not a plain name"):
        force_runs.scenario_config(paper_config, None, "../up")


class _Model:
    feature_names_ = ["density"]

    def predict(self, rows):
        return rows["density"].to_numpy() * 10.0


def test_the_champions_segment_models_must_match_the_forces(paper_config):
    where = "version 3 of 'm' (run abc)"
    with pytest.raises(InputError, match="version 3 of 'm' \\(run abc\\) was trained without"):
        check_champion_segments(paper_config, None, where)
    models = {"devices-team": ForcePotential({"devices": (_Model(), None)}),
              "feed-team": ForcePotential({"feed": (_Model(), None)})}
    fitted = SegmentPotentials(models, {}, {})
    assert check_champion_segments(paper_config, fitted, where) is fitted
    other = SegmentPotentials({"devices-team": ForcePotential({"devices": (_Model(), None)}),
                               "feed-team": ForcePotential({"grain": (_Model(), None)})}, {}, {})
    wanted = "feed-team: grain, this config has devices-team: devices; feed-team: feed"
    with pytest.raises(InputError, match=f"(?s){wanted}.*train with this config first"):
        check_champion_segments(paper_config, other, where)
    rows = pd.DataFrame({"density": [0.5, 1.0]})
    np.testing.assert_allclose(fitted.predict(rows), [10.0, 20.0])  # every force together


# --- The flows on the two-line slice ---------------------------------------------------------


@pytest.fixture(scope="module")
def force_config(prefect_session, demo_slice_dir, tmp_path_factory):
    from tests.test_forces import _two_line_slice

    out = tmp_path_factory.mktemp("force_flows")
    _two_line_slice(demo_slice_dir, out)
    return load_config(_two_force_config(out, demo_slice_dir))


@pytest.fixture(scope="module")
def force_trained(force_config):
    from territory.pipelines import flows

    return flows.train(force_config)


def _units(slice_dir: Path) -> list[str]:
    return sorted(pd.read_parquet(slice_dir / "counties.parquet")["unit_id"])


def _champion_segments(config) -> SegmentPotentials:
    from territory.pipelines.publish import load_registered_models, setup_tracking

    setup_tracking(config)
    run_id = load_registered_models(config).run_id
    return load_logged_potential(run_id, SEGMENT_POTENTIAL_ARTIFACT)


def test_train_with_forces_logs_the_segment_models(force_trained, force_config):
    fitted = _champion_segments(force_config)
    assert isinstance(fitted, SegmentPotentials)
    assert fitted.segments() == {"devices-team": ["devices"], "feed-team": ["feed"]}
    assert "segment_potential_per_segment_models" in fitted.metrics
    assert set(fitted.force_metrics) == {"devices-team", "feed-team"}


def test_nightly_with_forces_recommends_per_force_on_the_champion(
        force_trained, force_config, demo_slice_dir):
    from territory.pipelines import flows

    result = flows.nightly_forecast(force_config)
    folder, units = result["folder"], _units(demo_slice_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["version"] == result["model_version"]
    assert manifest["forces"] == ["devices-team", "feed-team"]
    alignment = pd.read_parquet(folder / "alignment.parquet")
    assert alignment.columns[0] == "force"
    devices = alignment[alignment["force"] == "devices-team"]
    assert sorted(devices["unit_id"]) == units
    # a force with a current alignment is recommended on it, not redesigned
    assert (devices["territory_id"] == devices["current_territory"]).all()
    feed = alignment[alignment["force"] == "feed-team"]  # no alignment: designed fresh
    assert sorted(feed["unit_id"]) == units and feed["territory_id"].nunique() == 3
    assert result["forces"]["feed-team"]["territories"]["contiguous"]
    for name in ("scores.parquet", "territory_summary.csv", "moves.csv", "recommendations.csv"):
        table = (pd.read_parquet if name.endswith(".parquet") else pd.read_csv)(folder / name)
        assert set(table["force"]) <= {"devices-team", "feed-team"}, name
        if name != "moves.csv":  # the devices team is not redesigned: it moves nothing
            assert set(table["force"]) == {"devices-team", "feed-team"}, name
    from territory.pipelines.report_monitoring import ALERTS_SECTION

    for force in ("devices-team", "feed-team"):  # each force's report has the monitoring
        assert ALERTS_SECTION in (folder / "forces" / force / "report.html").read_text()
    assert '<option value="feed-team">' in (folder / "report.html").read_text()
    # each segment scored with the champion's own model: nothing refitted
    fitted = _champion_segments(force_config)
    from territory.pipelines.stages import load_inputs

    inputs = load_inputs(force_config)
    market = flows.features_task.fn(force_config, inputs).market_table
    segment_potential = pd.read_csv(folder / "segment_potential.csv", dtype={"unit_id": str})
    expected = fitted.forces["feed-team"].segment_predictions(market)["feed"]
    got = segment_potential.set_index("unit_id")["feed"].reindex(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6)
    scores = pd.read_parquet(folder / "scores.parquet")
    feed_potential = scores[scores["force"] == "feed-team"].groupby("unit_id")["potential"].sum()
    np.testing.assert_allclose(feed_potential.reindex(expected.index).to_numpy(),
                               expected.to_numpy(), rtol=1e-6)


def test_scenario_with_forces_redesigns_only_the_named_force(force_trained, force_config):
    """A what-if on one force leaves the others as they are: the devices team keeps its
    current alignment (described, as a nightly run does), the feed team gets the
    scenario's two territories."""
    from territory.models.config import TerritoryConfig
    from territory.pipelines import flows

    scenario = TerritoryConfig(n_territories=2, keep_rep_homes=False, time_limit_s=10)
    result = flows.design_scenario(force_config, scenario=scenario, scenario_name="feed-two",
                                   force="feed-team")
    folder = result["folder"]
    assert folder.name.startswith("forces-flows-feed-two-")
    alignment = pd.read_parquet(folder / "alignment.parquet")
    assert alignment[alignment["force"] == "feed-team"]["territory_id"].nunique() == 2
    devices = alignment[alignment["force"] == "devices-team"]
    assert (devices["territory_id"] == devices["current_territory"]).all()
    moves = pd.read_csv(folder / "moves.csv")
    assert set(moves["force"]) <= {"feed-team"}  # the devices team moves nothing
    assert all(f["territories"]["contiguous"] for f in result["forces"].values())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["scenario"] == "feed-two"
    assert manifest["model"]["force"] == "feed-team"
    with pytest.raises(InputError, match="no force is named"):
        flows.design_scenario(force_config, scenario=scenario, scenario_name="nameless")


# --- Serving a run with forces on the real model server ------------------------------------


@pytest.mark.slow
def test_a_run_with_forces_is_served_per_force_by_the_model_server(
        prefect_session, demo_slice_dir, tmp_path):
    """`territory serve` on a run with forces: every force by default, one on request."""
    import subprocess
    import sys

    from territory.features.spatial import build_adjacency
    from territory.models.tracking import load_champion
    from territory.pipelines import flows
    from territory.pipelines.publish import setup_tracking
    from territory.pipelines.stages import load_inputs, market_table
    from tests.conftest import free_port, post_invocations, wait_until_serving
    from tests.test_forces import _two_line_slice

    _two_line_slice(demo_slice_dir, tmp_path)
    path = _two_force_config(tmp_path, demo_slice_dir)
    config = load_config(path)
    result = flows.pipeline(config)
    run_dir = result["run_dir"]

    setup_tracking(config)
    columns = [c["name"] for c in load_champion().metadata.get_input_schema().to_dict()]
    inputs = load_inputs(config)
    graph = build_adjacency(inputs.units, projected_crs=config.data.projected_crs)
    rows = market_table(config, inputs, graph).head(4).reset_index(names="unit_id")[columns]
    request = {"dataframe_split": rows.to_dict(orient="split")}

    port = free_port()
    territory = str(Path(sys.executable).parent / "territory")
    server = subprocess.Popen([territory, "serve", "--config", str(path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(server, port)
        status, body = post_invocations(port, request)
        assert status == 200, body
        every = pd.DataFrame(body["predictions"])
        assert every["force"].tolist() == ["devices-team"] * 4 + ["feed-team"] * 4
        assert every["unit_id"].tolist() == rows["unit_id"].tolist() * 2

        status, body = post_invocations(port, {**request, "params": {"force": "feed-team"}})
        assert status == 200, body
        feed = pd.DataFrame(body["predictions"])
        assert feed["force"].tolist() == ["feed-team"] * 4
        assert feed["unit_id"].tolist() == rows["unit_id"].tolist()
        # the force's own answers: its segment's potential and its own territories
        segment = pd.read_csv(run_dir / "segment_potential.csv", dtype={"unit_id": str})
        expected = segment.set_index("unit_id")["feed"].reindex(feed["unit_id"])
        np.testing.assert_allclose(feed["potential"], expected.to_numpy(), rtol=1e-6)
        alignment = pd.read_parquet(run_dir / "alignment.parquet")
        own = set(alignment.loc[alignment["force"] == "feed-team", "territory_id"])
        assert set(feed["proposed_territory"]) <= own
        pd.testing.assert_frame_equal(feed, every.iloc[4:].reset_index(drop=True))

        status, body = post_invocations(port, {**request, "params": {"force": "sales-team"}})
        assert 400 <= status < 500
        assert "unknown force 'sales-team'" in body["message"]
        assert "devices-team, feed-team" in body["message"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
