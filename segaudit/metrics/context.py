"""Causal context tests: does the model need an object's context to find it, or find it from context alone?

Where a map's mass lies is not evidence that the model *uses* the context (a map at one layer can glow on
the background of a model that ignores it, and the reverse). Hoyer et al. ("Grid Saliency for Context
Explanations of Semantic Segmentation", NeurIPS 2019) ask the model instead: perturb the context of an object
and see whether the prediction on the object survives. For each explained (image, class) pair with labelled
object pixels ``O`` (the class's GT mask), dilated by ``r`` pixels to ``D`` so that the object's own edge
stays with the object, two images are built with neutral fills ``z`` (:data:`CONTEXT_FILLS` replace the
context, :data:`OBJECT_FILLS` the object):

    x_obj = D ? x : z        (object kept, context replaced)
    x_ctx = D ? z' : x       (object replaced, context kept)

and the model is run on both, batched with the others. With ``s(x) = mean_{p in O} softmax(f(x))_{k,p}``,
the share of ``O`` predicted as ``k`` ``hit(x) = |{p in O: argmax f(x)_p = k}| / |O|`` and
``IoU(x)`` the IoU of the predicted ``k`` mask with ``O`` (valid pixels):

    context_reliance   = s(x) - s(x_obj)            (the class's score on its object falls without context)
    context_iou_drop   = IoU(x) - IoU(x_obj)
    hallucination      = |{p in D: argmax f(x_ctx)_p = k}| / |D|   (the class is still predicted where the
                                                                    object was, from its context alone)

``context_reliance`` near 0: the model finds the object by itself; near ``s(x)``: it needs the context.
Each pair's numbers are averaged over the fills, so that no single fill's artefact decides.

The fills (Hoyer et al. use a constant, blur and noise):

- ``"baseline"``: 0 in the model's input space, i.e. its normalisation mean (the training data's mean
  colour for a model normalised with its data's statistics): a colour cue of the context is gone (both);
- ``"mean"``: the image's own mean colour over its valid pixels (keeps a colour cue: not a default);
- ``"blur"``: the image blurred with a box filter of a third of its side: shapes go, colours stay (keeps a
  colour cue, and a blurred object its colour: not a default);
- ``"shuffle"``: the same place in the next image of the batch, another scene's real context (context only:
  that scene may hold an object of the class at the same place);
- ``"impute"``: ROAD's linear imputation of the region from its surroundings
  (:func:`segaudit.metrics.faithfulness.linear_imputation`), the context continued over the object (object
  only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from segaudit.metrics.faithfulness import linear_imputation

__all__ = ["CONTEXT_FILLS", "OBJECT_FILLS", "fill_images", "dilate", "context_images", "object_only",
           "context_only", "context_effects"]

#: Default fills that replace an object's context (``x_obj``).
CONTEXT_FILLS: tuple[str, ...] = ("baseline", "shuffle")
#: Default fills that replace the object (``x_ctx``): the imputation only, since a constant or blurred
#: fill keeps the object's silhouette, a shape the model can still react to (Rong et al. 2022).
OBJECT_FILLS: tuple[str, ...] = ("impute",)


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, H, W)`` bool masks grown by ``radius`` pixels (square structuring element)."""
    if radius <= 0:
        return masks.clone()
    grown = F.max_pool2d(masks[:, None].float(), 2 * radius + 1, stride=1, padding=radius)
    return grown[:, 0] > 0


