"""Golden files that pin a refactor's behaviour: the slice run's alignment, scores and summary.

A golden test is not an invariant test: it says "nothing changed", so it is
re-pinned only on purpose, when a change is meant to move the outputs:
``TERRITORY_REPIN_GOLDEN=1 .venv/bin/python -m pytest tests/test_pipeline_e2e.py -k golden``
rewrites the files, and the commit says why (with before/after figures in
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).resolve().parent / "golden"
REPIN = os.environ.get("TERRITORY_REPIN_GOLDEN") == "1"


def _canonical(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    return frame[sorted(frame.columns)]


def check_golden(frame: pd.DataFrame, name: str, keys: list[str], rtol: float = 1e-7) -> None:
    """Compare ``frame`` with ``golden/<name>.parquet`` (rows ordered by ``keys``).

    Text and integer columns must be equal; floats within ``rtol``.
    """
    path = GOLDEN / f"{name}.parquet"
    frame = _canonical(frame, keys)
    if REPIN:
        frame.to_parquet(path, index=False)
        return
    assert path.is_file(), f"no golden file {path}: pin it with TERRITORY_REPIN_GOLDEN=1"
    expected = _canonical(pd.read_parquet(path), keys)
    assert list(frame.columns) == list(expected.columns), (name, list(frame.columns))
    assert len(frame) == len(expected), (name, len(frame), len(expected))
    for col in expected.columns:
        got, want = frame[col], expected[col]
        if pd.api.types.is_float_dtype(want):
            np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), rtol=rtol,
                                       atol=1e-9, equal_nan=True, err_msg=f"{name}.{col}")
        else:
            bad = (got.astype(str).to_numpy() != want.astype(str).to_numpy())
            assert not bad.any(), (f"{name}.{col} differs in {int(bad.sum())} rows, e.g.",
                                   frame.loc[bad].head(3).to_dict("records"))
