"""The scoring's fast paths (issue 19) give exactly what the plain operations they replace give."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segaudit.auditors.rows import _png, classes_present
from segaudit.metrics.instances import _window_max
from segaudit.metrics.ordering import _stable_sort
from segaudit.metrics.scores import confusion_counts


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


def test_classes_present_lists_what_unique_lists() -> None:
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 6, (5, 9, 9), generator=gen)
    labels[labels == 5] = 255  # void
    labels[1] = 2  # one class only
    where = torch.rand(5, 9, 9, generator=gen) > 0.3
    where[2] = False  # nothing kept
    expected = [[c for c in torch.unique(labels[b][where[b]]).tolist() if c < 5] for b in range(5)]
    assert classes_present(labels, 5, where) == expected
    assert classes_present(labels, 5) == [[c for c in torch.unique(x).tolist() if c < 5] for x in labels]


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
