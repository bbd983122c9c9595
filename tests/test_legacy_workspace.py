"""A workspace made before the ``territory.*`` namespace: loaded with the shim, then migrated.

The fixture (``tests/data/legacy_workspace``, see its README) is a real MLflow
SQLite store whose pyfuncs were pickled with the old module names. Each test
works on its own copy, with the artifact paths in the store pointed at it.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from territory.models import tracking
from territory.models.recommender import RecommenderBundle
from territory.models.tracking import legacy as tracking_legacy
from territory.models.tracking.legacy import (
    LegacyWorkspaceWarning,
    legacy_module_names,
    migrate_workspace,
    needs_legacy_names,
    without_legacy_names,
)
from tests.conftest import write_slice_config

FIXTURE = Path(__file__).parent / "data" / "legacy_workspace"
MADE_IN = "/tmp/legacy/workspace"
EXPERIMENT = "legacy"
FORECASTER = "legacy-forecaster"
MODELS = [FORECASTER, tracking.RECOMMENDER]
OLD_ROOTS = ("features", "models", "pipelines")


def copy_workspace(dest: Path) -> Path:
    """Copy the fixture to ``dest`` and point every path in its store at the copy."""
    shutil.copytree(FIXTURE, dest)
    with closing(sqlite3.connect(dest / "mlflow.db")) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        texts = [(t, col) for t in tables for _, col, kind, *_ in
                 db.execute(f'PRAGMA table_info("{t}")')
                 if any(k in (kind or "").upper() for k in ("CHAR", "TEXT", "CLOB"))]
        for table, col in texts:
            db.execute(f'UPDATE "{table}" SET "{col}" = replace("{col}", ?, ?)',
                       (MADE_IN, str(dest)))
        db.commit()
        left = sum(db.execute(f'SELECT count(*) FROM "{t}" WHERE instr("{c}", ?) > 0',
                              (MADE_IN,)).fetchone()[0] for t, c in texts)
    assert left == 0
    return dest


@pytest.fixture
def workspace(tmp_path):
    """A copy of the legacy workspace, with MLflow pointed at it."""
    previous = mlflow.get_tracking_uri()
    ws = copy_workspace(tmp_path / "workspace")
    tracking.connect(None, ws, EXPERIMENT)
    yield ws
    mlflow.set_tracking_uri(previous)


def old_names_loaded() -> list[str]:
    return sorted(n for n in sys.modules if n.split(".")[0] in OLD_ROOTS)


def input_example(model_uri: str) -> pd.DataFrame:
    """The rows the model was logged with, typed as its signature says."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return Model.load(local).load_input_example(local)


def potential_uri(run_id: str) -> str:
    found = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run_id}' AND name = '{tracking.POTENTIAL_ARTIFACT}'",
        output_format="list")
    assert len(found) == 1
    return found[0].model_uri


def predictions(forecaster, recommender, potential, run_id: str) -> dict[str, pd.DataFrame]:
    """The three models' outputs on their own logged input examples."""
    potential_rows = input_example(potential_uri(run_id))
    return {
        "forecast": forecaster.predict(input_example(f"models:/{FORECASTER}/1")),
        "recommend": recommender.predict(input_example(f"models:/{tracking.RECOMMENDER}/1")),
        "potential": pd.DataFrame({"potential": potential.predict(potential_rows)}),
    }


def check_shapes(out: dict[str, pd.DataFrame]) -> None:
    forecast = out["forecast"]
    assert list(forecast.columns) == ["forecast", "forecast_lo", "forecast_hi"]
    assert len(forecast) == 5 and np.isfinite(forecast.to_numpy(float)).all()
    assert (forecast["forecast_lo"] <= forecast["forecast_hi"]).all()
    recommend = out["recommend"]
    assert len(recommend) == 3
    numbers = recommend[["forecast", "potential", "white_space", "penetration"]]
    assert np.isfinite(numbers.to_numpy(float)).all()
    assert recommend["action"].notna().all()
    assert len(out["potential"]) == 3 and np.isfinite(out["potential"].to_numpy()).all()


def load_legacy(monkeypatch) -> dict[str, pd.DataFrame]:
    """Load the legacy champions with today's loaders (the shim) and predict."""
    from territory.models.forecast import SalesForecaster

    monkeypatch.setattr(tracking_legacy, "_warned", set())
    with pytest.warns(LegacyWorkspaceWarning, match="territory migrate"):
        forecaster = tracking.load_champion(FORECASTER)
    recommender = tracking.load_champion()
    loaded = tracking.load_version(FORECASTER)
    assert isinstance(loaded.forecaster, SalesForecaster)  # today's class, not a copy
    assert isinstance(recommender.unwrap_python_model().bundle, RecommenderBundle)
    return predictions(forecaster, recommender, loaded.potential, loaded.run_id)


