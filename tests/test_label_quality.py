import math

import numpy as np
import pytest
import torch

from segaudit.metrics.label_quality import pixel_label_quality, softmin_pool, softmin_pool_regions


def test_pixel_quality_is_label_probability_and_void_is_nan():
    logits = torch.log(torch.tensor([[0.7, 0.2], [0.1, 0.6]])).T.reshape(1, 2, 1, 2)  # probs per pixel
    labels = torch.tensor([[[0, 255]]])
    q = pixel_label_quality(logits, labels)
    assert q[0, 0, 0].item() == pytest.approx(0.7 / 0.9)
    assert math.isnan(q[0, 0, 1].item())


def test_softmin_hand_computed():
    q = torch.tensor([[[1.0, 0.5]]])
    weights = np.exp(np.array([0.0, 0.5]) / 0.1)
    expected = (weights * np.array([1.0, 0.5])).sum() / weights.sum()
    assert softmin_pool(q).item() == pytest.approx(expected)
    # lower temperature: closer to the minimum; higher: closer to the mean
    assert softmin_pool(q, temperature=0.01).item() == pytest.approx(0.5, abs=1e-6)
    assert softmin_pool(q, temperature=100.0).item() == pytest.approx(0.75, abs=1e-3)


def test_region_and_empty_region():
    q = torch.tensor([[[0.9, 0.1], [float("nan"), 0.8]]])
    assert softmin_pool(q, torch.tensor([[[True, False], [True, True]]])).item() == pytest.approx(
        softmin_pool(torch.tensor([[[0.9, 0.8]]])).item()
    )
    assert math.isnan(softmin_pool(q, torch.zeros(1, 2, 2, dtype=torch.bool)).item())
    assert math.isnan(softmin_pool(torch.full((1, 2, 2), float("nan"))).item())


def test_equals_cleanlab_without_void():
    rank = pytest.importorskip("cleanlab.segmentation.rank")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 9, generator=gen) * 3
    labels = torch.randint(0, 3, (4, 8, 9), generator=gen)
    ours = softmin_pool(pixel_label_quality(logits, labels)).numpy()
    probs = logits.softmax(1).numpy()
    theirs, pixels = rank.get_label_quality_scores(labels.numpy(), probs, verbose=False)
    np.testing.assert_allclose(pixel_label_quality(logits, labels).numpy(), pixels, atol=1e-6)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
def test_regions_of_images_pool_as_each_region_alone(compiled: bool):
    from segaudit.metrics.label_quality import softmin_pool_images_and_regions

    gen = torch.Generator().manual_seed(1)
    q = torch.rand(3, 6, 7, generator=gen)
    q[0, :2] = float("nan")  # void
    image_of = torch.tensor([2, 0, 0, 1, 2, 0])
    regions = torch.rand(6, 6, 7, generator=gen) < 0.4
    regions[3] = False  # an empty region: NaN
    regions[1, 2:] = False  # only void pixels left in it: NaN
    got = softmin_pool_images_and_regions(q, image_of, regions, compiled=compiled)[1]
    expected = softmin_pool(q[image_of], regions)
    assert got.isnan().tolist() == expected.isnan().tolist() == [False, True, False, True, False, False]
    torch.testing.assert_close(got, expected, rtol=1e-15, atol=0, equal_nan=True)


def test_images_and_regions_pooled_at_once_equal_each_alone() -> None:
    from segaudit.metrics.label_quality import softmin_pool_images_and_regions

    gen = torch.Generator().manual_seed(2)
    quality = torch.rand(4, 9, 11, generator=gen)
    quality[1, :3] = float("nan")
    image_of = torch.tensor([0, 0, 2, 1, 3, 3])
    regions = torch.rand(6, 9, 11, generator=gen) > 0.5
    images, pairs = softmin_pool_images_and_regions(quality, image_of, regions)
    assert torch.equal(images, softmin_pool(quality))  # to the bit: the same terms and sums
    assert torch.equal(pairs, softmin_pool_regions(quality, image_of, regions))
    assert torch.allclose(pairs, softmin_pool(quality[image_of], regions), rtol=1e-12, atol=0)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("chunk", [1, 2 * 4 * 8 * 8, 2**20])  # by image, two images, all at once
@pytest.mark.parametrize("side", [8, 6])
def test_pixel_quality_in_chunks_equals_one_softmax(layout, chunk, side, monkeypatch):
    """Softmax a few images at a time: the values of one call over the batch. To the bit when an image's pixels
    fill whole vectors (8 x 8; the demo's 128 and deeplabv3's 320 px); else torch's own softmax already differs
    by an ulp with where a pixel falls (its vector loop or scalar tail) and so does the batch size (6 x 6)."""
    import segaudit.metrics.label_quality as label_quality

    monkeypatch.setattr(label_quality, "SOFTMAX_CHUNK", chunk)
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(5, 4, side, side, generator=gen) * 8).contiguous(memory_format=layout)
    labels = torch.randint(0, 5, (5, side, side), generator=gen)
    labels[labels == 4] = 255
    expected = logits.softmax(1).gather(1, labels.clamp(0, 3)[:, None])[:, 0].masked_fill(labels == 255, float("nan"))
    got = pixel_label_quality(logits, labels)
    if side == 8:
        assert torch.equal(got.nan_to_num(-1), expected.nan_to_num(-1))
    torch.testing.assert_close(got, expected, rtol=2.5e-7, atol=0, equal_nan=True)  # an ulp
    assert got.isnan().any() and pixel_label_quality(logits[:0], labels[:0]).shape == (0, side, side)
