"""Robust mode (issue #19): publish the plan whose least sure territory is surest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from territory.features.errors import InputError
from territory.models import robust_balance as robust
from territory.models.alignment import Geography
from territory.models.config import TerritoryConfig
from territory.models.potential_uncertainty import potential_draws, territory_balance
from territory.models.territories import Violation
from territory.pipelines.config import load_config
from territory.pipelines.report_content import balance_mode_words
from tests.lattice import lattice

ROWS, COLS = 10, 10


def _instance(seed: int = 5):
    """A lattice, its measures, and draws of potential where each quarter (a current
    territory) shares a large error: balance on the estimate is far from sure."""
    xy, adjacency = lattice(ROWS, COLS)
    rng = np.random.default_rng(seed)
    n = len(xy)
    potential = rng.uniform(0.5, 1.5, n)
    workload = rng.uniform(0.5, 1.5, n)
    measures = {"potential": potential, "workload": workload, "units": np.ones(n),
                "forecast": potential}
    ids = np.array([f"u{i:03d}" for i in range(n)], dtype=object)
    geo = Geography(ids, xy, adjacency, np.ones(n))
    quarter = (xy[:, 0] >= xy[:, 0].mean()).astype(int) * 2 + (xy[:, 1] >= xy[:, 1].mean())
    group = pd.Series([f"Q{q}" for q in quarter], index=ids)
    draws = potential_draws(pd.Series(potential, index=ids), pd.Series(0.02, index=ids), group,
                            pd.Series({f"Q{q}": 0.001 for q in range(4)}), n_draws=400, seed=1)
    return geo, measures, draws


def _config(**kwargs) -> TerritoryConfig:
    base = {"n_territories": 5, "seed": 0, "time_limit_s": 60, "keep_rep_homes": False,
            "balance": [{"attribute": "potential", "tolerance": 0.05, "role": "hard"},
                        {"attribute": "workload", "tolerance": 0.2, "role": "soft"}],
            "frontier": [0.5], "minimal_change": False,
            "robust": {"enabled": True, "fractions": [0.6, 0.3]}}
    return TerritoryConfig(**{**base, **kwargs})


def test_robust_mode_is_off_by_default_and_true_is_short_for_enabled():
    assert TerritoryConfig().robust.enabled is False
    on = TerritoryConfig(robust=True)
    assert on.robust.enabled and on.robust.fractions == [0.7, 0.4]
    assert TerritoryConfig.model_validate(on.model_dump()) == on


@pytest.mark.parametrize(("robust_cfg", "extra", "message"), [
    ({"enabled": True, "fractions": []}, {}, "at least one fraction"),
    ({"fractions": [1.5]}, {}, "fractions"),
    ({"fractions": [0.5, 0.5]}, {}, "twice"),
    ({"enabled": True, "fracions": [0.5]}, {}, "fracions"),
    ({"enabled": True}, {"balance": [{"attribute": "workload", "role": "hard"}]},
     "needs potential among the hard"),
    ({"enabled": True}, {"balance": [{"attribute": "workload"},
                                     {"attribute": "potential", "role": "soft"}]},
     "needs potential among the hard"),
])
def test_bad_robust_settings_name_the_key(robust_cfg, extra, message):
    with pytest.raises(ValidationError, match=message):
        TerritoryConfig(robust=robust_cfg, **extra)


def _run_yaml(tmp_path: Path, potential: dict, alignment: bool) -> Path:
    (tmp_path / "units.csv").write_text("unit_id,lat,lon\na,1,1\n")
    (tmp_path / "sales.csv").write_text("unit_id,period,sales\na,2024-01-01,1\n")
    (tmp_path / "alignment.csv").write_text("unit_id,territory_id\na,T1\n")
    data = {"units": "units.csv", "sales": "sales.csv"}
    if alignment:
        data["alignment"] = "alignment.csv"
    payload = {"data": data, "potential": potential, "territories": {"robust": True}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


@pytest.mark.parametrize(("potential", "alignment"), [
    ({"method": "quantile"}, True),
    ({}, False),
])
def test_robust_mode_without_uncertainty_is_a_config_error_naming_the_file(
        tmp_path, potential, alignment):
    with pytest.raises(InputError) as err:
        load_config(_run_yaml(tmp_path, potential, alignment))
    message = str(err.value)
    assert "run.yaml" in message and "territories.robust" in message
    assert "rep_adjusted" in message and "data.alignment" in message
    assert load_config(_run_yaml(tmp_path, {}, True)).territories.robust.enabled


def test_robust_mode_with_forces_is_a_config_error(tmp_path):
    path = _run_yaml(tmp_path, {}, True)
    payload = yaml.safe_load(path.read_text())
    payload["territories"] = {}
    payload["forces"] = [{"name": "a-team", "segments": ["a"], "territories": {"robust": True}},
                         {"name": "b-team", "segments": ["b"]}]
    path.write_text(yaml.safe_dump(payload))
    with pytest.raises(InputError, match="not available with forces"):
        load_config(path)


def test_robust_design_publishes_the_surest_eligible_plan_and_records_every_candidate():
    geo, measures, draws = _instance()
    config = _config()
    design = robust.robust_design(geo, measures, config, draws)
    rows = design.overall["robust_candidates"]
    assert [r["potential_tolerance"] for r in rows] == pytest.approx([0.05, 0.03, 0.015])
    assert sum(r["published"] for r in rows) == 1
    won = next(r for r in rows if r["published"])
    eligible = [r for r in rows if r["eligible"]]
    assert won["min_p_within"] == max(r["min_p_within"] for r in eligible)
    assert design.overall["balance_mode"] == ("estimate" if won is rows[0] else "robust")
    # the published labels are the ones scored: recompute the smallest probability
    labels = design.proposed.reindex(geo.unit_ids).to_numpy()
    again = territory_balance(draws, pd.Series(labels), 0.05)["p_within_tolerance"]
    assert again.min() == pytest.approx(won["min_p_within"])
    # every unit assigned once; no more hard violations (at ±5%) than the base plan
    assert design.proposed.index.is_unique and design.proposed.notna().all()
    assert len(design.proposed) == len(geo.unit_ids)
    assert design.overall["hard_violations"] == won["hard_violations"] \
        <= rows[0]["hard_violations"]
    outside = int((design.summary["potential_deviation"].abs() > 0.05 + 1e-9).sum())
    assert outside == won["hard_violations"]
    # the tables name the candidates and carry their probabilities
    assert design.plans["plan"].str.contains("robust").sum() == 2
    scored = design.plans.dropna(subset=["min_p_within"])
    assert len(scored) == 3 and design.plans["published"].sum() == 1
    assert design.plans.loc[design.plans["published"], "min_p_within"].item() \
        == pytest.approx(won["min_p_within"])


def test_robust_mode_lifts_the_least_sure_territory_on_an_uncertain_instance():
    """Balance at ±5% leaves a territory near the edge; tighter candidates pull every
    territory towards the mean, so the least sure one gains (a behaviour, not a pin)."""
    geo, measures, draws = _instance()
    design = robust.robust_design(geo, measures, _config(), draws)
    rows = design.overall["robust_candidates"]
    won = next(r for r in rows if r["published"])
    assert won["min_p_within"] >= rows[0]["min_p_within"]
    assert max(r["min_p_within"] for r in rows[1:]) > rows[0]["min_p_within"]


def test_candidates_keep_the_published_plan_s_number_of_territories_under_auto_k():
    geo, measures, draws = _instance()
    config = _config(n_territories="auto", rep_capacity=float(measures["workload"].sum() / 4.5))
    design = robust.robust_design(geo, measures, config, draws)
    assert design.n_territories >= 5 and design.auto_k
    assert design.proposed.nunique() == design.n_territories == len(design.summary)
    # every plan tried, robust candidates included, has that many territories
    assert len(design.comparison) == 3 + 2  # the ladder (unconstrained, 50%, 20%), 2 candidates
    assert (design.comparison["territories"] == design.n_territories).all()


def test_draws_must_match_the_geography():
    geo, measures, draws = _instance()
    with pytest.raises(ValueError, match="draws have 99 units"):
        robust.robust_design(geo, measures, _config(), draws[:, :-1])


def test_a_candidate_is_recorded_against_the_configured_tolerance():
    geo, measures, draws = _instance()
    base = robust.robust_design(geo, measures, _config(), draws)
    tight = robust.tightened(_config(), 0.4)
    assert tight.tolerances["potential"] == pytest.approx(0.02)
    assert tight.tolerance == pytest.approx(0.02)
    candidate = replace(base, overall=dict(base.overall))
    candidate.records = [Violation("balance", territory=0, attribute="potential",
                                   deviation=0.03, tolerance=0.02),
                         Violation("balance", territory=1, attribute="potential",
                                   deviation=-0.07, tolerance=0.02)]
    candidate.violations = ["within 5%", "outside 5%"]
    candidate.diagnosis = ["why"]
    kept = robust.at_configured_tolerance(candidate, base, 0.05)
    assert [r.territory for r in kept.records] == [1] and kept.violations == ["outside 5%"]
    assert kept.overall["n_violations"] == 1 and kept.diagnosis == ["why"]
    kept.records, kept.violations = kept.records[:0], []
    assert robust.at_configured_tolerance(kept, base, 0.05).diagnosis == []


def test_balance_mode_words_say_which_plan_was_published():
    assert "robust mode off" in balance_mode_words({})
    base = {"potential_tolerance": 0.05, "min_p_within": 0.41, "published": False}
    tight = {"potential_tolerance": 0.035, "min_p_within": 0.62, "published": True}
    words = balance_mode_words({"robust_candidates": [base, tight]})
    assert "±3.5%" in words and "41%" in words and "62%" in words
    kept = balance_mode_words({"robust_candidates": [{**base, "published": True},
                                                     {**tight, "published": False}]})
    assert "stays" in kept and "41%" in kept


def _slice_stage_inputs(demo_slice_dir, tmp_path, uncertainty: bool):
    """The design stage's inputs on the Iowa/Nebraska slice, with the true potential as the
    estimate and (optionally) its uncertainty columns: no training needed."""
    from territory.features.feature_set import FeatureSet
    from territory.features.spatial import build_adjacency, projected_xy
    from territory.models.scoring import Scores
    from territory.pipelines import stages
    from tests.conftest import write_slice_config

    base = load_config(write_slice_config(demo_slice_dir, tmp_path / "ws"))
    inputs = stages.load_inputs(base)
    uid = inputs.units["unit_id"].to_numpy()
    workload = inputs.sales.groupby("unit_id")["accounts"].mean().reindex(uid).fillna(0.0)
    truth = pd.read_parquet(demo_slice_dir / "truth.parquet").set_index("unit_id")
    totals = pd.DataFrame({"potential": truth["true_potential"].reindex(uid).to_numpy(),
                           "forecast": 0.0}, index=uid)
    if uncertainty:
        current = inputs.alignment.set_index("unit_id")["territory_id"].reindex(uid)
        totals["potential_log_var"] = 0.02
        totals["potential_group"] = current.to_numpy()
        totals["potential_group_var"] = 0.002
    graph = build_adjacency(inputs.units, "unit_id", "queen", "EPSG:5070")
    features = FeatureSet(graph, projected_xy(inputs.units, "EPSG:5070"), pd.Timestamp(0),
                          None, None, None, None, workload)
    tc = base.territories.model_copy(update={"n_territories": 4, "time_limit_s": 20,
                                             "frontier": [0.5], "minimal_change": False})
    tc = TerritoryConfig.model_validate({**tc.model_dump(), "robust": True})
    config = base.model_copy(update={"territories": tc})
    return stages, config, inputs, features, Scores(pd.DataFrame(), totals)


def test_design_stage_in_robust_mode_reports_the_mode_and_each_territory_s_probability(
        demo_slice_dir, tmp_path):
    stages, config, inputs, features, scores = _slice_stage_inputs(demo_slice_dir, tmp_path,
                                                                   uncertainty=True)
    design = stages.design_stage(config, inputs, features, scores)
    assert design.overall["balance_mode"] in ("robust", "estimate")
    rows = design.overall["robust_candidates"]
    assert len(rows) == 1 + len(config.territories.robust.fractions)
    assert design.summary["p_within_tolerance"].between(0.0, 1.0).all()
    assert len(design.summary) == 4 and design.proposed.notna().all()
    assert "robust" in balance_mode_words(design.overall)


def test_design_stage_in_robust_mode_without_uncertainty_names_the_key(demo_slice_dir,
                                                                       tmp_path):
    stages, config, inputs, features, scores = _slice_stage_inputs(demo_slice_dir, tmp_path,
                                                                   uncertainty=False)
    with pytest.raises(InputError, match="territories.robust"):
        stages.design_stage(config, inputs, features, scores)
