"""End to end: the real flow under Prefect's test harness, a real MLflow SQLite store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from territory.features.errors import InputError
from territory.pipelines.config import load_config
from tests.conftest import free_port, post_invocations, wait_until_serving, write_slice_config


@pytest.fixture(scope="module")
def prefect_harness(prefect_session):
    """The session's temporary Prefect API (see conftest.prefect_session)."""
    return prefect_session


@pytest.fixture(scope="module")
def first_run(prefect_harness, demo_slice_dir, tmp_path_factory):
    from territory.pipelines.flows import territory_pipeline

    workspace = tmp_path_factory.mktemp("e2e") / "workspace"
    territories = {"n_territories": 4, "keep_rep_homes": False, "time_limit_s": 10,
                   "rep_capacity": 900.0}  # only reported here: K is given
    forecast = {"n_estimators": 60, "learning_rate": 0.15, "max_train_rows": 20000,
                "early_stopping_rounds": 10, "combination": {"members": ["auto_theta"]}}
    config = load_config(write_slice_config(demo_slice_dir, workspace, territories=territories,
                                            forecast=forecast))
    return config, territory_pipeline(config)


def _uri(config) -> str:
    return f"sqlite:///{config.workspace / 'mlflow.db'}"


def test_outputs_follow_the_design(first_run):
    config, result = first_run
    run_dir = result["run_dir"]
    for name in ("scores.parquet", "alignment.parquet", "territories.geojson",
                 "territory_summary.csv", "moves.csv", "recommendations.csv", "report.html",
                 "report.xlsx", "manifest.json"):
        assert (run_dir / name).is_file(), name
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert list(scores.columns[:9]) == ["unit_id", "as_of", "horizon", "target_period", "forecast",
                                        "forecast_lo", "forecast_hi", "potential", "white_space"]
    units = gpd.read_parquet(config.data.units)
    assert len(scores) == len(units) * config.forecast.horizon
    assert (scores["forecast_lo"] <= scores["forecast"] + 1e-9).all()
    assert (scores["forecast"] <= scores["forecast_hi"] + 1e-9).all()
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    assert sorted(alignment["unit_id"]) == sorted(units["unit_id"])  # each unit exactly once
    assert alignment["territory_id"].nunique() == config.territories.n_territories
    territories = gpd.read_file(run_dir / "territories.geojson")
    assert len(territories) == config.territories.n_territories
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["mlflow_run_id"] == result["mlflow_run_id"]
    assert set(manifest["input_hashes"]) >= {"units", "sales", "demographics"}
    html = (run_dir / "report.html").read_text()
    assert "Proposed territories" in html and "data:image/png;base64," in html
    # how sure each territory's balance is (issue #19): an interval and a probability
    summary = pd.read_csv(run_dir / "territory_summary.csv")
    assert summary["p_within_tolerance"].between(0.0, 1.0).all()
    assert (summary["potential_lo"] <= summary["potential_total"] * (1 + 1e-9)).all()
    assert (summary["potential_total"] <= summary["potential_hi"] * (1 + 1e-9)).all()
    assert "Chance potential is within tolerance, in truth" in html
    assert "balanced on the estimate (robust mode off)" in html  # which balance mode ran
    # what stays violated, and why, reaches the workbook whenever there is any
    sheets = set(pd.ExcelFile(run_dir / "report.xlsx").sheet_names)
    assert ("Violations" in sheets) == bool(result["violations"])
    assert ("Why balance is not reached" in sheets) == bool(result["diagnosis"])


def test_golden_outputs_unchanged(first_run):
    """The slice run's alignment, scores and summary, pinned (see tests/golden_outputs.py)."""
    from tests.golden_outputs import check_golden

    _, result = first_run
    run_dir = result["run_dir"]
    check_golden(pd.read_parquet(run_dir / "alignment.parquet"), "slice_alignment", ["unit_id"])
    check_golden(pd.read_parquet(run_dir / "scores.parquet"), "slice_scores",
                 ["unit_id", "horizon"])
    check_golden(pd.read_csv(run_dir / "territory_summary.csv"), "slice_territory_summary",
                 ["territory"])


