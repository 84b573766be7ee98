"""One ordering of each map, shared by the rank-based scores of :mod:`segaudit.metrics.scores` and by every mask.

Sorting a map is the costly part of AUROC (average ranks), relevance rank / top-k (the k-th value and its
ties) and the thresholded IoU/Dice (the region above a normalised threshold). :class:`MapOrdering` sorts
each map once; a reference mask then costs a gather and a prefix sum, so scoring one map against the GT and
the predicted mask (or any number of masks) sorts it once, and ties are handled exactly (integer counts,
half-integer ranks). Maps are expected finite (a NaN sorts after the void pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["MapOrdering", "nan_where"]

_NAN = float("nan")


def nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    """``values`` as float64, NaN where ``undefined``."""
    values = values.double()
    return torch.where(undefined, torch.full_like(values, _NAN), values)


#: Signed integer type of the same width, for sorting floats by their bits.
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _stable_sort(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values.sort(stable=True, dim=1)`` for finite or infinite floats, faster: float32/64 rows are sorted
    as integers whose order is the floats' order (a CPU sorts integers ~25% faster). An IEEE float's bits,
    read as a signed integer, are in the floats' order for non-negative values and in reverse order for
    negative ones, so the negatives' 31 (63) low bits are flipped; ``-0.0`` is made ``+0.0`` first so that
    equal floats have equal keys (the same ties, so the same stable order). The sorted values are the keys
    mapped back (the flip is its own inverse)."""
    bits = _BITS.get(values.dtype)
    if bits is None:
        return values.sort(stable=True, dim=1)
    low_bits = torch.iinfo(bits).max
    keys = (values + 0.0).view(bits)  # -0.0 + 0.0 == +0.0
    keys = torch.where(keys < 0, keys ^ low_bits, keys)
    ordered, index = keys.sort(stable=True, dim=1)
    return torch.where(ordered < 0, ordered ^ low_bits, ordered).view(values.dtype), index


