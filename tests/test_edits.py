"""A manager's edits as locks: ``territory run --edits`` keeps them and redesigns the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from territory.features import io as fio
from territory.features.errors import InputError
from territory.models import alignment
from territory.models.alignment import Geography, Locks
from territory.models.config import TerritoryConfig
from tests.lattice import lattice


def _geography(rows: int = 6, cols: int = 6, seed: int = 1):
    xy, adjacency = lattice(rows, cols)
    n = rows * cols
    ids = np.array([f"u{i:02d}" for i in range(n)], dtype=object)
    potential = np.random.default_rng(seed).gamma(4.0, 25.0, n)
    measures = {"potential": potential, "forecast": potential / 2, "workload": np.ones(n),
                "units": np.ones(n)}
    return Geography(ids, xy, adjacency), measures


CONFIG = TerritoryConfig(n_territories=4, balance=[{"attribute": "potential",
                                                    "tolerance": 0.1, "role": "hard"}],
                         max_elongation=None, time_limit_s=5, keep_rep_homes=False)


def test_locked_units_end_in_the_territory_they_name_and_the_rest_is_redesigned():
    geo, measures = _geography()
    # opposite corners locked together: the design must carry them in one named territory
    locks = Locks(pd.Series({"u00": "T03", "u01": "T03", "u35": "T01"}))
    design = alignment.propose_alignment(geo, measures, CONFIG, locks=locks)
    assert design.proposed["u00"] == design.proposed["u01"] == "T03"
    assert design.proposed["u35"] == "T01"
    assert sorted(design.proposed.unique()) == ["T01", "T02", "T03", "T04"]
    assert design.overall["units_locked"] == 3
    assert design.locked.to_dict() == locks.territory.to_dict()


def test_locks_keep_the_company_ids_of_the_current_alignment():
    geo, measures = _geography()
    cols = geo.xy[:, 0] >= 3000
    rows = geo.xy[:, 1] >= 3000
    current = pd.Series(np.where(rows, np.where(cols, "NE", "NW"), np.where(cols, "SE", "SW")),
                        index=geo.unit_ids)
    locks = Locks(pd.Series({"u00": "NE", "u05": "SW"}))  # swapped corners
    design = alignment.propose_alignment(geo, measures, CONFIG, current=current, locks=locks)
    assert design.proposed["u00"] == "NE" and design.proposed["u05"] == "SW"
    assert set(design.proposed) <= {"NE", "NW", "SE", "SW", "N01", "N02"}


def test_locks_naming_unknown_territories_say_file_column_and_rows():
    geo, measures = _geography()
    locks = Locks(pd.Series({"u00": "T01", "u07": "T99", "u08": "X"}), "edits.csv", "terr")
    with pytest.raises(InputError) as err:
        alignment.propose_alignment(geo, measures, CONFIG, locks=locks)
    text = str(err.value)
    for part in ("edits.csv", "terr", "T99", "u07", "u08", "T01, T02, T03, T04"):
        assert part in text, part
    geo_current = pd.Series(["A"] * 18 + ["B"] * 18, index=geo.unit_ids)
    too_many = Locks(pd.Series({"u00": "A", "u01": "B", "u02": "N01", "u03": "N02",
                                "u04": "N03"}), "edits.csv")
    with pytest.raises(InputError, match="the edits name 5 territories but the plan has 4"):
        alignment.propose_alignment(geo, measures, CONFIG, current=geo_current, locks=too_many)


def test_edits_file_with_unknown_or_repeated_units_is_refused(tmp_path):
    path = tmp_path / "edits.csv"
    path.write_text("unit_id,territory_id\nu00,T01\nzz9,T02\n")
    with pytest.raises(InputError) as err:
        fio.load_alignment(path, ["u00", "u01"])
    assert "edits.csv" in str(err.value) and "zz9" in str(err.value)
    path.write_text("unit_id,territory_id\nu00,T01\nu00,T02\n")
    with pytest.raises(InputError) as err:
        fio.load_alignment(path, ["u00", "u01"])
    assert "u00" in str(err.value) and "unit_id" in str(err.value)


def test_cli_edits_that_do_not_exist_fail_in_one_line(tmp_path, demo_slice_dir):
    from territory.pipelines.cli import app
    from tests.conftest import write_slice_config

    config = write_slice_config(demo_slice_dir, tmp_path / "ws")
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--edits",
                                      str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "missing.csv" in result.output and "--edits" in result.output


def test_revert_inert_undoes_only_the_spreadsheet_quote():
    from territory.features.spreadsheet_safe import inert_text, revert_inert

    for text in ("=SUM(A1)", "-T1", "T01", "'plain", "@x"):
        assert revert_inert(inert_text(text)) == text


def test_locks_on_units_outside_the_design_say_so():
    geo, measures = _geography()
    locks = Locks(pd.Series({"u00": "T01", "gone": "T02"}), "edits.csv")
    with pytest.raises(InputError, match="not in this design") as err:
        alignment.propose_alignment(geo, measures, CONFIG, locks=locks)
    assert "gone" in str(err.value) and "edits.csv" in str(err.value)
