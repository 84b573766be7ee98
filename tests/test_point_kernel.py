"""The compiled points (segaudit.metrics.point_kernel, a CPU's path) equal the torch ones to the bit: first
extremes, weighted centroid, and each point's hit and distance to its mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segaudit.metrics import point_kernel
from segaudit.metrics.ordering import extreme_points
from segaudit.metrics.scores import _hits_and_distances, weighted_centroid


def _maps(seed: int, n: int = 30, height: int = 23, width: int = 31):
    """Maps with tied maxima and minima, negatives, void pixels, constant, all-void and non-positive maps."""
    gen = torch.Generator().manual_seed(seed)
    maps = (torch.randint(-2, 6, (n, height, width), generator=gen).float() / 3).clamp(min=0)
    maps[::4] = torch.randn(len(maps[::4]), height, width, generator=gen) * 5  # distinct values, negatives
    maps[1] = 0.25  # constant
    maps[2] = -torch.rand(height, width, generator=gen)  # no positive value
    valid = torch.rand(n, height, width, generator=gen) > 0.15
    valid[3] = False  # no valid pixel
    return maps, valid


def _compiled_points(maps: torch.Tensor, valid: torch.Tensor, cutoff: float):
    n = len(maps)
    top, bottom, centroid, peak = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 2)), np.empty(n, np.float32)
    point_kernel.map_points(maps.numpy(), valid.numpy(), cutoff, top, bottom, centroid, peak)
    return torch.from_numpy(top), torch.from_numpy(bottom), torch.from_numpy(centroid), torch.from_numpy(peak) > 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cutoff", [0.6, 0.05, 1.0])
def test_compiled_points_equal_torch(seed: int, cutoff: float) -> None:
    maps, valid = _maps(seed)
    top, bottom, centroid, defined = _compiled_points(maps, valid, cutoff)
    want_top, want_bottom = extreme_points(maps.flatten(1), valid.flatten(1))
    want_centroid, want_defined = weighted_centroid(maps, valid, cutoff)
    assert torch.equal(top, want_top) and torch.equal(bottom, want_bottom)
    assert torch.equal(defined, want_defined)
    assert torch.equal(centroid, want_centroid)  # bit-equal: the float64 sums are exact (module docstring)


def test_compiled_hits_and_distances_equal_torch() -> None:
    gen = torch.Generator().manual_seed(3)
    n, height, width = 40, 19, 27
    truth = torch.rand(n, height, width, generator=gen) > 0.93
    truth[0] = False  # empty mask: inf
    truth[1] = True
    points = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([height + 4.0, width + 4.0]) - 2
    points[2:6] = torch.tensor([[3.5, 4.5], [2.5, 7.5], [0.5, 0.5], [height - 2.5, width - 3.5]])  # ties to even
    truth[2:6] = False
    for i in range(2, 6):  # a mask of the one pixel that rounding half to even reaches
        truth[i, int(np.rint(points[i, 0])), int(np.rint(points[i, 1]))] = True
    points[6:10] = points[6:10].round()  # integer points: the max and background points
    for with_distance in (True, False):
        hit, distance = _hits_and_distances(points, truth, with_distance=with_distance, compiled=True)
        want_hit, want_distance = _hits_and_distances(points, truth, with_distance=with_distance, compiled=False)
        assert torch.equal(hit, want_hit)
        assert torch.equal(distance.isnan(), want_distance.isnan())
        assert torch.equal(distance.nan_to_num(posinf=-1.0), want_distance.nan_to_num(posinf=-1.0))
    assert distance.isnan().any() and hit[2:6].all() and (~hit).any()

