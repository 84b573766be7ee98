"""Agreement of segaudit.metrics.scores with Quantus 0.6 (Hedström et al. 2023, JMLR 24(34)) on the same maps and
masks: PointingGame, AttributionLocalisation, TopKIntersection, RelevanceRankAccuracy, RelevanceMassAccuracy
and AUC, where Quantus is right; the comments say where and why we differ.

Quantus is a test-only extra. Its wheel requires ``opencv-python``, which needs libGL and overwrites the
``cv2`` of the ``opencv-python-headless`` that grad-cam installs, so it is installed without its
dependencies and with its real runtime dependencies from our ``quantus`` extra (README, "Set up")::

    pip install -e ".[quantus]" && pip install --no-deps "quantus==0.6.0"

(Quantus only uses ``cv2`` for rotation/translation perturbations, which the headless wheel provides.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from segaudit.metrics.scores import (
    auroc,
    energy_in_mask,
    pointing_game,
    relevance_rank_accuracy,
    top_k_intersection,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    quantus = pytest.importorskip(
        "quantus",
        reason="quantus is a test-only extra: pip install -e '.[quantus]' && pip install --no-deps quantus==0.6.0",
    )

N, SIZE = 6, 24


def _quantus(metric, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Run a Quantus metric on pre-computed maps ``(N, H, W)`` and masks ``(N, H, W)`` (no model needed)."""
    a = maps[:, None].astype(np.float64)
    s = masks[:, None].astype(np.float64)
    x = np.zeros((len(maps), 3, *maps.shape[1:]), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(model=None, x_batch=x, y_batch=np.zeros(len(maps), dtype=int), a_batch=a, s_batch=s,
                        channel_first=True)
    return np.asarray(scores, dtype=np.float64)


def _ours(fn, maps: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None, **kw) -> np.ndarray:
    valid = np.ones_like(masks) if valid is None else valid
    return fn(torch.from_numpy(maps), torch.from_numpy(masks), torch.from_numpy(valid), **kw).numpy()


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    """Non-negative CAM-like maps (ReLU of smoothed noise: zeros and a continuum of distinct positive
    values) and non-empty rectangular masks of various sizes."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(N, 1, SIZE, SIZE, generator=generator, dtype=torch.float64)
    maps = torch.nn.functional.avg_pool2d(noise, 5, 1, 2)[:, 0].sub(0.45).clamp(min=0)
    masks = torch.zeros(N, SIZE, SIZE, dtype=torch.bool)
    for i in range(N):
        top, left = torch.randint(0, SIZE - 8, (2,), generator=generator).tolist()
        height, width = torch.randint(3, 12, (2,), generator=generator).tolist()
        masks[i, top : top + height, left : left + width] = True
    # make sure hits and misses of the pointing game both occur
    argmax = maps.flatten(1).argmax(1)
    masks[0].view(-1)[argmax[0]] = True
    masks[1].view(-1)[argmax[1]] = False
    return maps.numpy(), masks.numpy()


def test_pointing_game_agrees_except_for_empty_masks_and_ties(case) -> None:
    maps, masks = case
    ours = _ours(pointing_game, maps, masks)
    np.testing.assert_array_equal(ours, _quantus(quantus.PointingGame(), maps, masks))
    assert set(ours) == {0.0, 1.0}
    # Quantus differs (1): an empty mask. Its ``hit[empty] = np.nan`` writes NaN into a *bool* array,
    # which stores True, so an empty mask counts as a hit; ours is NaN (undefined, left out of means).
    empty = np.zeros_like(masks[:1])
    assert _quantus(quantus.PointingGame(), maps[:1], empty)[0] == 1.0
    assert np.isnan(_ours(pointing_game, maps[:1], empty)[0])
    # (2): ties at the maximum. Quantus hits when *any* tied maximum lies in the mask; ours takes the first
    # maximum in row-major order (one point, as a point prompt would), so it may miss
    tied = np.zeros((1, SIZE, SIZE))
    tied[0, 2, 2] = tied[0, 20, 20] = 1.0
    second = np.zeros((1, SIZE, SIZE), dtype=bool)
    second[0, 18:23, 18:23] = True
    assert _quantus(quantus.PointingGame(), tied, second)[0] == 1.0
    assert _ours(pointing_game, tied, second)[0] == 0.0
    # (3): a map with no positive value: Quantus takes its maximum anyway (here every pixel), ours is NaN
    assert np.isnan(_ours(pointing_game, np.zeros((1, SIZE, SIZE)), second)[0])


def test_energy_in_mask_is_relevance_mass_accuracy_and_attribution_localisation(case) -> None:
    maps, masks = case
    ours = _ours(energy_in_mask, maps, masks)
    np.testing.assert_allclose(ours, _quantus(quantus.RelevanceMassAccuracy(), maps, masks), rtol=1e-12)
    # AttributionLocalisation adds 1e-9 to the denominator (after dividing the maps by the batch's max)
    np.testing.assert_allclose(ours, _quantus(quantus.AttributionLocalisation(), maps, masks), rtol=1e-7)
    # With negative values they part ways; ours counts the positive mass only (Arras et al. 2022: "the
    # sum of positive relevance"), which is AttributionLocalisation(abs=False, positive_attributions=True).
    # Quantus' RelevanceMassAccuracy divides by the *signed* total despite its docstring, and
    # AttributionLocalisation's default abs=True counts negative evidence as mass.
    signed = maps - 0.05
    ours = _ours(energy_in_mask, signed, masks)
    clipped = quantus.AttributionLocalisation(abs=False, positive_attributions=True)
    np.testing.assert_allclose(ours, _quantus(clipped, signed, masks), rtol=1e-7)
    assert not np.allclose(ours, _quantus(quantus.RelevanceMassAccuracy(), signed, masks))
    assert not np.allclose(ours, _quantus(quantus.AttributionLocalisation(), signed, masks))


def test_relevance_rank_accuracy_agrees_without_ties(case) -> None:
    maps, masks = case
    distinct = maps + np.linspace(0, 1e-6, SIZE * SIZE).reshape(SIZE, SIZE)  # no ties, not even at 0
    np.testing.assert_allclose(_ours(relevance_rank_accuracy, distinct, masks),
                               _quantus(quantus.RelevanceRankAccuracy(), distinct, masks), rtol=1e-12)


def test_relevance_rank_accuracy_ties_are_the_mean_over_quantus_tie_orders(case) -> None:
    # The CAMs are 0 on large areas, so ties at the K-th value are common. Quantus breaks them by
    # np.argsort's order, i.e. by pixel position; ours shares the tied slots out in proportion, the
    # expected value over random tie-breaking: the mean of Quantus' answers over random pixel orders.
    maps, masks = case
    maps = np.round(maps, 2)  # plenty of ties
    ours = _ours(relevance_rank_accuracy, maps, masks)
    rng = np.random.default_rng(0)
    metric = quantus.RelevanceRankAccuracy()
    runs = []
    for _ in range(200):
        order = rng.permutation(SIZE * SIZE)
        runs.append(_quantus(metric, maps.reshape(N, 1, -1)[..., order], masks.reshape(N, 1, -1)[..., order]))
    runs = np.stack(runs)
    np.testing.assert_allclose(ours, runs.mean(0), atol=4 * runs.std(0).max() / np.sqrt(len(runs)) + 1e-12)
    assert runs.std(0).max() > 0  # Quantus' answer really depends on the pixel order here


@pytest.mark.parametrize("k", [1, 10, 60])
def test_top_k_intersection_agrees_without_ties(case, k: int) -> None:
    # Quantus' TopKIntersection: the share of the k highest-valued pixels inside the mask, k = 1000 by
    # default (meant for 224 x 224 inputs; it must be smaller than the input). Same definition as ours.
    maps, masks = case
    distinct = maps + np.linspace(0, 1e-6, SIZE * SIZE).reshape(SIZE, SIZE)
    np.testing.assert_allclose(_ours(top_k_intersection, distinct, masks, k=k),
                               _quantus(quantus.TopKIntersection(k=k), distinct, masks), rtol=1e-12)


def test_auroc_agrees_with_ties(case) -> None:
    # Quantus' AUC is sklearn's roc_curve + trapezoidal auc: ties count 1/2, as our rank formula
    maps, masks = case
    np.testing.assert_allclose(_ours(auroc, maps, masks), _quantus(quantus.AUC(), maps, masks), rtol=1e-12)
    # a constant map: chance, 0.5, for us; Quantus refuses it ("attributions are uniformly distributed")
    constant = np.full((1, SIZE, SIZE), 0.3)
    assert _ours(auroc, constant, masks[:1])[0] == 0.5
    with pytest.raises(AssertionError, match="uniformly distributed"):
        _quantus(quantus.AUC(), constant, masks[:1])


def test_void_pixels_are_as_if_cut_out(case) -> None:
    # Quantus has no void: scoring with a void region must equal Quantus on the valid pixels alone
    maps, masks = case
    valid = np.ones_like(masks)
    valid[:, :, :5] = False  # a void border
    valid[:, 10:13, 8:20] = False  # and a void stripe through some masks
    distinct = maps + np.linspace(0, 1e-6, SIZE * SIZE).reshape(SIZE, SIZE)
    metrics = [
        (pointing_game, quantus.PointingGame(), {}),
        (energy_in_mask, quantus.RelevanceMassAccuracy(), {}),
        (relevance_rank_accuracy, quantus.RelevanceRankAccuracy(), {}),
        (top_k_intersection, quantus.TopKIntersection(k=20), {"k": 20}),
        (auroc, quantus.AUC(), {}),
    ]
    for ours_fn, metric, kw in metrics:
        ours = _ours(ours_fn, distinct, masks, valid, **kw)
        for i in range(N):
            keep = valid[i]
            theirs = _quantus(metric, distinct[i][keep][None, None], masks[i][keep][None, None])[0]
            np.testing.assert_allclose(ours[i], theirs, rtol=1e-12, err_msg=f"{ours_fn.__name__} map {i}")
