"""Segments in the sales and sales forces in the config (issue #18, parts 1 and 2).

Contract tests on hand-written files: what a segment column does to the
sales history, and the errors for bad segments and bad forces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from territory.features.errors import InputError
from territory.features.io import load_sales_by_segment
from territory.features.segments import check_segments, segment_sales, total_sales
from territory.pipelines.config import load_config

UNITS = ["a", "b", "c"]


def _sales_csv(tmp_path: Path, rows: str, name: str = "sales.csv") -> Path:
    path = tmp_path / name
    path.write_text("unit_id,period,sales,accounts,segment\n" + rows)
    return path


# --- 1. Segments in the data --------------------------------------------------------------


def test_segment_sales_are_validated_per_segment_and_summed(tmp_path):
    path = _sales_csv(tmp_path, "a,2024-01-01,10,2,hospital\n"
                                "a,2024-01-01,5,1,clinic\n"
                                "b,2024-01-01,3,1,clinic\n"
                                "a,2024-02-01,7,2,hospital\n")
    totals, by_segment = load_sales_by_segment(path, UNITS)
    assert sorted(by_segment["segment"].unique()) == ["clinic", "hospital"]
    a_jan = totals[(totals["unit_id"] == "a") & (totals["period"] == "2024-01-01")]
    assert a_jan["sales"].item() == 15.0 and a_jan["accounts"].item() == 3.0
    assert totals["sales"].sum() == by_segment["sales"].sum() == 25.0
    # the same unit and month twice is fine across segments, not within one
    one = segment_sales(by_segment, ["clinic"])
    assert one["sales"].sum() == 8.0


def test_a_file_without_segments_reads_as_before(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("unit_id,period,sales\na,2024-01-01,10\nb,2024-01-01,3\n")
    totals, by_segment = load_sales_by_segment(path, UNITS)
    assert by_segment is None and list(totals.columns) == ["unit_id", "period", "sales"]


def test_duplicate_within_a_segment_names_the_file_lines(tmp_path):
    path = _sales_csv(tmp_path, "a,2024-01-01,10,2,hospital\n"
                                "b,2024-01-01,3,1,clinic\n"
                                "a,2024-01-01,4,1,hospital\n")
    with pytest.raises(InputError, match="segment 'hospital'") as info:
        load_sales_by_segment(path, UNITS)
    text = str(info.value)
    assert str(path) in text and "line 2" in text and "line 4" in text


def test_blank_segment_is_an_error_naming_its_rows(tmp_path):
    path = _sales_csv(tmp_path, "a,2024-01-01,10,2,hospital\nb,2024-01-01,3,1,\n")
    with pytest.raises(InputError, match="segment") as info:
        load_sales_by_segment(path, UNITS)
    assert "line 3" in str(info.value) and "what to do" in str(info.value)


def test_segments_must_match_the_forces():
    forces = {"hospital-team": ["hospital"], "clinic-team": ["clinic"]}
    check_segments(["clinic", "hospital"], forces, "sales.csv")
    with pytest.raises(InputError, match="sold by no sales force: 'dental'"):
        check_segments(["clinic", "dental", "hospital"], forces, "sales.csv")
    with pytest.raises(InputError, match="force 'clinic-team' sells 'clinic'"):
        check_segments(["hospital"], forces, "sales.csv")


def test_total_sales_keeps_a_value_no_segment_recorded_missing():
    frame = pd.DataFrame({"segment": ["x", "y"], "unit_id": ["a", "a"],
                          "period": pd.to_datetime(["2024-01-01"] * 2),
                          "sales": [1.0, 2.0], "visits": [np.nan, np.nan]})
    out = total_sales(frame)
    assert out["sales"].item() == 3.0 and np.isnan(out["visits"].item())


# --- 2. Forces in the config --------------------------------------------------------------


def _config(tmp_path: Path, forces, territories=None) -> Path:
    (tmp_path / "units.csv").write_text("unit_id,lat,lon\na,1,1\nb,1,2\nc,2,1\n")
    _sales_csv(tmp_path, "a,2024-01-01,10,2,hospital\n")
    payload = {"data": {"units": "units.csv", "sales": "sales.csv"}}
    if territories is not None:
        payload["territories"] = territories
    if forces is not None:
        payload["forces"] = forces
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


def test_no_forces_key_keeps_the_config_and_its_hash(tmp_path):
    config = load_config(_config(tmp_path, None))
    assert config.forces is None
    assert "forces" not in config.model_dump(exclude=config.unset_keys())


def test_force_territories_lay_over_the_top_level_section(tmp_path):
    config = load_config(_config(
        tmp_path,
        [{"name": "hospital-team", "segments": ["hospital"], "territories": {"n_territories": 2}},
         {"name": "clinic-team", "segments": ["clinic"]}],
        territories={"n_territories": 3, "max_elongation": 3.0}))
    first, second = config.forces
    assert first.territories.n_territories == 2 and first.territories.max_elongation == 3.0
    assert second.territories.n_territories == 3


@pytest.mark.parametrize("forces, message", [
    ([{"name": "x", "segments": []}], "at least one segment"),
    ([{"name": "x", "segments": ["a"]}, {"name": "x", "segments": ["b"]}],
     "two forces are named 'x'"),
    ([{"name": "x", "segments": ["a"]}, {"name": "y", "segments": ["a"]}],
     "sold by both 'x' and 'y'"),
    ([{"name": "../x", "segments": ["a"]}], "plain name"),
    ([], "at least one sales force"),
])
def test_bad_forces_are_clear_config_errors(tmp_path, forces, message):
    with pytest.raises(InputError, match=message) as info:
        load_config(_config(tmp_path, forces))
    assert "run.yaml" in str(info.value) and "forces" in str(info.value)


def test_a_force_file_that_is_missing_names_the_force(tmp_path):
    with pytest.raises(InputError, match="forces.x.alignment"):
        load_config(_config(tmp_path, [{"name": "x", "segments": ["a"],
                                        "alignment": "nope.csv"}]))
