"""Interactive, offline map of units and territories (plotly, no tiles).

Polygons are drawn as filled plotly ``Scatter`` traces on projected
coordinates (km), so the map needs neither a tile server nor plotly's
topojson download: the page makes no network request. Each territory (or
value class) is one trace, so the legend names it; territories that touch
never share a colour (:func:`colour_graph`, DSatur on the territory
adjacency) and each carries its name at its centre. A layer of unit
centres carries the hover text. Buttons switch between layers.
"""

from __future__ import annotations

import html

import geopandas as gpd
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from shapely.geometry import MultiPolygon, Polygon

TERRITORY_PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
]
VALUE_COLOURS = ["#f7fcf5", "#d9f0d3", "#addd8e", "#78c679", "#41ab5d", "#238443", "#005a32"]


def _paths(geometry, tolerance_m: float) -> tuple[list, list]:
    """Exterior rings of a (multi)polygon as x, y lists in km, None-separated."""
    xs: list = []
    ys: list = []
    geom = geometry.simplify(tolerance_m, preserve_topology=True) if tolerance_m else geometry
    polygons = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
    for poly in polygons:
        if not isinstance(poly, Polygon) or poly.is_empty:
            continue
        x, y = poly.exterior.coords.xy
        xs.extend(np.round(np.asarray(x) / 1000.0, 1).tolist() + [None])
        ys.extend(np.round(np.asarray(y) / 1000.0, 1).tolist() + [None])
    return xs, ys


def _fill_traces(groups: gpd.GeoSeries, colours: dict, names: dict, tolerance_m: float,
                 visible: bool, legend: str) -> list[go.Scatter]:
    """One filled trace per group (``groups`` is indexed by group key), named in the legend."""
    traces = []
    for key in groups.index:
        xs, ys = _paths(groups[key], tolerance_m)
        traces.append(go.Scatter(
            x=xs, y=ys, mode="lines", fill="toself", fillcolor=colours[key],
            line={"color": "#333", "width": 0.6}, hoverinfo="skip", visible=visible,
            name=html.escape(names[key]), legendgroup=legend, showlegend=True,
        ))
    return traces


def colour_graph(neighbours: dict) -> dict:
    """Colour numbers ``0, 1, ...`` per node such that neighbours always differ (DSatur).

    Brélaz's heuristic: colour next the node whose neighbours already use the
    most distinct colours (ties: most neighbours, then the smallest key), with
    the smallest colour its neighbours leave free. Planar maps need few
    colours (about 4-6 in practice). ``neighbours`` maps each node to the set
    of nodes it touches (symmetric; a node is never its own neighbour).
    """
    nodes = sorted(neighbours, key=str)
    colour: dict = {}
    seen: dict = {node: set() for node in nodes}  # colours among each node's neighbours
    while len(colour) < len(nodes):
        node = min((n for n in nodes if n not in colour),
                   key=lambda n: (-len(seen[n]), -len(neighbours[n]), str(n)))
        free = next(c for c in range(len(nodes) + 1) if c not in seen[node])
        colour[node] = free
        for other in neighbours[node]:
            if other in seen:
                seen[other].add(free)
    return colour


def palette(n: int) -> list[str]:
    """``n`` distinct fill colours: the ten of :data:`TERRITORY_PALETTE`, then more hues."""
    extra = [f"hsl({(37 * i) % 360}, 55%, {62 if i % 2 else 48}%)"
             for i in range(max(0, n - len(TERRITORY_PALETTE)))]
    return (TERRITORY_PALETTE + extra)[:max(n, 0)]


def territory_neighbours(dissolved: gpd.GeoDataFrame, gap_m: float) -> dict:
    """Territories that touch or overlap, or come within ``gap_m`` (the simplification
    tolerance, which can close a gap on the drawn map): ``{key: set of keys}``."""
    near = gpd.sjoin(dissolved, dissolved, predicate="dwithin", distance=max(gap_m, 1e-6))
    near = near[near.index != near["index_right"]]
    found = near.groupby(level=0)["index_right"].apply(set).to_dict()
    return {key: found.get(key, set()) for key in dissolved.index}


def territory_colours(dissolved: gpd.GeoDataFrame, gap_m: float) -> dict:
    """A fill colour per territory; territories that touch never share one."""
    numbers = colour_graph(territory_neighbours(dissolved, gap_m))
    colours = palette(max(numbers.values(), default=-1) + 1)
    return {key: colours[c] for key, c in numbers.items()}


