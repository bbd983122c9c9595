"""The unit graph and the search state: adjacency, pieces per territory, cut vertices."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


@dataclass
class Graph:
    """Adjacency in the three shapes the engine needs."""

    n: int
    src: np.ndarray  # directed edge tails (both directions of every edge)
    dst: np.ndarray  # directed edge heads
    nbrs: list[list[int]]  # python adjacency lists for the BFS hot loops

    @classmethod
    def from_csr(cls, adjacency: sp.csr_matrix) -> Graph:
        a = sp.csr_matrix(adjacency)
        a.eliminate_zeros()
        n = a.shape[0]
        indptr, indices = a.indptr, a.indices.astype(np.int64)
        src = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        keep = src != indices
        nbr_all = indices.tolist()
        bounds = indptr.tolist()
        nbrs = [[j for j in nbr_all[bounds[i] : bounds[i + 1]] if j != i] for i in range(n)]
        return cls(n=n, src=src[keep], dst=indices[keep], nbrs=nbrs)


def components_by_label(graph: Graph, labels: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the graph restricted to same-label edges."""
    same = labels[graph.src] == labels[graph.dst]
    mat = sp.csr_matrix(
        (np.ones(int(same.sum()), dtype=np.int8), (graph.src[same], graph.dst[same])),
        shape=(graph.n, graph.n),
    )
    return connected_components(mat, directed=False)


# --------------------------------------------------------------------------- seeds


def removal_keeps_pieces(i: int, lab: list[int], nbrs: list[list[int]]) -> bool:
    """True when removing unit ``i`` does not split its territory.

    Breadth-first search inside the territory, without ``i``, from one of its
    same-territory neighbours until all the others are reached. Works on
    territories that are already in several pieces (it never adds a piece).
    """
    t = lab[i]
    inner = [j for j in nbrs[i] if lab[j] == t]
    if len(inner) <= 1:
        return True
    todo = set(inner[1:])
    seen = {i, inner[0]}
    queue = deque([inner[0]])
    while queue:
        u = queue.popleft()
        for v in nbrs[u]:
            if v not in seen and lab[v] == t:
                if v in todo:
                    todo.discard(v)
                    if not todo:
                        return True
                seen.add(v)
                queue.append(v)
    return False


# ------------------------------------------------------------------ local search


@dataclass
class SearchState:
    """Mutable state of the local search, updated incrementally."""

    labels: np.ndarray
    lab: list[int]
    totals: np.ndarray  # (K, m)
    counts: np.ndarray  # (K,)
    centres: np.ndarray

    @classmethod
    def build(cls, labels: np.ndarray, values: np.ndarray, k: int, centres: np.ndarray):
        totals = np.zeros((k, values.shape[1]))
        np.add.at(totals, labels, values)
        return cls(
            labels=labels.copy(),
            lab=labels.tolist(),
            totals=totals,
            counts=np.bincount(labels, minlength=k),
            centres=centres.copy(),
        )

    def move(self, i: int, a: int, b: int, w: np.ndarray) -> None:
        self.labels[i] = b
        self.lab[i] = b
        self.totals[a] -= w
        self.totals[b] += w
        self.counts[a] -= 1
        self.counts[b] += 1


def articulation_points(
    labels: np.ndarray, nbrs: list[list[int]], terrs, is_ap: np.ndarray
) -> None:
    """Recompute, in place, the cut vertices of the listed territories.

    Iterative Tarjan (Hopcroft & Tarjan, 1973) on each territory's induced
    subgraph. A unit that is not a cut vertex can leave its territory without
    adding a piece.
    """
    terrs = list(terrs)
    lab = labels.tolist()
    for t in terrs:
        members = np.flatnonzero(labels == t).tolist()  # ascending, as a stable sort gives
        is_ap[members] = False
        disc: dict[int, int] = {}
        low: dict[int, int] = {}
        cut: list[int] = []
        timer = 0
        for r in members:
            if r in disc:
                continue
            disc[r] = low[r] = timer
            timer += 1
            root_children = 0
            stack = [(r, -1, iter(nbrs[r]))]
            while stack:
                u, parent, it = stack[-1]
                pushed = False
                for v in it:
                    if lab[v] != t:
                        continue
                    dv = disc.get(v)
                    if dv is None:
                        disc[v] = low[v] = timer
                        timer += 1
                        stack.append((v, u, iter(nbrs[v])))
                        pushed = True
                        break
                    if v != parent and dv < low[u]:
                        low[u] = dv
                if pushed:
                    continue
                stack.pop()
                if parent >= 0:
                    if low[u] < low[parent]:
                        low[parent] = low[u]
                    if parent == r:
                        root_children += 1
                    elif low[u] >= disc[parent]:
                        cut.append(parent)
            if root_children > 1:
                cut.append(r)
        if cut:
            is_ap[cut] = True


# ------------------------------------------------------- Lagrangian move/swap search