def test_published_forecasts_add_up_to_territories_and_total(first_run):
    """Issue #14 item 4: units, territories and the total of the published alignment agree
    at every horizon, in the node table, the scores and the territory recommendations; the
    method chosen on the backtest is recorded in MLflow."""
    config, result = first_run
    run_dir = result["run_dir"]
    nodes = pd.read_csv(run_dir / "forecast_hierarchy.csv", dtype={"node": str})
    scores = pd.read_parquet(run_dir / "scores.parquet")
    alignment = pd.read_parquet(run_dir / "alignment.parquet").set_index("unit_id")
    sums = (scores.assign(t=scores["unit_id"].map(alignment["territory_id"]))
            .groupby(["t", "horizon"])["forecast"].sum())
    terr = nodes[nodes["level"] == "territory"].set_index(["node", "horizon"])["forecast"]
    assert len(terr) == config.territories.n_territories * config.forecast.horizon
    pd.testing.assert_series_equal(terr.reindex(sums.index), sums, check_names=False,
                                   rtol=1e-9)
    total = nodes[nodes["level"] == "total"].set_index("horizon")["forecast"]
    by_h = terr.groupby(level="horizon").sum()
    pd.testing.assert_series_equal(total, by_h, check_names=False, rtol=1e-9)
    recs = pd.read_csv(run_dir / "territory_recommendations.csv").set_index("territory")
    over_h = terr.groupby(level="node").sum()
    pd.testing.assert_series_equal(recs["forecast"].sort_index(), over_h.sort_index(),
                                   check_names=False, rtol=1e-9)
    upper = nodes[nodes["level"] != "unit"]
    assert (upper["forecast_lo"] <= upper["forecast"] + 1e-9).all()
    assert (upper["forecast"] <= upper["forecast_hi"] + 1e-9).all()
    run = MlflowClient(tracking_uri=_uri(config)).get_run(result["mlflow_run_id"])
    assert run.data.tags["reconcile_method"] in ("bottom_up", "ols", "wls_struct", "wls_var",
                                                   "mint_shrink")
    assert "reconcile_bottom_up_wape_territory" in run.data.metrics
    # the report and the workbook say which method and why, with each territory's range
    from territory.pipelines.report_content import METHOD_WORDS

    html = (run_dir / "report.html").read_text()
    assert METHOD_WORDS[run.data.tags["reconcile_method"]] in html and "territory WAPE" in html
    sheet = pd.read_excel(run_dir / "report.xlsx", sheet_name="Territory forecast",
                          dtype={"Territory": str})
    shown = sheet.set_index(["Territory", "Horizon"])
    upper_t = nodes[nodes["level"] == "territory"].set_index(["node", "horizon"])
    for col, word in (("forecast", "Forecast"), ("forecast_lo", "Forecast, low"),
                      ("forecast_hi", "Forecast, high")):
        pd.testing.assert_series_equal(shown[word].reindex(upper_t.index), upper_t[col],
                                       check_names=False, rtol=1e-9)


TERRITORY_COLUMNS = {"territory", "territory_id", "current_territory", "proposed_territory",
                     "from_territory", "to_territory", "Territory", "Current territory",
                     "Proposed territory", "From territory", "To territory"}
ID_LIKE = re.compile(r"\b[TN]\d{2,}\b")  # the slice's ids (T10, N01) and engine-style names


def _ids_in(frame: pd.DataFrame) -> set[str]:
    """Values of the territory columns, and id-like words in every other text cell."""
    ids = {str(v) for c in frame.columns if c in TERRITORY_COLUMNS for v in frame[c].dropna()}
    text = frame.drop(columns=[c for c in frame.columns if c in TERRITORY_COLUMNS])
    return ids | {m for v in text.to_numpy().ravel() if isinstance(v, str)
                  for m in ID_LIKE.findall(v)}


