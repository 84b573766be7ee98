"""Map-vs-mask scores on hand-built maps and masks with known answers."""

from __future__ import annotations

import math

import torch

from segaudit.scores import (
    agreement_consistency,
    energy_in_mask,
    iou_at_threshold,
    max_point,
    point_hit_and_distance,
    pointing_game,
    segmentation_iou,
    weighted_centroid,
)


def _one(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).unsqueeze(0)


MAP = _one([[0, 0, 0, 0], [0, 4, 2, 0], [0, 2, 0, 0], [0, 0, 0, 0]])
MASK = _one([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], torch.bool)
ALL = torch.ones(1, 4, 4, dtype=torch.bool)
EMPTY = torch.zeros(1, 4, 4, dtype=torch.bool)


def test_energy_in_mask() -> None:
    assert energy_in_mask(MAP, MASK, ALL).item() == 6 / 8
    # negative values do not count; void pixels leave both sums
    signed = MAP.clone()
    signed[0, 0, 0] = -10
    assert energy_in_mask(signed, MASK, ALL).item() == 6 / 8
    valid = ALL.clone()
    valid[0, 2, 1] = False
    assert energy_in_mask(MAP, MASK, valid).item() == 1.0
    assert math.isnan(energy_in_mask(MAP, EMPTY, ALL).item())
    assert math.isnan(energy_in_mask(torch.zeros_like(MAP), MASK, ALL).item())


def test_pointing_game() -> None:
    assert pointing_game(MAP, MASK, ALL).item() == 1.0
    outside = MAP.clone()
    outside[0, 3, 3] = 9
    assert pointing_game(outside, MASK, ALL).item() == 0.0
    # the maximum on a void pixel is not used
    valid = ALL.clone()
    valid[0, 3, 3] = False
    assert pointing_game(outside, MASK, valid).item() == 1.0
    # an empty mask is never a hit (Quantus 0.6 would count it as one)
    assert math.isnan(pointing_game(MAP, EMPTY, ALL).item())


def test_iou_at_threshold() -> None:
    # normalised map: 1 at (1,1), 0.5 at (1,2) and (2,1): region of 3 pixels, mask of 2, overlap 2
    assert iou_at_threshold(MAP, MASK, ALL, 0.5).item() == 2 / 3
    assert iou_at_threshold(MAP, MASK, ALL, 0.6).item() == 1 / 2
    assert math.isnan(iou_at_threshold(torch.ones_like(MAP), MASK, ALL).item())


def test_max_point_and_centroid() -> None:
    point, ok = max_point(MAP, ALL)
    assert point.tolist() == [[1.0, 1.0]] and ok.item()
    # cutoff 0.6 of max 4 = 2.4: only (1,1) counts
    centre, ok = weighted_centroid(MAP, ALL, cutoff=0.6)
    assert centre.tolist() == [[1.0, 1.0]]
    # cutoff 0.5: (1,1) w=4, (1,2) w=2, (2,1) w=2 -> row (4+2+4)/8, col (4+4+2)/8
    centre, _ = weighted_centroid(MAP, ALL, cutoff=0.5)
    assert centre.tolist() == [[1.25, 1.25]]
    _, ok = weighted_centroid(torch.zeros_like(MAP), ALL)
    assert not ok.item()


def test_point_hit_and_distance() -> None:
    mask = torch.zeros(3, 10, 10, dtype=torch.bool)
    mask[:, 2:4, 6:9] = True
    points = torch.tensor([[3.0, 7.0], [3.0, 0.0], [8.0, 9.0]], dtype=torch.float64)
    hit, distance = point_hit_and_distance(points, torch.ones(3, dtype=torch.bool), mask, torch.ones_like(mask))
    assert hit.tolist() == [1.0, 0.0, 0.0]
    assert distance[0].item() == 0.0
    assert distance[1].item() == 6.0  # to (3, 6)
    assert abs(distance[2].item() - math.hypot(5, 1)) < 1e-12  # to (3, 8)
    hit, distance = point_hit_and_distance(points[:1], torch.tensor([False]), mask[:1], torch.ones_like(mask[:1]))
    assert math.isnan(hit.item()) and math.isnan(distance.item())


def test_segmentation_iou_ignores_void() -> None:
    pred = _one([[1, 1, 0], [0, 0, 0]], torch.bool)
    gt = _one([[1, 0, 0], [1, 0, 0]], torch.bool)
    valid = torch.ones_like(pred)
    assert segmentation_iou(pred, gt, valid).item() == 1 / 3
    valid[0, 1, 0] = False
    assert segmentation_iou(pred, gt, valid).item() == 1 / 2
    assert math.isnan(segmentation_iou(torch.zeros_like(pred), torch.zeros_like(gt), valid).item())


def test_agreement_consistency() -> None:
    iou = torch.tensor([0.8, 0.8, 0.0, float("nan"), 0.5], dtype=torch.float64)
    e_gt = torch.tensor([0.9, 0.3, float("nan"), float("nan"), 0.2], dtype=torch.float64)
    e_pred = torch.tensor([0.6, 0.6, 0.7, float("nan"), float("nan")], dtype=torch.float64)
    expected = [0.8 * 1.0, 0.8 * 0.5, 0.0, 0.0, 0.5]
    assert torch.allclose(agreement_consistency(iou, e_gt, e_pred), torch.tensor(expected, dtype=torch.float64))


def test_batched_rows_are_independent() -> None:
    maps = torch.cat([MAP, MAP.flip(-1)])
    masks = torch.cat([MASK, MASK])
    both = energy_in_mask(maps, masks, torch.ones_like(masks))
    assert both[0].item() == energy_in_mask(MAP, MASK, ALL).item()
    assert both[1].item() == energy_in_mask(MAP.flip(-1), MASK, ALL).item()
