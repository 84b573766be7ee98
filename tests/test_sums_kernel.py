"""The compiled sums (segaudit.metrics.sums_kernel, a CPU's path) against the torch ones: class templates'
logit sums and instance coverage's masses, peaks and pixel counts."""

from __future__ import annotations

import pytest
import torch

from segaudit.metrics.entanglement import template_sums
from segaudit.metrics.instances import instance_scores


@pytest.mark.parametrize("num_classes", [3, 21])
@pytest.mark.parametrize("ignore", [255, 0])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_compiled_template_sums_add_the_labelled_pixels_in_order(
    num_classes: int, ignore: int, layout: torch.memory_format
) -> None:
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(4, num_classes, 13, 9, generator=gen) * torch.logspace(-6, 3, 9)  # wide magnitudes
    logits = logits.contiguous(memory_format=layout)  # channels-last: read in place
    labels = torch.randint(-1, num_classes + 2, (4, 13, 9), generator=gen)  # some out of range, some negative
    labels[0, :3] = 255
    labels[2] = 1  # one class only
    sums, counts = template_sums(logits, labels, num_classes, ignore=ignore, compiled=True)
    torch_sums, torch_counts = template_sums(logits, labels, num_classes, ignore=ignore, compiled=False)
    expected = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for b in range(4):  # one by one, in pixel order: the compiled loop's order, so equal to the bit
        for y in range(13):
            for x in range(9):
                c = int(labels[b, y, x])
                if 0 <= c < num_classes and c != ignore:
                    expected[c] += logits[b, :, y, x].double()
    assert torch.equal(sums, expected)
    assert torch.equal(counts, torch_counts) and counts.sum() > 0 and (ignore >= num_classes or counts[ignore] == 0)
    torch.testing.assert_close(torch_sums, expected, rtol=1e-13, atol=1e-13)


def _instances(seed: int, n: int = 9, size: int = 17):
    """Maps with plateaus, negatives, near-ties, a faint map and void; maps with 0, 1 and several (overlapping) instances, an
    instance without a valid pixel and a map without positive mass."""
    gen = torch.Generator().manual_seed(seed)
    maps = (torch.randint(-3, 8, (n, size, size), generator=gen).float() / 7)  # plateaus and ties
    maps[::3] = torch.randn(len(maps[::3]), size, size, generator=gen) * torch.logspace(-7, 1, size)
    maps[4] = -maps[4].abs()  # no positive mass
    maps[7] *= 1e-6  # a faint map: its peaks' heights are relative to its own maximum
    maps[8] = 1 + 1e-4 * torch.randn(size, size, generator=gen)  # neighbours within 0.1%: peaks are exact maxima
    valid = torch.rand(n, size, size, generator=gen) > 0.2
    owner = torch.tensor([0, 0, 0, 1, 3, 3, 4, 4, 6, 7, 7, 8], dtype=torch.long)  # maps 2 and 5: none
    masks = torch.rand(len(owner), size, size, generator=gen) > 0.6
    masks[1] |= masks[0]  # overlapping instances
    masks[8] &= ~valid[6]  # no valid pixel
    for instance, row in ((3, 1), (11, 8)):  # no peak (window >= 3); on map 8 each pixel within 0.1% of one
        seen = torch.where(valid[row], maps[row], -torch.inf)[None]
        masks[instance] = seen[0] < torch.nn.functional.max_pool2d(seen, 3, 1, 1)[0]
    return maps, valid, masks, owner


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 3, 5])
def test_compiled_instance_scores_equal_torch(seed: int, window: int) -> None:
    maps, valid, masks, owner = _instances(seed)
    got = instance_scores(maps, valid, masks, owner, window=window, compiled=True)
    want = instance_scores(maps, valid, masks, owner, window=window, compiled=False, chunk=5)
    for field in ("pixels", "has_peak", "covered", "n_instances", "peak_height"):  # exact: counts and maxima
        assert torch.equal(getattr(got, field).nan_to_num(-1), getattr(want, field).nan_to_num(-1)), field
    for field in ("mass_share", "class_mass_share", "instance_coverage"):  # float64 sums: rounding may differ
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=1e-13, atol=0, equal_nan=True)
    assert got.mass_share.isnan().any() and (got.has_peak == 1).any() and (window == 1 or (got.has_peak == 0).any())
    assert (got.class_mass_share > got.mass_share).any() and got.instance_coverage.isnan().any()


def test_compiled_instance_scores_is_the_default_for_float32_maps_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import segaudit.metrics.instances as instances

    maps, valid, masks, owner = _instances(0)
    called = []
    original = instances._compiled_instance_sums
    monkeypatch.setattr(instances, "_compiled_instance_sums", lambda *a: called.append(1) or original(*a))
    instance_scores(maps, valid, masks, owner)
    instance_scores(maps.double(), valid, masks, owner)  # another dtype: torch
    assert called == [1]
