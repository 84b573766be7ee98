"""The points of :mod:`segaudit.metrics.scores` for maps on a CPU, in compiled loops (numba): each map's first
maximum and minimum and its weighted centroid in one read of the map, and each point's hit and distance to
its mask.

The torch versions (:func:`segaudit.metrics.scores.weighted_centroid`, :func:`~segaudit.metrics.ordering.
extreme_points`, ``scores._hits_and_distances``; a device's path) make ~10 passes over every map, the
distances one ``(H, W)`` float64 table per point. These loops give the same numbers to the bit
(``tests/test_point_kernel.py``): the extremes and minima are exact in any order; the centroid's float64 sums
of float32 weights are exact too (the weights lie within ``[cutoff x peak, peak]``, so a row sum needs at
most 24 + log2(1 / cutoff) + log2(W) bits, and the weighted sums log2(H) more: under float64's 53 for any
cutoff >= 2**-10 and maps up to 1024 px a side), so only the final division rounds, as in torch.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["map_points", "hits_and_distances"]


@numba.njit(cache=True, nogil=True)
def map_points(
    values: np.ndarray, valid: np.ndarray, cutoff: float, top: np.ndarray, bottom: np.ndarray,
    centroid: np.ndarray, peak: np.ndarray,
) -> None:
    """Per map ``values`` ``(n, H, W)`` float32 with ``valid`` ``(n, H, W)`` bool: the flat index of its first
    valid maximum ``top`` and minimum ``bottom`` (row-major; 0 without a valid pixel), its positive peak
    ``peak`` (0 without a positive valid value) and the weighted centroid ``(row, col)`` of the valid values
    ``>= cutoff x peak`` (float32 threshold, float64 sums; ``sum / max(total, 1e-30)``)."""
    n, height, width = values.shape
    threshold_scale = np.float32(cutoff)
    column_sums = np.zeros(width, dtype=np.float64)
    for i in range(n):
        high, low = -np.inf, np.inf
        first_high, first_low = 0, 0
        for y in range(height):
            for x in range(width):
                if valid[i, y, x]:
                    v = values[i, y, x]
                    if v > high:
                        high, first_high = v, y * width + x
                    if v < low:
                        low, first_low = v, y * width + x
        top[i], bottom[i] = first_high, first_low
        top_value = np.float32(max(high, 0.0))
        peak[i] = top_value
        threshold = threshold_scale * top_value
        column_sums[:] = 0.0
        row_weighted = 0.0
        total = 0.0
        for y in range(height):
            row_sum = 0.0
            for x in range(width):
                v = values[i, y, x]
                if valid[i, y, x] and v > 0 and v >= threshold:
                    row_sum += np.float64(v)
                    column_sums[x] += np.float64(v)
            row_weighted += row_sum * y
            total += row_sum
        column_weighted = 0.0
        for x in range(width):
            column_weighted += column_sums[x] * x
        total = max(total, 1e-30)
        centroid[i, 0], centroid[i, 1] = row_weighted / total, column_weighted / total


@numba.njit(cache=True, nogil=True)
def hits_and_distances(
    points: np.ndarray, truth: np.ndarray, with_distance: bool, hit: np.ndarray, distance: np.ndarray
) -> None:
    """Whether each point ``(n, 2)`` float64 (row, col), rounded half to even and clamped into the map, lies
    in its mask ``truth`` ``(n, H, W)`` bool, and its *squared* Euclidean distance to the nearest mask pixel
    centre (0 inside, +inf for an empty mask; NaN outside without ``with_distance``)::

        d^2 = min_r [(r - y)^2 + min_{c: mask[r, c]} (c - x)^2]

    (The caller takes the square root with torch, whose float64 ``sqrt`` on a CPU is not always correctly
    rounded: ``sqrt(977)`` is 31.256999216175565 there, 31.25699921617557 in IEEE arithmetic; so the distances
    stay those of the torch path to the bit.)
    """
    n, height, width = truth.shape
    for i in range(n):
        row = min(max(np.rint(points[i, 0]), 0.0), height - 1.0)
        col = min(max(np.rint(points[i, 1]), 0.0), width - 1.0)
        hit[i] = truth[i, int(row), int(col)]
        if hit[i]:
            distance[i] = 0.0
            continue
        if not with_distance:
            distance[i] = np.nan
            continue
        y0, x0 = points[i, 0], points[i, 1]
        best = np.inf
        for y in range(height):
            nearest = np.inf
            for x in range(width):
                if truth[i, y, x]:
                    dx = x - x0
                    nearest = min(nearest, dx * dx)
            dy = y - y0
            best = min(best, dy * dy + nearest)
        distance[i] = best

