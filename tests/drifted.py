"""Inputs with injected drift, for the monitoring tests of the flows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def drifted_inputs(slice_dir: Path, out: Path) -> tuple[Path, Path]:
    """The slice with median age 25% higher and 30 units reporting zeros for the last year."""
    demo = pd.read_parquet(slice_dir / "demographics.parquet")
    demo["median_age"] = demo["median_age"] * 1.25
    demo.to_parquet(out / "demographics.parquet")
    sales = pd.read_parquet(slice_dir / "sales.parquet")
    units = sorted(sales["unit_id"].unique())[:30]
    sales.loc[sales["unit_id"].isin(units) & (sales["period"] > "2024-12-01"), "sales"] = 0.0
    sales.to_parquet(out / "sales.parquet")
    return out / "demographics.parquet", out / "sales.parquet"