class MapOrdering:
    """One stable ascending sort of each row's valid values, shared by every rank-based score and every mask.

    ``values``, ``valid``: ``(n, P)``. Void entries are keyed +inf, so a row's ``n_valid`` valid values fill
    its first sorted positions. A tie block is a run of equal valid values in that order; a value in the
    block spanning sorted positions ``[low, high)`` has the average 1-based rank ``(low + 1 + high) / 2``
    (``scipy.stats.rankdata(method="average")``). A mask then costs one gather and one prefix sum
    (:meth:`in_order`), not a sort: AUROC, the top-k shares and the thresholded overlaps are read off it.
    """

    def __init__(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        n, size = values.shape
        self.sorted, self.index = _stable_sort(torch.where(valid, values, torch.inf))
        self.n_valid = valid.sum(1)
        # tie blocks of the flattened rows: one starts at a change of value, at each row's start and at its
        # void tail; block b spans flat positions [begin[b], end[b])
        starts = torch.ones_like(valid)
        starts[:, 1:] = self.sorted[:, 1:] != self.sorted[:, :-1]
        tail = torch.nonzero(self.n_valid < size)[:, 0]
        starts[tail, self.n_valid[tail]] = True
        flat = starts.flatten()
        self.begin = torch.nonzero(flat)[:, 0]
        self.end = torch.cat([self.begin[1:], self.begin.new_full((min(1, len(self.begin)),), flat.numel())])
        self.offset = torch.arange(n, device=values.device) * size  # flat position of each row's start
        self.row = self.begin // size  # the row of each block
        self.row_start = self.begin == self.offset[self.row]  # the block opens its row
        self.twice_rank = self.begin + self.end + 1 - 2 * self.offset[self.row]  # 2 x average rank in the block

    def _at(self, table: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return table.gather(1, where.clamp(0, table.shape[1] - 1)[:, None])[:, 0]

    def _block_at(self, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[low, high)`` of the tie block at sorted position ``where`` ``(n,)`` of each row."""
        flat = self.offset + where.clamp(0, self.sorted.shape[1] - 1)
        block = torch.searchsorted(self.begin, flat, right=True) - 1
        return self.begin[block] - self.offset, self.end[block] - self.offset

    def ranks(self) -> torch.Tensor:
        """``(n, P)`` float64 average ranks at the original positions; 0 where not valid."""
        n, size = self.sorted.shape
        block = torch.searchsorted(self.begin, torch.arange(n * size, device=self.begin.device), right=True) - 1
        in_valid = torch.arange(size, device=self.begin.device) < self.n_valid[:, None]
        ranks = torch.where(in_valid, self.twice_rank[block].view(n, size).double() / 2, 0.0)
        return torch.zeros_like(ranks).scatter_(1, self.index, ranks)

    def points(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat indices of the first maximum and the first minimum (row-major; the sort is stable) of each
        row's valid values, whether the maximum is positive, and whether the row is also not constant: the
        points and definedness of :func:`max_point` and :func:`background_point`."""
        last = self.n_valid - 1
        top_low, _ = self._block_at(last)
        high, low = self._at(self.sorted, last), self.sorted[:, 0]
        positive = (self.n_valid > 0) & (high > 0)
        return self._at(self.index, top_low), self.index[:, 0], positive, positive & (high > low)

    def in_order(self, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``truth`` ``(n, P)`` bool (valid mask pixels) in sorted order, and its inclusive prefix sums
        ``(n, P)`` int32 (read with :meth:`before`)."""
        ordered = truth.gather(1, self.index)
        return ordered, ordered.cumsum(1, dtype=torch.int32)

    @staticmethod
    def before(cumulative: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Mask pixels at sorted positions ``[0, where)``, int64, for ``where`` ``(n,)`` or ``(n, T)``."""
        columns = where if where.dim() == 2 else where[:, None]
        table = cumulative.gather(1, (columns - 1).clamp(0, cumulative.shape[1] - 1))
        return torch.where(columns > 0, table.long(), 0).view(where.shape)

    def auroc(self, cumulative: torch.Tensor, n_pos: torch.Tensor) -> torch.Tensor:
        """Mann-Whitney AUC of the mask given :meth:`in_order`'s prefix sums: the mask pixels of each tie
        block times its average rank, summed per row (integer sums of half-integer ranks: exact)."""
        upto = cumulative.flatten()[self.end - 1].long()  # mask pixels of the row up to the block's end
        inside = torch.where(self.row_start, upto, upto - torch.cat([upto.new_zeros(1), upto[:-1]]))
        twice = torch.zeros(len(cumulative), dtype=torch.long, device=upto.device)
        rank_sum = twice.index_add_(0, self.row, inside * self.twice_rank).double() / 2
        n_pos, n_neg = n_pos.double(), (self.n_valid - n_pos).double()
        u = rank_sum - n_pos * (n_pos + 1) / 2
        return nan_where(u / (n_pos * n_neg).clamp(min=1), (n_pos == 0) | (n_neg == 0))

    def top_k_share(self, cumulative: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """See :func:`segaudit.metrics.scores.relevance_rank_accuracy`; ``cumulative`` from :meth:`in_order`."""
        kth = self.n_valid - k  # sorted position of the k-th highest valid value
        low, high = self._block_at(kth)
        in_above = self.before(cumulative, self.n_valid) - self.before(cumulative, high)
        in_tied = self.before(cumulative, high) - self.before(cumulative, low)
        n_above, n_tied = self.n_valid - high, high - low
        hits = in_above + (k - n_above) * in_tied.double() / n_tied.clamp(min=1)
        undefined = (k < 1) | (k > self.n_valid) | (self._at(self.sorted, self.n_valid - 1) <= 0)
        return nan_where(hits / k.clamp(min=1), undefined)

    def thresholded(
        self, cumulative: torch.Tensor, n_truth: torch.Tensor, levels: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """IoU and Dice ``(n, T)`` of ``{L~ >= t}`` with the mask, and whether the map is constant.

        ``L~`` is computed on the sorted values exactly as on the map (min-max normalisation is monotone),
        so the region is a suffix of the valid sorted positions, found by a binary search per level that
        normalises only the values it probes."""
        low, high = self.sorted[:, 0], self._at(self.sorted, self.n_valid - 1)
        span = high - low
        scale = span.clamp(min=1e-30)[:, None]
        level = torch.tensor(levels, dtype=self.sorted.dtype, device=low.device).expand(len(low), -1)
        first = torch.zeros_like(level, dtype=torch.long)  # lower bound: first position with L~ >= t
        stop = self.n_valid[:, None].expand_as(first)
        for _ in range(self.sorted.shape[1].bit_length()):
            middle = (first + stop) // 2
            probe = self.sorted.gather(1, middle.clamp(max=self.sorted.shape[1] - 1))
            above = (probe - low[:, None]) / scale >= level
            searching = first < stop
            first, stop = torch.where(searching & ~above, middle + 1, first), torch.where(searching & above, middle, stop)
        inter = (self.before(cumulative, self.n_valid)[:, None] - self.before(cumulative, first)).double()
        region = self.n_valid[:, None] - first
        union = region + n_truth[:, None] - inter.long()
        iou = inter / union.clamp(min=1)
        dice = 2 * inter / (region + n_truth[:, None]).clamp(min=1)
        return iou, dice, ~(span > 0)
