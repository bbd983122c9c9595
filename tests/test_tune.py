"""``territory tune``: nested MLflow runs, a valid tuned config, seeded search, bad input.

Tiny generated data (16 grid-square units, 40 months, sales only) and a real
MLflow SQLite store in ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from shapely.geometry import box
from typer.testing import CliRunner

from territory.features.errors import InputError
from territory.pipelines.config import load_config

PARAMS = ["learning_rate", "num_leaves", "min_child_samples"]


def _write_data(folder: Path, n_side: int = 4, n_periods: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"u{i:02d}" for i in range(n_side * n_side)]
    cells = [box(0.1 * (i % n_side), 0.1 * (i // n_side), 0.1 * (i % n_side) + 0.1,
                 0.1 * (i // n_side) + 0.1) for i in range(n_side * n_side)]
    gpd.GeoDataFrame({"unit_id": ids}, geometry=cells, crs="EPSG:4326").to_parquet(
        folder / "units.parquet")
    periods = pd.date_range("2021-01-01", periods=n_periods, freq="MS")
    season = 1 + 0.3 * np.sin(2 * np.pi * periods.month.to_numpy() / 12)
    level = rng.lognormal(3, 0.7, len(ids))
    trend = 1 + 0.01 * np.arange(n_periods)
    values = level[:, None] * season * trend * rng.lognormal(0, 0.15, (len(ids), n_periods))
    pd.DataFrame({
        "unit_id": np.repeat(ids, n_periods),
        "period": np.tile(periods, len(ids)),
        "sales": values.ravel().round(2),
    }).to_parquet(folder / "sales.parquet")


def _config(tmp_path: Path, **forecast) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    _write_data(data)
    config = {
        "run_name": "tiny",
        "workspace": "workspace",
        "data": {"units": "data/units.parquet", "sales": "data/sales.parquet",
                 "projected_crs": "EPSG:3857"},
        "features": {"lags": [1, 2, 3, 12], "rolling_windows": [3, 12],
                     "rolling_stats": ["mean"], "spatial_lag_columns": []},
        "forecast": {"horizon": 3, "validation_periods": 3, "n_estimators": 25,
                     "early_stopping_rounds": 5, "max_train_rows": 1000,
                     "backtest": {"windows": 2, "step": 2}, **forecast},
        "territories": {"n_territories": 2, "workload_column": None},
        "tracking": {"experiment": "tune-test"},
        "progress": "none",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from territory.pipelines.tune import tune

    tmp = tmp_path_factory.mktemp("tune")
    source = _config(tmp)
    config = load_config(source)
    out = tmp / "configs" / "tuned.yaml"
    result = tune(config, source, out, n_trials=3, seed=11, params=PARAMS, show_progress=False)
    return config, result


def test_each_trial_is_a_nested_run_under_the_parent(tuned):
    config, result = tuned
    client = MlflowClient(f"sqlite:///{config.workspace / 'mlflow.db'}")
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 3 == len(result.trials)
    assert set(result.trials["run_id"]) == {c.info.run_id for c in children}
    for child in children:
        assert {f"forecast.{p}" for p in PARAMS} <= set(child.data.params)
        assert np.isfinite(child.data.metrics["backtest_wape"])
        assert child.data.tags["evaluation_windows"].startswith("backtest[")
    values = sorted(c.data.metrics["backtest_wape"] for c in children)
    assert parent.data.metrics["best_backtest_wape"] == pytest.approx(values[0])
    assert parent.data.params["best.forecast.num_leaves"] == str(result.best_params["num_leaves"])
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"tuned_config.yaml", "trials.csv", "search_space.yaml"} <= artifacts


def test_trial_zero_is_the_current_config_and_best_is_no_worse(tuned):
    config, result = tuned
    first = result.trials.iloc[0]
    assert first["learning_rate"] == pytest.approx(config.forecast.learning_rate)
    assert first["num_leaves"] == config.forecast.num_leaves
    assert result.best_value <= result.baseline_value
    assert result.best_value == pytest.approx(result.trials["wape"].min())


def test_written_config_loads_and_holds_the_best_params(tuned):
    config, result = tuned
    assert result.config_path.is_file()
    assert not list(result.config_path.parent.glob(".*tmp*"))  # atomic: no leftovers
    loaded = load_config(result.config_path)
    for name, value in result.best_params.items():
        assert getattr(loaded.forecast, name) == pytest.approx(value)
    # everything else is the source config, paths still pointing at the same files
    assert loaded.data.sales == config.data.sales and loaded.workspace == config.workspace
    assert loaded.features == config.features
    assert loaded.forecast.backtest == config.forecast.backtest
    assert result.config_path.read_text().startswith("# written by `territory tune`")


def test_same_seed_gives_the_same_trials(tuned, tmp_path):
    from territory.pipelines.tune import tune

    _, first = tuned
    source = _config(tmp_path)
    again = tune(load_config(source), source, tmp_path / "again.yaml", n_trials=3, seed=11,
                 params=PARAMS, show_progress=False)
    assert again.best_params == first.best_params
    pd.testing.assert_frame_equal(again.trials.drop(columns="run_id"),
                                  first.trials.drop(columns="run_id"))


def test_bad_requests_are_clear_errors(tmp_path):
    from territory.pipelines.tune import check_search

    config = load_config(_config(tmp_path))
    with pytest.raises(InputError, match="at least 1"):
        check_search(None, 0, None, config)
    with pytest.raises(InputError, match="unknown search space key.*max_depth"):
        check_search(["learning_rate", "max_depth"], 5, None, config)
    with pytest.raises(InputError, match="unknown metric"):
        check_search(None, 5, "r2", config)
    off = load_config(_config(tmp_path, backtest={"windows": 0}))
    with pytest.raises(InputError, match="forecast.backtest.windows"):
        check_search(None, 5, None, off)


def test_cli_rejects_bad_input_without_writing(tmp_path):
    from territory.pipelines.cli import app

    source = _config(tmp_path)
    out = tmp_path / "tuned.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--config", str(source), "--trials", "0",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "at least 1" in result.output
    result = runner.invoke(app, ["tune", "--config", str(source), "--params", "depth",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "depth" in result.output
    assert not out.exists()
