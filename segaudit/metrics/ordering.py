"""One ordering of each map, shared by the rank-based scores of :mod:`segaudit.metrics.scores` and by every mask.

Sorting a map is the costly part of AUROC (average ranks), relevance rank / top-k (the k-th value and its
ties) and the thresholded IoU/Dice (the region above a normalised threshold). :class:`MapOrdering` sorts
each map once, with its reference masks riding along; a mask then costs a prefix sum, so scoring one map
against the GT and the predicted mask (or any number of masks) sorts it once, and ties are handled exactly
(integer counts, half-integer ranks). Maps are expected finite (a NaN sorts after the void pixels).

None of the scores depends on the order *within* a tie block (they count mask pixels per block), so no
permutation is needed: each float32 value is turned into an order-preserving integer key, the masks' bits
are packed below it, and the packed integers are sorted by value alone (a SIMD sort, ~2.5x faster than
torch's argsort on a CPU). Other dtypes take an argsort and gather the masks.

The scores are computed from a few integers per (map, mask), :class:`RankCounts`, through one set of formula
functions (:func:`auroc_of`, :func:`top_k_share_of`, :func:`overlaps_of`). :func:`rank_counts` builds them with
:class:`MapOrdering` (torch: a device's path, any dtype) or, for float32 maps on a CPU, with the compiled
loops of :mod:`segaudit.metrics.rank_kernel`; both give the same integers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MapOrdering", "RankCounts", "nan_where", "rank_counts"]

_NAN = float("nan")


def nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    """``values`` as float64, NaN where ``undefined``."""
    values = values.double()
    return torch.where(undefined, torch.full_like(values, _NAN), values)


#: Signed integer type of the same width, for sorting floats by their bits.
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}
#: At most this many masks are packed below a float32 key in an int64 (the low int32, kept non-negative).
_PACKED_MASKS = 31


def _order_keys(values: torch.Tensor) -> torch.Tensor:
    """Signed integers in the floats' order (float32 -> int32, float64 -> int64), equal for equal floats.

    An IEEE float's bits, read as a signed integer, are in the floats' order for non-negative values and in
    reverse order for negative ones, so the negatives' 31 (63) low bits are flipped; ``-0.0`` is made
    ``+0.0`` first so that equal floats have equal keys. :func:`_from_keys` inverts it (the flip is its own
    inverse)."""
    bits = _BITS[values.dtype]
    keys = (values + 0.0).view(bits)  # -0.0 + 0.0 == +0.0
    return keys ^ ((keys >> (keys.element_size() * 8 - 1)) & torch.iinfo(bits).max)  # flip where negative


def _from_keys(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(keys < 0, keys ^ torch.iinfo(keys.dtype).max, keys).view(dtype)


def _stable_sort(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values.sort(stable=True, dim=1)`` for finite or infinite floats, faster: float32/64 rows are sorted
    as their :func:`_order_keys` (a CPU sorts integers ~25% faster; equal floats have equal keys, so the same
    ties and the same stable order). The sorted values are the keys mapped back."""
    if values.dtype not in _BITS:
        return values.sort(stable=True, dim=1)
    ordered, index = _order_keys(values).sort(stable=True, dim=1)
    return _from_keys(ordered, values.dtype), index


def _sort_rows(packed: torch.Tensor) -> torch.Tensor:
    """Each row of an int64 tensor sorted ascending (values only): on a CPU, numpy's SIMD sort (one thread: see
    :func:`rank_counts`)."""
    if packed.device.type != "cpu" or not packed.numel():
        return packed.sort(dim=1).values
    return torch.from_numpy(np.sort(packed.numpy(), axis=1))