def test_every_territory_id_in_every_output_is_in_the_alignment(first_run, tmp_path):
    """One name per territory: CSVs, workbook, report, MLflow tables and the run's text."""
    from html import unescape

    config, result = first_run
    run_dir = result["run_dir"]
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    published = set(alignment["territory_id"]) | set(alignment["current_territory"].dropna())
    seen: dict[str, set[str]] = {}
    for path in sorted(run_dir.glob("*.csv")):
        seen[path.name] = _ids_in(pd.read_csv(path, dtype=str))
    for name, sheet in pd.read_excel(run_dir / "report.xlsx", sheet_name=None, dtype=str).items():
        seen[f"report.xlsx/{name}"] = _ids_in(sheet)
    html = (run_dir / "report.html").read_text()
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)
    page = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", " ", html, flags=re.S))
    seen["report.html text"] = set(ID_LIKE.findall(unescape(page)))
    figures = [s for s in scripts if "Plotly.newPlot" in s and len(s) < 2_000_000]
    seen["report.html figures"] = {m for s in figures for m in ID_LIKE.findall(unescape(s))}
    seen["run text"] = {m for line in result["violations"] + result["diagnosis"]
                        for m in ID_LIKE.findall(line)}
    client = MlflowClient(tracking_uri=_uri(config))
    for artifact in client.list_artifacts(result["mlflow_run_id"]):
        if artifact.path.endswith(".csv"):
            local = client.download_artifacts(result["mlflow_run_id"], artifact.path, tmp_path)
            seen[f"mlflow/{artifact.path}"] = _ids_in(pd.read_csv(local, dtype=str))
    stray = {where: sorted(ids - published) for where, ids in seen.items() if ids - published}
    assert stray == {}, stray
    assert set(alignment["territory_id"]) <= seen["territory_summary.csv"]
    assert set(alignment["territory_id"]) <= seen["report.html text"]
    assert seen["moves.csv"] and seen["recommendations.csv"]
    reps = pd.read_csv(run_dir / "rep_changes.csv")  # load against territories.rep_capacity
    assert reps["load_after"].to_numpy() == pytest.approx(reps["workload_after"] / 900.0)
    assert "Reps over capacity" in html and "Load after (% of capacity)" in html
    moves = pd.read_csv(run_dir / "moves.csv", dtype=str)  # data.name_columns: county, state
    assert moves["name"].str.fullmatch(r".+, (Iowa|Nebraska)").all(), moves["name"].head()


def test_edits_are_kept_as_locks_and_marked_in_the_report(first_run, tmp_path):
    """``data.edits`` (what ``territory run --edits`` sets) on the design flow: the locked
    units stay where the manager put them, the report and the workbook say so."""
    from territory.pipelines.config import with_edits
    from territory.pipelines.flows import design_scenario

    config, result = first_run
    first = pd.read_parquet(result["run_dir"] / "alignment.parquet").set_index("unit_id")
    names = sorted(first["territory_id"].unique())
    # two units of the first territory, locked into the second
    moved = first.index[first["territory_id"] == names[0]][:2]
    edits = pd.DataFrame({"unit_id": moved, "territory_id": names[1]})
    edits.loc[len(edits)] = [first.index[first["territory_id"] == names[2]][0], names[2]]
    edits.to_csv(tmp_path / "edits.csv", index=False)
    out = design_scenario(with_edits(config, tmp_path / "edits.csv"), scenario_name="edits")
    folder = out["folder"]
    proposed = pd.read_parquet(folder / "alignment.parquet").set_index("unit_id")
    for unit, territory in zip(edits["unit_id"], edits["territory_id"], strict=True):
        assert proposed.loc[unit, "territory_id"] == territory, unit
    assert out["territories"]["units_locked"] == 3
    html = (folder / "report.html").read_text()
    assert "Locked by a manager" in html and "locked by a manager" in html  # table, hover
    data = json.loads(re.search(r'id="editor-data">(.*?)</script>', html, re.S).group(1))
    assert sorted(data["units"][i] for i, _ in data["locked"]) == sorted(edits["unit_id"])
    sheet = pd.read_excel(folder / "report.xlsx", sheet_name="Locked by a manager", dtype=str)
    assert set(sheet["Kept"]) == {"yes"} and len(sheet) == 3
    compare = pd.read_csv(folder / "plan_comparison.csv").set_index("plan")
    assert {"current alignment", "minimal change"} <= set(compare.index)
    published = compare[compare["published"]]
    assert len(published) == 1 and published.index[0].startswith("proposed")
    assert published["units_moved"].iloc[0] == int(
        (proposed["territory_id"] != proposed["current_territory"]).sum())
    assert "Compare plans" in html and "Rep travel" in html


def test_territories_are_contiguous_and_better_balanced_than_today(first_run):
    _, result = first_run
    assert result["territories"]["contiguous"]
    proposed = result["territories"]["max_abs_deviation_potential"]
    current = result["current_territories"]["max_abs_deviation_potential"]
    assert proposed < current


