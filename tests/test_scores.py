"""Map-vs-mask scores on hand-built maps and masks with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import roc_auc_score

import segaudit.metrics.scores as scores_module
from segaudit.metrics.scores import (
    BEST_IOU_THRESHOLDS,
    _average_ranks,
    agreement_consistency,
    auroc,
    background_point,
    best_iou,
    energy_in_mask,
    iou_and_dice_at,
    iou_at_threshold,
    mask_scores,
    max_point,
    point_hit_and_distance,
    pointing_game,
    relevance_rank_accuracy,
    score_masks,
    segmentation_iou,
    spearman,
    top_k_intersection,
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


# --- pointing-game tolerance, rank-based scores, thresholded overlaps, background point ---------------------


def _nan(x: torch.Tensor) -> bool:
    return math.isnan(x.item())


def _random_batch(n: int, height: int = 6, width: int = 7, seed: int = 0):
    """Maps with many ties (integers 0..3), random masks and void pixels."""
    gen = torch.Generator().manual_seed(seed)
    maps = torch.randint(0, 4, (n, height, width), generator=gen).float()
    masks = torch.rand(n, height, width, generator=gen) < 0.3
    valid = torch.rand(n, height, width, generator=gen) < 0.85
    return maps, masks, valid


def test_pointing_game_tolerance() -> None:
    outside = MAP.clone()
    outside[0, 3, 3] = 9  # nearest mask pixel (1, 2) at sqrt(5) ~ 2.24 px
    assert pointing_game(outside, MASK, ALL, tolerance=0).item() == 0.0
    assert pointing_game(outside, MASK, ALL, tolerance=2).item() == 0.0
    assert pointing_game(outside, MASK, ALL, tolerance=3).item() == 1.0
    assert pointing_game(MAP, MASK, ALL, tolerance=5).item() == 1.0
    # a void mask pixel does not count as a target: max at (1, 3) is 1 px from (1, 2), 2 px from (1, 1)
    right = MAP.clone()
    right[0, 1, 3] = 9
    assert pointing_game(right, MASK, ALL, tolerance=1).item() == 1.0
    valid = ALL.clone()
    valid[0, 1, 2] = False
    assert pointing_game(right, MASK, valid, tolerance=1).item() == 0.0
    assert pointing_game(right, MASK, valid, tolerance=2).item() == 1.0
    # still NaN for an empty mask or a map without a positive value, whatever the tolerance
    assert _nan(pointing_game(MAP, EMPTY, ALL, tolerance=15))
    assert _nan(pointing_game(torch.zeros_like(MAP), MASK, ALL, tolerance=15))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(MAP, MASK, ALL, tolerance=-1)


def test_pointing_game_default_is_strict() -> None:
    maps, masks, valid = _random_batch(16, seed=1)
    strict = pointing_game(maps, masks, valid)
    assert torch.equal(strict.nan_to_num(-1), pointing_game(maps, masks, valid, tolerance=0).nan_to_num(-1))
    for i in range(16):  # by hand: the mask at the first valid maximum
        flat = torch.where(valid[i], maps[i], torch.full_like(maps[i], -1)).flatten()
        expected = float(masks[i].flatten()[int(flat.argmax())]) if (masks[i] & valid[i]).any() else math.nan
        assert strict[i].nan_to_num(-1).item() == (-1 if math.isnan(expected) else expected)
    # a tolerance keeps every strict hit
    loose = pointing_game(maps, masks, valid, tolerance=1)
    assert bool((loose.nan_to_num(1) >= strict.nan_to_num(0)).all())


def test_relevance_rank_accuracy() -> None:
    # K = 2: the 4 is in the mask; the second slot is shared by two 2s, one inside -> (1 + 1/2) / 2
    assert relevance_rank_accuracy(MAP, MASK, ALL).item() == 0.75
    clear = MAP.clone()
    clear[0, 1, 2] = 3
    assert relevance_rank_accuracy(clear, MASK, ALL).item() == 1.0
    # voiding the 2 outside the mask breaks the tie
    valid = ALL.clone()
    valid[0, 2, 1] = False
    assert relevance_rank_accuracy(MAP, MASK, valid).item() == 1.0
    # voiding a mask pixel shrinks K: K = 1, the top pixel (1, 1) is inside
    valid = ALL.clone()
    valid[0, 1, 2] = False
    assert relevance_rank_accuracy(MAP, MASK, valid).item() == 1.0
    # voiding the top pixel: K = 1, the two 2s share the slot, (1, 2) inside -> 1/2
    valid = ALL.clone()
    valid[0, 1, 1] = False
    assert relevance_rank_accuracy(MAP, MASK, valid).item() == 0.5
    assert _nan(relevance_rank_accuracy(MAP, EMPTY, ALL))
    assert _nan(relevance_rank_accuracy(torch.zeros_like(MAP), MASK, ALL))


def test_top_k_intersection() -> None:
    assert top_k_intersection(MAP, MASK, ALL, k=1).item() == 1.0
    assert top_k_intersection(MAP, MASK, ALL, k=2).item() == 0.75
    assert top_k_intersection(MAP, MASK, ALL, k=3).item() == 2 / 3  # 4, 2, 2
    assert top_k_intersection(MAP, MASK, ALL, k=4).item() == 2 / 4  # + one of 13 zeros, none in the mask
    valid = ALL.clone()
    valid[0, 2, 1] = False
    assert top_k_intersection(MAP, MASK, valid, k=2).item() == 1.0
    assert _nan(top_k_intersection(MAP, MASK, valid, k=16))  # only 15 valid pixels
    assert _nan(top_k_intersection(MAP, EMPTY, ALL, k=2))
    assert _nan(top_k_intersection(torch.zeros_like(MAP), MASK, ALL, k=2))
    with pytest.raises(ValueError, match="k must be"):
        top_k_intersection(MAP, MASK, ALL, k=0)
    with pytest.raises(ValueError, match="k must be"):
        top_k_intersection(MAP, MASK, ALL, k=17)


def test_top_k_matches_quantus_rule_without_ties() -> None:
    # distinct values: the share of argsort's last k indices inside the mask (Quantus' TopKIntersection)
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(5, 6, 7, generator=gen)
    masks = torch.rand(5, 6, 7, generator=gen) < 0.4
    masks[:, 0, 0] = True
    ones = torch.ones_like(masks)
    for k in (1, 5, 20):
        top = maps.flatten(1).topk(k, dim=1).indices
        expected = masks.flatten(1).gather(1, top).double().mean(1)
        assert torch.allclose(top_k_intersection(maps, masks, ones, k), expected)
    k_rows = masks.flatten(1).sum(1)
    expected = torch.stack(
        [masks[i].flatten()[maps[i].flatten().topk(int(k_rows[i])).indices].double().mean() for i in range(5)]
    )
    assert torch.allclose(relevance_rank_accuracy(maps, masks, ones), expected)


def test_auroc_by_hand() -> None:
    # positives {4, 2}; negatives {2, 13 x 0}: 4 beats 14, 2 beats 13 and ties 1 -> U = 27.5 of 2 * 14
    assert auroc(MAP, MASK, ALL).item() == 27.5 / 28
    valid = ALL.clone()
    valid[0, 2, 1] = False  # the tied negative leaves
    assert auroc(MAP, MASK, valid).item() == 1.0
    assert auroc(torch.zeros_like(MAP), MASK, ALL).item() == 0.5
    assert auroc(-MAP, MASK, ALL).item() == 0.5 / 28
    assert _nan(auroc(MAP, EMPTY, ALL))
    assert _nan(auroc(MAP, ALL.clone(), ALL))
    # the complement empty within the valid pixels
    assert _nan(auroc(MAP, MASK, MASK.clone()))


def test_spearman_by_hand() -> None:
    ramp = _one([[1, 2], [3, 4]])
    mask = _one([[0, 0], [1, 1]], torch.bool)
    ones = torch.ones_like(mask)
    # ranks x = 1..4 (centred -1.5, -0.5, 0.5, 1.5), y = 1.5, 1.5, 3.5, 3.5 (centred -1, -1, 1, 1)
    assert abs(spearman(ramp, mask, ones).item() - 4 / math.sqrt(5 * 4)) < 1e-12
    valid = ones.clone()
    valid[0, 0, 0] = False  # x ranks 1, 2, 3 (centred -1, 0, 1); y ranks 1, 2.5, 2.5 (centred -1, .5, .5)
    assert abs(spearman(ramp, mask, valid).item() - 1.5 / math.sqrt(2 * 1.5)) < 1e-12
    assert _nan(spearman(torch.ones_like(ramp), mask, ones))
    assert _nan(spearman(ramp, torch.zeros_like(mask), ones))
    assert _nan(spearman(ramp, ones.clone(), ones))


def test_ranks_auroc_spearman_match_scipy_and_sklearn() -> None:
    for n in (1, 3, 8):
        maps, masks, valid = _random_batch(n, seed=10 + n)
        masks[:, 0, 0], valid[:, 0, 0] = True, True  # every row has a positive
        masks[:, 0, 1], valid[:, 0, 1] = False, True  # and a negative
        ranks = _average_ranks(maps.flatten(1), valid.flatten(1))
        got_auc, got_rho = auroc(maps, masks, valid), spearman(maps, masks, valid)
        for i in range(n):
            v = valid[i].flatten()
            x, y = maps[i].flatten()[v].numpy(), masks[i].flatten()[v].numpy()
            assert ranks[i].flatten()[v].tolist() == rankdata(x).tolist()
            assert abs(got_auc[i].item() - roc_auc_score(y, x)) < 1e-12
            assert abs(got_rho[i].item() - spearmanr(x, y).statistic) < 1e-12


def test_iou_and_dice_at() -> None:
    iou, dice = iou_and_dice_at(MAP, MASK, ALL, [0.5, 0.6])
    # t = 0.5: region {(1,1), (1,2), (2,1)}, mask 2, overlap 2; t = 0.6: region {(1,1)}, overlap 1
    assert iou.tolist() == [[2 / 3, 1 / 2]]
    assert dice.tolist() == [[2 * 2 / (3 + 2), 2 * 1 / (1 + 2)]]
    valid = ALL.clone()
    valid[0, 2, 1] = False
    iou, dice = iou_and_dice_at(MAP, MASK, valid, torch.tensor([0.5]))
    assert iou.tolist() == [[1.0]] and dice.tolist() == [[1.0]]
    iou, dice = iou_and_dice_at(torch.ones_like(MAP), MASK, ALL, [0.5, 0.6])
    assert iou.isnan().all() and dice.isnan().all()
    assert iou_and_dice_at(MAP, EMPTY, ALL, [0.5])[0].isnan().all()
    # each column is iou_at_threshold at that threshold
    maps, masks, valid = _random_batch(6, seed=3)
    maps = maps + torch.rand(maps.shape, generator=torch.Generator().manual_seed(4))
    iou, _ = iou_and_dice_at(maps, masks, valid, BEST_IOU_THRESHOLDS)
    assert iou.shape == (6, 19)
    for j, t in enumerate(BEST_IOU_THRESHOLDS):
        assert torch.equal(iou[:, j].nan_to_num(-1), iou_at_threshold(maps, masks, valid, t).nan_to_num(-1))


def test_best_iou() -> None:
    # normalised values 1, 0.5, 0: thresholds <= 0.5 give 2/3, above give 1/2
    assert best_iou(MAP, MASK, ALL).item() == 2 / 3
    assert best_iou(MAP, MASK, ALL, thresholds=[0.6, 0.9]).item() == 1 / 2
    assert torch.allclose(
        torch.tensor(BEST_IOU_THRESHOLDS, dtype=torch.float64),
        torch.linspace(0.05, 0.95, 19, dtype=torch.float64),
    )
    assert _nan(best_iou(torch.ones_like(MAP), MASK, ALL))


def test_background_point_falls_outside_the_mask() -> None:
    rows = torch.arange(5).view(-1, 1)
    cols = torch.arange(5).view(1, -1)
    cam = (10 - (rows - 1).abs() - (cols - 1).abs()).float().unsqueeze(0)  # peak at (1, 1), min 4 at (4, 4)
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, :3, :3] = True
    valid = torch.ones_like(mask)
    point, defined = background_point(cam, valid)
    assert point.tolist() == [[4.0, 4.0]] and defined.item()
    hit, distance = point_hit_and_distance(point, defined, mask, valid)
    assert hit.item() == 0.0 and abs(distance.item() - math.sqrt(8)) < 1e-12  # to (2, 2)
    # the minimum on a void pixel is not used: (3, 4) and (4, 3) tie at 5, first in row-major order wins
    valid[0, 4, 4] = False
    point, _ = background_point(cam, valid)
    assert point.tolist() == [[3.0, 4.0]]
    _, defined = background_point(torch.ones_like(cam), valid)
    assert not defined.item()


def test_new_scores_rows_are_independent_and_chunking_is_invisible(monkeypatch) -> None:
    maps, masks, valid = _random_batch(7, seed=5)
    masks[:, 0, 0], valid[:, 0, 0] = True, True
    masks[3] = False  # one empty mask among the rows

    def every(m, g, v):
        return [
            pointing_game(m, g, v, tolerance=2),
            relevance_rank_accuracy(m, g, v),
            top_k_intersection(m, g, v, k=5),
            auroc(m, g, v),
            spearman(m, g, v),
            *iou_and_dice_at(m, g, v, [0.3, 0.7]),
            best_iou(m, g, v),
            background_point(m, v)[0],
        ]

    batch = every(maps, masks, valid)
    for i in range(7):
        alone = every(maps[i : i + 1], masks[i : i + 1], valid[i : i + 1])
        for whole, one in zip(batch, alone, strict=True):
            assert torch.equal(whole[i : i + 1].nan_to_num(-9), one.nan_to_num(-9))
    monkeypatch.setattr(scores_module, "_CHUNK_ELEMENTS", 2 * 6 * 7)  # two rows a chunk
    for whole, chunked in zip(batch, every(maps, masks, valid), strict=True):
        assert torch.equal(whole.nan_to_num(-9), chunked.nan_to_num(-9))
    assert batch[1][3].isnan() and batch[3][3].isnan() and batch[4][3].isnan()


def test_new_scores_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        auroc(MAP, MASK[:, :3], ALL)
    with pytest.raises(ValueError, match="bool"):
        spearman(MAP, MASK.float(), ALL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_new_scores_on_cuda_match_cpu() -> None:
    maps, masks, valid = _random_batch(5, seed=6)
    masks[:, 0, 0], valid[:, 0, 0] = True, True
    cuda = [t.cuda() for t in (maps, masks, valid)]
    for fn in (relevance_rank_accuracy, auroc, spearman, best_iou):
        assert torch.allclose(fn(*cuda).cpu(), fn(maps, masks, valid), equal_nan=True)
    assert torch.equal(
        pointing_game(*cuda, tolerance=2).cpu().nan_to_num(-1),
        pointing_game(maps, masks, valid, tolerance=2).nan_to_num(-1),
    )
    assert torch.allclose(
        top_k_intersection(*cuda, k=5).cpu(), top_k_intersection(maps, masks, valid, k=5), equal_nan=True
    )
    assert torch.equal(background_point(cuda[0], cuda[2])[0].cpu(), background_point(maps, valid)[0])


def _by_definition(maps, masks, valid, threshold=0.5, cutoff=0.6):
    """The columns of mask_scores, each from its own public function."""
    iou, dice = iou_and_dice_at(maps, masks, valid, [threshold])
    columns = {"mask_pixels": (masks & valid).flatten(1).sum(1), "energy_in_mask": energy_in_mask(maps, masks, valid),
               "pointing_hit": pointing_game(maps, masks, valid), "relevance_rank": relevance_rank_accuracy(maps, masks, valid),
               "auroc": auroc(maps, masks, valid), "iou_at_0_5": iou[:, 0], "dice_at_0_5": dice[:, 0]}
    for name, point in (("max_point", max_point(maps, valid)), ("centroid", weighted_centroid(maps, valid, cutoff)),
                        ("background_point", background_point(maps, valid))):
        hit, distance = point_hit_and_distance(*point, masks, valid)
        columns[f"{name}_hit"], columns[f"{name}_distance"] = hit, distance
    return columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_masks_equals_each_score_by_definition(seed, monkeypatch) -> None:
    # tie-heavy integer maps, void, an empty mask, a full mask, an all-void row, a constant and a zero map
    maps, gt, valid = _random_batch(9, height=8, width=9, seed=seed)
    pred = torch.rand(gt.shape, generator=torch.Generator().manual_seed(seed + 10)) < 0.5
    gt[2], pred[3], valid[4] = False, True, False
    maps[5], maps[6] = 2.0, 0.0
    both = score_masks(maps, {"gt": gt, "pred": pred}, valid, 0.3, 0.5)
    assert list(both) == ["gt", "pred"]
    for kind, masks in (("gt", gt), ("pred", pred)):
        expected = _by_definition(maps, masks, valid, 0.3, 0.5)
        got = both[kind]
        assert list(got) == list(mask_scores(maps, masks, valid)) and set(got) <= set(expected)
        for column, values in got.items():
            assert values.dtype == expected[column].dtype, column
            assert torch.equal(values.nan_to_num(-9), expected[column].nan_to_num(-9)), column
    assert both["gt"]["auroc"][2].isnan() and both["pred"]["auroc"][4].isnan() and both["gt"]["iou_at_0_5"][5].isnan()
    monkeypatch.setattr(scores_module, "_CHUNK_ELEMENTS", 2 * 8 * 9)  # two rows a chunk: the same answers
    chunked = score_masks(maps, {"gt": gt, "pred": pred}, valid, 0.3, 0.5)
    for kind in both:
        for column in both[kind]:
            assert torch.equal(both[kind][column].nan_to_num(-9), chunked[kind][column].nan_to_num(-9))


def test_thresholds_compare_in_the_maps_dtype() -> None:
    # float32(0.7) < 0.7: the normalised value float32(0.7) is in the region {L~ >= 0.7} (the threshold is
    # rounded to the maps' dtype, as an element-wise float32 comparison does), whatever search finds it
    maps = torch.tensor([[[0.0, 0.7, 0.69999, 1.0]]], dtype=torch.float32)
    masks = torch.tensor([[[False, True, False, False]]])
    iou, dice = iou_and_dice_at(maps, masks, torch.ones_like(masks), [0.7])
    assert iou.item() == pytest.approx(1 / 2) and dice.item() == pytest.approx(2 / 3)


def test_score_masks_rejects_a_mask_of_another_shape() -> None:
    with pytest.raises(ValueError, match="one shape"):
        score_masks(MAP, {"gt": MASK, "pred": MASK[:, :3]}, ALL)