def _packed_keys(values: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(n, P)`` int64 ``key * 2**32 + sum_j mask_j 2**j`` of float32 ``values`` (:func:`_order_keys`), built
    as int32 pairs (little-endian) in place. (A CPU audit packs in :func:`segaudit.metrics.rank_kernel.pack_rows`
    instead; this serves a device and the standalone score functions.)"""
    pairs = torch.empty((*values.shape, 2), dtype=torch.int32, device=values.device)
    pairs[..., 1] = _order_keys(values)
    bits = pairs[..., 0]
    bits.zero_()
    for j, mask in enumerate(masks):
        bits.add_(mask.int(), alpha=1 << j)
    return pairs.view(torch.int64)[..., 0]


def sorted_keys(
    values: torch.Tensor, masks: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.dtype, list[torch.Tensor]]:
    """Each row of ``values`` ``(n, P)`` sorted ascending, as :func:`_order_keys` (contiguous, with the float
    dtype they map back to), and each of ``masks`` (``(n, P)`` bool) read in that order, up to the order
    within ties (which no score of this module depends on).

    float32 (and narrower float) values: the masks' bits packed below the value's key in an int64, one
    value-only sort. float64 values, or more than 31 masks: a stable argsort and a gather."""
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()  # exact
    if values.dtype == torch.float32 and values.numel() and len(masks) <= _PACKED_MASKS and sys.byteorder == "little":
        # int32 pairs (bits, key) read as one int64 = key * 2**32 + bits (little-endian): sorted by key first
        packed = _packed_keys(values, masks)
        bits, keys = _sort_rows(packed).view(torch.int32).view(*values.shape, 2).permute(2, 0, 1).contiguous()
        in_order = [bits != 0] if len(masks) == 1 else [(bits & (1 << j)) != 0 for j in range(len(masks))]
        return keys, torch.float32, in_order
    ordered, index = _stable_sort(values)
    return _order_keys(ordered), ordered.dtype, [mask.gather(1, index) for mask in masks]


class MapOrdering:
    """One ascending sort of each row's valid values with its masks, shared by every rank-based score.

    ``values``, ``valid``: ``(n, P)``; ``masks``: ``(n, P)`` bool reference masks (only their valid pixels
    count), addressed by their index ``j`` in the methods. Void entries are keyed +inf, so a row's
    ``n_valid`` valid values fill its first sorted positions. A tie block is a run of equal valid values in
    that order (the void tail is a block of its own); a value in the block spanning sorted positions
    ``[low, high)`` has the average 1-based rank ``(low + 1 + high) / 2``
    (``scipy.stats.rankdata(method="average")``). Per mask, its pixels in sorted order and their prefix sums
    (``cumulative[j]``, int32) are kept: AUROC, the top-k shares and the thresholded overlaps are read off
    them.
    """

    def __init__(self, values: torch.Tensor, valid: torch.Tensor, masks: Sequence[torch.Tensor] = ()) -> None:
        n, size = values.shape
        self.values, self.valid, self.dtype = values, valid, values.dtype
        self.n_valid = valid.sum(1)
        #: sorted values as order-preserving integers (:func:`_order_keys`): equal keys, equal values
        self.keys, self._key_float, in_order = sorted_keys(torch.where(valid, values, torch.inf),
                                                           [mask & valid for mask in masks])
        self.cumulative = [ordered.cumsum(1, dtype=torch.int32) for ordered in in_order]
        #: (n,) each row's smallest and largest valid value (the first and the n_valid-th sorted)
        self.smallest, self.largest = self.value_at(
            torch.stack([torch.zeros_like(self.n_valid), self.n_valid - 1], dim=1)).unbind(1)
        # tie blocks: one starts at a change of value, at each row's start and at its void tail
        starts = torch.ones((n, size), dtype=torch.bool, device=values.device)
        starts[:, 1:] = self.keys[:, 1:] != self.keys[:, :-1]
        tail = torch.nonzero(self.n_valid < size)[:, 0]
        starts[tail, self.n_valid[tail]] = True
        # block b spans flat positions [begin[b], end[b]) of the flattened rows: few blocks where a CAM is
        # flat (ReLU'd maps are mostly 0), so the per-block tables are small
        flat = starts.flatten()
        self.begin = torch.nonzero(flat)[:, 0]
        self.end = torch.cat([self.begin[1:], self.begin.new_full((min(1, len(self.begin)),), flat.numel())])
        self.offset = torch.arange(n, device=values.device) * size  # flat position of each row's start
        self.row = self.begin // size  # the row of each block
        self.row_start = self.begin == self.offset[self.row]  # the block opens its row
        self.twice_rank = self.begin + self.end + 1 - 2 * self.offset[self.row]  # 2 x average rank in the block

    def value_at(self, where: torch.Tensor) -> torch.Tensor:
        """The sorted values at positions ``where`` (``(n, T)``, clamped to the row), in the maps' dtype."""
        keys = self.keys.gather(1, where.clamp(0, self.keys.shape[1] - 1))
        return _from_keys(keys, self._key_float).to(self.dtype)

    def _block_at(self, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[low, high)`` (int64) of the tie block at sorted positions ``where`` (``(n,)`` or ``(n, T)``) of
        each row."""
        columns = where if where.dim() == 2 else where[:, None]
        flat = self.offset[:, None] + columns.clamp(0, self.keys.shape[1] - 1)
        block = torch.searchsorted(self.begin, flat.contiguous(), right=True) - 1
        low, high = self.begin[block] - self.offset[:, None], self.end[block] - self.offset[:, None]
        return low.view(where.shape), high.view(where.shape)

    def ranks(self) -> torch.Tensor:
        """``(n, P)`` float64 average ranks at the original positions; 0 where not valid."""
        n, size = self.keys.shape
        _, index = _stable_sort(torch.where(self.valid, self.values, torch.inf))  # the same order up to ties
        block = torch.searchsorted(self.begin, torch.arange(n * size, device=self.begin.device), right=True) - 1
        in_valid = torch.arange(size, device=index.device) < self.n_valid[:, None]
        ranks = torch.where(in_valid, self.twice_rank[block].view(n, size).double() / 2, 0.0)
        return torch.zeros_like(ranks).scatter_(1, index, ranks)

    def n_in(self, j: int) -> torch.Tensor:
        """``(n,)`` int64 valid pixels of mask ``j``."""
        return self.cumulative[j][:, -1].long() if self.keys.shape[1] else self.n_valid.new_zeros(len(self.n_valid))

    @staticmethod
    def before(cumulative: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Mask pixels at sorted positions ``[0, where)``, int64, for ``where`` ``(n,)`` or ``(n, T)``."""
        columns = where if where.dim() == 2 else where[:, None]
        table = cumulative.gather(1, (columns - 1).clamp(0, cumulative.shape[1] - 1))
        return torch.where(columns > 0, table.long(), 0).view(where.shape)

    def twice_rank_sum(self, j: int) -> torch.Tensor:
        """``(n,)`` int64 sum over mask ``j``'s pixels of twice their average rank: the mask pixels of each tie
        block (from its prefix sums) times the block's ``low + 1 + high``."""
        cumulative = self.cumulative[j]
        upto = cumulative.flatten()[self.end - 1].long()  # mask pixels of the row up to the block's end
        inside = torch.where(self.row_start, upto, upto - torch.cat([upto.new_zeros(1), upto[:-1]]))
        twice = torch.zeros(len(cumulative), dtype=torch.long, device=upto.device)
        return twice.index_add_(0, self.row, inside * self.twice_rank)

    def auroc(self, j: int) -> torch.Tensor:
        """Mann-Whitney AUC of mask ``j`` (:func:`auroc_of`)."""
        return auroc_of(self.twice_rank_sum(j), self.n_in(j), self.n_valid)

    def kth_block(self, j: int, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``low, high`` of the tie block at each row's ``k``-th highest valid position and mask ``j``'s pixels
        before ``low`` and before ``high`` (``(n,)`` int64 each)."""
        low, high = self._block_at(self.n_valid - k)
        return low, high, self.before(self.cumulative[j], low), self.before(self.cumulative[j], high)

    def top_k_share(self, j: int, k: torch.Tensor) -> torch.Tensor:
        """See :func:`segaudit.metrics.scores.relevance_rank_accuracy`, for mask ``j`` (:func:`top_k_share_of`)."""
        return top_k_share_of(k, self.n_valid, self.largest, self.n_in(j), *self.kth_block(j, k))

    def first_above(self, levels: Sequence[float]) -> torch.Tensor:
        """``(n, T)`` int64 the first sorted position whose min-max normalised value ``L~`` is ``>= t``, per
        level ``t`` (``n_valid`` where none is).

        ``L~`` is computed on the sorted values exactly as on the map (min-max normalisation is monotone),
        so the region is a suffix of the valid sorted positions: its first position is guessed by a binary
        search for ``min + t (max - min)``, then moved a tie block at a time while ``L~`` of the values
        around it (computed as on the map) says the guess is off by rounding."""
        low, high = self.smallest, self.largest
        scale = (high - low).clamp(min=1e-30)[:, None]
        level = torch.tensor(levels, dtype=self.dtype, device=low.device).expand(len(low), -1)

        def above(position: torch.Tensor) -> torch.Tensor:  # L~ >= t at sorted position (n, T)
            return (self.value_at(position) - low[:, None]) / scale >= level

        valid_end = self.n_valid[:, None].expand_as(level)
        guess = (low[:, None] + level * scale).contiguous()
        guess_keys = _order_keys(guess.to(self._key_float)).contiguous()
        first = torch.minimum(torch.searchsorted(self.keys, guess_keys), valid_end)
        for _ in range(self.keys.shape[1] + 1):  # a tie block per step; rounding moves it by one or two
            later = (first < valid_end) & ~above(first)  # the value at first is below t: the next block
            earlier = (first > 0) & above(first - 1)  # the value before first is at or above t: that block
            if not (later.any() or earlier.any()):
                break
            first = torch.where(later, self._block_at(first)[1], first)
            first = torch.where(earlier & ~later, self._block_at(first - 1)[0], first)
        return first

    def thresholded(
        self, j: int, levels: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """IoU and Dice ``(n, T)`` of ``{L~ >= t}`` with mask ``j``, and whether the map is constant
        (:func:`overlaps_of` at :meth:`first_above`)."""
        first = self.first_above(levels)
        return overlaps_of(first, self.before(self.cumulative[j], first), self.n_in(j), self.n_valid,
                           self.smallest, self.largest)

    def counts(self, levels: Sequence[float]) -> RankCounts:
        """The :class:`RankCounts` of every mask, with the top-k block at ``k`` = the mask's pixels."""
        first = self.first_above(levels)
        n_in = [self.n_in(j) for j in range(len(self.cumulative))]
        return RankCounts(
            self.n_valid, self.smallest, self.largest, _stack(n_in, self.n_valid),
            _stack([self.twice_rank_sum(j) for j in range(len(n_in))], self.n_valid),
            _stack([torch.stack(self.kth_block(j, k), 1) for j, k in enumerate(n_in)], self.n_valid, (4,)),
            first, _stack([self.before(self.cumulative[j], first) for j in range(len(n_in))], self.n_valid,
                          first.shape[1:]),
        )


def _stack(columns: list[torch.Tensor], like: torch.Tensor, tail: tuple[int, ...] = ()) -> torch.Tensor:
    """``(n, m, *tail)`` int64 of ``m`` per-mask ``(n, *tail)`` tensors (``m`` may be 0)."""
    if not columns:
        return like.new_zeros((len(like), 0, *tail))
    return torch.stack(columns, 1)


def extreme_points(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the first maximum and the first minimum (row-major) of each row's valid values: the
    points of :func:`segaudit.metrics.scores.max_point` and :func:`~segaudit.metrics.scores.background_point`
    (``argmax``/``argmin`` return the first occurrence)."""
    return (torch.where(valid, values, -torch.inf).argmax(1), torch.where(valid, values, torch.inf).argmin(1))


def auroc_of(twice_rank_sum: torch.Tensor, n_pos: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUC from the positives' summed average ranks (given twice, an integer: exact)::

        AUC = (sum_{p in M} rank_p - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

    NaN when the mask or its complement is empty."""
    n_pos, n_neg = n_pos.double(), (n_valid - n_pos).double()
    u = twice_rank_sum.double() / 2 - n_pos * (n_pos + 1) / 2
    return nan_where(u / (n_pos * n_neg).clamp(min=1), (n_pos == 0) | (n_neg == 0))


def top_k_share_of(
    k: torch.Tensor, n_valid: torch.Tensor, largest: torch.Tensor, n_in: torch.Tensor, low: torch.Tensor,
    high: torch.Tensor, before_low: torch.Tensor, before_high: torch.Tensor,
) -> torch.Tensor:
    """Share of the ``k`` highest valid values in the mask, the tie block ``[low, high)`` at the k-th highest
    shared out in proportion: ``(in_above + (k - n_above) in_tied / n_tied) / k``. NaN when ``k < 1``, ``k >
    n_valid`` or the map has no positive value."""
    in_above, in_tied = n_in - before_high, before_high - before_low
    n_above, n_tied = n_valid - high, high - low
    hits = in_above + (k - n_above) * in_tied.double() / n_tied.clamp(min=1)
    undefined = (k < 1) | (k > n_valid) | (largest <= 0)
    return nan_where(hits / k.clamp(min=1), undefined)


def overlaps_of(
    first: torch.Tensor, before_first: torch.Tensor, n_truth: torch.Tensor, n_valid: torch.Tensor,
    smallest: torch.Tensor, largest: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU and Dice ``(n, T)`` of the regions ``[first, n_valid)`` of the sorted valid values with the mask
    (``before_first``: its pixels before ``first``), and whether the map is constant."""
    inter = (n_truth[:, None] - before_first).double()
    region = n_valid[:, None] - first
    union = region + n_truth[:, None] - inter.long()
    iou = inter / union.clamp(min=1)
    dice = 2 * inter / (region + n_truth[:, None]).clamp(min=1)
    return iou, dice, ~(largest - smallest > 0)


@dataclass(frozen=True)
class RankCounts:
    """Integer counts of ``n`` rows and ``m`` masks from which the rank-based scores follow: valid pixels
    ``n_valid`` ``(n,)``, the smallest and largest valid value ``(n,)``, mask pixels ``n_in`` ``(n, m)``,
    ``twice_rank_sum`` ``(n, m)`` (:meth:`MapOrdering.twice_rank_sum`), ``kth_block`` ``(n, m, 4)``
    (:meth:`MapOrdering.kth_block` at ``k = n_in``), ``first`` ``(n, T)`` (:meth:`MapOrdering.first_above`)
    and the mask pixels before it ``before_first`` ``(n, m, T)``. Built by :meth:`MapOrdering.counts` or, for
    float32 maps on a CPU, by the compiled loops of :mod:`segaudit.metrics.rank_kernel` (:func:`rank_counts`);
    the scores are computed from them by the same functions either way."""

    n_valid: torch.Tensor
    smallest: torch.Tensor
    largest: torch.Tensor
    n_in: torch.Tensor
    twice_rank_sum: torch.Tensor
    kth_block: torch.Tensor
    first: torch.Tensor
    before_first: torch.Tensor

    def auroc(self, j: int) -> torch.Tensor:
        return auroc_of(self.twice_rank_sum[:, j], self.n_in[:, j], self.n_valid)

    def relevance_rank(self, j: int) -> torch.Tensor:
        """The top-k share at ``k`` = the mask's pixels (relevance rank accuracy)."""
        return top_k_share_of(self.n_in[:, j], self.n_valid, self.largest, self.n_in[:, j],
                              *self.kth_block[:, j].unbind(1))

    def thresholded(self, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return overlaps_of(self.first, self.before_first[:, j], self.n_in[:, j], self.n_valid, self.smallest,
                           self.largest)


def rank_counts(
    values: torch.Tensor, valid: torch.Tensor, masks: Sequence[torch.Tensor], levels: Sequence[float],
    compiled: bool | None = None,
) -> RankCounts:
    """The :class:`RankCounts` of ``values`` ``(n, P)`` with ``masks`` (``(n, P)`` bool; their valid pixels)
    and threshold ``levels``: by :mod:`segaudit.metrics.rank_kernel` for float32 values on a CPU (up to 31
    masks), else by :class:`MapOrdering` (``compiled`` overrides the choice; both give the same integers).

    One thread: split over two threads the rows take longer in an audit (measured 0.09 -> 0.20 s for the demo's
    96 images), as torch's OpenMP workers spin on the other core for a while after each torch operation."""
    if compiled is None:
        compiled = (values.device.type == "cpu" and values.dtype == torch.float32 and values.numel() > 0
                    and len(masks) <= _PACKED_MASKS)
    if not compiled:
        return MapOrdering(values, valid, masks).counts(levels)
    from segaudit.metrics import rank_kernel  # numba: compiled (or read from its cache) on first use

    n, size = values.shape
    rows = values.detach().contiguous().numpy()
    ok = valid.contiguous().numpy()
    stacked = (torch.stack(list(masks), 1) if masks else valid.new_zeros((n, 0, size))).contiguous().numpy()
    level = np.asarray(levels, dtype=np.float32)
    m, t = stacked.shape[1], len(level)
    n_valid, n_in = np.empty(n, np.int64), np.empty((n, m), np.int64)
    extremes, twice = np.empty((n, 2), np.float32), np.empty((n, m), np.int64)
    kth, first, before_first = np.empty((n, m, 4), np.int64), np.empty((n, t), np.int64), np.empty((n, m, t), np.int64)

    packed, n_negative, n_zero = np.empty((n, size), np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    rank_kernel.pack_rows(rows, ok, stacked, packed, n_valid, n_in, n_negative, n_zero)
    for row, negative, zero, valid_end in zip(packed, n_negative.tolist(), n_zero.tolist(), n_valid.tolist(),
                                             strict=True):
        row[:negative].sort()  # numpy's SIMD sort; the zeros in between are one tie block
        row[negative + zero : valid_end].sort()
    rank_kernel.count_rows(packed, n_valid, n_in, level, extremes, twice, kth, first, before_first)
    tensors = [torch.from_numpy(a) for a in (n_valid, n_in, twice, kth, first, before_first)]
    smallest, largest = torch.from_numpy(extremes).to(values.dtype).unbind(1)
    return RankCounts(tensors[0], smallest, largest, *tensors[1:])