def test_models_have_skill_on_the_slice(first_run):
    _, result = first_run
    m = result["metrics"]
    assert m["valid_wape"] < m["valid_wape_seasonal_naive"]
    assert m["potential_spearman_vs_truth"] > 0.8


def test_mlflow_run_and_registry(first_run):
    config, result = first_run
    client = MlflowClient(tracking_uri=_uri(config))
    run = client.get_run(result["mlflow_run_id"])
    assert "valid_wape" in run.data.metrics
    assert run.data.params["territories.n_territories"] == "4"
    assert run.data.tags["promotion"] == "promoted"
    champion = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    assert champion.run_id == result["mlflow_run_id"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "promotion_decision.json", "forecast_importance.csv"} <= artifacts
    # the combination was gated on the backtest windows; which forecast won is recorded
    assert {"combination_weights.csv", "combination_gate.json"} <= artifacts
    published = result["published_forecast"]
    assert run.data.tags["published_forecast"] == published
    assert published in ("territory", "lightgbm", "auto_theta")
    metrics = run.data.metrics
    assert metrics["combination_gate_passed"] == float(published == "territory")
    assert result["promotion"]["metric"] == "backtest_wape_published"
    report = (result["run_dir"] / "report.html").read_text()
    assert "The published forecast" in report


def test_worse_challenger_is_not_promoted(first_run, demo_slice_dir):
    from territory.pipelines.flows import territory_pipeline

    config, result = first_run
    worse = load_config(
        write_slice_config(demo_slice_dir, config.workspace,
                           forecast={"n_estimators": 1, "learning_rate": 0.01,
                                     "max_train_rows": 20000}),
    )
    client = MlflowClient(tracking_uri=_uri(config))
    before = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    second = territory_pipeline(worse)
    assert not second["promotion"]["promoted"]
    assert second["promotion"]["challenger_score"] > second["promotion"]["champion_score"]
    after = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    assert after.version == before.version
    challenger = client.get_model_version_by_alias(config.tracking.registered_model, "challenger")
    assert challenger.run_id == second["mlflow_run_id"]


def test_bad_input_changes_nothing(first_run, demo_slice_dir, tmp_path):
    from territory.pipelines.flows import territory_pipeline

    config, result = first_run
    run_dir = result["run_dir"]
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    sales.loc[sales.index[:3], "sales"] = -5.0
    bad = tmp_path / "bad_sales.parquet"
    sales.to_parquet(bad)
    data = {**json.loads(config.data.model_dump_json()), "sales": str(bad)}
    bad_config = load_config(write_slice_config(demo_slice_dir, config.workspace, data=data))
    client = MlflowClient(tracking_uri=_uri(config))
    champion = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    with pytest.raises(InputError) as err:
        territory_pipeline(bad_config)
    assert "bad_sales.parquet" in str(err.value) and "sales" in str(err.value)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]
    same = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    assert same.version == champion.version


