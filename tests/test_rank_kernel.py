"""The compiled rank counts (segaudit.metrics.rank_kernel, a CPU's path for float32 maps) equal MapOrdering's
torch counts (a device's path, any dtype) to the integer, and so every score computed from them to the bit."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import segaudit.metrics.scores as scores
from segaudit.metrics.ordering import MapOrdering, rank_counts


def _hard_rows(seed: int, n: int = 24, size: int = 300, n_masks: int = 2):
    """Rows with what breaks rank code: long tie blocks (quantised values, many zeros), negatives and -0.0,
    void pixels, constant rows, rows without valid pixels, empty and full masks."""
    gen = torch.Generator().manual_seed(seed)
    values = (torch.randint(-3, 12, (n, size), generator=gen).float() / 4).clamp(min=0)
    values[::3] = torch.randn(len(values[::3]), size, generator=gen)  # distinct values, negatives
    values[1, :50] = -0.0
    values[2] = 0.7  # constant
    valid = torch.rand(n, size, generator=gen) > 0.2
    valid[3] = False  # no valid pixel
    valid[4] = True
    masks = [torch.rand(n, size, generator=gen) > q for q in (0.7, 0.3, 0.95)[:n_masks]]
    masks[0][5] = False  # empty mask
    masks[-1][6] = True  # full mask
    return values, valid, masks


def _assert_same_counts(values, valid, masks, levels) -> None:
    compiled = rank_counts(values, valid, masks, levels, compiled=True)
    reference = MapOrdering(values, valid, masks).counts(levels)
    for field in dataclasses.fields(reference):
        got, want = getattr(compiled, field.name), getattr(reference, field.name)
        assert got.dtype == want.dtype and got.shape == want.shape, field.name
        # a row without valid pixels has +inf extremes in both; equal_nan for nothing else
        assert torch.equal(got, want), field.name


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_masks", [1, 2, 3])
def test_compiled_counts_equal_map_ordering(seed: int, n_masks: int) -> None:
    values, valid, masks = _hard_rows(seed, n_masks=n_masks)
    _assert_same_counts(values, valid, masks, (0.5,))
    _assert_same_counts(values, valid, masks, (0.0, 0.1, 0.5, 0.9, 1.0))


def test_compiled_counts_equal_at_values_one_ulp_around_each_threshold() -> None:
    # the region {L~ >= t} is found in the kernel by a binary search on L~ computed in float32; the torch path
    # searches for min + t (max - min) and corrects by tie blocks: both must land on the same first position
    levels = (0.25, 0.5, 0.75)
    base = torch.linspace(0, 1, 200)
    rows = []
    for t in levels:
        at = torch.tensor(t)
        row = base.clone()
        row[:3] = torch.stack([torch.nextafter(at, torch.tensor(0.0)), at, torch.nextafter(at, torch.tensor(1.0))])
        rows.append(row)
    row = base.clone()
    row[:120] = 0.5  # a long tie block on a threshold
    rows.append(row)
    values = torch.stack(rows) * 3.7 + 0.1  # not already normalised: L~ is computed with rounding
    valid = torch.ones_like(values, dtype=torch.bool)
    masks = [torch.arange(200).expand(len(rows), -1) % 3 == 0]
    _assert_same_counts(values, valid, masks, levels)


def test_compiled_counts_without_masks_and_with_one_row() -> None:
    values, valid, _ = _hard_rows(4)
    _assert_same_counts(values, valid, [], (0.5,))
    _assert_same_counts(values[1:2], valid[1:2], [valid[1:2]], (0.5,))


@pytest.mark.parametrize("cutoff", [0.6, 1.0])  # 1.0: the centroid of the pixels at the peak exactly
def test_score_masks_equal_on_both_paths(monkeypatch, cutoff: float) -> None:
    values, valid, masks = _hard_rows(7, n=30, size=16 * 16)
    maps, valid3 = values.view(30, 16, 16), valid.view(30, 16, 16)
    kinds = {"gt": masks[0].view(30, 16, 16), "pred": masks[1].view(30, 16, 16)}
    compiled = scores.score_masks(maps, kinds, valid3, centroid_cutoff=cutoff)
    monkeypatch.setattr(scores, "rank_counts", lambda *a: rank_counts(*a, compiled=False))
    torch_points = scores._map_points
    monkeypatch.setattr(scores, "_map_points", lambda *a: torch_points(*a, compiled=False))
    monkeypatch.setattr(scores, "_hits_and_distances",
                        functools.partial(scores._hits_and_distances, compiled=False))
    reference = scores.score_masks(maps, kinds, valid3, centroid_cutoff=cutoff)  # every part on the torch path
    for kind in kinds:
        for column, want in reference[kind].items():
            assert torch.equal(compiled[kind][column].isnan(), want.isnan()), (kind, column)
            assert torch.equal(compiled[kind][column].nan_to_num(), want.nan_to_num()), (kind, column)
