"""``data.previous_alignment``: typed and checked in the config, validated like the alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_slice_config

from territory.features.errors import InputError
from territory.pipelines import stages
from territory.pipelines.config import load_config


def _config(demo_slice_dir, tmp_path, previous: dict | None, **data):
    path = write_slice_config(demo_slice_dir, tmp_path / "ws")
    raw = yaml.safe_load(path.read_text())
    if previous is not None:
        raw["data"]["previous_alignment"] = previous
    raw["data"].update(data)
    path.write_text(yaml.safe_dump(raw))
    return path


def _earlier(demo_slice_dir, tmp_path, edit=None) -> str:
    frame = pd.read_csv(demo_slice_dir / "alignment.csv", dtype=str)
    territories = sorted(frame["territory_id"].unique())
    # the first four units belong to the next territory in the earlier alignment
    frame.loc[:3, "territory_id"] = [
        territories[(territories.index(t) + 1) % len(territories)]
        for t in frame.loc[:3, "territory_id"]]
    if edit is not None:
        edit(frame)
    out = tmp_path / "earlier.csv"
    frame.to_csv(out, index=False)
    return str(out)


def test_loaded_and_validated_when_given(demo_slice_dir, tmp_path):
    _earlier(demo_slice_dir, tmp_path)
    config = load_config(_config(demo_slice_dir, tmp_path,
                                 {"path": "earlier.csv", "changed_at": "2024-07"}))
    assert config.data.previous_alignment.path == tmp_path / "earlier.csv"
    assert config.data.previous_alignment.changed_at == "2024-07"
    inputs = stages.load_inputs(config)
    current = inputs.alignment.set_index("unit_id")["territory_id"]
    before = inputs.previous_alignment.set_index("unit_id")["territory_id"]
    assert (current.reindex(before.index) != before).sum() == 4
    assert "previous_alignment" in inputs.file_hashes



def test_left_out_keeps_the_config_hash(demo_slice_dir, tmp_path):
    config = load_config(_config(demo_slice_dir, tmp_path, None))
    assert config.data.previous_alignment is None
    assert "previous_alignment" not in config.model_dump(exclude=config.unset_keys())["data"]


@pytest.mark.parametrize(("previous", "data", "words"), [
    ({"path": "missing.csv", "changed_at": "2024-07"}, {}, "file not found"),
    ({"path": "earlier.csv", "changed_at": "July"}, {}, "not a date"),
    ({"path": "earlier.csv"}, {}, "changed_at"),
    ({"path": "earlier.csv", "changed_at": "2024-07", "when": 1}, {}, "when"),
    ({"path": "earlier.csv", "changed_at": "2024-07"}, {"alignment": None}, "data.alignment"),
])
def test_config_errors(demo_slice_dir, tmp_path, previous, data, words):
    _earlier(demo_slice_dir, tmp_path)
    with pytest.raises(InputError, match=words):
        load_config(_config(demo_slice_dir, tmp_path, previous, **data))


def _unknown(frame):
    frame.loc[0, "unit_id"] = "99999"


def _blank(frame):
    frame.loc[[1, 2], "territory_id"] = ""


@pytest.mark.parametrize(("edit", "words"), [
    (_unknown, "unit_id.*must be a known unit.*99999"),
    (_blank, "territory_id.*must not be empty"),
])
def test_file_errors_name_the_file_column_and_rows(demo_slice_dir, tmp_path, edit, words):
    _earlier(demo_slice_dir, tmp_path, edit)
    config = load_config(_config(demo_slice_dir, tmp_path,
                                 {"path": "earlier.csv", "changed_at": "2024-07"}))
    with pytest.raises(InputError, match=words) as caught:
        stages.load_inputs(config)
    assert "earlier.csv" in str(caught.value)
    assert "offending rows: line" in str(caught.value)


def test_rep_change_share_error_on_the_slice(demo_slice_dir, tmp_path):
    from territory.pipelines.rep_change import rep_change_stage

    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    changed = (pd.Timestamp(sales["period"].max()) - pd.DateOffset(months=11)).strftime("%Y-%m")
    _earlier(demo_slice_dir, tmp_path, _third_moved(seed=0))
    config = load_config(_config(demo_slice_dir, tmp_path,
                                 {"path": "earlier.csv", "changed_at": changed}))
    inputs = stages.load_inputs(config)
    features = stages.feature_stage(config, inputs)
    metrics, table = rep_change_stage(config, inputs, features)
    assert metrics["potential_rep_change_territories"] >= 2
    assert metrics["potential_rep_change_units"] == table["n_units"].sum()
    assert 0 <= metrics["potential_rep_change_share_error_p50"] <= \
        metrics["potential_rep_change_share_error_p90"] < 5
    assert np.isfinite(metrics["potential_rep_change_log_rmse"])
    unset = load_config(_config(demo_slice_dir, tmp_path / "plain", None))
    assert rep_change_stage(unset, inputs, features) is None


def test_report_states_the_rep_change_error():
    from types import SimpleNamespace

    from territory.pipelines.report_content import potential_accuracy_sentences

    metrics = {"potential_rep_adjusted": 0.0, "potential_rep_change_units": 60.0,
               "potential_rep_change_territories": 2.0,
               "potential_rep_change_share_error_p50": 0.012,
               "potential_rep_change_share_error_p90": 0.034}
    words = potential_accuracy_sentences(SimpleNamespace(metrics=metrics),
                                         SimpleNamespace(metrics={}))
    assert any("60 units whose rep changed" in w and "3.4%" in w for w in words)
    del metrics["potential_rep_change_share_error_p90"]
    words = potential_accuracy_sentences(SimpleNamespace(metrics=metrics),
                                         SimpleNamespace(metrics={}))
    assert not any("rep changed" in w for w in words)


@pytest.mark.slow
def test_train_flow_logs_the_rep_change_error(prefect_session, demo_slice_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from territory.pipelines import flows, publish
    from tests.conftest import FAST_MODELS

    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    changed = (pd.Timestamp(sales["period"].max()) - pd.DateOffset(months=11)).strftime("%Y-%m")
    _earlier(demo_slice_dir, tmp_path, _third_moved(seed=1))
    path = _config(demo_slice_dir, tmp_path, {"path": "earlier.csv", "changed_at": changed})
    raw = yaml.safe_load(path.read_text()) | FAST_MODELS | {
        "run_name": "rep-change",
        "tracking": {"experiment": "rep-change-test", "registered_model": "rep-change"}}
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    summary = flows.train(config)
    assert summary["metrics"]["potential_rep_change_territories"] >= 2
    run = MlflowClient(publish.tracking_uri(config)).get_run(summary["mlflow_run_id"])
    assert (run.data.metrics["potential_rep_change_share_error_p90"]
            == pytest.approx(summary["metrics"]["potential_rep_change_share_error_p90"]))
    folder = Path(config.workspace) / "train" / f"rep-change-{summary['as_of']}"
    table = pd.read_csv(folder / publish.REP_CHANGE_TABLE)  # beside summary.json, and in MLflow
    assert table["n_units"].sum() == summary["metrics"]["potential_rep_change_units"]
    client = MlflowClient(publish.tracking_uri(config))
    assert publish.REP_CHANGE_TABLE in {a.path for a in client.list_artifacts(run.info.run_id)}


def _third_moved(seed: int):
    """An edit of the alignment: a seeded third of the units came from the next territory."""
    rng = np.random.default_rng(seed)

    def moved(frame):
        territories = sorted(frame["territory_id"].unique())
        rows = rng.choice(len(frame), len(frame) // 3, replace=False)
        frame.loc[rows, "territory_id"] = [
            territories[(territories.index(t) + 1) % len(territories)]
            for t in frame.loc[rows, "territory_id"]]

    return moved
