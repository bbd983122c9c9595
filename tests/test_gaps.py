"""Data gaps are never zeros: found, named, and handled as ``data.gaps`` says.

Detection on hand-made tables; then libpysal's real annual ``us_income`` panel
with five whole states' sales removed (as in the report that filed this:
five states with no sales), through ``init``, ``validate`` and the real flow
with each choice: ``stop`` names them and writes nothing, ``exclude`` leaves
them out of the design, ``estimate`` keeps them, flagged, with no
"under-served" verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from territory.features.config import ColumnsConfig
from territory.features.gaps import find_data_gaps, zero_coded_gaps
from territory.pipelines.cli import app
from territory.pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]
US_INCOME = ROOT / "data" / "us_income"
LEFT_OUT = ["04", "08", "16", "30", "49"]  # Arizona, Colorado, Idaho, Montana, Utah
COLS = ColumnsConfig()


def _sales(values: dict[str, list[float]], freq: str = "MS") -> pd.DataFrame:
    rows = []
    for unit, series in values.items():
        periods = pd.date_range("2015-01-01", periods=len(series), freq=freq)
        rows += [{"unit_id": unit, "period": p, "sales": v} for p, v in zip(periods, series,
                                                                             strict=True)]
    return pd.DataFrame(rows)


def test_units_without_sales_or_demographics_are_found():
    sales = _sales({"a": [1.0] * 12, "b": [np.nan] * 12})
    demo = pd.DataFrame({"unit_id": ["a", "b", "c"], "population": [1.0, 2.0, np.nan]})
    gaps = find_data_gaps(np.array(["a", "b", "c", "d"]), sales, demo, COLS, 12)
    assert gaps.no_sales == ["b", "c", "d"]  # b has only empty sales
    assert gaps.no_demographics == ["c", "d"] and gaps.missing == ["b", "c", "d"]


def test_a_year_of_zeros_after_years_of_sales_is_flagged():
    sales = _sales({
        "gap": [5.0] * 24 + [0.0] * 12 + [5.0] * 6,      # a reporting gap coded as zeros
        "short": [5.0] * 24 + [0.0] * 11 + [5.0] * 7,    # under a year: not flagged
        "new": [0.0] * 18 + [5.0] * 24,                  # zeros before the first sale
        "young": [5.0] * 12 + [0.0] * 12 + [5.0] * 18,   # only one year of sales before
    })
    flagged = zero_coded_gaps(sales, COLS, 12)
    assert list(flagged["unit"]) == ["gap"]
    row = flagged.iloc[0]
    assert row["n_periods"] == 12 and row["first_zero"] == pd.Timestamp("2017-01-01")
    annual = zero_coded_gaps(_sales({"a": [3.0, 4.0, 0.0, 5.0]}, "YS"), COLS, 1)
    assert list(annual["n_periods"]) == [1]


def test_the_demo_has_no_gaps_to_handle():
    demo = ROOT / "data" / "demo"
    units = pd.read_parquet(demo / "counties.parquet", columns=["unit_id"])
    gaps = find_data_gaps(units["unit_id"].to_numpy(), pd.read_parquet(demo / "sales.parquet"),
                          pd.read_parquet(demo / "demographics.parquet"), COLS, 12)
    assert gaps.missing == []


@pytest.fixture(scope="module")
def gapped_config(tmp_path_factory) -> Path:
    """``territory init`` on us_income without five states' sales."""
    folder = tmp_path_factory.mktemp("gaps")
    income = pd.read_csv(US_INCOME / "income.csv", dtype={"STATE_FIPS": str})
    income[~income["STATE_FIPS"].isin(LEFT_OUT)].to_csv(folder / "income.csv", index=False)
    out = folder / "territory.yaml"
    result = CliRunner().invoke(app, ["init", "--units", str(US_INCOME / "us48.shp"),
                                      "--sales", str(folder / "income.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 of 48 units have no sales history" in result.output
    return out


def _with_gaps(path: Path, choice: str) -> Path:
    config = yaml.safe_load(path.read_text())
    config["data"]["gaps"] = choice
    config["workspace"] = str(path.parent / f"workspace-{choice}")
    out = path.parent / f"{choice}.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def test_init_asks_to_confirm_exclude(gapped_config):
    text = gapped_config.read_text()
    assert "gaps: exclude" in text and "CONFIRM" in text


def test_stop_names_the_units_and_writes_nothing(gapped_config):
    path = _with_gaps(gapped_config, "stop")
    result = CliRunner().invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "income.csv" in text and "5 of 48 units have no sales history" in text
    assert all(fips in text for fips in LEFT_OUT) and "data.gaps: exclude" in text
    run = CliRunner().invoke(app, ["run", "--config", str(path)])
    runs = path.parent / "workspace-stop" / "runs"
    assert run.exit_code != 0 and "no sales history" in run.output
    # no run folder, only the failure record
    assert [p.name for p in runs.iterdir()] == ["territory-latest.failed.json"]


def test_exclude_leaves_them_out_of_the_design(prefect_session, gapped_config):
    from territory.pipelines.flows import territory_pipeline

    path = _with_gaps(gapped_config, "exclude")
    checked = CliRunner().invoke(app, ["validate", "--config", str(path)])
    assert checked.exit_code == 0, checked.output
    assert "5 units have no sales history" in " ".join(checked.output.split())
    result = territory_pipeline(load_config(path))
    run_dir = result["run_dir"]
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    assert len(alignment) == 43 and not set(LEFT_OUT) & set(alignment["unit_id"])
    gaps = pd.read_csv(run_dir / "data_gaps.csv", dtype=str)
    assert sorted(gaps["unit_id"]) == LEFT_OUT
    assert set(gaps["handling"]) == {"left out of the design"}
    assert "Data gaps" in (run_dir / "report.html").read_text()


def test_estimate_keeps_them_flagged_not_under_served(prefect_session, gapped_config):
    from territory.pipelines.flows import territory_pipeline

    path = _with_gaps(gapped_config, "estimate")
    result = territory_pipeline(load_config(path))
    run_dir = result["run_dir"]
    alignment = pd.read_parquet(run_dir / "alignment.parquet")
    assert len(alignment) == 48
    recs = pd.read_csv(run_dir / "recommendations.csv", dtype={"unit_id": str})
    flagged = recs[recs["unit_id"].isin(LEFT_OUT)]
    assert set(flagged["action"]) <= {"check data", "move"}
    assert not flagged["reason"].str.contains("under-served").any()
    assert (flagged["potential"] > 0).all()
    gaps = pd.read_csv(run_dir / "data_gaps.csv", dtype=str)
    assert set(gaps.loc[gaps["unit_id"].isin(LEFT_OUT), "handling"]) == {"potential estimated"}
