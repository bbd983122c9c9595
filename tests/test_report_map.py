"""The report map: neighbours never share a colour, a legend, names at territory centres."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from territory.pipelines.report_map import colour_graph, interactive_map, palette
from tests.lattice import delaunay_adjacency


def _graph(adjacency) -> dict:
    coo = adjacency.tocoo()
    out = {i: set() for i in range(adjacency.shape[0])}
    for a, b in zip(coo.row.tolist(), coo.col.tolist(), strict=True):
        if a != b:
            out[a].add(b)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=4, max_value=120), st.integers(min_value=0, max_value=10_000))
def test_dsatur_never_gives_neighbours_one_colour(n, seed):
    xy = np.random.default_rng(seed).uniform(0, 1, (n, 2))
    graph = _graph(delaunay_adjacency(xy))  # planar, like a map
    colour = colour_graph(graph)
    assert set(colour) == set(graph)
    assert all(colour[a] != colour[b] for a in graph for b in graph[a])
    assert max(colour.values()) + 1 <= max(len(v) for v in graph.values()) + 1


def test_dsatur_is_exact_on_a_chessboard_and_a_wheel():
    grid = {(r, c): {(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                     if 0 <= r + dr < 6 and 0 <= c + dc < 6} for r in range(6) for c in range(6)}
    assert len(set(colour_graph(grid).values())) == 2  # bipartite
    wheel = {0: set(range(1, 6))} | {i: {0, (i % 5) + 1, ((i - 2) % 5) + 1} for i in range(1, 6)}
    assert len(set(colour_graph(wheel).values())) == 4  # odd rim + hub
    assert colour_graph({"a": set()}) == {"a": 0}


def test_palette_has_as_many_distinct_colours_as_asked():
    for n in (1, 10, 11, 30):
        assert len(set(palette(n))) == n


def _checkerboard(n_side: int, cell_m: float = 1000.0):
    """``n_side``² territories of 2x2 unit squares, named by their grid cell."""
    rows, labels, geoms = 2 * n_side, [], []
    for r in range(rows):
        for c in range(rows):
            geoms.append(box(c * cell_m, r * cell_m, (c + 1) * cell_m, (r + 1) * cell_m))
            labels.append(f"R{r // 2}C{c // 2}")
    units = gpd.GeoDataFrame({"unit_id": [f"u{i}" for i in range(len(geoms))]},
                             geometry=geoms, crs="EPSG:5070")
    return units, pd.Series(labels)


def _fills(fig, layer_size: int):
    traces = [t for t in fig.data[:layer_size] if t.fill == "toself"]
    return {t.name: t.fillcolor for t in traces}


def test_map_gives_touching_territories_different_colours_with_a_legend_and_labels():
    units, labels = _checkerboard(6)  # 36 territories: more than the 10-colour palette
    fig = interactive_map(units, {"Proposed territories": labels},
                          {"Potential": pd.Series(np.arange(len(units), dtype=float))},
                          labels, tolerance_m=0)
    fills = _fills(fig, 37)
    assert sorted(fills) == sorted(set(labels))  # one legend entry per territory
    assert all(t.showlegend for t in fig.data[:36])
    for name, colour in fills.items():  # queen neighbours, corners included
        r, c = int(name[1]), int(name[3])
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                other = f"R{r + dr}C{c + dc}"
                if (dr or dc) and other in fills:
                    assert fills[other] != colour, (name, other)
    text = fig.data[36]
    assert text.mode == "text" and sorted(text.text) == sorted(fills)
    for name, x, y in zip(text.text, text.x, text.y, strict=True):  # inside its territory
        r, c = int(name[1]), int(name[3])
        assert c * 2 <= x <= c * 2 + 2 and r * 2 <= y <= r * 2 + 2
    assert fig.layout.legend.title.text == "Proposed territories"


def test_territories_a_hair_apart_count_as_neighbours_when_outlines_are_simplified():
    units = gpd.GeoDataFrame({"unit_id": ["a", "b"]},
                             geometry=[box(0, 0, 1000, 1000), box(1100, 0, 2100, 1000)],
                             crs="EPSG:5070")
    labels = pd.Series(["A", "B"])
    far = interactive_map(units, {"T": labels}, {}, labels, tolerance_m=10)
    near = interactive_map(units, {"T": labels}, {}, labels, tolerance_m=500)
    assert len(set(_fills(far, 2).values())) == 1  # 100 m apart, drawn apart: may share
    assert len(set(_fills(near, 2).values())) == 2


def test_demo_slice_map_colours_neighbours_apart(demo_slice_dir):
    """On real counties (Iowa and Nebraska): no two touching territories share a colour."""
    counties = gpd.read_parquet(demo_slice_dir / "counties.parquet").to_crs("EPSG:5070")
    centre = counties.geometry.centroid
    # 24 territories: vertical bands of counties cut into rows
    labels = pd.Series((pd.qcut(centre.x, 6, labels=False) * 4
                        + pd.qcut(centre.y, 4, labels=False)).map("T{:02d}".format).to_numpy())
    fig = interactive_map(counties.reset_index(drop=True), {"Proposed": labels}, {}, labels)
    fills = _fills(fig, 24)
    dissolved = counties.assign(t=labels.to_numpy()).dissolve("t")
    for a, geom in dissolved.geometry.items():
        for b, other in dissolved.geometry.items():
            if a < b and geom.buffer(1.0).intersects(other):
                assert fills[a] != fills[b], (a, b)
