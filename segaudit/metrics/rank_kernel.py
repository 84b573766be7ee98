"""The rank counts of :class:`segaudit.metrics.ordering.MapOrdering`, for float32 maps on a CPU, in compiled
loops (numba): one pass packs each map with its masks, numpy's SIMD sort orders it, one more pass counts.

:class:`MapOrdering` builds the same counts from whole-tensor torch operations (a device's path, and any
dtype); on a CPU those are ~30 memory passes over every map (tie-block tables, prefix sums per mask,
gathers), several times the sort itself. Here each map row is read twice after its sort, in cache, and only
integers leave the loops, so every score computed from them (the formula functions of
:mod:`segaudit.metrics.ordering`) is the one the torch path gives, to the bit (``tests/test_rank_kernel.py``
compares them on maps with ties, void pixels, constant and empty rows).

Per row (a map flattened to ``P`` pixels) and mask ``j`` (its valid pixels), with the valid values sorted
ascending and void pixels after them:

* ``n_in``: the mask's pixels;
* ``twice_rank_sum``: the sum over the mask's pixels of twice their average 1-based rank
  (``low + 1 + high`` for a tie block spanning sorted positions ``[low, high)``): AUROC's Mann-Whitney sum;
* the tie block ``[low, high)`` at the ``n_valid - k``-th sorted position (``k = n_in``: relevance rank's
  k-th highest value), and the mask's pixels before ``low`` and before ``high``;
* per threshold level ``t``: ``first``, the first sorted position whose min-max normalised value (computed
  in float32 as :meth:`MapOrdering.thresholded` does) is ``>= t``, and the mask's pixels before it.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["pack_rows", "count_rows"]

#: int32 bits of +inf: a void pixel's key (void pixels sort after every finite value)
_INF_KEY = np.int32(0x7F800000)


@numba.njit(cache=True, nogil=True)
def pack_rows(
    values: np.ndarray, valid: np.ndarray, masks: np.ndarray, out: np.ndarray, n_valid: np.ndarray, n_in: np.ndarray,
    n_negative: np.ndarray, n_zero: np.ndarray,
) -> None:
    """``key * 2**32 + sum_j mask_j 2**j`` (int64) of each valid pixel of float32 ``values`` ``(n, P)``,
    written to ``out`` grouped by the value's sign: row ``r`` holds its ``n_negative[r]`` negative values
    first, then its ``n_zero[r]`` zeros, then the positive ones (up to ``n_valid[r]``), then void pixels
    (keyed +inf, out of every mask). Sorting the negative and the positive group of each row then sorts the
    row, and the zeros (most of a ReLU'd CAM) are never sorted: they are one tie block whatever their order.
    ``n_in[r, j]``: valid pixels of mask ``j``. The key is the float's bits as int32 with the 31 low bits
    flipped for negatives (order-preserving; ``-0.0`` as ``+0.0``):
    :func:`segaudit.metrics.ordering._order_keys`. ``masks``: ``(n, m, P)`` bool, ``m <= 31``."""
    n, size = values.shape
    n_masks = masks.shape[1]
    bits = values.view(np.int32)
    void = np.int64(_INF_KEY) << 32
    packed = np.empty(size, dtype=np.int64)
    for r in range(n):  # branch-free loops over a row (vectorised by the compiler), then one scatter
        bit_row, valid_row, out_row = bits[r], valid[r], out[r]
        negative, zero, count = 0, 0, 0
        for p in range(size):
            b = bit_row[p]
            b = np.int32(0) if b == np.int32(-2147483648) else b  # -0.0 as +0.0
            packed[p] = np.int64(b ^ ((b >> 31) & np.int32(0x7FFFFFFF))) << 32
            ok = valid_row[p]
            count += ok
            negative += ok & (b < 0)
            zero += ok & (b == 0)
        n_valid[r], n_negative[r], n_zero[r] = count, negative, zero
        for j in range(n_masks):
            mask_row, bit, count = masks[r, j], np.int64(1) << j, 0
            for p in range(size):
                on = mask_row[p] & valid_row[p]
                count += on
                packed[p] |= bit * on
            n_in[r, j] = count
        at_negative, at_zero, at_positive = 0, negative, negative + zero
        for p in range(size):
            if valid_row[p]:
                item = packed[p]
                key = item >> 32
                if key < 0:
                    out_row[at_negative] = item
                    at_negative += 1
                elif key == 0:
                    out_row[at_zero] = item
                    at_zero += 1
                else:
                    out_row[at_positive] = item
                    at_positive += 1
        for p in range(at_positive, size):
            out_row[p] = void


@numba.njit(cache=True, nogil=True)
def _value(key: np.int64, scratch: np.ndarray, as_float: np.ndarray) -> np.float32:
    """The float32 of a key (the inverse of the packing's key)."""
    k = np.int32(key)
    scratch[0] = k ^ np.int32(0x7FFFFFFF) if k < 0 else k
    return as_float[0]


@numba.njit(cache=True, nogil=True)
def count_rows(
    ordered: np.ndarray, n_valid: np.ndarray, n_in: np.ndarray, levels: np.ndarray,
    extremes: np.ndarray, twice_rank_sum: np.ndarray, kth_block: np.ndarray, first: np.ndarray,
    before_first: np.ndarray,
) -> None:
    """The counts of the module docstring from rows ``ordered`` ``(n, P)`` of :func:`pack_rows` sorted
    ascending, with its ``n_valid`` and ``n_in`` ``(n, m)``. Outputs (filled): ``extremes`` ``(n, 2)``
    float32 smallest and largest valid value (the first and the ``n_valid``-th sorted; +inf for a row without
    valid pixels), ``twice_rank_sum`` ``(n, m)`` int64, ``kth_block`` ``(n, m, 4)`` int64 ``low, high,
    before low, before high``, ``first`` ``(n, T)`` int64 and ``before_first`` ``(n, m, T)`` int64 for
    float32 ``levels`` ``(T,)``."""
    n, size = ordered.shape
    n_masks, n_levels = n_in.shape[1], levels.shape[0]
    scratch = np.empty(1, dtype=np.int32)
    as_float = scratch.view(np.float32)
    counts = np.zeros(max(n_masks, 2), dtype=np.int64)  # the mask's pixels before the current position
    sums = np.zeros(max(n_masks, 2), dtype=np.int64)
    in_block = np.zeros(max(n_masks, 2), dtype=np.int64)
    # the positions whose prefix counts are asked for: per mask its kth block's low and high, then the levels'
    n_asked = 2 * n_masks + n_levels
    asked = np.zeros(n_asked, dtype=np.int64)
    for r in range(n):
        row = ordered[r]
        valid_end = n_valid[r]
        # the extremes and each level's first position at or above it (a suffix: L~ is monotone in the value)
        low_value = _value(row[0] >> 32, scratch, as_float)
        high_value = _value(row[max(valid_end - 1, 0)] >> 32, scratch, as_float)
        extremes[r, 0], extremes[r, 1] = low_value, high_value
        scale = max(high_value - low_value, np.float32(1e-30))
        for t in range(n_levels):
            lo, hi = 0, valid_end
            while lo < hi:
                mid = (lo + hi) // 2
                if (_value(row[mid] >> 32, scratch, as_float) - low_value) / scale >= levels[t]:
                    hi = mid
                else:
                    lo = mid + 1
            first[r, t] = lo
            asked[2 * n_masks + t] = lo
        # the tie block at each mask's k-th highest position (clamped into the row, as MapOrdering does); the
        # void tail is a block of its own
        for j in range(n_masks):
            at = min(max(valid_end - n_in[r, j], 0), size - 1)
            key = row[at] >> 32
            # the block's bounds by binary searches (a tie block can be most of the row: a CAM's zeros)
            low, high = (valid_end, size) if at >= valid_end else (0, valid_end)
            if at < valid_end:
                lo, hi = 0, at  # the first position with this key
                while lo < hi:
                    mid = (lo + hi) // 2
                    if (row[mid] >> 32) < key:
                        lo = mid + 1
                    else:
                        hi = mid
                low = lo
                lo, hi = at + 1, valid_end  # the first position after it with a larger key
                while lo < hi:
                    mid = (lo + hi) // 2
                    if (row[mid] >> 32) <= key:
                        lo = mid + 1
                    else:
                        hi = mid
                high = lo
            kth_block[r, j, 0], kth_block[r, j, 1] = low, high
            asked[2 * j], asked[2 * j + 1] = low, high
        order = np.argsort(asked)
        # one pass over the tie blocks: rank sums, and the prefix counts at the positions asked for (each a
        # block start, the valid end or past it: after every mask pixel); the first two masks' counts and rank
        # sums in registers, the others' in arrays
        count0, count1, sum0, sum1 = 0, 0, 0, 0
        for j in range(n_masks):
            counts[j] = 0
            sums[j] = 0
        next_asked = 0
        p = 0
        while True:
            counts[0], counts[1] = count0, count1
            while next_asked < n_asked and (asked[order[next_asked]] <= p or p >= valid_end):
                a = order[next_asked]
                if a < 2 * n_masks:
                    kth_block[r, a // 2, 2 + a % 2] = counts[a // 2]
                else:
                    for j in range(n_masks):
                        before_first[r, j, a - 2 * n_masks] = counts[j]
                next_asked += 1
            if p >= valid_end:
                break
            stop = valid_end
            if next_asked < n_asked:
                stop = min(asked[order[next_asked]], valid_end)
            while p < stop:  # the tie blocks up to the next position asked for
                item = row[p]
                key = item >> 32
                first_mask, second_mask = item & 1, (item >> 1) & 1
                for j in range(2, n_masks):
                    in_block[j] = (item >> j) & 1
                q = p + 1
                while q < valid_end:
                    item = row[q]
                    if (item >> 32) != key:
                        break
                    first_mask += item & 1
                    second_mask += (item >> 1) & 1
                    for j in range(2, n_masks):
                        in_block[j] += (item >> j) & 1
                    q += 1
                weight = p + 1 + q
                sum0 += first_mask * weight
                sum1 += second_mask * weight
                count0 += first_mask
                count1 += second_mask
                for j in range(2, n_masks):
                    sums[j] += in_block[j] * weight
                    counts[j] += in_block[j]
                p = q
        if n_masks > 0:
            twice_rank_sum[r, 0] = sum0
        if n_masks > 1:
            twice_rank_sum[r, 1] = sum1
        for j in range(2, n_masks):
            twice_rank_sum[r, j] = sums[j]