def test_cli_reports_bad_config_without_traceback(tmp_path):
    from territory.pipelines.cli import app

    path = tmp_path / "c.yaml"
    path.write_text("data: {units: a.csv, sales: b.csv}\nterritories: {tolerence: 0.1}\n")
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "c.yaml" in result.output and "territories.tolerence" in result.output
    assert "Traceback" not in result.output


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_report_renders_in_headless_chromium(first_run):
    from tests.browser import Page

    _, result = first_run
    with Page() as page:
        page.open(result["report_html"], settle_s=2.0)
        n_maps = page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
        n_tables = page.evaluate("document.querySelectorAll('table.sortable').length")
        title = page.evaluate("document.querySelector('h1').textContent")
        layer_buttons = page.evaluate(
            "Array.from(document.querySelectorAll('.updatemenu-button text'))"
            ".map(t => t.textContent)")
        # Sorting works: click the 'Potential' header of the territory table twice.
        sorted_ok = page.evaluate("""(() => {
            const table = document.querySelector('table.sortable');
            const idx = Array.from(table.tHead.rows[0].cells)
                .findIndex(c => c.textContent === 'Potential');
            const th = table.tHead.rows[0].cells[idx];
            th.click(); th.click();
            const vals = Array.from(table.tBodies[0].rows)
                .map(r => parseFloat(r.cells[idx].textContent.replace(/,/g, '')));
            return vals.every((v, i) => i === 0 || vals[i - 1] >= v);
        })()""")
        frozen = page.evaluate("getComputedStyle(document.querySelector('table.sortable td')"
                               ").position")
        fills = page.evaluate("""Object.fromEntries(document.querySelector('.js-plotly-plot')
            .data.filter(t => t.fill === 'toself' && t.legendgroup === 'Proposed territories')
            .map(t => [t.name, t.fillcolor]))""")
        shown = page.evaluate("""(() => {
            const h = Array.from(document.querySelectorAll('h2'))
                .find(e => e.textContent === 'Territories');
            const t = h.nextElementSibling.nextElementSibling.querySelector('table');
            return Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.textContent));
        })()""")
        shot = page.screenshot(ARTIFACTS / "report.png")
        editor = page.evaluate("JSON.parse(document.getElementById('editor-data').textContent)")
        before = page.evaluate("territoryEditor.state()")
        unit = editor["units"][0]
        to = next(t for t in editor["territories"]
                  if t != editor["territories"][editor["plan"][0]])
        after = page.evaluate(f"territoryEditor.assign({json.dumps(unit)}, {json.dumps(to)})")
    # every number of the territory table is the CSV's, formatted
    table = pd.DataFrame(shown[1:], columns=shown[0]).set_index("Territory")
    csv = pd.read_csv(result["run_dir"] / "territory_recommendations.csv").set_index("territory")
    assert sorted(table.index) == sorted(csv.index)
    for territory, row in csv.iterrows():
        assert table.loc[territory, "Potential"] == f"{row['potential']:,.0f}"
        assert table.loc[territory, "Forecast"] == f"{row['forecast']:,.0f}"
        assert table.loc[territory, "Penetration"] == f"{100 * row['penetration']:.1f}%"
        assert table.loc[territory, "Potential vs target"] == \
            f"{100 * row['potential_deviation']:+.1f}%"
        assert table.loc[territory, "Units"] == f"{row['units']:,.0f}"
    assert frozen == "sticky"  # the first column stays when a wide table scrolls
    territories = gpd.read_file(result["run_dir"] / "territories.geojson").set_index(
        "territory_id").to_crs("EPSG:5070")
    assert sorted(fills) == sorted(territories.index)
    for a, geom in territories.geometry.items():  # what the browser draws: neighbours differ
        for b, other in territories.geometry.items():
            if a < b and geom.buffer(10.0).intersects(other):
                assert fills[a] != fills[b], (a, b)
    _editor_matches_python(result["run_dir"], editor, before, after, to)
    assert title.startswith("Territory plan")
    assert n_maps >= 2 and n_tables >= 3
    assert {"Proposed territories", "Current alignment", "Potential", "White space"} <= set(
        layer_buttons)
    assert sorted_ok
    assert page.console_errors == []
    offline = [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))]
    assert offline == []
    assert shot.stat().st_size > 20_000


def _editor_matches_python(run_dir, editor, before, after, to):
    """The report's editor starts from the published plan's numbers (territory_summary.csv)
    and, after moving the first unit to ``to``, shows what evaluate_alignment computes."""
    import numpy as np

    from territory.models.territories import evaluate_alignment

    summary = pd.read_csv(run_dir / "territory_summary.csv").set_index("territory")
    for t, name in enumerate(editor["territories"]):
        for j, attr in enumerate(editor["attributes"]):
            assert before["totals"][t][j] == pytest.approx(summary.loc[name, f"{attr}_total"],
                                                           rel=1e-9)
            assert before["deviations"][t][j] == pytest.approx(
                summary.loc[name, f"{attr}_deviation"], rel=1e-6, abs=1e-12)
    labels = np.array(editor["plan"])
    labels[0] = editor["territories"].index(to)
    n = len(labels)
    indptr, indices = np.array(editor["indptr"]), np.array(editor["indices"])
    import scipy.sparse as sp

    adjacency = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(n, n))
    report = evaluate_alignment(
        labels, np.zeros((n, 2)), adjacency,
        pd.DataFrame(dict(zip(editor["attributes"], editor["values"], strict=True))),
        tolerances=dict(zip(editor["attributes"], editor["tolerances"], strict=True)),
        targets=np.array(editor["targets"]), territory_names=editor["territories"],
        n_territories=len(editor["territories"]))
    columns = [f"{a}_deviation" for a in editor["attributes"]]
    np.testing.assert_allclose(after["deviations"], report.territories[columns], rtol=1e-9)
    assert after["pieces"] == report.territories["n_components"].tolist()
    soft = [f": {a} " for a in editor["soft"]]
    hard = [v for v in report.violations
            if not ("target (" in v and any(s in v for s in soft))]
    assert after["violations"] == hard


