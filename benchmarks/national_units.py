"""Synthetic national-scale units: ZIP-like Voronoi cells over a US-sized extent.

``national_units(n_units, seed)`` draws ``n_units`` seed points from a
population-like density, builds their Voronoi cells, clips them to the
convex hull of the points and attaches three attributes:

* **Density.** A mixture of a uniform rural background (25% of the points)
  and ~300 Gaussian "metro areas" whose weights follow a Pareto (Zipf-like)
  law and whose spread grows with their weight (10-90 km). Cells are small
  in metros and large in the countryside, as ZIP codes are.
* **population**: lognormal, rising with the local point density (metro ZIP
  codes hold more people: elasticity 0.35 on density, mean ~7,800, the largest
  ~10-20x the mean, as for US ZIP codes).
* **potential**: population x a lognormal income/propensity factor (sd 0.45)
  that also rises with density, so potential is correlated with density
  and population but not proportional to either.
* **accounts** (workload): Poisson with mean population / 600 x a lognormal
  business-mix factor (sd 0.35), at least 1.

Extent: 4,600 km x 2,900 km (the contiguous US), in metres, CRS EPSG:5070
(NAD83 / Conus Albers), so distances and areas are meaningful.

Used by ``benchmarks/territory_national.py`` (issue #6) and the scale
benchmarks. Same ``(n_units, seed)``, same units.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

__all__ = ["national_units"]

X_RANGE = (-2_350_000.0, 2_250_000.0)  # metres, EPSG:5070-like
Y_RANGE = (270_000.0, 3_170_000.0)
CRS = "EPSG:5070"


def _points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seed points and a cluster id (-1 = rural background)."""
    n_metros = 300
    width, height = X_RANGE[1] - X_RANGE[0], Y_RANGE[1] - Y_RANGE[0]
    centres = np.column_stack([
        rng.uniform(X_RANGE[0] + 0.05 * width, X_RANGE[1] - 0.05 * width, n_metros),
        rng.uniform(Y_RANGE[0] + 0.05 * height, Y_RANGE[1] - 0.05 * height, n_metros),
    ])
    weight = rng.pareto(1.1, n_metros) + 1.0
    weight = np.minimum(weight, np.quantile(weight, 0.995))  # a few NYC/LA-sized metros
    weight /= weight.sum()
    spread = 10_000.0 + 80_000.0 * np.sqrt(weight / weight.max())
    n_rural = int(round(0.25 * n))
    counts = rng.multinomial(n - n_rural, weight)
    metro = np.repeat(np.arange(n_metros), counts)
    pts = centres[metro] + rng.normal(size=(len(metro), 2)) * spread[metro, None]
    rural = np.column_stack([rng.uniform(*X_RANGE, n_rural), rng.uniform(*Y_RANGE, n_rural)])
    xy = np.vstack([pts, rural])
    cluster = np.concatenate([metro, np.full(n_rural, -1)])
    inside = (
        (xy[:, 0] >= X_RANGE[0]) & (xy[:, 0] <= X_RANGE[1])
        & (xy[:, 1] >= Y_RANGE[0]) & (xy[:, 1] <= Y_RANGE[1])
    )
    xy = np.where(inside[:, None], xy, np.column_stack([
        rng.uniform(*X_RANGE, n), rng.uniform(*Y_RANGE, n)]))  # strays -> rural
    cluster = np.where(inside, cluster, -1)
    # Voronoi needs distinct points: nudge exact duplicates (practically never)
    _, first = np.unique(np.round(xy, 1), axis=0, return_index=True)
    if len(first) < n:
        dup = np.setdiff1d(np.arange(n), first)
        xy[dup] += rng.normal(scale=50.0, size=(len(dup), 2))
    return xy, cluster


def _voronoi_cells(xy: np.ndarray) -> np.ndarray:
    """Voronoi cell of each point (same order), clipped to the points' convex hull."""
    multipoint = shapely.multipoints(xy)
    hull = shapely.convex_hull(multipoint).buffer(5_000.0)
    cells = shapely.get_parts(shapely.voronoi_polygons(multipoint, extend_to=hull))
    # voronoi_polygons does not keep the input order: match cells to points
    order = np.full(len(xy), -1, dtype=np.int64)
    tree = shapely.STRtree(cells)
    pt_idx, cell_idx = tree.query(shapely.points(xy), predicate="intersects")
    order[pt_idx[::-1]] = cell_idx[::-1]  # first hit wins for points on an edge
    if (order < 0).any():
        raise RuntimeError("some points have no Voronoi cell")
    out = shapely.intersection(cells[order], hull)
    return shapely.make_valid(out)


def national_units(n_units: int = 42_000, seed: int = 0) -> gpd.GeoDataFrame:
    """ZIP-like synthetic units over a US-sized extent.

    Parameters
    ----------
    n_units
        Number of units (Voronoi cells), e.g. 42,000 for ZIP-code scale.
    seed
        Seed of every random step (same seed, same units).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``unit_id`` (``Z00000``...), ``geometry`` (Polygon, EPSG:5070,
        metres), ``population`` (int), ``potential`` (float, currency per year)
        and ``accounts`` (int >= 1), one row per unit.
    """
    if n_units < 4:
        raise ValueError(f"n_units must be at least 4, got {n_units}")
    rng = np.random.default_rng(seed)
    xy, _ = _points(int(n_units), rng)
    cells = _voronoi_cells(xy)

    # local point density from the distance to the 8th nearest point (points / km2)
    dist, _ = cKDTree(xy).query(xy, k=9)
    density = 8.0 / (np.pi * (dist[:, -1] / 1000.0) ** 2)
    log_rel = np.log(density / np.median(density))
    population = np.exp(
        np.log(6_500.0) + 0.35 * log_rel + rng.normal(scale=0.6, size=len(xy))
    )
    population = np.maximum(np.round(population), 50).astype(np.int64)
    propensity = np.exp(0.1 * log_rel + rng.normal(scale=0.45, size=len(xy)))
    potential = population * 40.0 * propensity  # currency per year
    mix = np.exp(rng.normal(scale=0.35, size=len(xy)))
    accounts = np.maximum(rng.poisson(population / 600.0 * mix), 1).astype(np.int64)

    width = len(str(int(n_units) - 1))
    frame = pd.DataFrame({
        "unit_id": [f"Z{i:0{max(width, 5)}d}" for i in range(len(xy))],
        "population": population,
        "potential": np.round(potential, 2),
        "accounts": accounts,
    })
    return gpd.GeoDataFrame(frame, geometry=cells, crs=CRS)[
        ["unit_id", "geometry", "population", "potential", "accounts"]
    ]


if __name__ == "__main__":  # quick look: python benchmarks/national_units.py
    import time

    t0 = time.perf_counter()
    units = national_units(42_000, 0)
    print(f"{len(units)} units in {time.perf_counter() - t0:.1f}s")
    print(units.drop(columns="geometry").describe().T)
    print("geometry types:", units.geometry.geom_type.value_counts().to_dict())
    print("area km2 quantiles:", np.round(np.quantile(units.area / 1e6, [0, .1, .5, .9, 1]), 1))