def territory_layer(units: gpd.GeoDataFrame, labels: pd.Series, tolerance_m: float,
                    visible: bool, legend: str = "territories") -> list[go.Scatter]:
    """Territories dissolved from units, touching territories in different colours, each
    named in the legend and at its centre (the last trace holds the names)."""
    dissolved = gpd.GeoDataFrame(geometry=units.geometry.to_numpy(), crs=units.crs).assign(
        _k=labels.astype(str).to_numpy()).dissolve("_k").rename_axis(None)
    colours = territory_colours(dissolved, tolerance_m)
    names = {k: str(k) for k in dissolved.index}
    traces = _fill_traces(dissolved.geometry, colours, names, tolerance_m, visible, legend)
    centres = dissolved.geometry.representative_point()
    traces.append(go.Scatter(
        x=np.round(centres.x.to_numpy() / 1000, 1), y=np.round(centres.y.to_numpy() / 1000, 1),
        mode="text", text=[html.escape(names[k]) for k in dissolved.index],
        textfont={"size": 10, "color": "#111"}, hoverinfo="skip", visible=visible,
        showlegend=False, name=f"{legend} labels",
    ))
    return traces


def value_layer(units: gpd.GeoDataFrame, values: pd.Series, tolerance_m: float,
                visible: bool, fmt: str = "{:,.0f}") -> list[go.Scatter]:
    """Units in quantile classes of ``values``, low (light) to high (dark)."""
    n_classes = len(VALUE_COLOURS)
    classes = pd.qcut(values.rank(method="first"), n_classes, labels=False).to_numpy()
    edges = [values[classes == c].max() for c in range(n_classes)]
    dissolved = gpd.GeoDataFrame(geometry=units.geometry.to_numpy(), crs=units.crs).assign(
        _k=classes).dissolve("_k").rename_axis(None)
    colours = {c: VALUE_COLOURS[c] for c in dissolved.index}
    names = {c: f"up to {fmt.format(edges[c])}" for c in dissolved.index}
    return _fill_traces(dissolved.geometry, colours, names, tolerance_m, visible, "values")


def interactive_map(
    units: gpd.GeoDataFrame,
    territory_layers: dict[str, pd.Series],
    value_layers: dict[str, pd.Series],
    hover_text: pd.Series,
    tolerance_m: float = 1500.0,
    value_formats: dict[str, str] | None = None,
) -> go.Figure:
    """A map with one button per layer.

    Parameters
    ----------
    units
        Unit polygons in a projected CRS (metres), in the order of the series.
    territory_layers
        Layer name to territory label per unit (first one shown first).
    value_layers
        Layer name to a numeric value per unit, shown in quantile classes.
    hover_text
        Text shown when hovering a unit (plain text; plotly escapes nothing,
        so it is HTML-escaped here).
    tolerance_m
        Simplification of the drawn outlines (metres).
    value_formats
        Layer name to the format of its class limits in the legend
        (default ``"{:,.0f}"``; e.g. ``"{:.0%}"`` for a share).
    """
    traces: list[go.Scatter] = []
    spans: list[tuple[str, int, int]] = []
    first = True
    for name, labels in territory_layers.items():
        layer = territory_layer(units, labels, tolerance_m, first, legend=name)
        spans.append((name, len(traces), len(traces) + len(layer)))
        traces.extend(layer)
        first = False
    for name, values in value_layers.items():
        fmt = (value_formats or {}).get(name, "{:,.0f}")
        layer = value_layer(units, values, tolerance_m, False, fmt)
        spans.append((name, len(traces), len(traces) + len(layer)))
        traces.extend(layer)
    points = units.geometry.representative_point()
    hover = go.Scatter(
        x=np.round(points.x.to_numpy() / 1000, 1), y=np.round(points.y.to_numpy() / 1000, 1),
        mode="markers", marker={"size": 5, "color": "rgba(0,0,0,0.01)"},
        text=[html.escape(str(t)) for t in hover_text], hoverinfo="text", showlegend=False,
        name="units",
    )
    traces.append(hover)
    n = len(traces)
    buttons = []
    for name, start, stop in spans:
        visible = [start <= i < stop for i in range(n - 1)] + [True]
        buttons.append({"label": name, "method": "update",
                        "args": [{"visible": visible}, {"legend.title.text": html.escape(name)}]})
    fig = go.Figure(traces)
    fig.update_layout(
        height=620, margin={"l": 0, "r": 0, "t": 40, "b": 0}, plot_bgcolor="white",
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x", "scaleratio": 1},
        updatemenus=[{"type": "buttons", "direction": "right", "x": 0, "y": 1.06,
                      "xanchor": "left", "yanchor": "bottom", "buttons": buttons,
                      "showactive": True}],
        hovermode="closest",
        legend={"title": {"text": html.escape(spans[0][0]) if spans else ""},
                "itemclick": False, "itemdoubleclick": False},
    )
    return fig