# --- The shim ----------------------------------------------------------------------------------


def test_old_names_resolve_to_todays_modules_and_leave_nothing_behind():
    import territory.models
    from territory.models import forecast

    before, finders = old_names_loaded(), list(sys.meta_path)
    with legacy_module_names():
        assert importlib.import_module("models.forecast") is forecast
        assert pickle.loads(b"cmodels.forecast\nSalesForecaster\n.") is forecast.SalesForecaster
        assert pickle.loads(b"cmodels.serving\nRecommenderBundle\n.") is RecommenderBundle
        assert pickle.loads(b"cpipelines.publish\nPotentialModel\n.") is tracking.PotentialModel
        assert old_names_loaded()
    assert old_names_loaded() == before and sys.meta_path == finders
    assert forecast.__spec__.name == "territory.models.forecast"
    assert not hasattr(territory.models, "serving")  # nothing added to today's packages
    with without_legacy_names(), pytest.raises(ModuleNotFoundError):  # as when installed
        pickle.loads(b"cmodels.forecast\nSalesForecaster\n.")
    assert old_names_loaded() == before


def test_a_real_package_of_an_old_name_is_never_shadowed(tmp_path, monkeypatch):
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "__init__.py").write_text("SOMEONE_ELSES = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with legacy_module_names():
            assert importlib.import_module("features").SOMEONE_ELSES
            old_tracking = importlib.import_module("models.tracking")  # a package: a proxy
            assert old_tracking.TerritoryScoringModel is tracking.TerritoryScoringModel
            assert pickle.loads(b"cmodels.tracking\nTerritoryRecommender\n.") \
                is tracking.TerritoryRecommender
    finally:
        sys.modules.pop("features", None)


# --- Loading the legacy workspace --------------------------------------------------------------


def test_the_fixture_does_not_load_without_the_shim(workspace, tmp_path):
    """A plain load fails, in a process without the source checkout on its path..."""
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', '.')]\n"
            "import mlflow\n"
            f"mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r})\n"
            "try:\n"
            f"    mlflow.pyfunc.load_model('models:/{FORECASTER}@champion')\n"
            "except ModuleNotFoundError as exc:\n"
            "    print('missing', exc.name)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["missing", "models"]
    # ...and here, where the checkout's folders are importable but must not be used.
    for name in MODELS:
        assert needs_legacy_names(f"models:/{name}@champion")


def test_todays_loaders_load_the_legacy_champions(workspace, monkeypatch):
    out = load_legacy(monkeypatch)
    check_shapes(out)
    assert old_names_loaded() == []


# --- Migration ---------------------------------------------------------------------------------

CHECK_MIGRATED = """
import json, sys, warnings
import mlflow, pandas as pd
from territory.models import tracking
from territory.models.tracking.legacy import LegacyWorkspaceWarning
warnings.simplefilter("error", LegacyWorkspaceWarning)
sys.path = [p for p in sys.path if p not in ('', '.')]
mlflow.set_tracking_uri(sys.argv[1])
args = json.loads(sys.argv[2])
forecaster = mlflow.pyfunc.load_model("models:/legacy-forecaster@champion")
recommender = mlflow.pyfunc.load_model("models:/territory-recommender@champion")
loaded = tracking.load_version("legacy-forecaster")
potential = loaded.potential.predict(pd.read_parquet(args["potential_in"]))
forecaster.predict(pd.read_parquet(args["forecast_in"])).to_parquet(args["forecast"])
recommender.predict(pd.read_parquet(args["recommend_in"])).to_parquet(args["recommend"])
pd.DataFrame({"potential": potential}).to_parquet(args["potential"])
assert not [m for m in sys.modules if m.split(".")[0] in ("features", "models", "pipelines")]
print(loaded.version, loaded.run_id)
"""


def predict_in_fresh_process(tmp_path: Path, old_run_id: str) -> tuple[dict, list[str]]:
    """Predict with the champions in a new interpreter (no shim, no checkout on the path)."""
    files = {}
    inputs = {"forecast_in": input_example(f"models:/{FORECASTER}/1"),
              "recommend_in": input_example(f"models:/{tracking.RECOMMENDER}/1"),
              "potential_in": input_example(potential_uri(old_run_id))}
    for key, frame in inputs.items():
        files[key] = str(tmp_path / f"{key}.parquet")
        frame.to_parquet(files[key])
    outputs = {key: str(tmp_path / f"{key}.parquet") for key in ("forecast", "recommend",
                                                                 "potential")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK_MIGRATED, mlflow.get_tracking_uri(),
         json.dumps({**files, **outputs})],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: pd.read_parquet(v) for k, v in outputs.items()}, done.stdout.split()


