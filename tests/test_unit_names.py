"""Unit names from configurable columns (county and state) in moves, recommendations, hovers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from territory.features.errors import InputError
from territory.models import recommend as rec
from territory.pipelines.config import RunConfig
from territory.pipelines.report_content import _hover_text
from territory.pipelines.stages import unit_names


def _config(**data) -> RunConfig:
    return RunConfig(data={"units": "counties.parquet", "sales": "sales.parquet", **data})


UNITS = pd.DataFrame({"unit_id": ["19169", "31055", "19153"],
                      "name": ["Story", "Douglas", " Polk "],
                      "region": ["Iowa", "Nebraska", None]})


def test_name_columns_are_joined_and_blank_parts_left_out():
    names = unit_names(_config(name_columns=["name", "region"]), UNITS)
    assert names.to_dict() == {"19169": "Story, Iowa", "31055": "Douglas, Nebraska",
                               "19153": "Polk"}


def test_the_name_column_is_the_default_and_no_name_is_none():
    assert unit_names(_config(), UNITS).tolist() == ["Story", "Douglas", "Polk"]
    assert unit_names(_config(), UNITS.drop(columns="name")) is None


def test_a_missing_name_column_names_the_file_and_the_column():
    with pytest.raises(InputError) as err:
        unit_names(_config(name_columns=["name", "state"]), UNITS)
    text = str(err.value)
    assert "counties.parquet" in text and "state" in text and "region" in text


def test_moves_recommendations_and_hovers_carry_the_names():
    ids = pd.Index(["a", "b", "c", "d"], name="unit_id")
    totals = pd.DataFrame({"forecast": [5.0, 4.0, 3.0, 2.0], "forecast_lo": 1.0,
                           "forecast_hi": 9.0, "potential": [10.0, 8.0, 6.0, 4.0],
                           "drivers": ""}, index=ids)
    current = pd.Series(["East", "East", "West", "West"], index=ids)
    proposed = pd.Series(["East", "West", "West", "West"], index=ids)
    summary = pd.DataFrame({"territory": ["East", "West"], "potential_deviation": [0.1, -0.1]})
    names = pd.Series(["Story, Iowa", "Douglas, Nebraska", "Polk, Iowa", "Lancaster, Nebraska"],
                      index=ids)
    recs = rec.recommend(totals, proposed, current, summary, "unit_id", unit_names=names)
    assert recs.moves[["unit_id", "name"]].values.tolist() == [["b", "Douglas, Nebraska"]]
    assert list(recs.moves.columns[:2]) == ["unit_id", "name"]
    assert recs.units.loc["c", "name"] == "Polk, Iowa"
    hover = _hover_text(recs.units, np.array(["b"]))
    assert hover.iloc[0].startswith("Douglas, Nebraska (b) · West (now East)")
