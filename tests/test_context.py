"""The causal context test (segaudit.metrics.context) on models whose use of context is known by construction."""

from __future__ import annotations

import pytest
import torch

from segaudit.metrics.context import (
    CONTEXT_FILLS,
    context_effects,
    context_images,
    context_only,
    dilate,
    fill_images,
)

SIDE = 32


def _scene(background: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A red square object (channel 0) on a green background of the given strength (channel 1)."""
    image = torch.zeros((3, SIDE, SIDE))
    image[1] = background
    obj = torch.zeros((SIDE, SIDE), dtype=torch.bool)
    obj[10:20, 12:22] = True
    image[0, obj] = 1.0
    image[1, obj] = 0.0
    return image, obj


def _object_model(x: torch.Tensor) -> torch.Tensor:
    """Class 1 wherever a pixel is red: needs nothing but the object."""
    logits = torch.zeros((x.shape[0], 2, SIDE, SIDE))
    logits[:, 1] = 20 * (x[:, 0] - 0.5)
    return logits


def _object_in_context_model(x: torch.Tensor) -> torch.Tensor:
    """Class 1 on non-green pixels of an image whose mean green is high: the object is found only in its
    usual context."""
    green = x[:, 1].mean((1, 2))
    logits = torch.zeros((x.shape[0], 2, SIDE, SIDE))
    logits[:, 1] = 20 * (green[:, None, None] - 0.3) * (x[:, 1] < 0.5)
    return logits


def _context_model(x: torch.Tensor) -> torch.Tensor:
    """Class 1 in the middle of any mostly green image, whatever is there: the context alone decides."""
    green = x[:, 1].mean((1, 2))
    logits = torch.zeros((x.shape[0], 2, SIDE, SIDE))
    logits[:, 1] = -10.0
    logits[:, 1, 8:22, 10:24] = 20 * (green[:, None, None] - 0.3)
    return logits


def _run(forward) -> dict[str, torch.Tensor]:
    a, obj = _scene(0.9)
    b, _ = _scene(0.8)
    images = torch.stack([a, b])
    valid = torch.ones((2, SIDE, SIDE), dtype=torch.bool)
    return context_effects(forward, images, valid, torch.tensor([0, 1]), torch.tensor([1, 1]),
                           torch.stack([obj, obj]), radius=2)


def test_an_object_driven_model_shows_no_context_reliance_nor_hallucination() -> None:
    out = _run(_object_model)
    assert torch.all(out["score"] > 0.99)
    assert torch.allclose(out["context_reliance"], torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out["context_iou_drop"], torch.zeros(2, dtype=torch.float64), atol=1e-9)
    assert torch.all(out["hallucination"] < 0.05)


def test_a_model_that_needs_the_context_relies_on_it_but_does_not_hallucinate() -> None:
    out = _run(_object_in_context_model)
    assert torch.all(out["score"] > 0.99)
    assert torch.all(out["context_reliance"] > 0.3)
    assert torch.all(out["context_iou_drop"] > 0.3)
    assert torch.all(out["hallucination"] < 0.05)


def test_a_context_only_model_relies_on_context_and_hallucinates_from_it() -> None:
    out = _run(_context_model)
    assert torch.all(out["score"] > 0.99)
    assert torch.all(out["context_reliance"] > 0.3)
    assert torch.all(out["hallucination"] > 0.5)
    assert torch.all(out["context_only_score"] > 0.9)


def test_fills_and_the_perturbed_images() -> None:
    image, obj = _scene(0.9)
    images = torch.stack([image, image * 0.5])
    valid = torch.ones((2, SIDE, SIDE), dtype=torch.bool)
    valid[:, :, :2] = False  # padding stays as it is
    for fill in (*CONTEXT_FILLS, "mean", "blur"):
        z = fill_images(images, valid, fill)
        assert z.shape == images.shape
    assert torch.equal(fill_images(images, valid, "baseline"), torch.zeros_like(images))
    mean = fill_images(images, valid, "mean")
    assert torch.allclose(mean[0, :, 0, 0], images[0][:, valid[0]].mean(1))
    assert torch.equal(fill_images(images, valid, "shuffle")[0], images[1])
    regions = dilate(obj[None], 1)
    assert regions.sum() == 12 * 12
    x_obj, x_ctx = context_images(images, mean, torch.tensor([0]), regions, valid)
    assert torch.equal(x_obj[0][:, regions[0]], images[0][:, regions[0]])
    assert torch.equal(x_ctx[0][:, ~regions[0]], images[0][:, ~regions[0]])
    assert torch.equal(x_obj[0][:, :, :2], images[0][:, :, :2]) and torch.equal(x_ctx[0][:, :, :2], images[0][:, :, :2])
    imputed = context_only(images, None, torch.tensor([0]), regions, valid)
    assert torch.equal(imputed[0][:, ~regions[0]], images[0][:, ~regions[0]])
    assert imputed[0][0, regions[0]].max() < 0.5  # the red object is gone, continued from the green context
    with pytest.raises(ValueError, match="unknown fill"):
        fill_images(images, valid, "noise")
