"""The CAM engine: every method, at every requested layer, for every class present in each image.

Cost per batch: **one forward** (all layers captured at once, :mod:`segaudit.cam.layers`) and the
backwards of ``J = max_b (classes targeted in image b)`` *slots*: slot ``j`` sums, over the images, the
target of each image's ``j``-th class (images are independent in eval mode, so one backward gives every
image its own class's gradients). A batch of images with different classes thus costs as many backwards
as its most crowded image has classes, not as many as it holds distinct classes. The ``J`` slot targets
``(B, J)`` are differentiated in one vector-Jacobian product vmapped over one-hot cotangents
(``torch.autograd.grad(..., is_grads_batched=True)``) on CUDA, or in a loop of ``J`` backwards on CPU
(faster there, measured). No parameter gets a gradient. Where the model ends in a bilinear upsampling of
its logits (torchvision's segmentation models, :mod:`segaudit.cam.upsampling`), the backwards start from
the low-resolution logits with the targets pulled back in closed form; no ``(B, K, H, W)`` target mask
or cotangent is built. Every gradient method
(:data:`segaudit.cam.gradient.GRADIENT_METHODS`) is then computed from the same (activations, gradients).

Classifiers (per-image scores ``(B, K)``) go through the same slots with one-hot cotangents on their
class scores (:func:`segaudit.cam.targets.classifier_targets`).

Maps come back *raw* (with their magnitude) at the layer's resolution; normalising and upsampling is the
caller's choice (:mod:`segaudit.cam.maps`). What to compute is one :class:`CamSettings`. Images are
processed in micro-batches of at most ``micro_batch`` images; out-of-memory errors propagate (the audit's
micro-batches own that policy, :mod:`segaudit.auditors.failures`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from segaudit.cam.cam_settings import (
    ALL_METHODS,
    GRADIENT_FREE_METHODS,
    GUIDED_METHODS,
    INPUT_LAYER,
    METHODS,
    TRACE_METHODS,
    CamSettings,
    SettingsError,
)
from segaudit.cam.gradient import GRADIENT_METHODS
from segaudit.cam.gradient_free import eigen_cam, score_cam
from segaudit.cam.guided import attribution_map, guided_backprop, guided_grad_cam
from segaudit.cam.layers import capture_layers
from segaudit.cam.targets import (
    TARGET_NAMES,
    TARGET_NONE,
    classifier_presence,
    classifier_scores,
    classifier_targets,
    model_logits,
    seg_grad_cam_pixels,
    seg_grad_cam_sources,
    target_scores,
)
from segaudit.cam.upsampling import bilinear_adjoint, capture_low_res_logits, is_bilinear_upsampling

__all__ = ["METHODS", "ALL_METHODS", "GRADIENT_FREE_METHODS", "GUIDED_METHODS", "INPUT_LAYER", "CamResult",
           "CamSettings", "compute_cams", "compute_cams_with", "score_gradients", "slot_gradients",
           "gradient_maps_by_slot"]


@dataclass
class CamResult:
    """What the engine computed for a batch.

    Attributes
    ----------
    logits : torch.Tensor
        ``(B, K, H, W)`` detached model output; a classifier's ``(B, K)`` presence log-odds.
    pred : torch.Tensor
        ``(B, H, W)`` int64 argmax class; for a classifier ``(B, K)`` bool, the classes predicted present
        (:func:`~segaudit.cam.targets.classifier_presence`, background included).
    maps : dict of (str, str) to torch.Tensor
        ``(layer, method)`` -> ``(B, K, h, w)`` raw maps; zero where ``target_source`` is
        :data:`~segaudit.cam.targets.TARGET_NONE`.
    target_source : torch.Tensor
        ``(B, K)`` int8 code of the pixel set of each target (:data:`~segaudit.cam.targets.TARGET_NAMES`).
    layers : tuple of str
    target : str
        Target kind.
    score : str
        ``"logits"`` or ``"softmax"``.
    """

    logits: torch.Tensor
    pred: torch.Tensor
    maps: dict[tuple[str, str], torch.Tensor]
    target_source: torch.Tensor
    layers: tuple[str, ...]
    target: str = "pred"
    score: str = "logits"
    methods: tuple[str, ...] = field(default=())
    fixation_points: torch.Tensor | None = None
    fixation_weights: torch.Tensor | None = None

    @property
    def layer(self) -> str:
        """The first (or only) layer."""
        return self.layers[0]

    def map(self, method: str, layer: str | None = None) -> torch.Tensor:
        """``(B, K, h, w)`` maps of ``method`` at ``layer`` (default: the first layer)."""
        return self.maps[(layer or self.layers[0], method)]

    @staticmethod
    def target_name(code: int) -> str:
        return TARGET_NAMES[int(code)]

    @staticmethod
    def concat(parts: Sequence[CamResult]) -> CamResult:
        """Join results of consecutive micro-batches along the batch dimension."""
        first = parts[0]
        if len(parts) == 1:
            return first
        return CamResult(
            logits=torch.cat([p.logits for p in parts]),
            pred=torch.cat([p.pred for p in parts]),
            maps={key: torch.cat([p.maps[key] for p in parts]) for key in first.maps},
            target_source=torch.cat([p.target_source for p in parts]),
            layers=first.layers,
            target=first.target,
            score=first.score,
            methods=first.methods,
        )


def _slot_cotangent(
    scores: torch.Tensor, image: torch.Tensor, cls: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Like ``scores``: ``values[n]`` in channel ``(image[n], cls[n])``, zero elsewhere."""
    cotangent = torch.zeros_like(scores)
    cotangent[image, cls] = values.to(scores.dtype)
    return cotangent


