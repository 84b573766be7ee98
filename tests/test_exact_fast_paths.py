"""The scoring's fast paths (issue 19) give exactly what the plain operations they replace give."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segaudit.auditors.rows import _png, classes_in_confusion
from segaudit.metrics.entanglement import template_sums
from segaudit.metrics.instances import _window_max
from segaudit.metrics.ordering import MapOrdering, _from_keys, _stable_sort, sorted_keys
from segaudit.metrics.scores import (
    confusion_counts,
    overlap_iou_and_dice,
    pair_overlap_counts,
    segmentation_dice,
    segmentation_iou,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_sort_by_integer_keys_is_torch_stable_sort(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(20, 997, generator=gen, dtype=dtype)
    values[:, ::5] = values[:, ::5].round()  # ties
    values[:, ::7] = 0.0
    values[:, ::11] = -0.0  # equal to +0.0: must tie with it, in the original order
    values[:, ::13] = torch.inf
    values[:, ::17] = -torch.inf
    values[:, 3] = torch.finfo(dtype).tiny / 4  # subnormals
    values[:, 4] = -torch.finfo(dtype).tiny / 4
    expected_values, expected_index = values.sort(stable=True, dim=1)
    got_values, got_index = _stable_sort(values)
    assert torch.equal(got_index, expected_index)
    assert torch.equal(got_values, expected_values) and got_values.dtype == dtype


def test_stable_sort_of_other_dtypes_falls_back() -> None:
    values = torch.tensor([[3.0, 1.0, 1.0, 2.0]], dtype=torch.float16)
    assert torch.equal(_stable_sort(values)[1], torch.tensor([[1, 2, 3, 0]]))


@pytest.mark.parametrize("window", [1, 3, 5])
def test_window_max_is_stride_one_max_pooling(window: int) -> None:
    gen = torch.Generator().manual_seed(1)
    values = torch.rand(6, 23, 17, generator=gen)
    values[values < 0.2] = -torch.inf  # void pixels
    values[0] = -torch.inf
    expected = F.max_pool2d(values[:, None], window, stride=1, padding=window // 2)[:, 0]
    assert torch.equal(_window_max(values, window), expected)


def test_classes_and_pair_counts_read_off_the_confusion_matrices_equal_counting_the_pixels() -> None:
    gen = torch.Generator().manual_seed(2)
    gt = torch.randint(0, 6, (5, 9, 9), generator=gen)
    gt[gt == 5] = 255  # void
    gt[1] = 2  # one class only
    gt[2] = 255  # nothing labelled
    pred = torch.randint(0, 5, (5, 9, 9), generator=gen)
    pred[3] = 4  # one class predicted, never labelled
    valid = gt != 255
    confusion = confusion_counts(pred, gt, 5)
    labelled, predicted = classes_in_confusion(confusion)
    assert labelled == [[c for c in torch.unique(gt[b]).tolist() if c < 5] for b in range(5)]
    assert predicted == [torch.unique(pred[b][valid[b]]).tolist() for b in range(5)]
    assert labelled[2] == [] and predicted[2] == [] and predicted[3] == [4]
    image, klass = torch.arange(5).repeat_interleave(5), torch.arange(5).repeat(5)
    p, g = (pred[image] == klass[:, None, None]) & valid[image], (gt[image] == klass[:, None, None]) & valid[image]
    counts = pair_overlap_counts(confusion, image, klass)
    assert [c.tolist() for c in counts] == [(p & g).flatten(1).sum(1).tolist(), p.flatten(1).sum(1).tolist(),
                                            g.flatten(1).sum(1).tolist()]
    iou, dice = overlap_iou_and_dice(*counts)
    assert torch.equal(iou.nan_to_num(-1), segmentation_iou(p, g, valid[image]).nan_to_num(-1))
    assert torch.equal(dice.nan_to_num(-1), segmentation_dice(p, g, valid[image]).nan_to_num(-1))
    assert iou.isnan().sum() > 0 and (iou > 0).sum() > 0


def test_confusion_counts_leave_void_pixels_out() -> None:
    gen = torch.Generator().manual_seed(3)
    gt = torch.randint(0, 4, (3, 8, 8), generator=gen)
    gt[gt == 3] = 255
    pred = torch.randint(0, 3, (3, 8, 8), generator=gen)
    expected = torch.zeros(3, 3, 3, dtype=torch.long)
    for b, i, j in zip(*[t.flatten().tolist() for t in (torch.arange(3)[:, None, None].expand(3, 8, 8), gt, pred)],
                       strict=True):
        if i != 255:
            expected[b, i, j] += 1
    assert torch.equal(confusion_counts(pred, gt, 3), expected)


def test_label_png_is_lossless() -> None:
    gen = np.random.default_rng(4)
    labels = np.repeat(gen.integers(0, 21, (16, 1)), 32, axis=1).astype(np.uint8)  # runs of one class
    labels[::3, ::5] = 255
    decoded = Image.open(io.BytesIO(_png(labels)))
    assert decoded.mode == "L" and np.array_equal(np.asarray(decoded), labels)


def test_scores_of_no_maps_are_empty_not_an_error() -> None:
    """A batch whose images have no (image, class) pair (an image with nothing labelled or predicted, or a
    detector without detections) scores zero maps: every metric an empty tensor."""
    from segaudit.metrics.scores import score_masks

    maps = torch.zeros((0, 8, 8))
    empty = torch.zeros((0, 8, 8), dtype=torch.bool)
    out = score_masks(maps, {"gt": empty, "pred": empty}, empty, 0.5, 0.6)
    assert out["gt"]["auroc"].shape == (0,) and out["pred"]["energy_in_mask"].shape == (0,)


def _block_counts(values: torch.Tensor, ordered_mask: torch.Tensor) -> list[list[tuple[float, int]]]:
    """Per row, (value, mask pixels) of each tie block: what the scores read off a sorted map."""
    out = []
    for row, bits in zip(values.tolist(), ordered_mask.int().tolist(), strict=True):
        blocks: dict[float, int] = {}
        for v, b in zip(row, bits, strict=True):
            blocks[v] = blocks.get(v, 0) + b
        out.append(sorted(blocks.items()))
    return out


@pytest.mark.parametrize("dtype,n_masks", [(torch.float32, 2), (torch.float32, 31), (torch.float32, 33),
                                           (torch.float16, 3), (torch.float64, 2)])
def test_sorted_keys_are_an_argsort_with_masks_gathered(dtype: torch.dtype, n_masks: int) -> None:
    # float32: the masks packed below the value (a value-only sort); more than 31 masks, float64: an argsort
    gen = torch.Generator().manual_seed(5)
    values = torch.randn(7, 301, generator=gen).to(dtype)
    values[:, ::3] = values[:, ::3].round()  # ties
    values[:, ::7] = 0.0
    values[:, ::11] = -0.0
    values[:, ::13] = torch.inf  # void
    values[1] = 1.0  # one tie block
    masks = [torch.rand(7, 301, generator=gen) < 0.4 for _ in range(n_masks)]
    expected_values, index = values.sort(stable=True, dim=1)
    keys, key_float, got_masks = sorted_keys(values, masks)
    got_values = _from_keys(keys, key_float).to(dtype)
    assert got_values.dtype == dtype and torch.equal(got_values, expected_values)
    for mask, got in zip(masks, got_masks, strict=True):
        assert got.dtype == torch.bool
        assert _block_counts(got_values, got) == _block_counts(expected_values, mask.gather(1, index))


def test_points_are_the_first_extremes_in_row_major_order() -> None:
    gen = torch.Generator().manual_seed(6)
    values = torch.randint(0, 4, (9, 50), generator=gen).float()  # many tied maxima and minima
    valid = torch.rand(9, 50, generator=gen) < 0.7
    from segaudit.metrics.ordering import extreme_points
    from segaudit.metrics.scores import _map_points

    top, bottom = extreme_points(values, valid)
    compiled_top, compiled_bottom, _ = _map_points(values.view(9, 5, 10), valid.view(9, 5, 10), 0.6, compiled=True)
    assert torch.equal(compiled_top, top) and torch.equal(compiled_bottom, bottom)
    for i in range(9):
        kept = [p for p in range(50) if valid[i, p]]
        high, low = max(values[i, kept]), min(values[i, kept])
        assert top[i].item() == next(p for p in kept if values[i, p] == high)
        assert bottom[i].item() == next(p for p in kept if values[i, p] == low)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_search_finds_the_region_an_elementwise_comparison_finds(dtype: torch.dtype) -> None:
    # values placed at min + t (max - min) and one float step either side, where the guess of the search
    # (a value threshold) and the normalised comparison can disagree by rounding; and a long tie block at t
    gen = torch.Generator().manual_seed(7)
    levels = [0.0, 0.05, 0.1, 0.3, 1 / 3, 0.5, 0.6, 0.7, 0.95, 1.0]
    low = torch.tensor([0.0, -3.7, 1e-3, 12.5, 0.2, 0.0], dtype=dtype)
    high = torch.tensor([1.0, 9.1, 7e-3, 13.0, 0.2 + 1e-6, 5.0], dtype=dtype)
    rows = []
    for lo, hi in zip(low, high, strict=True):
        at = torch.stack([lo + t * (hi - lo) for t in levels]).to(dtype)
        near = torch.cat([at, torch.nextafter(at, at + 1), torch.nextafter(at, at - 1)])
        filler = lo + (hi - lo) * torch.rand(200 - len(near) - 2, generator=gen, dtype=torch.float64).to(dtype)
        rows.append(torch.cat([lo[None], hi[None], near.clamp(lo, hi), filler]))
    values = torch.stack(rows)
    values[5, 40:140] = values[5, 2 + 5]  # a long tie block at the level 0.5
    valid = torch.rand(values.shape, generator=gen) < 0.9
    valid[:, :2] = True  # keep min and max
    mask = torch.rand(values.shape, generator=gen) < 0.5
    iou, dice, constant = MapOrdering(values, valid, [mask]).thresholded(0, levels)
    assert not constant.any()
    span = high - low
    for j, t in enumerate(levels):
        region = ((values - low[:, None]) / span[:, None] >= torch.tensor(t, dtype=dtype)) & valid
        inter, truth = (region & mask).sum(1), (mask & valid).sum(1)
        assert torch.equal(iou[:, j], inter.double() / (region | (mask & valid)).sum(1).double()), t
        assert torch.equal(dice[:, j], 2 * inter.double() / (region.sum(1) + truth).double()), t


@pytest.mark.parametrize("num_classes", [3, 21])
def test_template_sums_add_each_labelled_pixels_logits(num_classes: int) -> None:
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(3, num_classes, 9, 11, generator=gen)
    labels = torch.randint(0, num_classes + 2, (3, 9, 11), generator=gen)  # some out of range
    labels[0, :2] = 255
    sums, counts = template_sums(logits, labels, num_classes)
    expected = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    expected_counts = torch.zeros(num_classes, dtype=torch.long)
    for b, y, x in zip(*[t.flatten().tolist() for t in torch.meshgrid(
            torch.arange(3), torch.arange(9), torch.arange(11), indexing="ij")], strict=True):
        c = labels[b, y, x].item()
        if c < num_classes:
            expected[c] += logits[b, :, y, x].double()
            expected_counts[c] += 1
    assert torch.equal(counts, expected_counts)
    assert torch.allclose(sums, expected, rtol=0, atol=1e-12)


def test_rows_sorted_with_numpy_are_sorted_rows() -> None:
    import segaudit.metrics.ordering as ordering

    gen = torch.Generator().manual_seed(9)
    packed = torch.randint(-(2**62), 2**62, (7, 1000), generator=gen)
    packed[:, ::3] = 5  # duplicates
    assert torch.equal(ordering._sort_rows(packed), packed.sort(dim=1).values)


def test_packed_keys_are_the_same_with_torch_and_compiled() -> None:
    # the torch packing is a device's; the compiled one (a CPU audit's) groups each row by sign, so rows compare
    # as sorted
    import numpy as np

    from segaudit.metrics import rank_kernel
    from segaudit.metrics.ordering import _order_keys, _packed_keys

    gen = torch.Generator().manual_seed(10)
    values = torch.randn(5, 77, generator=gen)
    values[:, ::4] = 0.0
    values[:, ::9] = -0.0
    masks = [torch.rand(5, 77, generator=gen) < 0.5 for _ in range(3)]
    expected = (_order_keys(values).long() << 32) + sum(m.long() << j for j, m in enumerate(masks))
    assert torch.equal(_packed_keys(values, masks), expected)
    packed, counts = np.empty((5, 77), np.int64), [np.empty(5, np.int64) for _ in range(3)]
    rank_kernel.pack_rows(values.numpy(), np.ones((5, 77), bool), torch.stack(masks, 1).numpy(), packed, counts[0],
                          np.empty((5, 3), np.int64), counts[1], counts[2])
    assert torch.equal(torch.from_numpy(np.sort(packed, axis=1)), expected.sort(dim=1).values)
