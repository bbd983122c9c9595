"""Interactive, offline map of units and territories (plotly, no tiles).

Polygons are drawn as filled plotly ``Scatter`` traces on projected
coordinates (km), so the map needs neither a tile server nor plotly's
topojson download: the page makes no network request. Units with the same
colour are merged into one trace (territories by a greedy colouring,
values by quantile class), which keeps the file small; a layer of unit
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
                 visible: bool) -> list[go.Scatter]:
    """One filled trace per colour; ``groups`` is indexed by group key."""
    traces = []
    by_colour: dict[str, list] = {}
    for key in groups.index:
        by_colour.setdefault(colours[key], []).append(key)
    for colour, keys in by_colour.items():
        xs: list = []
        ys: list = []
        for key in keys:
            x, y = _paths(groups[key], tolerance_m)
            xs.extend(x)
            ys.extend(y)
        traces.append(go.Scatter(
            x=xs, y=ys, mode="lines", fill="toself", fillcolor=colour,
            line={"color": "#333", "width": 0.6}, hoverinfo="skip", visible=visible,
            name=html.escape(", ".join(names[k] for k in keys[:4])
                             + (" …" if len(keys) > 4 else "")),
            showlegend=False,
        ))
    return traces


def _greedy_colours(dissolved: gpd.GeoDataFrame) -> dict:
    touching = gpd.sjoin(dissolved, dissolved, predicate="touches")
    neighbours = touching.groupby(level=0)["index_right"].apply(set).to_dict()
    colour: dict = {}
    for key in dissolved.index:
        used = {colour.get(n) for n in neighbours.get(key, set())}
        colour[key] = next((c for c in TERRITORY_PALETTE if c not in used),
                           TERRITORY_PALETTE[len(colour) % len(TERRITORY_PALETTE)])
    return colour


def territory_layer(units: gpd.GeoDataFrame, labels: pd.Series, tolerance_m: float,
                    visible: bool) -> list[go.Scatter]:
    """Territories dissolved from units, touching territories in different colours."""
    dissolved = gpd.GeoDataFrame(geometry=units.geometry.to_numpy(), crs=units.crs).assign(
        _k=labels.astype(str).to_numpy()).dissolve("_k").rename_axis(None)
    colours = _greedy_colours(dissolved)
    names = {k: str(k) for k in dissolved.index}
    return _fill_traces(dissolved.geometry, colours, names, tolerance_m, visible)


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
    return _fill_traces(dissolved.geometry, colours, names, tolerance_m, visible)


def interactive_map(
    units: gpd.GeoDataFrame,
    territory_layers: dict[str, pd.Series],
    value_layers: dict[str, pd.Series],
    hover_text: pd.Series,
    tolerance_m: float = 1500.0,
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
    """
    traces: list[go.Scatter] = []
    spans: list[tuple[str, int, int]] = []
    first = True
    for name, labels in territory_layers.items():
        layer = territory_layer(units, labels, tolerance_m, first)
        spans.append((name, len(traces), len(traces) + len(layer)))
        traces.extend(layer)
        first = False
    for name, values in value_layers.items():
        layer = value_layer(units, values, tolerance_m, False)
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
        buttons.append({"label": name, "method": "update", "args": [{"visible": visible}]})
    fig = go.Figure(traces)
    fig.update_layout(
        height=620, margin={"l": 0, "r": 0, "t": 40, "b": 0}, plot_bgcolor="white",
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x", "scaleratio": 1},
        updatemenus=[{"type": "buttons", "direction": "right", "x": 0, "y": 1.06,
                      "xanchor": "left", "yanchor": "bottom", "buttons": buttons,
                      "showactive": True}],
        hovermode="closest",
    )
    return fig