def slot_gradients(
    scores: torch.Tensor,
    cotangents: torch.Tensor | Iterable[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    batched: bool | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Vector-Jacobian products of ``scores`` with each of ``J`` cotangents, w.r.t. each input, slot by slot.

    ``scores`` ``(B, K, ...)``; ``cotangents`` ``J`` tensors like ``scores`` (stacked, or an iterable
    consumed one at a time); yields, for each cotangent in turn, one ``(B, ...)`` gradient per input. One
    vmapped backward when ``batched`` (default: on CUDA), else one backward per slot, run as it is consumed
    (a consumer that uses each slot's gradients at once never holds ``J`` of them).
    """
    if batched is None:
        batched = scores.is_cuda
    if batched:
        stacked = cotangents if isinstance(cotangents, torch.Tensor) else torch.stack(list(cotangents))
        try:
            grads = torch.autograd.grad(scores, inputs, stacked, retain_graph=True, is_grads_batched=True)
        except RuntimeError as exc:
            if "batching rule" not in str(exc) and "vmap" not in str(exc).lower():
                raise
        else:
            for j in range(len(stacked)):
                yield [grad[j] for grad in grads]
            return
        cotangents = stacked
    for cotangent in cotangents:
        yield list(torch.autograd.grad(scores, inputs, cotangent, retain_graph=True))


def score_gradients(
    scores: torch.Tensor,
    cotangents: torch.Tensor | Iterable[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    batched: bool | None = None,
) -> list[torch.Tensor]:
    """:func:`slot_gradients` stacked: per input a ``(J, B, ...)`` tensor."""
    per_slot = list(slot_gradients(scores, cotangents, inputs, batched))
    return [torch.stack(parts) for parts in zip(*per_slot, strict=True)]


def gradient_maps_by_slot(
    scores: torch.Tensor,
    cotangents: Iterable[torch.Tensor],
    layers: tuple[str, ...],
    activations: list[torch.Tensor],
    gradient_methods: Sequence[str],
    dtype: torch.dtype,
) -> Iterator[dict[tuple[str, str], torch.Tensor]]:
    """For each cotangent (slot) in turn, the ``(B, h, w)`` map of every gradient method at every layer,
    keyed ``(layer, method)``, in ``dtype``; one slot's gradients are alive at a time."""
    feats = [a.detach().to(dtype) for a in activations]
    for grads in slot_gradients(scores, cotangents, activations):
        yield {
            (name, method): GRADIENT_METHODS[method](layer_feats, grad.to(dtype))
            for name, layer_feats, grad in zip(layers, feats, grads, strict=True)
            for method in gradient_methods
        }


def _validate(
    methods: Sequence[str], images: torch.Tensor, gt: torch.Tensor | None, classes: torch.Tensor | None
) -> None:
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown or not methods:
        raise SettingsError(f"unknown CAM methods {unknown}; available: {', '.join(ALL_METHODS)}")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if gt is not None and gt.shape[0] != images.shape[0]:
        raise ValueError(f"gt has {gt.shape[0]} images but the batch has {images.shape[0]}")
    if gt is not None and gt.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"gt is {tuple(gt.shape[-2:])} but the images are {tuple(images.shape[-2:])}")
    if classes is not None and (classes.ndim != 2 or classes.shape[0] != images.shape[0]):
        raise ValueError(f"classes must be (B, K) bool with B = {images.shape[0]}, got {tuple(classes.shape)}")


def _requested_sources(
    pred: torch.Tensor,
    gt: torch.Tensor | None,
    num_classes: int,
    target: str,
    roi: tuple[float, float, float, float] | None,
    classes: torch.Tensor | None,
) -> torch.Tensor:
    """Seg-Grad-CAM source codes ``(B, K)``, restricted to the requested (image, class) pairs."""
    source = seg_grad_cam_sources(pred, gt, num_classes, target, roi)
    return _restricted(source, classes)


def _restricted(source: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    """``source`` with the pairs outside ``classes`` (``(B, K)`` bool, None: all) set to TARGET_NONE."""
    if classes is not None:
        source = torch.where(classes.to(source.device), source, torch.zeros_like(source))
    return source


@dataclass
class _Targets:
    """What a batch's maps explain, for either kind of model output.

    ``pred`` and ``source`` go into :class:`CamResult`; ``image``/``cls`` are the ``N`` targeted pairs.
    ``gradient()`` gives the (scores, weights) of :func:`_fill_gradient_maps`, ``forward()`` the per-pixel
    model, target pixels ``(B, K, H, W)`` and score kind of :func:`_fill_forward_maps`; each is built only
    when a method needs it.
    """

    pred: torch.Tensor
    source: torch.Tensor
    image: torch.Tensor
    cls: torch.Tensor
    gradient: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    forward: Callable[[], tuple[nn.Module, torch.Tensor, str]]


def _pixel_targets(
    model: nn.Module, logits: torch.Tensor, low_res: list[torch.Tensor],
    gt: torch.Tensor | None, classes: torch.Tensor | None, settings: CamSettings,
) -> _Targets:
    """Seg-Grad-CAM targets of a segmentation model (``logits`` ``(B, K, H, W)``): the class score summed
    over the target pixels (:func:`~segaudit.cam.targets.seg_grad_cam_pixels`)."""
    pred = logits.detach().argmax(1)
    source = _requested_sources(pred, gt, logits.shape[1], settings.target, settings.roi, classes)
    image, cls = torch.nonzero(source != TARGET_NONE, as_tuple=True)
    pixels = seg_grad_cam_pixels(pred, gt, source, image, cls, settings.roi)  # (N, H, W): targeted pairs only

    def gradient() -> tuple[torch.Tensor, torch.Tensor]:
        low = low_res[0] if len(low_res) == 1 and settings.score == "logits" else None
        if low is not None and is_bilinear_upsampling(low, logits):
            # pulled back through the final upsampling in closed form (segaudit.cam.upsampling)
            return low, bilinear_adjoint(pixels.to(low.dtype), tuple(low.shape[-2:]))
        return target_scores(logits, settings.score), pixels

    def forward() -> tuple[nn.Module, torch.Tensor, str]:
        masks = torch.zeros_like(logits, dtype=torch.bool)
        masks[image, cls] = pixels
        return model, masks, settings.score

    return _Targets(pred, source, image, cls, gradient, forward)


def _class_targets(
    model: nn.Module, images: torch.Tensor, logits: torch.Tensor, gt: torch.Tensor | None,
    classes: torch.Tensor | None, settings: CamSettings,
) -> _Targets:
    """Targets of a classifier (``logits`` ``(B, K)`` presence log-odds).

    The target of class ``c`` is its class score (:func:`~segaudit.cam.targets.classifier_scores`) for the
    classes :func:`~segaudit.cam.targets.classifier_targets` picks. Score-CAM and the guided methods take
    Seg-Grad-CAM targets of a per-pixel output: they get the class scores as a constant image
    (:class:`_ClassScoresAsPixels`) and a one-pixel target, whose sum is the class score itself.
    """
    present = classifier_presence(logits.detach())
    source = _restricted(classifier_targets(present, gt, settings.target), classes)
    targeted = source != TARGET_NONE
    image, cls = torch.nonzero(targeted, as_tuple=True)

    def gradient() -> tuple[torch.Tensor, torch.Tensor]:
        scores = classifier_scores(logits, settings.score)
        return scores, torch.ones(len(image), device=scores.device)

    def forward() -> tuple[nn.Module, torch.Tensor, str]:
        one_pixel = torch.zeros((*targeted.shape, *images.shape[-2:]), dtype=torch.bool, device=images.device)
        one_pixel[..., 0, 0] = targeted.to(images.device)
        return _ClassScoresAsPixels(model, settings.score).train(model.training), one_pixel, "logits"

    return _Targets(present, source, image, cls, gradient, forward)


def _forward(
    model: nn.Module, images: torch.Tensor, settings: CamSettings
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """One forward with every layer captured: (logits, the layers' activations, low-resolution logits)."""
    device_type = images.device.type
    precision = torch.autocast(device_type, dtype=_AMP_DTYPES.get(device_type, torch.bfloat16), enabled=settings.amp)
    with torch.enable_grad(), capture_layers(model, settings.layers) as captured, \
            capture_low_res_logits(model) as low_res, precision:
        logits = model_logits(model(images))
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # targets and argmax in float32; the cast stays in the graph
    for name, outputs in captured.items():
        if len(outputs) != 1:
            raise RuntimeError(f"layer {name!r} ran {len(outputs)} times in one forward; pick a layer that runs once")
    return logits, [captured[name][0] for name in settings.layers], low_res


def _compute(model: nn.Module, images: torch.Tensor, settings: CamSettings, gt: torch.Tensor | None = None,
             classes: torch.Tensor | None = None) -> CamResult:
    """Every method's maps of one micro-batch, for a segmentation model or a classifier alike: one forward,
    the targets of the output's kind (:func:`_pixel_targets` or :func:`_class_targets`), the gradient maps,
    then the forward-only and guided maps."""
    layers, methods = settings.layers, settings.methods
    logits, activations, low_res = _forward(model, images, settings)
    if logits.ndim == 2:  # a classifier: per-image class scores (B, K)
        targets = _class_targets(model, images, logits, gt, classes, settings)
    else:
        targets = _pixel_targets(model, logits, low_res, gt, classes, settings)
    targeted = targets.source != TARGET_NONE
    maps, gradient_methods = _new_gradient_maps(layers, activations, methods, logits.shape[1])
    if gradient_methods:
        scores, weights = targets.gradient()
        _fill_gradient_maps(maps, scores, targets.image, targets.cls, weights, targeted, layers, activations,
                            gradient_methods, settings.class_chunk)
    if any(m in methods for m in (*GRADIENT_FREE_METHODS, *GUIDED_METHODS)):
        per_pixel, masks, score = targets.forward()
        _fill_forward_maps(maps, per_pixel, images, masks, targeted, layers, activations, methods, score,
                           settings.guided_rule, settings.score_cam_channels)
    maps = {key: value for key, value in maps.items() if key[1] in methods}
    return CamResult(
        logits=logits.detach(), pred=targets.pred, maps=maps, target_source=targets.source, layers=layers,
        target=settings.target, score=settings.score, methods=methods,
    )


class _ClassScoresAsPixels(nn.Module):
    """A classifier seen as a segmentation model: ``x -> (B, K, H, W)``, every pixel of class ``c`` holding
    the image's class score (:func:`~segaudit.cam.targets.classifier_scores`) at the input's size."""

    def __init__(self, model: nn.Module, score: str) -> None:
        super().__init__()
        self.model, self.score = model, score

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = classifier_scores(model_logits(self.model(x)), self.score)
        return scores[..., None, None].expand(*scores.shape, *x.shape[-2:])


def _new_gradient_maps(
    layers: tuple[str, ...], activations: list[torch.Tensor], methods: tuple[str, ...], num_classes: int
) -> tuple[dict[tuple[str, str], torch.Tensor], list[str]]:
    """Zero ``(B, K, h, w)`` maps of every gradient method to compute (Guided Grad-CAM needs Grad-CAM)."""
    gradient_methods = [m for m in methods if m in GRADIENT_METHODS]
    if "guided_gradcam" in methods and "gradcam" not in gradient_methods:
        gradient_methods.append("gradcam")  # Guided Grad-CAM multiplies it in
    # maps in float32 at least (half-precision activations are promoted), float64 if the model runs in it
    maps = {
        (name, m): feats.new_zeros((feats.shape[0], num_classes, *feats.shape[-2:]),
                                   dtype=torch.promote_types(feats.dtype, torch.float32))
        for name, feats in zip(layers, activations, strict=True)
        for m in gradient_methods
    }
    return maps, gradient_methods


def _fill_forward_maps(
    maps: dict[tuple[str, str], torch.Tensor],
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    targeted: torch.Tensor,
    layers: tuple[str, ...],
    activations: list[torch.Tensor],
    methods: tuple[str, ...],
    score: str,
    guided_rule: str,
    score_cam_channels: int | None,
) -> None:
    """Add the gradient-free (Eigen-CAM, Score-CAM) and guided maps to ``maps`` (in place); ``model``
    returns per-pixel logits and ``masks`` ``(B, K, H, W)`` are the targets' pixels."""
    for name, feats in zip(layers, activations, strict=True):
        feats = feats.detach().to(torch.promote_types(feats.dtype, torch.float32))
        if "eigencam" in methods:  # one class-agnostic map per image, given to each targeted class
            maps[(name, "eigencam")] = eigen_cam(feats)[:, None] * targeted[..., None, None]
        if "scorecam" in methods:
            maps[(name, "scorecam")] = score_cam(
                lambda x: model_logits(model(x)), images, feats, masks, targeted,
                channels=score_cam_channels, score=score,
            )
    if any(m in GUIDED_METHODS for m in methods):
        _add_guided_maps(model, images, masks, targeted, maps, layers, methods, score, guided_rule)


def _fill_gradient_maps(
    maps: dict[tuple[str, str], torch.Tensor],
    scores: torch.Tensor,
    image: torch.Tensor,
    cls: torch.Tensor,
    weights: torch.Tensor,
    targeted: torch.Tensor,
    layers: tuple[str, ...],
    activations: list[torch.Tensor],
    gradient_methods: list[str],
    class_chunk: int,
) -> None:
    """Write every gradient method's map of each targeted (image, class) into ``maps`` (in place).

    ``scores`` ``(B, K, ...)``; the target of the pair ``(image[n], cls[n])`` is
    ``sum(weights[n] * scores[image[n], cls[n]])`` (``weights`` ``(N, ...)``: its target pixels, or their
    pull-back through a final upsampling); ``targeted`` ``(B, K)`` marks the ``N`` pairs.
    """
    # slot j of image b = its j-th targeted class: one backward per slot serves a different class in each
    # image, so a batch costs max_b(classes of b) backwards, not the number of distinct classes it holds
    slot_of_pair = (targeted.cumsum(1) - 1)[image, cls]
    n_slots = int(slot_of_pair.max()) + 1 if gradient_methods and len(image) else 0
    picks = [slot_of_pair == j for j in range(n_slots)]
    # d y_slot / d scores (the slot's class channel of each image, weighted by its target pixels), handed to
    # autograd as cotangents: no gather whose backward rebuilds a zero tensor, each built only when its
    # backward runs
    dtype = maps[(layers[0], gradient_methods[0])].dtype if n_slots else None
    for start in range(0, n_slots, class_chunk):  # at most class_chunk slots in one vmapped backward
        chunk = picks[start : start + class_chunk]
        cotangents = (_slot_cotangent(scores, image[pick], cls[pick], weights[pick]) for pick in chunk)
        by_slot = gradient_maps_by_slot(scores, cotangents, layers, activations, gradient_methods, dtype)
        for pick, cams in zip(chunk, by_slot, strict=True):
            for key, cam in cams.items():
                maps[key][image[pick], cls[pick]] = cam[image[pick]]


def _add_guided_maps(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    targeted: torch.Tensor,
    maps: dict[tuple[str, str], torch.Tensor],
    layers: tuple[str, ...],
    methods: tuple[str, ...],
    score: str,
    rule: str,
) -> None:
    """Guided Backprop at the input and Guided Grad-CAM at each layer, as 2-D maps (sum of |.| over RGB,
    see :func:`segaudit.cam.guided.attribution_map`) at input resolution."""
    guided = guided_backprop(model, images, masks, targeted, score=score, rule=rule)
    if "guided_backprop" in methods:
        maps[(INPUT_LAYER, "guided_backprop")] = attribution_map(guided)
    if "guided_gradcam" in methods:
        for name in layers:
            maps[(name, "guided_gradcam")] = attribution_map(guided_grad_cam(guided, maps[(name, "gradcam")]))


#: Autocast dtype per device for ``amp=True``: float16 on CUDA (tensor cores), bfloat16 elsewhere.
_AMP_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    gt: torch.Tensor | None = None,
    methods: Sequence[str] = METHODS,
    *,
    classes: torch.Tensor | None = None,
    **settings: object,
) -> CamResult:
    """CAM maps of every method at every layer, for every class in each image's prediction or label.

    The keyword form of :func:`compute_cams_with`: ``layers``, ``methods`` and the keyword ``settings``
    (``target``, ``score``, ``roi``, ``micro_batch``, ``class_chunk``, ``guided_rule``,
    ``score_cam_channels``, ``amp``; see :class:`CamSettings`) make its :class:`CamSettings`.

    Parameters
    ----------
    model : nn.Module
        Eval mode; parameters may be frozen (nothing here needs their gradients). Returns per-pixel
        logits ``(B, K, H, W)`` (or torchvision's ``{"out": ...}``), or, for a classifier, per-image
        presence log-odds ``(B, K)``: then each class's target is its class score, and ``target`` only
        chooses which classes are explained (``"roi"`` raises ValueError; see :mod:`segaudit.cam.targets`).
    images : torch.Tensor
        ``(B, 3, H, W)`` normalised input.
    layers : str or sequence of str
        Dotted names of feature modules; several make a layer sweep from the same forward.
    gt : torch.Tensor, optional
        ``(B, H, W)`` labels in model classes (255 void).
    methods : sequence of str
        From :data:`ALL_METHODS`.
    classes : torch.Tensor, optional
        ``(B, K)`` bool: explain only these (image, class) pairs (default: every class present).

    Returns
    -------
    CamResult
    """
    return compute_cams_with(model, images, CamSettings(layers, methods, **settings), gt, classes)


def compute_cams_with(
    model: nn.Module,
    images: torch.Tensor,
    settings: CamSettings,
    gt: torch.Tensor | None = None,
    classes: torch.Tensor | None = None,
) -> CamResult:
    """CAM maps of ``settings.methods`` at ``settings.layers`` for a batch, in micro-batches of at most
    ``settings.micro_batch`` images.

    Out-of-memory errors are not handled here: they propagate to the caller, whose layer owns the policy
    (an audit halves its micro-batches, :mod:`segaudit.auditors.failures`).

    Parameters
    ----------
    model, images, gt, classes
        As for :func:`compute_cams`.
    settings : CamSettings

    Returns
    -------
    CamResult
    """
    methods = settings.methods
    _validate(methods, images, gt, classes)
    others = tuple(m for m in methods if m not in TRACE_METHODS)
    if not others:  # fixations only: no CAM pass
        return _with_fixations(None, model, images, settings, gt, classes)
    size = settings.micro_batch or len(images)
    cam_settings = replace(settings, methods=others)
    parts = [
        _compute(model, images[i : i + size], cam_settings, None if gt is None else gt[i : i + size],
                 None if classes is None else classes[i : i + size])
        for i in range(0, len(images), size)
    ]
    result = CamResult.concat(parts)
    if len(others) < len(methods):
        result = _with_fixations(result, model, images, settings, gt, classes)
    return result


def _with_fixations(
    result: CamResult | None,
    model: nn.Module,
    images: torch.Tensor,
    settings: CamSettings,
    gt: torch.Tensor | None,
    classes: torch.Tensor | None,
) -> CamResult:
    """Add CNN-Fixations (:func:`segaudit.cam.fixations.cnn_fixations`) as the map ``(input, fixations)``:
    the fixation density of every targeted class the model predicts (a class only labelled has no predicted
    pixel to start from: zero density). Segmentation models only."""
    from segaudit.cam.fixations import cnn_fixations

    with torch.no_grad():
        if result is None:
            logits = model_logits(model(images))
            if logits.ndim != 4:
                raise ValueError("fixations trace segmentation models (per-pixel logits) only")
            pred = logits.argmax(1)
            source = _requested_sources(pred, gt, logits.shape[1], settings.target, settings.roi, classes)
            result = CamResult(logits=logits.detach(), pred=pred, maps={}, target_source=source,
                               layers=settings.layers, target=settings.target, score=settings.score,
                               methods=settings.methods)
        if result.logits.ndim != 4:
            raise ValueError("fixations trace segmentation models (per-pixel logits) only")
        predicted = torch.zeros_like(result.target_source, dtype=torch.bool)
        predicted.scatter_(1, result.pred.flatten(1), True)
        traced = cnn_fixations(model, images, (result.target_source != TARGET_NONE) & predicted)
    result.maps[(INPUT_LAYER, "fixations")] = traced.density
    result.fixation_points, result.fixation_weights = traced.points, traced.weights
    result.methods = settings.methods
    return result
