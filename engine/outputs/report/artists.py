"""Many shapes of the report as one matplotlib artist: what `Axes.bar` and `Axes.fill_between(where=...)`
draw, at a fraction of their cost (they make and bound a patch per bar, and a polygon per region, in Python)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection


def bars(
    ax: Axes,
    x: np.ndarray,
    heights: np.ndarray,
    *,
    width: float,
    colours: str | list[str],
    edgecolor: str,
    linewidth: float,
    bottoms: np.ndarray | None = None,
) -> PolyCollection:
    """Vertical bars centred on `x`, drawn as `ax.bar` draws them (mitred edges, 0 a sticky edge of the
    autoscaled y axis), as one PolyCollection."""
    x = np.asarray(x, dtype=float)
    tops = np.asarray(heights, dtype=float)
    lows = np.zeros_like(tops) if bottoms is None else np.asarray(bottoms, dtype=float)
    tops = lows + tops
    left, right = x - width / 2, x + width / 2
    # Each bar's corners in Rectangle's order: lower left, lower right, upper right, upper left.
    corners = np.stack(
        [np.column_stack(c) for c in ((left, lows), (right, lows), (right, tops), (left, tops))], 1
    )
    collection = PolyCollection(
        list(corners), facecolors=colours, edgecolors=edgecolor, linewidths=linewidth, joinstyle="miter"
    )
    collection.sticky_edges.y.append(0.0)
    ax.add_collection(collection)
    ax.autoscale_view()
    return collection


def fill_beyond(ax: Axes, x: np.ndarray, y: np.ndarray, level: float, *, above: bool, colour: str) -> None:
    """The area between the trace (`x`, `y`) and `level` where the trace is above it (`above`) or below it, as
    `ax.fill_between(x, y, level, where=..., interpolate=True)` fills it: bounded where the trace crosses
    the level (between neighbouring readings, linearly), and broken where `y` is NaN; one PolyCollection."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    beyond = y - level if above else level - y
    # Where two neighbours lie on either side of the level (NaN compares false), the point where the trace
    # crosses it, put between them.
    cross = np.nonzero((beyond[:-1] > 0) & (beyond[1:] < 0) | (beyond[:-1] < 0) & (beyond[1:] > 0))[0]
    share = beyond[cross] / (beyond[cross] - beyond[cross + 1])
    x = np.insert(x, cross + 1, x[cross] + share * (x[cross + 1] - x[cross]))
    y = np.insert(y, cross + 1, level)
    beyond = np.insert(beyond, cross + 1, 0.0)
    # Each run of points on the level or beyond it, with one beyond, is a polygon: along the trace, back along
    # the level.
    inside = np.concatenate([[False], beyond >= 0, [False]])
    edges = np.nonzero(np.diff(inside.astype(np.int8)))[0].reshape(-1, 2)
    polygons = [
        np.concatenate(
            [np.column_stack([x[a:b], y[a:b]]), np.column_stack([x[a:b][::-1], np.full(b - a, level)])]
        )
        for a, b in edges
        if np.any(beyond[a:b] > 0)
    ]
    if polygons:
        ax.add_collection(PolyCollection(polygons, facecolors=colour, edgecolors=colour, linewidths=0))