def test_prefect_artifacts_published_under_stable_keys(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest(key):
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found

    import asyncio

    summary = asyncio.run(latest("slice-summary"))
    table = asyncio.run(latest("slice-territories"))
    assert summary and "Territory plan: slice" in summary[0].data
    assert table and "potential" in str(table[0].data)


def test_served_recommender_matches_batch_scoring(first_run, tmp_path):
    from territory.models.tracking import load_champion, start_server
    from territory.pipelines.publish import setup_tracking, tracking_uri
    from territory.pipelines.serving import score_all

    config, result = first_run
    csv_path, batch, _ = score_all(config, tmp_path / "scores")
    assert csv_path.is_file() and len(batch) == len(gpd.read_parquet(config.data.units))
    port = free_port()
    server = start_server(tracking_uri(config), port=port)
    try:
        wait_until_serving(server, port, seconds=120)

        setup_tracking(config)
        model = load_champion()
        columns = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
        from territory.features.spatial import build_adjacency
        from territory.pipelines.stages import load_inputs, market_table

        inputs = load_inputs(config)
        graph = build_adjacency(inputs.units, projected_crs=config.data.projected_crs)
        rows = market_table(config, inputs, graph).head(4).reset_index(names="unit_id")
        rows = rows[columns]

        status, body = post_invocations(port, {"dataframe_split": rows.to_dict(orient="split")})
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        expected = batch.set_index("unit_id").loc[rows["unit_id"]].reset_index()
        pd.testing.assert_series_equal(served["unit_id"], expected["unit_id"], check_names=False)
        for col in ("forecast", "potential", "white_space"):
            assert served[col].to_numpy() == pytest.approx(expected[col].to_numpy(), rel=1e-6)
        assert list(served["action"]) == list(expected["action"])
        published = pd.read_parquet(result["run_dir"] / "alignment.parquet")  # one name each
        assert set(served["proposed_territory"]) <= set(published["territory_id"])

        status, body = post_invocations(
            port, {"dataframe_records": rows.to_dict(orient="records")[:1]})
        assert status == 200 and len(body["predictions"]) == 1

        missing = rows.drop(columns=["population"])
        status, body = post_invocations(port, {"dataframe_split": missing.to_dict(orient="split")})
        assert 400 <= status < 500 and "population" in body["message"]

        wrong = rows.astype({"population": object})
        wrong.loc[wrong.index[0], "population"] = "lots"
        status, body = post_invocations(port, {"dataframe_split": wrong.to_dict(orient="split")})
        assert 400 <= status < 500 and "population" in body["message"]

        unknown = rows.assign(unit_id=["99999", *rows["unit_id"][1:]])
        status, body = post_invocations(port, {"dataframe_split": unknown.to_dict(orient="split")})
        assert 400 <= status < 500 and "unknown unit_id: 99999" in body["message"]

        # Non-finite numbers are refused (JSON Infinity, a literal 1e999, the text "inf")
        for value in (float("inf"), "__1e999__", "inf"):
            hostile = rows.astype({"population": object})
            hostile.loc[hostile.index[0], "population"] = value
            text = json.dumps({"dataframe_split": hostile.to_dict(orient="split")})
            status, body = post_invocations(port, text.replace('"__1e999__"', "1e999"))
            assert status == 400 and "must be a finite number" in body["message"], body

        # A huge input value is not echoed back
        huge = rows.assign(unit_id=["9" * 1_000_000, *rows["unit_id"][1:]])
        status, body = post_invocations(port, {"dataframe_split": huge.to_dict(orient="split")})
        assert 400 <= status < 500 and "9" * 101 not in json.dumps(body), len(json.dumps(body))

        # A body over the limit (10 MiB by default) is refused before it is parsed
        status, body = post_invocations(port, "x" * (10 * 2**20 + 1))
        assert status == 413 and "over the limit" in body["message"], body
    finally:
        server.terminate()
        server.wait(timeout=30)