def fill_images(images: torch.Tensor, valid: torch.Tensor, fill: str) -> torch.Tensor:
    """The neutral image ``z`` of each image (module docstring).

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` model input.
    valid : torch.Tensor
        ``(B, H, W)`` bool non-padding pixels (the mean fill averages over them).
    fill : str
        ``"baseline"``, ``"mean"``, ``"blur"`` or ``"shuffle"`` (``"impute"`` depends on the region: see
        :func:`context_images`).
    """
    if fill == "baseline":
        return torch.zeros_like(images)
    if fill == "mean":
        weight = valid[:, None].to(images.dtype)
        mean = (images * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp(min=1)
        return mean.expand_as(images).clone()
    if fill == "blur":
        side = max(3, (min(images.shape[-2:]) // 3) | 1)
        return F.avg_pool2d(images, side, stride=1, padding=side // 2, count_include_pad=False)
    if fill == "shuffle":
        return images.roll(1, dims=0) if images.shape[0] > 1 else fill_images(images, valid, "mean")
    raise ValueError(f"unknown fill {fill!r}; available: baseline, mean, blur, shuffle")


def context_images(
    images: torch.Tensor, fill: torch.Tensor, image_of: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_obj`` and ``x_ctx`` of every pair with one fill ``z`` for both (module docstring): ``(N, C, H, W)``
    each. ``regions`` are the dilated objects ``D`` ``(N, H, W)``; padding (``~valid``) is left as it is."""
    return object_only(images, fill, image_of, regions, valid), context_only(images, fill, image_of, regions, valid)


def object_only(
    images: torch.Tensor, fill: torch.Tensor, image_of: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``x_obj = D ? x : z`` of every pair, padding kept: ``(N, C, H, W)``."""
    keep = (regions | ~valid[image_of])[:, None]
    return torch.where(keep, images[image_of], fill[image_of])


def context_only(
    images: torch.Tensor, fill: torch.Tensor | None, image_of: torch.Tensor, regions: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """``x_ctx = D ? z : x`` of every pair, padding kept; ``fill=None``: ``z`` is ROAD's linear imputation of
    ``D`` from the rest of the image (:func:`~segaudit.metrics.faithfulness.linear_imputation`, to a relative
    residual of 1e-3: a fill, not a measurement)."""
    x = images[image_of]
    replace = regions & valid[image_of]
    if fill is None:
        return linear_imputation(x, ~replace, tolerance=1e-3)
    return torch.where(replace[:, None], fill[image_of], x)


def _pair_measures(
    logits: torch.Tensor, classes: torch.Tensor, objects: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor
) -> dict[str, torch.Tensor]:
    probs = logits.softmax(1)
    rows = torch.arange(len(classes), device=logits.device)
    score_k = probs[rows, classes]
    predicted = (logits.argmax(1) == classes[:, None, None]) & valid
    obj = objects & valid
    n_obj = obj.flatten(1).sum(1).double()
    n_region = (regions & valid).flatten(1).sum(1).double()
    inter = (predicted & obj).flatten(1).sum(1).double()
    union = (predicted | obj).flatten(1).sum(1).double()
    nan = torch.full_like(n_obj, float("nan"))
    return {
        "score": torch.where(n_obj > 0, (score_k * obj).flatten(1).sum(1).double() / n_obj.clamp(min=1), nan),
        "iou": torch.where(union > 0, inter / union.clamp(min=1), nan),
        "region_hit": torch.where(n_region > 0, (predicted & regions).flatten(1).sum(1).double()
                                  / n_region.clamp(min=1), nan),
    }


def context_effects(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    valid: torch.Tensor,
    image_of: torch.Tensor,
    classes: torch.Tensor,
    objects: torch.Tensor,
    radius: int = 3,
    context_fills: Sequence[str] = CONTEXT_FILLS,
    object_fills: Sequence[str] = OBJECT_FILLS,
    chunk: int = 32,
    measured: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The causal context test of ``N`` (image, class) pairs (module docstring), averaged over the fills.

    Parameters
    ----------
    forward : callable
        ``(M, C, H, W)`` -> ``(M, K, H, W)`` logits at input resolution (the model, no gradient).
    images : torch.Tensor
        ``(B, C, H, W)`` model input; ``valid`` ``(B, H, W)`` bool its non-padding pixels.
    image_of, classes : torch.Tensor
        ``(N,)`` long: each pair's image and class.
    objects : torch.Tensor
        ``(N, H, W)`` bool: each pair's object pixels ``O`` (the class's GT mask in its image).
    radius : int
        Dilation of ``O`` into the kept/replaced region ``D``.
    context_fills, object_fills : sequence of str
        From :data:`CONTEXT_FILLS` and :data:`OBJECT_FILLS`.
    chunk : int
        Images per model call.
    measured : torch.Tensor, optional
        ``(B, H, W)`` bool: the pixels the scores, IoUs and hit shares count (default ``valid``): e.g. the
        non-void pixels while ``valid`` (the pixels the fills replace) is the non-padding area, so that a void
        ring around an object is replaced with it but counts in no measure.

    Returns
    -------
    dict of str to torch.Tensor
        ``(N,)`` float64: ``score`` and ``iou`` on the original image, ``object_only_score``,
        ``object_only_iou``, ``context_reliance``, ``context_iou_drop``, ``hallucination`` and
        ``context_only_score`` (``s(x_ctx)``), the last five averaged over the fills.
    """
    regions = dilate(objects, radius)
    pair_valid = (valid if measured is None else measured)[image_of]
    with torch.no_grad():
        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([forward(x[i : i + chunk]) for i in range(0, len(x), chunk)]) if len(x) else x

        original = _pair_measures(run(images)[image_of], classes, objects, regions, pair_valid)
        kept = [_pair_measures(run(object_only(images, fill_images(images, valid, fill), image_of, regions, valid)),
                               classes, objects, regions, pair_valid) for fill in context_fills]
        removed = []
        for fill in object_fills:
            z = None if fill == "impute" else fill_images(images, valid, fill)
            removed.append(_pair_measures(run(context_only(images, z, image_of, regions, valid)), classes, objects,
                                          regions, pair_valid))

    def mean(parts: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
        return torch.stack([p[key] for p in parts]).mean(0)

    object_score, object_iou = mean(kept, "score"), mean(kept, "iou")
    return {
        "score": original["score"],
        "iou": original["iou"],
        "object_only_score": object_score,
        "object_only_iou": object_iou,
        "context_reliance": original["score"] - object_score,
        "context_iou_drop": original["iou"] - object_iou,
        "hallucination": mean(removed, "region_hit"),
        "context_only_score": mean(removed, "score"),
    }