def test_migrated_models_load_anywhere_and_predict_the_same(workspace, tmp_path, monkeypatch):
    client = MlflowClient()
    old = client.get_model_version(FORECASTER, "1")
    old_run = client.get_run(old.run_id)
    before = load_legacy(monkeypatch)

    moved = migrate_workspace(EXPERIMENT, MODELS)

    assert moved == [(FORECASTER, "1", "2"), (tracking.RECOMMENDER, "1", "2")]
    after, (version, run_id) = predict_in_fresh_process(tmp_path, old.run_id)
    assert version == "2" and run_id != old.run_id
    for key in before:
        pd.testing.assert_frame_equal(after[key].reset_index(drop=True),
                                      before[key].reset_index(drop=True), check_dtype=False)
    for name in MODELS:
        model = client.get_registered_model(name)
        assert {a: str(v) for a, v in model.aliases.items()} == {"champion": "2",
                                                                 "challenger": "2"}
        assert client.get_model_version(name, "1").tags["migrated_to"] == "2"
        new = client.get_model_version(name, "2")
        assert new.run_id == run_id and new.tags["migrated_from_version"] == "1"
        assert not needs_legacy_names(f"models:/{name}@champion")
    assert client.get_model_version(FORECASTER, "2").tags["as_of"] == old.tags["as_of"]
    new_run = client.get_run(run_id)
    assert new_run.data.tags["migrated_from_run"] == old.run_id
    assert new_run.info.experiment_id == old_run.info.experiment_id
    for tag in ("evaluation_windows", "as_of", "config_hash", "run_key", "promotion"):
        assert new_run.data.tags[tag] == old_run.data.tags[tag]
    assert new_run.data.metrics == old_run.data.metrics
    assert new_run.data.params == old_run.data.params
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.json"}
    reused = tracking.find_tracked_run(EXPERIMENT, FORECASTER, old_run.data.tags["run_key"])
    assert reused["run_id"] == run_id and reused["version"] == "2"


def test_a_second_migration_finds_nothing_to_do(workspace):
    assert len(migrate_workspace(EXPERIMENT, MODELS)) == 2
    client = MlflowClient()
    versions = {n: len(client.search_model_versions(f"name = '{n}'")) for n in MODELS}
    assert migrate_workspace(EXPERIMENT, MODELS) == []
    assert versions == {n: len(client.search_model_versions(f"name = '{n}'")) for n in MODELS}


def test_a_failed_migration_leaves_the_registry_as_it_was(workspace, monkeypatch):
    client = MlflowClient()

    def state():
        runs = client.search_runs([mlflow.get_experiment_by_name(EXPERIMENT).experiment_id])
        return ({n: ({a: str(v) for a, v in client.get_registered_model(n).aliases.items()},
                     sorted((v.version, dict(v.tags)) for v in
                            client.search_model_versions(f"name = '{n}'"))) for n in MODELS},
                sorted(r.info.run_id for r in runs))

    before = state()

    def fail(*args, **kwargs):  # fault injection: the store stays real
        raise RuntimeError("store went away")

    monkeypatch.setattr(tracking, "log_recommender", fail)
    with pytest.raises(RuntimeError, match="store went away"):
        migrate_workspace(EXPERIMENT, MODELS)
    assert state() == before
    monkeypatch.undo()
    assert len(migrate_workspace(EXPERIMENT, MODELS)) == 2


# --- The command line --------------------------------------------------------------------------


def test_migrate_command_and_serve_refuses_a_legacy_champion(workspace, demo_slice_dir,
                                                             monkeypatch):
    from typer.testing import CliRunner

    from territory.pipelines.cli import app

    for key in ("PREFECT_HOME", "PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.delenv(key, raising=False)  # the CLI sets them; undone after the test
    config = write_slice_config(demo_slice_dir, workspace, tracking={
        "experiment": EXPERIMENT, "registered_model": FORECASTER})
    runner = CliRunner()

    refused = runner.invoke(app, ["serve", "--config", str(config)])
    assert refused.exit_code == 2
    unwrapped = "".join(refused.output.split())  # rich wraps long paths anywhere
    assert f"territorymigrate--config{config}".replace(" ", "") in unwrapped

    result = runner.invoke(app, ["migrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert FORECASTER in result.output and "v2" in result.output
    assert not tracking_legacy.champion_needs_migration(mlflow.get_tracking_uri())
    again = runner.invoke(app, ["migrate", "--config", str(config)])
    assert again.exit_code == 0 and "nothing to migrate" in again.output
