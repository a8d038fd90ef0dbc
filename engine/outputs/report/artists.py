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
