"""Planar test graphs shared by the tests and the benchmarks: a rook lattice and Delaunay.

Test data, not package code: the tests import it as ``tests.lattice``, the
benchmarks with the repository root on ``sys.path``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import Delaunay


def lattice(rows: int, cols: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Rook lattice with 1 km spacing.

    Parameters
    ----------
    rows, cols
        Lattice size; unit ``r * cols + c`` sits in row ``r``, column ``c``.

    Returns
    -------
    xy
        ``(rows * cols, 2)`` coordinates in metres (x = column, y = row).
    adjacency
        Symmetric int8 CSR matrix, 1 between units that share an edge.
    """
    idx = np.arange(rows * cols).reshape(rows, cols)
    r = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    c = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    a = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(rows * cols,) * 2)
    yy, xx = np.divmod(np.arange(rows * cols), cols)
    return np.column_stack([xx, yy]).astype(float) * 1000.0, _symmetric(a)


def delaunay_adjacency(xy: np.ndarray) -> sp.csr_matrix:
    """Symmetric int8 CSR adjacency of the Delaunay triangulation of the points ``xy``."""
    n = len(xy)
    s = Delaunay(xy).simplices
    r = np.concatenate([s[:, 0], s[:, 1], s[:, 2]])
    c = np.concatenate([s[:, 1], s[:, 2], s[:, 0]])
    return _symmetric(sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n)))


def _symmetric(a: sp.csr_matrix) -> sp.csr_matrix:
    return ((a + a.T) > 0).astype(np.int8).tocsr()
