"""The flows under Prefect's test API and a real MLflow SQLite store, on a tiny config.

Failure injection: a stage function of our own code is replaced by one that
raises, the flow runs, and the workspace files, registry versions, aliases
and tracked runs must be exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from territory.features import feature_set
from territory.features import io as fio
from territory.features.errors import InputError
from territory.models import alignment, recommend, scoring, tracking, training
from territory.pipelines import flows, publish, run_keys
from territory.pipelines.config import load_config
from tests.conftest import FAST_MODELS, write_slice_config
from tests.drifted import drifted_inputs

FAST = {
    "run_name": "flows",
    **FAST_MODELS,
    "tracking": {"experiment": "flows-test", "registered_model": "flows-forecaster"},
}


def fast_config(slice_dir: Path, workspace: Path, **overrides):
    return load_config(write_slice_config(slice_dir, workspace, **{**FAST, **overrides}))


@pytest.fixture(scope="module")
def config(prefect_session, demo_slice_dir, tmp_path_factory):
    return fast_config(demo_slice_dir, tmp_path_factory.mktemp("flows") / "workspace")


@pytest.fixture(scope="module")
def trained(config):
    return flows.train(config)


@pytest.fixture(scope="module")
def nightly(trained, config):
    return flows.nightly_forecast(config)


@pytest.fixture(scope="module")
def piped(nightly, config):
    return flows.pipeline(config)


def client_for(config) -> MlflowClient:
    return MlflowClient(tracking_uri=publish.tracking_uri(config))


def registry_state(config) -> dict:
    client = client_for(config)
    state = {}
    for name in (config.tracking.registered_model, "territory-recommender"):
        try:
            aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        except Exception:
            aliases = None
        versions = sorted(str(v.version) for v in
                          client.search_model_versions(f"name = '{name}'"))
        state[name] = (aliases, versions)
    exp = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.run_key != ''")
    state["keyed_runs"] = sorted((r.info.run_id, r.info.status) for r in runs
                                 if "run_key" in r.data.tags)
    return state


def outputs_state(config) -> dict[str, str]:
    """SHA-256 of every output file, failure records aside."""
    root = Path(config.workspace)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for kind in ("runs", "nightly", "train", "scenarios") if (root / kind).exists()
            for p in sorted((root / kind).rglob("*"))
            if p.is_file() and not p.name.endswith(".failed.json")}


def test_train_registers_and_gates(trained, config):
    client = client_for(config)
    name = config.tracking.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    assert trained["version"] == str(champion.version) and trained["promotion"]["promoted"]
    assert champion.tags["as_of"] == trained["as_of"] == "2025-12-01"
    summary = Path(config.workspace) / "train" / "flows-2025-12-01" / "summary.json"
    assert json.loads(summary.read_text())["mlflow_run_id"] == champion.run_id
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert "promotion_decision.json" in artifacts
    models = publish.load_registered_models(config)
    assert models.version == str(champion.version)
    assert models.trained.metrics["valid_wape"] == pytest.approx(trained["metrics"]["valid_wape"])


def test_train_rerun_reuses_the_tracked_run(trained, config):
    before = registry_state(config)
    again = flows.train(config)
    assert again["reused"] and again["mlflow_run_id"] == trained["mlflow_run_id"]
    assert registry_state(config) == before


def test_nightly_scores_with_the_champion(nightly, trained, config):
    folder = nightly["folder"]
    assert folder == Path(config.workspace) / "nightly" / "flows-2025-12-01"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["version"] == trained["version"]
    assert manifest["model"]["run_id"] == trained["mlflow_run_id"]
    scores = pd.read_parquet(folder / "scores.parquet")
    n_units = len(pd.read_parquet(config.data.sales)["unit_id"].unique())
    assert len(scores) == n_units * config.forecast.horizon
    assert scores["target_period"].min() == pd.Timestamp("2026-01-01")
    assert pd.read_csv(folder / "moves.csv").empty  # nightly recommends, it does not redesign
    assert (folder / "report.html").stat().st_size > 10_000
    # monitoring: the inputs are the champion's training data, so no rule fires
    assert nightly["monitoring"]["alerts"] == [] and "No alert rule fired" in (
        folder / "report.html").read_text()
    assert manifest["monitoring"]["promised"]["wape"] > 0


def test_nightly_rerun_replaces_that_dates_outputs(nightly, config):
    folder = nightly["folder"]
    first = pd.read_parquet(folder / "scores.parquet")
    again = flows.nightly_forecast(config)
    assert again["folder"] == folder
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no copies, no temp
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "scores.parquet"), first)


def test_feature_cache_is_keyed_on_file_hashes_and_config(trained, config, monkeypatch,
                                                          tmp_path):
    calls = []
    real = feature_set.build_feature_set

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(feature_set, "build_feature_set", counting)
    flows.prepare_features(config)
    assert calls == []  # built by the train flow; same files, same config
    moved = tmp_path / "copy"
    shutil.copytree(Path(config.data.sales).parent, moved)
    data = {**json.loads(config.data.model_dump_json()),
            **{k: str(moved / Path(v).name) for k, v in
               json.loads(config.data.model_dump_json()).items()
               if k in ("units", "sales", "demographics", "alignment", "reps", "truth") and v}}
    same_bytes = fast_config(moved, tmp_path / "ws1", data=data)
    flows.prepare_features(same_bytes)
    assert calls == []  # other paths, same bytes: still cached
    sales = pd.read_parquet(moved / "sales.parquet")
    sales.loc[sales.index[0], "sales"] += 1.0
    sales.to_parquet(moved / "sales.parquet")
    flows.prepare_features(same_bytes)
    assert len(calls) == 1  # one changed value in one file: rebuilt
    other = fast_config(moved, tmp_path / "ws2", data=data,
                        features={"lags": [1, 2, 3, 12], "rolling_windows": [3, 12]})
    flows.prepare_features(other)
    assert len(calls) == 2  # the feature config changed: rebuilt
    for changed in ({"gaps": "estimate"}, {"date_format": "%Y-%m-%d"}):
        flows.prepare_features(fast_config(moved, tmp_path / "ws3", data={**data, **changed},
                                           features={"lags": [1, 2, 3, 12],
                                                     "rolling_windows": [3, 12]}))
    assert len(calls) == 4  # how gaps are handled and dates read shape the features too


def test_transient_errors_are_retried_bad_input_is_not(trained, config, monkeypatch):
    real = fio.load_units
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("network share went away")
        return real(*args)

    monkeypatch.setattr(fio, "load_units", flaky)
    flows.prepare_features(config)
    assert len(calls) == 2

    def bad(*args):
        calls.append(1)
        raise InputError("sales.parquet", "must be >= 0", column="sales")

    calls.clear()
    monkeypatch.setattr(fio, "load_units", bad)
    with pytest.raises(InputError):
        flows.prepare_features(config)
    assert len(calls) == 1


def _raise(message):
    def fail(*args, **kwargs):
        raise RuntimeError(message)

    return fail


# Every stage of the pipeline, in order; the last two fail after MLflow has
# registered versions and moved aliases, so they test the rollback.
STAGES = [
    ("load and validate inputs", fio, "load_units"),
    ("build features", feature_set, "build_feature_set"),
    ("train forecast and potential models", training, "train_models"),
    ("score units", scoring, "score_units"),
    ("design territories", alignment, "propose_alignment"),
    ("write outputs, report and MLflow run", recommend, "recommend"),
    ("write outputs, report and MLflow run", publish, "write_outputs"),
    ("write outputs, report and MLflow run", tracking, "log_potential_model"),
    ("write outputs, report and MLflow run", run_keys, "manifest"),
]


@pytest.mark.parametrize(("stage", "module", "attr"), STAGES,
                         ids=[f"{m.__name__.split('.')[-1]}.{a}" for _, m, a in STAGES])
def test_failure_in_any_stage_changes_nothing(piped, config, monkeypatch, stage, module, attr):
    # Another seed and feature set: a new run that would register new versions and
    # rebuild features, for the same as-of date as the outputs already there.
    changed = config.model_copy(update={
        "potential": config.potential.model_copy(update={"seed": 7}),
        "features": config.features.model_copy(update={"lags": [1, 2, 3, 6]})})
    files, registry = outputs_state(config), registry_state(config)
    assert any(k.startswith("runs/") for k in files)
    monkeypatch.setattr(module, attr, _raise(f"injected failure in {attr}"))
    with pytest.raises(RuntimeError, match=f"injected failure in {attr}"):
        flows.pipeline(changed)
    assert outputs_state(config) == files
    assert registry_state(config) == registry
    runs = Path(config.workspace) / "runs"
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]  # no temp folders left
    date = "latest" if attr == "load_units" else "2025-12-01"  # as-of unknown before loading
    record = json.loads((runs / f"flows-{date}.failed.json").read_text())
    assert record["stage"] == stage and f"injected failure in {attr}" in record["error"]
    assert record["flow"] == "territory-pipeline" and record["outputs_unchanged"]
    assert "re-run" in record["what_to_do"]


def test_failure_record_artifact_and_recovery(piped, config):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flows-failure"])))
    assert found and "failed at" in found[0].data
    changed = config.model_copy(update={
        "potential": config.potential.model_copy(update={"seed": 7})})
    record = Path(config.workspace) / "runs" / "flows-2025-12-01.failed.json"
    record.write_text("{}")  # as a failed attempt leaves it
    result = flows.pipeline(changed)
    assert not record.exists()  # a successful re-run clears the record
    manifest = json.loads((result["run_dir"] / "manifest.json").read_text())
    assert manifest["config"]["potential"]["seed"] == 7  # and replaced that date's outputs


def test_failure_in_the_nightly_keeps_the_last_forecast(nightly, config, monkeypatch):
    files = outputs_state(config)
    monkeypatch.setattr(publish, "write_outputs", _raise("disk full (injected)"))
    with pytest.raises(RuntimeError):
        flows.nightly_forecast(config)
    assert outputs_state(config) == files
    record = json.loads((Path(config.workspace) / "nightly"
                         / "flows-2025-12-01.failed.json").read_text())
    assert record["stage"] == "write forecast, recommendations and report"


def test_a_task_past_its_timeout_fails_the_run(trained, config, monkeypatch):
    def slow(*args, **kwargs):
        for _ in range(300):
            time.sleep(0.1)

    short = config.model_copy(update={
        "schedule": config.schedule.model_copy(update={"train_timeout_s": 1.0}),
        "potential": config.potential.model_copy(update={"seed": 8})})
    monkeypatch.setattr(training, "train_models", slow)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        flows.train(short)
    assert time.perf_counter() - started < 25
    record = json.loads((Path(config.workspace) / "train"
                         / "flows-2025-12-01.failed.json").read_text())
    assert record["stage"] == "train forecast and potential models"
    assert "timeout" in record["what_to_do"]


def test_design_scenario_leaves_the_registry_alone(trained, config):
    from territory.models.config import TerritoryConfig

    before = registry_state(config)
    scenario = TerritoryConfig(n_territories=3, keep_rep_homes=False, time_limit_s=10)
    result = flows.design_scenario(config, scenario=scenario, scenario_name="k3")
    assert result["folder"].name == "flows-k3-2025-12-01"
    alignment = pd.read_parquet(result["folder"] / "alignment.parquet")
    assert alignment["territory_id"].nunique() == 3
    assert result["territories"]["contiguous"]
    assert registry_state(config) == before
    with pytest.raises(Exception, match="not a plain name"):
        flows.design_scenario(config, scenario_name="../escape")


def test_forecast_accuracy_on_a_hand_made_frame():
    from territory.features.config import ColumnsConfig

    scores = pd.DataFrame({
        "unit_id": ["a", "a", "b", "b"], "horizon": [1, 2, 1, 2],
        "target_period": pd.to_datetime(["2024-02-01", "2024-03-01"] * 2),
        "forecast": [10.0, 10.0, 20.0, 20.0], "forecast_lo": [8.0, 8.0, 19.0, 19.0],
        "forecast_hi": [12.0, 12.0, 21.0, 21.0]})
    actuals = pd.DataFrame({"unit_id": ["a", "b", "a"],
                            "period": pd.to_datetime(["2024-02-01", "2024-02-01", "2024-01-01"]),
                            "sales": [12.0, 16.0, 99.0]})
    acc = scoring.forecast_accuracy(scores, actuals, ColumnsConfig(),
                                   pd.Series(["T1", "T1"], index=["a", "b"]))
    assert acc["months_observed"] == 1  # March is not known yet; January is before the as-of
    assert acc["wape"] == pytest.approx((2 + 4) / 28)
    assert acc["bias"] == pytest.approx(2 / 28)
    assert acc["coverage"] == pytest.approx(0.5)
    assert acc["wape_territory"] == pytest.approx(2 / 28)  # 30 vs 28 for the one territory


def test_backfill_trains_per_as_of_and_reports_accuracy(trained, config):
    from territory.pipelines.deploy import backfill

    before = registry_state(config)
    table, csv = backfill(config, "2025-11", "2026-01")
    assert list(table["as_of"]) == ["2025-11-01", "2025-12-01", "2026-01-01"]
    assert list(table["status"][:2]) == ["ok"] * 2 and table["status"][2].startswith("skipped")
    assert list(table["months_observed"][:2]) == [1, 0]
    assert 0 < table["wape"][0] < 1 and pd.isna(table["wape"][1])
    pd.testing.assert_frame_equal(pd.read_csv(csv, dtype={"model_version": str}).iloc[:, :2],
                                  table.iloc[:, :2].astype({"as_of": str}))
    client = client_for(config)
    for row in table.iloc[:2].itertuples():
        version = client.get_model_version(f"{config.tracking.registered_model}-backfill",
                                           row.model_version)
        assert version.tags["as_of"] == row.as_of  # trained on data up to that date only
        scores = pd.read_parquet(Path(row.folder) / "scores.parquet")
        assert scores["target_period"].min() == pd.Timestamp(row.as_of) + pd.DateOffset(months=1)
    assert registry_state(config)["flows-forecaster"] == before["flows-forecaster"]
    # the same forecasts, measured into the monitoring history (December has no actual yet)
    history = pd.read_parquet(Path(config.workspace) / "monitoring" / "accuracy.parquet")
    overall = history[(history["level"] == "overall") & (history["source"] == "backfill")]
    assert list(overall["as_of"]) == [pd.Timestamp("2025-11-01")]
    nov = overall.iloc[0]
    assert nov["months_observed"] == 1 and nov["wape"] == pytest.approx(table["wape"][0])
    assert nov["territory_wape"] == pytest.approx(table["wape_territory"][0])
    assert nov["coverage"] == pytest.approx(table["coverage"][0])
    assert nov["promised_wape"] > 0 and nov["model_version"] == table["model_version"][0]
    assert set(history["level"]) == {"overall", "horizon", "territory", "horizon_territory"}
    from territory.pipelines.monitoring import backfill_horizons

    horizons = backfill_horizons(config, table["as_of"][:2])  # December: nothing to measure
    assert list(horizons["horizon"]) == [1] and list(horizons["forecasts"]) == [1]
    assert horizons["wape"][0] == pytest.approx(table["wape_h1"][0])
    assert horizons["promised_wape"][0] > 0
    report = (Path(table["folder"][1]) / "report.html").read_text()  # December's backfill
    assert "How our forecasts did" in report and "as of 2025-11 now has 1 month" in report
    exp = client.get_experiment_by_name(config.tracking.experiment)
    measured = client.search_runs([exp.experiment_id], "tags.flow = 'monitoring'")
    points = client.get_metric_history(measured[0].info.run_id, "realised_wape")
    assert [p.value for p in points] == pytest.approx([nov["wape"]])


def test_backfill_retraining_every_3_months_scores_between_with_the_last_model(trained, config):
    from territory.pipelines.deploy import backfill

    client = client_for(config)
    name = f"{config.tracking.registered_model}-backfill"

    def versions() -> int:
        return len(client.search_model_versions(f"name = '{name}'"))

    before = versions()
    table, _ = backfill(config, "2025-09", "2025-11", retrain_every=3)
    assert list(table["status"]) == ["ok"] * 3 and versions() == before + 1  # one training
    assert table["model_as_of"].eq("2025-09-01").all() and table["model_version"].nunique() == 1
    for row in table.itertuples():  # each as-of date scored on its own data, with that model
        folder = Path(row.folder)
        scores = pd.read_parquet(folder / "scores.parquet")
        assert scores["target_period"].min() == pd.Timestamp(row.as_of) + pd.DateOffset(months=1)
        assert json.loads((folder / "manifest.json").read_text())["model"]["version"] == \
            row.model_version
    assert list(table["months_observed"]) == [3, 2, 1]
    history = pd.read_parquet(Path(config.workspace) / "monitoring" / "accuracy.parquet")
    october = history[(history["source"] == "backfill") & (history["level"] == "overall")
                      & (history["as_of"] == pd.Timestamp("2025-10-01"))]
    assert list(october["model_version"]) == [table["model_version"][0]]
    with pytest.raises(InputError, match="retrain-every"):
        backfill(config, "2025-09", "2025-11", retrain_every=0)


def test_backfill_command_prints_the_accuracy_table(trained, config, prefect_session,
                                                    monkeypatch):
    from typer.testing import CliRunner

    from territory.pipelines.cli import app

    monkeypatch.setenv("PREFECT_HOME", str(prefect_session))  # the CLI keeps a set home
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # no server of its own
    path = Path(config.workspace).parent / f"{Path(config.workspace).name}.yaml"
    result = CliRunner().invoke(app, ["backfill", "--config", str(path), "--start", "2025-11",
                                      "--end", "2025-11"])
    assert result.exit_code == 0, result.output
    assert "2025-1" in result.output and "WAPE" in result.output and " ok " in result.output
    assert "Per horizon: realised vs promised" in result.output
    csv = Path(config.workspace) / "backfill" / "flows-2025-11-2025-11.csv"
    assert pd.read_csv(csv)["status"].tolist() == ["ok"]
    bad = CliRunner().invoke(app, ["backfill", "--config", str(path), "--start", "2025-13",
                                   "--end", "2025-11"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_nightly_command_runs_the_nightly_now_and_moves_no_alias(trained, config,
                                                                  prefect_session, monkeypatch):
    from typer.testing import CliRunner

    from territory.pipelines.cli import app

    monkeypatch.setenv("PREFECT_HOME", str(prefect_session))
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    path = Path(config.workspace).parent / f"{Path(config.workspace).name}.yaml"
    before = registry_state(config)
    result = CliRunner().invoke(app, ["nightly", "--config", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert re.search(rf"model version\W+v{trained['version']}\W", said) and "units scored" in said
    folder = Path(config.workspace) / "nightly" / f"{config.run_name}-{trained['as_of']}"
    assert f"report: {folder / 'report.html'}" in said and (folder / "report.html").is_file()
    assert registry_state(config) == before  # scoring registers nothing and moves no alias
    missing = CliRunner().invoke(app, ["nightly", "--config", str(path),
                                       "--model-version", "999"])
    said = " ".join(missing.output.split())
    assert missing.exit_code == 2 and "no version 999" in said and "train first" in said
    assert "Traceback" not in missing.output


@pytest.mark.slow
def test_injected_drift_fires_the_right_rules_posts_and_starts_the_retrain(
        trained, config, demo_slice_dir, tmp_path):
    from prefect.client.orchestration import get_client

    from territory.pipelines import alerts
    from territory.pipelines.deploy import scheduled_retrain

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    demographics, sales = drifted_inputs(demo_slice_dir, tmp_path)
    drifted = config.model_copy(update={
        "run_name": "flows-drift",
        "data": config.data.model_copy(update={"demographics": demographics, "sales": sales}),
        "monitoring": config.monitoring.model_copy(update={"retrain_on_alert": True})})
    deployment = scheduled_retrain.to_deployment(
        name="flows-drift-weekly-retrain", parameters={"config_path": str(tmp_path / "c.yaml")})
    deployment.apply()  # registered, no worker: the alert's run waits as Scheduled
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_port}/territory"
        drifted = drifted.model_copy(update={"monitoring": drifted.monitoring.model_copy(
            update={"webhook": hook})})
        result = flows.nightly_forecast(drifted)
    finally:
        server.shutdown()
    fired = result["monitoring"]["alerts"]
    rules = {(a["rule"], a["subject"]) for a in fired}
    assert ("drift", "market.median_age") in rules
    assert all("median_age" in subject for rule, subject in rules
               if rule == "drift" and subject.startswith("market."))  # no other demographic
    assert {rule for rule, _ in rules} == {"drift", "zeros", "zero_coded"}
    assert next(a for a in fired if a["rule"] == "zero_coded")["value"] >= 30
    assert [r["rule"] for r in alerts.read_records(drifted)] == [a["rule"] for a in fired]
    assert len(received) == 1 and [a["rule"] for a in received[0]["alerts"]] == \
        [a["rule"] for a in fired]
    assert fired[0]["webhook"] == {"url": hook, "status": 204}
    started = fired[0]["retrain"]
    assert started["started"], started
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(started["flow_run_id"])
        assert run.state.is_scheduled() and "alert" in run.tags
        client.delete_flow_run(run.id)
    report = (result["folder"] / "report.html").read_text()
    assert "What moved in the inputs" in report and "market.median_age" in report
    assert "units end in a year of zeros" in report
