"""Territory geometry: spans, elongation and Polsby-Popper (pure functions)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError


def farthest_m(point: np.ndarray, pts: np.ndarray) -> float:
    """Largest distance (metres) from ``point`` to ``pts`` (0 without points)."""
    if len(pts) == 0:
        return 0.0
    return float(np.sqrt(((pts - point) ** 2).sum(1).max()))


def span_m(pts: np.ndarray) -> float:
    """Largest distance between two points (metres), over their convex hull."""
    if len(pts) < 2:
        return 0.0
    if len(pts) > 3:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:
            pass
    best = 0.0
    for s in range(0, len(pts), 1024):  # chunks: a degenerate hull keeps every point
        best = max(best, float(((pts[s:s + 1024, None, :] - pts[None, :, :]) ** 2).sum(-1).max()))
    return float(np.sqrt(best))


def elongation(span: float, area_km2: float) -> float:
    """Span (metres) over the diameter (km) of the circle with ``area_km2``."""
    circle_km = 2.0 * np.sqrt(max(area_km2, 0.0) / np.pi)
    return span / 1000.0 / circle_km if circle_km > 0 else 1.0


def largest_span_m(labels: np.ndarray, xy: np.ndarray, k: int) -> float:
    """The largest span of the ``k`` territories of ``labels`` (metres)."""
    order = np.argsort(labels, kind="stable")
    cuts = np.searchsorted(labels[order], np.arange(1, k))
    return max((span_m(xy[part]) for part in np.split(order, cuts)), default=0.0)


def territory_elongations(labels: np.ndarray, xy: np.ndarray, areas: np.ndarray, k: int
                          ) -> np.ndarray:
    """Elongation of each of the ``k`` territories of ``labels``."""
    area = np.bincount(labels, weights=areas, minlength=k)
    return np.array([elongation(span_m(xy[labels == t]), area[t]) for t in range(k)])


def territory_elongation(diameter_km, areas, lab: np.ndarray, k: int):
    """Territory area (km²) and span over the diameter of the circle with that area."""
    diameter_km = np.asarray(diameter_km, dtype=float)
    unit_area = np.asarray(areas, dtype=float)
    if unit_area.shape != lab.shape or not np.isfinite(unit_area).all() or (unit_area < 0).any():
        raise ValueError(f"areas must be {len(lab)} finite, non-negative unit areas (km²)")
    area = np.bincount(lab, weights=unit_area, minlength=k + 1)[:k]
    circle = 2.0 * np.sqrt(area / np.pi)
    return area, np.where(circle > 0, diameter_km / np.maximum(circle, 1e-300), 1.0)


def polsby_popper(polygons, lab: np.ndarray, k: int) -> np.ndarray:
    """``4 pi area / perimeter^2`` of each territory's union of unit polygons."""
    import shapely

    geoms = np.asarray(getattr(polygons, "values", polygons), dtype=object)
    out = np.full(k, np.nan)
    for t in range(k):
        members = geoms[lab == t]
        if len(members) == 0:
            continue
        shape = shapely.union_all(members)
        if shape.length > 0:
            out[t] = 4 * np.pi * shape.area / shape.length**2
    return out
