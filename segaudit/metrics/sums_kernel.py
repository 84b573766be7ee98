"""Sums over pixel sets for CPU tensors, in compiled loops (numba): the logit vectors of each class's labelled
pixels (:func:`segaudit.metrics.entanglement.template_sums`) and a map's positive mass inside each instance
and its class's union of instances (:func:`segaudit.metrics.instances.instance_scores`), and label
quality's softmin terms over each (image, class) region
(:func:`segaudit.metrics.label_quality.softmin_pool_images_and_regions`).

The torch versions (a device's path, any dtype) build a ``(pixels, classes)`` indicator per image for a
matrix product, or one masked copy of a map per instance, per union and per total; here each pixel is read
once per set it belongs to and only the sums leave the loops. The sums are float64 over float32 values,
added in pixel order (``b``, then row-major), which is the definition the torch versions are tested against;
they differ from torch's blocked reductions by float64 rounding at most (``tests/test_sums_kernel.py``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["class_logit_sums", "instance_sums", "region_sums"]


@numba.njit(cache=True, nogil=True)
def class_logit_sums(logits: np.ndarray, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    """Add to ``sums[c]`` ``(K, K)`` float64 the logit vector ``logits[b, y, x, :]`` (``(B, H, W, K)`` float32,
    any strides: a channels-last tensor's pixels are read in place) of every pixel labelled ``c`` (``labels``
    ``(B, H, W)`` int64, ``0 <= c < K``; other labels are left out) and count the pixels in ``counts[c]``."""
    batch, height, width, classes = logits.shape
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                c = labels[b, y, x]
                if 0 <= c < classes:
                    counts[c] += 1
                    for k in range(classes):
                        sums[c, k] += logits[b, y, x, k]


@numba.njit(cache=True, nogil=True)
def instance_sums(
    maps: np.ndarray, valid: np.ndarray, pooled: np.ndarray, masks: np.ndarray, owner: np.ndarray,
    pixels: np.ndarray, inside: np.ndarray, peak_height: np.ndarray, class_total: np.ndarray, total: np.ndarray,
) -> None:
    """Per map ``r`` of ``maps`` ``(n, P)`` float32 with ``valid`` ``(n, P)`` bool, its positive mass
    ``total[r] = sum_{p valid} max(L_p, 0)``; per instance ``i`` (``masks`` ``(m, P)`` bool of map
    ``owner[i]``): its valid ``pixels``, its mass ``inside`` (the same sum over ``mask & valid``) and its
    ``peak_height``, the highest ``L_p / max_valid L`` over its valid pixels that are peaks (``L_p > 0`` and
    ``L_p >= pooled[r, p]``, the window maximum of :func:`segaudit.metrics.instances.local_peaks`), 0 if none;
    per map, ``class_total``, the mass over the union of its instances (``total`` and ``class_total`` float64
    ``(n,)``; a map without instances: 0). A NaN value counts in the masses (NaN, as torch's) but is never a
    peak."""
    n, size = maps.shape
    union = np.zeros(size, dtype=np.bool_)
    owned = np.zeros(n, dtype=np.int64)
    top = np.full(n, -np.inf)
    for i in range(len(owner)):
        owned[owner[i]] += 1
    for r in range(n):
        mass, high = 0.0, -np.inf
        for p in range(size):
            if valid[r, p]:
                v = maps[r, p]
                if not v <= 0:  # max(L, 0), NaN kept (as torch's clamp keeps it)
                    mass += v
                high = max(high, np.float64(v))
        total[r], top[r] = mass, max(high, 1e-300)
    for i in range(len(owner)):
        r = owner[i]
        count, mass, height = 0, 0.0, 0.0
        for p in range(size):
            if masks[i, p] and valid[r, p]:
                v = maps[r, p]
                count += 1
                if not v <= 0:
                    mass += v
                    if v >= pooled[r, p]:
                        height = max(height, np.float64(v) / top[r])
        pixels[i], inside[i], peak_height[i] = count, mass, height
    for r in range(n):
        if owned[r] == 1:
            for i in range(len(owner)):
                if owner[i] == r:
                    class_total[r] = inside[i]
        elif owned[r] > 1:
            union[:] = False
            for i in range(len(owner)):
                if owner[i] == r:
                    for p in range(size):
                        if masks[i, p]:
                            union[p] = True
            mass = 0.0
            for p in range(size):
                if union[p] and valid[r, p] and not maps[r, p] <= 0:
                    mass += maps[r, p]
            class_total[r] = mass


@numba.njit(cache=True, nogil=True)
def region_sums(terms: np.ndarray, image_of: np.ndarray, regions: np.ndarray, sums: np.ndarray) -> None:
    """``sums[n, t] = sum_{p in regions[n]} terms[image_of[n], p, t]``: per region ``n`` (``regions``
    ``(N, P)`` bool) the sums of its image's float64 terms ``(B, P, T)`` over its pixels, added in pixel order."""
    n_terms = terms.shape[2]
    for n in range(regions.shape[0]):
        b = image_of[n]
        for t in range(n_terms):
            sums[n, t] = 0.0
        for p in range(regions.shape[1]):
            if regions[n, p]:
                for t in range(n_terms):
                    sums[n, t] += terms[b, p, t]
