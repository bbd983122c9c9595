"""``data.previous_alignment`` end to end: the simulator's earlier alignment, a fit that sees
nothing after the change, the per-territory table in the run folder, MLflow and the report,
and nightly runs that keep their champion's numbers (issue #19, item 2)."""

from __future__ import annotations

from dataclasses import replace

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FAST_MODELS, write_slice_config

from territory.features.demo_rep_change import earlier_alignment
from territory.features.errors import InputError
from territory.features.spatial import build_adjacency
from territory.pipelines import stages
from territory.pipelines.config import load_config


def _history(demo_slice_dir, folder, share=1.0, seed=0):
    """The slice (two territories) with an earlier alignment from the simulator's rep changes (by
    default every boundary unit came from the other territory): the earlier
    alignment's path, the sales it made and ``changed_at`` (a year before the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    counties = gpd.read_parquet(demo_slice_dir / "counties.parquet")
    graph = build_adjacency(counties, "unit_id", "queen", "EPSG:5070")
    alignment = pd.read_csv(demo_slice_dir / "alignment.csv", dtype=str)
    sales = pd.read_parquet(demo_slice_dir / "sales.parquet")
    truth = pd.read_parquet(demo_slice_dir / "truth.parquet")
    penetration = truth.groupby("territory_id")["rep_penetration"].first()
    changed = pd.Timestamp(sales["period"].max()) - pd.DateOffset(months=11)
    earlier, made = earlier_alignment(alignment, sales, penetration, graph, changed, share, seed)
    earlier.to_csv(folder / "earlier.csv", index=False)
    made.to_parquet(folder / "sales.parquet", index=False)
    return folder / "earlier.csv", folder / "sales.parquet", f"{changed:%Y-%m}"


def _config(demo_slice_dir, workspace, earlier, sales, changed, **extra):
    path = write_slice_config(demo_slice_dir, workspace)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["sales"] = str(sales)
    raw["data"]["previous_alignment"] = {"path": str(earlier), "changed_at": changed}
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_earlier_alignment_moves_boundary_units_to_a_neighbour(demo_slice_dir, tmp_path):
    earlier_path, sales_path, changed = _history(demo_slice_dir, tmp_path)
    counties = gpd.read_parquet(demo_slice_dir / "counties.parquet")
    graph = build_adjacency(counties, "unit_id", "queen", "EPSG:5070")
    now = pd.read_csv(demo_slice_dir / "alignment.csv", dtype=str).set_index("unit_id")
    before = pd.read_csv(earlier_path, dtype=str).set_index("unit_id")["territory_id"]
    now = now["territory_id"].reindex(before.index)
    moved = before.index[before != now]
    assert 10 <= len(moved) < len(before) // 2
    position = {u: i for i, u in enumerate(graph.unit_ids)}
    for unit in moved:  # the earlier territory is a neighbour's
        nbrs = graph.matrix[position[unit]].indices
        assert before[unit] in set(now.reindex(np.asarray(graph.unit_ids)[nbrs]))
    truth = pd.read_parquet(demo_slice_dir / "truth.parquet")
    penetration = truth.groupby("territory_id")["rep_penetration"].first()
    old = pd.read_parquet(demo_slice_dir / "sales.parquet").set_index(["unit_id", "period"])
    made = pd.read_parquet(sales_path).set_index(["unit_id", "period"])["sales"]
    ratio = (made / old["sales"]).dropna()
    periods = pd.to_datetime(ratio.index.get_level_values("period"))
    units = ratio.index.get_level_values("unit_id")
    untouched = ~units.isin(moved) | (periods >= pd.Timestamp(changed))
    assert np.allclose(ratio[untouched], 1.0, atol=1e-3)  # after the change and unmoved: as is
    expected = (before.map(penetration) / now.map(penetration)).reindex(units[~untouched])
    big = old["sales"].reindex(ratio.index)[~untouched].to_numpy() > 100
    assert np.allclose(ratio[~untouched].to_numpy()[big], expected.to_numpy()[big], rtol=1e-3)
    again, _ = earlier_alignment(pd.read_csv(demo_slice_dir / "alignment.csv", dtype=str),
                                 old.reset_index(), penetration, graph,
                                 pd.Timestamp(changed), 1.0, 0)
    assert again.set_index("unit_id")["territory_id"].equals(before)  # seeded
    with pytest.raises(InputError, match="share of boundary units"):
        earlier_alignment(again, old.reset_index(), penetration, graph, pd.Timestamp(changed),
                          0.0, 0)


def test_the_fit_before_the_change_sees_no_later_demographics(demo_slice_dir, tmp_path):
    """Demographics of a year after ``changed_at`` move the run's market table, not the
    rep-change metric: its fit reads the market as known one period before the change."""
    from territory.pipelines.rep_change import rep_change_stage

    earlier, sales, changed = _history(demo_slice_dir, tmp_path / "history")
    config = _config(demo_slice_dir, tmp_path / "ws", earlier, sales, changed)
    inputs = stages.load_inputs(config)
    demo = inputs.demographics
    as_of_year = pd.Timestamp(inputs.sales["period"].max()).year
    assert as_of_year > (pd.Timestamp(changed) - pd.DateOffset(months=1)).year
    known = demo.assign(year=as_of_year - 2)
    later = known.assign(year=as_of_year)
    rng = np.random.default_rng(3)  # after the change, the market moved a lot
    for column in ("population", "median_family_income", "unemployment_rate"):
        later[column] = later[column] * rng.uniform(0.3, 3.0, len(later))
    results = {}
    for name, table in {"same": pd.concat([known, known.assign(year=as_of_year)]),
                        "moved": pd.concat([known, later])}.items():
        these = replace(inputs, demographics=table.reset_index(drop=True))
        features = stages.feature_stage(config, these)
        results[name] = (features.market_table, *rep_change_stage(config, these, features))
    same_market, same_metrics, same_table = results["same"]
    moved_market, moved_metrics, moved_table = results["moved"]
    assert not np.allclose(same_market["population"], moved_market["population"])  # run sees it
    assert moved_metrics == pytest.approx(same_metrics, rel=1e-9)
    pd.testing.assert_frame_equal(moved_table, same_table)
    assert {"territory", "n_units", "predicted_share", "actual_share",
            "share_error"} <= set(same_table.columns)
    assert same_table["predicted_share"].sum() == pytest.approx(1.0)
    assert same_table["actual_share"].sum() == pytest.approx(1.0)


def test_report_table_of_receiving_territories():
    from territory.models.training import Trained
    from territory.pipelines.report_content import rep_change_table

    trained = Trained(None, None, {}, pd.DataFrame(), "")
    assert rep_change_table(trained) is None
    trained.rep_change_territories = pd.DataFrame({
        "territory": ["T1", "T2"], "n_units": [4, 7], "sales_after": [10.0, 30.0],
        "predicted_sales": [12.0, 28.0], "predicted_share": [0.3, 0.7],
        "actual_share": [0.25, 0.75], "share_error": [0.2, 0.0667]})
    table = rep_change_table(trained)
    assert list(table.columns) == ["territory", "moved_in", "predicted_share", "actual_share",
                                   "share_error"]
    assert table["territory"].tolist() == ["T1", "T2"]  # worst first
    assert table["moved_in"].tolist() == [4, 7]
    from territory.pipelines.report_format import as_text, present

    shown = as_text(present(table))  # as the report shows it
    assert {"Units moved in", "Share error"} <= set(shown.columns)
    assert shown.iloc[0].tolist()[2:] == ["30.0%", "25.0%", "20.0%"]


@pytest.mark.slow
def test_run_and_nightly_with_a_previous_alignment(prefect_session, demo_slice_dir, tmp_path,
                                                   monkeypatch):
    """The pipeline writes ``rep_change_territories.csv``, logs the metrics and the table to
    MLflow and puts the sentence and the table in the report; a nightly run with the same
    config fits nothing again and reports its champion's numbers."""
    from mlflow.tracking import MlflowClient

    from territory.pipelines import flows, publish, rep_change

    earlier, sales, changed = _history(demo_slice_dir, tmp_path / "history")
    config = _config(demo_slice_dir, tmp_path / "ws", earlier, sales, changed,
                     **FAST_MODELS, run_name="rep-change-run",
                     tracking={"experiment": "rep-change-run", "registered_model": "rep-chg"})
    result = flows.pipeline(config)
    run_dir = result["run_dir"]
    table = pd.read_csv(run_dir / "rep_change_territories.csv", dtype={"territory": str})
    metrics = result["metrics"]
    assert metrics["potential_rep_change_territories"] == len(table) >= 2
    assert table["n_units"].sum() == metrics["potential_rep_change_units"]
    assert table["share_error"].quantile(0.9) == pytest.approx(
        metrics["potential_rep_change_share_error_p90"])
    client = MlflowClient(publish.tracking_uri(config))
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.metrics["potential_rep_change_share_error_p90"] == pytest.approx(
        metrics["potential_rep_change_share_error_p90"])
    assert publish.REP_CHANGE_TABLE in {a.path for a in client.list_artifacts(run.info.run_id)}
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    units = f"{metrics['potential_rep_change_units']:.0f} units whose rep changed"
    assert units in html
    assert "Potential where the rep changed" in html and "Units moved in" in html

    def refit(*args, **kwargs):
        raise AssertionError("a nightly run fitted the rep-change potential again")

    monkeypatch.setattr(rep_change, "rep_change_stage", refit)
    nightly = flows.nightly_forecast(config)
    assert nightly["metrics"]["potential_rep_change_share_error_p90"] == pytest.approx(
        metrics["potential_rep_change_share_error_p90"])
    folder = nightly["folder"]
    again = pd.read_csv(folder / "rep_change_territories.csv", dtype={"territory": str})
    pd.testing.assert_frame_equal(again, table)
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert units in html and "Potential where the rep changed" in html
