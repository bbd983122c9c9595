"""Adjacency graph and spatial lags.

The graph is built once from unit geometry with libpysal (queen or rook
contiguity). Units with no neighbour (islands) are linked to their nearest
unit so that every downstream step sees one connected structure; the links
are returned so they can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class AdjacencyGraph:
    """Symmetric 0/1 adjacency over units in a fixed order.

    Attributes
    ----------
    unit_ids
        Unit identifiers, in the row order of ``matrix``.
    matrix
        CSR matrix, ``matrix[i, j] == 1`` when units ``i`` and ``j`` touch.
    island_links
        ``(island_unit_id, linked_unit_id)`` pairs added for units that had no neighbour.
    """

    unit_ids: np.ndarray
    matrix: sp.csr_matrix
    island_links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    def neighbours(self, i: int) -> np.ndarray:
        """Indices of the neighbours of unit ``i``."""
        return self.matrix.indices[self.matrix.indptr[i] : self.matrix.indptr[i + 1]]


def projected_xy(units: gpd.GeoDataFrame, projected_crs: str | None = None) -> np.ndarray:
    """Unit centres as an (n, 2) array in metres.

    Uses ``projected_crs`` when given, else the UTM zone that covers the data.
    """
    crs = projected_crs or units.estimate_utm_crs()
    pts = units.geometry.to_crs(crs).representative_point()
    return np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()])


def contiguity_matrix(units: gpd.GeoDataFrame, kind: str = "queen") -> sp.csr_matrix:
    """Queen or rook contiguity of unit polygons as a symmetric CSR matrix.

    Point units (no polygons) get a Delaunay-style graph via their 6 nearest
    neighbours, symmetrised.
    """
    from libpysal import weights

    n = len(units)
    if n == 0:
        return sp.csr_matrix((0, 0))
    geom_types = set(units.geometry.geom_type.unique())
    if geom_types <= {"Point"}:
        xy = np.column_stack([units.geometry.x, units.geometry.y])
        k = min(6, n - 1)
        if k < 1:
            return sp.csr_matrix((n, n))
        _, idx = cKDTree(xy).query(xy, k=k + 1)
        rows = np.repeat(np.arange(n), k)
        cols = idx[:, 1:].ravel()
    else:
        builder = weights.Queen if kind == "queen" else weights.Rook
        w = builder.from_dataframe(
            units.reset_index(drop=True), use_index=True, silence_warnings=True
        )
        rows, cols = [], []
        for i, nbrs in w.neighbors.items():
            rows.extend([i] * len(nbrs))
            cols.extend(nbrs)
        rows, cols = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
    mat = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    mat = ((mat + mat.T) > 0).astype(np.int8)
    mat.setdiag(0)
    mat.eliminate_zeros()
    return mat.tocsr()


def link_islands(
    matrix: sp.csr_matrix, xy: np.ndarray
) -> tuple[sp.csr_matrix, list[tuple[int, int]]]:
    """Connect every component of the graph to the rest through nearest units.

    Islands (units without neighbours) and detached groups (for example an
    archipelago) are joined to the closest unit outside them, repeatedly,
    until the graph is one connected component.

    Returns
    -------
    matrix
        The augmented symmetric adjacency.
    links
        The ``(i, j)`` index pairs that were added.
    """
    matrix = matrix.tolil(copy=True)
    links: list[tuple[int, int]] = []
    n = matrix.shape[0]
    if n <= 1:
        return matrix.tocsr(), links
    while True:
        n_comp, comp = sp.csgraph.connected_components(matrix.tocsr(), directed=False)
        if n_comp == 1:
            break
        sizes = np.bincount(comp)
        smallest = int(np.argmin(sizes))
        inside = np.flatnonzero(comp == smallest)
        outside = np.flatnonzero(comp != smallest)
        dist, j = cKDTree(xy[outside]).query(xy[inside], k=1)
        best = int(np.argmin(dist))
        a, b = int(inside[best]), int(outside[j[best]])
        matrix[a, b] = 1
        matrix[b, a] = 1
        links.append((a, b))
    return matrix.tocsr(), links


def build_adjacency(
    units: gpd.GeoDataFrame,
    unit_col: str = "unit_id",
    kind: str = "queen",
    projected_crs: str | None = None,
) -> AdjacencyGraph:
    """Contiguity graph of the units, with islands linked to their nearest unit."""
    matrix = contiguity_matrix(units, kind=kind)
    xy = projected_xy(units, projected_crs)
    matrix, links = link_islands(matrix, xy)
    ids = units[unit_col].astype(str).to_numpy()
    return AdjacencyGraph(
        unit_ids=ids,
        matrix=matrix,
        island_links=[(ids[a], ids[b]) for a, b in links],
    )


def spatial_lag(graph: AdjacencyGraph, values: pd.DataFrame) -> pd.DataFrame:
    """Mean of each column over a unit's neighbours (row-standardised lag).

    ``values`` is indexed by unit id; units outside the graph get NaN. NaN
    neighbour values are ignored.
    """
    aligned = values.reindex(graph.unit_ids)
    arr = aligned.to_numpy(dtype=float)
    valid = ~np.isnan(arr)
    filled = np.where(valid, arr, 0.0)
    sums = graph.matrix @ filled
    counts = graph.matrix @ valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lag = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    out = pd.DataFrame(lag, index=graph.unit_ids, columns=[f"{c}_nbr_mean" for c in values])
    return out.reindex(values.index)
