"""Deletion / insertion with ROAD imputation (segaudit.metrics.faithfulness), cross-checked against
pytorch-grad-cam's copy of ROAD (``pytorch_grad_cam.metrics.road``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segaudit.metrics.faithfulness import (
    ROAD_FRACTIONS,
    deletion_insertion,
    linear_imputation,
    removal_masks,
    segmentation_class_score,
)

road = pytest.importorskip("pytorch_grad_cam.metrics.road", reason="pytorch-grad-cam (grad-cam) is a dev extra")


def _peer_impute(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return road.NoisyLinearImputer(noise=0.0)(image, keep.float())


@pytest.mark.parametrize("hole", ["scattered", "block", "border"])
def test_linear_imputation_solves_roads_system(hole: str) -> None:
    g = torch.Generator().manual_seed(3)
    image = torch.rand((3, 24, 20), generator=g)
    keep = torch.ones((24, 20), dtype=torch.bool)
    if hole == "scattered":
        keep = torch.rand((24, 20), generator=g) > 0.6
    elif hole == "block":
        keep[4:20, 3:15] = False
    else:  # a hole touching the image border (neighbour weights are cut there)
        keep[:9, :] = False
    ours = linear_imputation(image[None], keep[None])[0]
    peer = _peer_impute(image, keep)
    assert torch.equal(ours[:, keep], image[:, keep])
    np.testing.assert_allclose(ours.numpy(), peer.numpy(), atol=1e-5)


def test_linear_imputation_noise_only_touches_imputed_pixels() -> None:
    image = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    keep = torch.zeros((2, 8, 8), dtype=torch.bool)
    keep[:, ::2] = True
    plain = linear_imputation(image, keep)
    noisy = linear_imputation(image, keep, noise=0.5, generator=torch.Generator().manual_seed(1))
    changed = (plain != noisy).any(1)
    assert torch.equal(changed, ~keep)


def test_removal_masks_take_the_top_share_of_valid_pixels_only() -> None:
    maps = torch.arange(16.0).reshape(1, 4, 4)
    valid = torch.ones((1, 4, 4), dtype=torch.bool)
    valid[0, 3, 3] = False  # the highest value is void: never removed
    removed = removal_masks(maps, valid, (0.0, 0.2, 1.0))
    assert removed[0, 0].sum() == 0
    assert removed[0, 1].sum() == 3  # round(0.2 * 15)
    assert set(maps[0][removed[0, 1]].tolist()) == {14.0, 13.0, 12.0}
    assert torch.equal(removed[0, 2], valid[0])


class _TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_faithfulness_is_twice_roads_combined_score_of_the_peer() -> None:
    """Classification setting, where pytorch-grad-cam's ROAD applies: our (insertion - deletion) over the
    10..90 grid equals twice the peer's ``(LeRF - MoRF) / 2`` with the noise off (the peer's percentile
    thresholds select the same pixel sets as our shares on maps without ties)."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        AveragerAcrossThresholds,
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _TinyClassifier().eval()
    g = torch.Generator().manual_seed(5)
    images = torch.rand((2, 3, 16, 16), generator=g)
    maps = torch.rand((2, 16, 16), generator=g)
    classes = torch.tensor([1, 3])
    imputer = road.NoisyLinearImputer(noise=0.0)
    percentiles = [int(round(100 * f)) for f in ROAD_FRACTIONS]
    morf = AveragerAcrossThresholds(lambda p: PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, imputer)),
                                    percentiles)
    lerf = AveragerAcrossThresholds(lambda p: PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, imputer)),
                                    percentiles)
    targets = [ClassifierOutputTarget(int(k)) for k in classes]
    peer = (lerf(images, maps.numpy(), targets, model) - morf(images, maps.numpy(), targets, model)) / 2

    def score(x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        return model(x)[torch.arange(len(pair)), classes[pair]]

    ours = deletion_insertion(score, images, maps, torch.arange(2), torch.ones((2, 16, 16), dtype=torch.bool))
    np.testing.assert_allclose(ours["faithfulness"].numpy() / 2, peer, rtol=1e-4, atol=1e-5)


def test_a_map_on_the_evidence_is_more_faithful_than_one_off_it() -> None:
    """A 'model' whose class score is the mean brightness of one box: the map on the box must have a lower
    deletion score, a higher insertion score and a higher faithfulness than a map on the rest."""
    box = torch.zeros((32, 32), dtype=torch.bool)
    box[8:16, 8:16] = True

    def forward(x: torch.Tensor) -> torch.Tensor:  # (M, 2, H, W) logits: class 1 = box brightness
        brightness = (x.mean(1) * box).flatten(1).sum(1) / box.sum()
        logits = torch.zeros((x.shape[0], 2, 32, 32))
        logits[:, 1] = 10 * brightness[:, None, None]
        return logits

    image = torch.zeros((1, 3, 32, 32))
    image[:, :, box] = 1.0
    on, off = box.float() + 0.01 * torch.rand(32, 32), (~box).float() + 0.01 * torch.rand(32, 32)
    maps = torch.stack([on, off])
    score = segmentation_class_score(forward, torch.tensor([1, 1]), box.expand(2, -1, -1))
    out = deletion_insertion(score, image, maps, torch.tensor([0, 0]), torch.ones((1, 32, 32), dtype=torch.bool))
    assert out["deletion_score"][0] < out["deletion_score"][1]
    assert out["insertion_score"][0] > out["insertion_score"][1]
    assert out["faithfulness"][0] > 0 > out["faithfulness"][1]
    assert torch.allclose(out["base"], out["base"][0].expand(2))


def test_segmentation_class_score_is_the_mean_probability_over_the_target_pixels() -> None:
    logits = torch.zeros((1, 2, 2, 2))
    logits[0, 1, 0, 0] = 100.0  # p(class 1) = 1 at (0, 0), 0.5 elsewhere
    pixels = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
    score = segmentation_class_score(lambda x: logits.expand(x.shape[0], -1, -1, -1), torch.tensor([1, 1]), pixels)
    values = score(torch.zeros((2, 3, 2, 2)), torch.tensor([0, 1]))
    assert values[0].item() == pytest.approx(0.75)
    assert torch.isnan(values[1])
