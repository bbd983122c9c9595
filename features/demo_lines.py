"""Demo data with two product lines, each sold by its own sales force, over one map.

The simulated company of :mod:`territory.features.demo` sells one line. This
variant sells two, whose demand follows different demographics:

- ``diagnostics`` is urban-led: demand rises with population density;
- ``animal-health`` is rural-led: demand falls with it.

Each line is simulated by :func:`territory.features.demo.simulate_company`
with its own seed, number of territories and reps, and a market tilt added
to the market index::

    tilt_i = direction * 0.6 * tanh(z_i),  z_i = standardised log population density

with direction +1 for the urban-led line and -1 for the rural-led one. So
each line has its own current alignment (drawn as a manager would, on its
own potential), its own reps and penetrations; the sales file stacks both
lines with a ``segment`` column. Pure functions, no file access.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from territory.features.demo import PROJECTED_CRS, simulate_company
from territory.features.segments import SEGMENT_COL

#: Product line: (direction of its density tilt, territories of its sales force).
LINES = {"diagnostics": (1.0, 30), "animal-health": (-1.0, 20)}
TILT = 0.6


@dataclass(frozen=True)
class ProductLines:
    """The tables of the two-line demo: stacked sales, and per line its alignment and reps."""

    sales: pd.DataFrame  # segment, unit_id, period, sales, accounts, visits
    alignments: dict[str, pd.DataFrame]
    reps: dict[str, pd.DataFrame]
    truth: pd.DataFrame  # unit_id, then true_potential and rep_penetration per line


def line_tilt(demographics: pd.DataFrame, direction: float) -> np.ndarray:
    """Log demand multiplier of a line per unit (the demographics' row order)."""
    log_density = np.log(demographics["population_density"].to_numpy(dtype=float))
    z = (log_density - log_density.mean()) / log_density.std()
    return direction * TILT * np.tanh(z)


def simulate_product_lines(
    counties: gpd.GeoDataFrame,
    demographics: pd.DataFrame,
    seed: int,
    n_months: int = 60,
    start: str = "2021-01-01",
    projected_crs: str = PROJECTED_CRS,
) -> ProductLines:
    """Simulate the company's two product lines (see the module docstring).

    Deterministic: the same inputs and ``seed`` give identical tables; line
    ``j`` (in :data:`LINES` order) is simulated with seed ``seed + j + 1``.
    """
    ids = np.sort(counties["unit_id"].astype(str).to_numpy())
    demo = demographics.set_index("unit_id").loc[ids].reset_index()
    sales, alignments, reps, truth = [], {}, {}, pd.DataFrame({"unit_id": ids})
    for j, (line, (direction, n_territories)) in enumerate(LINES.items()):
        data = simulate_company(counties, demographics, seed + j + 1, n_months, start,
                                n_territories, projected_crs,
                                market_tilt=line_tilt(demo, direction))
        part = data.sales.copy()
        part.insert(0, SEGMENT_COL, line)
        sales.append(part)
        alignments[line], reps[line] = data.alignment, data.reps
        own = data.truth.set_index("unit_id").loc[ids]
        truth[f"true_potential_{line}"] = own["true_potential"].to_numpy()
        truth[f"rep_penetration_{line}"] = own["rep_penetration"].to_numpy()
    return ProductLines(pd.concat(sales, ignore_index=True), alignments, reps, truth)
