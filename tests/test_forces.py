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

    potential, drivers, metrics = mf.fit_segment_potential(
        PotentialConfig(method="quantile", n_estimators=100), market, annual,
        {"urban": None, "rural": None}, rng.uniform(0, 1000, (n, 2)))
    dense = market["density"] > 0.5
    assert potential.loc[dense, "urban"].mean() > potential.loc[~dense, "urban"].mean()
    assert potential.loc[dense, "rural"].mean() < potential.loc[~dense, "rural"].mean()
    assert list(drivers.columns) == ["urban", "rural"] and "segment" not in drivers.iloc[0, 0]
    # pooled, density predicts nothing (the two lines cancel): one model per segment wins
    assert metrics["potential_per_segment_models"] == 1.0
    assert metrics["potential_cv_pinball_per_segment"] < metrics["potential_cv_pinball_global"]


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
