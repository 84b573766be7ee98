"""CAM-prompted segmentation: turn a class activation map into prompts for a promptable segmenter, segment,
and score the segment against the label.

The pipeline (the seed's "CAM points as prompts"), per (image, class, CAM method) map ``L`` over the valid
pixels ``V`` of the model's square input frame::

    foreground point   p+ = weighted centroid of L above 0.6 x max L     (point="centroid")
                         or argmax L                                     (point="max")
    background point   p- = argmin L                                     (prompts="fg+bg" only)
    region             R  = {L~ >= t} & V,   L~ = (L - min_V L) / (max_V L - min_V L),   t = 0.5
    box                the bounding box of R (SAM, optional)
    segment            S  = segmenter(image, p+, [p-], R)
    scores             IoU(S, G) = |S & G & V| / |(S | G) & V|,   Dice(S, G) = 2 |S & G & V| / (|S & V| + |G & V|)

The points are those of :mod:`segaudit.metrics.scores` (:func:`~segaudit.metrics.scores.weighted_centroid`,
:func:`~segaudit.metrics.scores.max_point`, :func:`~segaudit.metrics.scores.background_point`), computed over the valid
pixels as there, so ``point_hit`` here equals ``centroid_hit`` / ``max_point_hit`` of the scores table; ``R``
is the region whose IoU the scores table reports as ``iou_at_0_5``. Two promptable segmenters implement
:class:`Segmenter`:

* :class:`GrabCutSegmenter` (default, offline, no weights): OpenCV's GrabCut (Rother, Kolmogorov & Blake
  2004, "GrabCut: Interactive foreground extraction using iterated graph cuts", ACM SIGGRAPH / ToG 23(3)),
  initialised from the prompts instead of a user's rectangle.
* :class:`SamSegmenter`: Segment Anything (Kirillov et al. 2023, "Segment Anything", ICCV), the
  ``segment-anything`` package's ``SamPredictor`` with point prompts (and optionally the box of ``R``), for
  users who have a SAM checkpoint (``pip install "segaudit[sam]"``; weights are not downloaded by segaudit).

NaN rules (as in :mod:`segaudit.metrics.scores`): ``point_hit`` / ``point_distance`` are NaN for an empty label or
a map with no positive value. No segment is made (``iou_with_gt``, ``dice_with_gt`` NaN, ``mask_pixels``
null) for a map that cannot prompt: no positive value or constant over the valid pixels (then it has no
region and no background point). ``iou_with_gt`` / ``dice_with_gt`` are also NaN for an empty label (a
class only the model predicts): the segment is made and counted (``mask_pixels``), there is nothing to
score it against. A segmenter that fails on an image becomes a row of the errors table (stage
``"prompt"``) and NaN scores; the audit goes on.

Coordinates are ``(row, col)`` pixel indices of the ``S x S`` frame, like the rest of segaudit; SAM's
``(x, y)`` order is produced only inside :class:`SamSegmenter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from segaudit.data.preprocess import Letterbox
from segaudit.metrics.scores import (
    CENTROID_CUTOFF,
    background_point,
    max_point,
    point_hit_and_distance,
    segmentation_dice,
    segmentation_iou,
    weighted_centroid,
)

__all__ = [
    "POINT_KINDS",
    "PROMPT_KINDS",
    "REGION_THRESHOLD",
    "SAM_MODEL_TYPES",
    "Prompt",
    "MapPrompts",
    "map_prompts",
    "thresholded_region",
    "Segmenter",
    "GrabCutSegmenter",
    "SamSegmenter",
    "PromptRows",
    "prompt_rows",
    "inside_from_boxes",
]

#: How the foreground point is chosen: the weighted centroid of the map above ``CENTROID_CUTOFF`` x max, or
#: the map's maximum.
POINT_KINDS: tuple[str, ...] = ("centroid", "max")
#: Which prompts the segmenter gets: the foreground point (and region), or also the background point.
PROMPT_KINDS: tuple[str, ...] = ("fg", "fg+bg")
#: Threshold of the min-max normalised map that makes the region prompt (as the scores table's ``iou_at_0_5``).
REGION_THRESHOLD = 0.5
#: Model types of ``segment_anything.sam_model_registry``.
SAM_MODEL_TYPES: tuple[str, ...] = ("default", "vit_h", "vit_l", "vit_b")


# --- Prompts from maps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """The prompts for one map, in the ``S x S`` frame.

    Attributes
    ----------
    foreground : (float, float)
        ``(row, col)`` of the foreground point (sub-pixel for the weighted centroid).
    background : (float, float) or None
        ``(row, col)`` of the background point; None for foreground-only prompting.
    region : np.ndarray
        ``(S, S)`` bool, the thresholded map.
    box : (int, int, int, int) or None
        ``(top, left, bottom, right)`` of ``region``, inclusive pixel indices; None if the region is empty.
    """

    foreground: tuple[float, float]
    background: tuple[float, float] | None
    region: np.ndarray
    box: tuple[int, int, int, int] | None


@dataclass
class MapPrompts:
    """Prompts of a batch of maps (batched torch; :meth:`prompt` gives one map's as a :class:`Prompt`).

    Attributes
    ----------
    foreground : torch.Tensor
        ``(N, 2)`` float64 ``(row, col)`` of the foreground point.
    foreground_ok : torch.Tensor
        ``(N,)`` bool, the map has a positive value (the point is defined, as in :mod:`segaudit.metrics.scores`).
    background : torch.Tensor
        ``(N, 2)`` float64 ``(row, col)`` of the map's minimum.
    region : torch.Tensor
        ``(N, S, S)`` bool, ``{L~ >= threshold} & valid``; all False where the map is constant.
    boxes : torch.Tensor
        ``(N, 4)`` int64 ``(top, left, bottom, right)`` of ``region``, inclusive; -1 where it is empty.
    defined : torch.Tensor
        ``(N,)`` bool, the map can prompt a segmenter: it has a positive value and is not constant over the
        valid pixels (the definedness of :func:`~segaudit.metrics.scores.background_point`).
    """

    foreground: torch.Tensor
    foreground_ok: torch.Tensor
    background: torch.Tensor
    region: torch.Tensor
    boxes: torch.Tensor
    defined: torch.Tensor

    def prompt(self, i: int, with_background: bool) -> Prompt:
        """Map ``i``'s prompts; the background point only if ``with_background``."""
        box = tuple(int(v) for v in self.boxes[i].tolist())
        return Prompt(
            foreground=(float(self.foreground[i, 0]), float(self.foreground[i, 1])),
            background=(float(self.background[i, 0]), float(self.background[i, 1])) if with_background else None,
            region=self.region[i].cpu().numpy(),
            box=None if box[0] < 0 else box,  # type: ignore[arg-type]
        )


def thresholded_region(
    maps: torch.Tensor, valid: torch.Tensor, threshold: float = REGION_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """The map's region above ``threshold`` after min-max normalisation over the valid pixels::

        R = {L~ >= t} & V,   L~ = (L - min_V L) / (max_V L - min_V L)

    the region whose IoU :func:`segaudit.metrics.scores.iou_and_dice_at` scores (Grad-CAM's weakly-supervised
    localisation, Selvaraju et al. 2017).

    Returns
    -------
    region : ``(N, H, W)`` bool, all False for a map constant over the valid pixels.
    varies : ``(N,)`` bool, the map is not constant over the valid pixels.
    """
    flat = maps.flatten(1)
    ok = valid.flatten(1)
    low = torch.where(ok, flat, torch.full_like(flat, torch.inf)).min(1).values
    high = torch.where(ok, flat, torch.full_like(flat, -torch.inf)).max(1).values
    span = high - low
    varies = span > 0
    norm = (maps - low[:, None, None]) / span.clamp(min=1e-30)[:, None, None]
    region = (norm >= threshold) & valid & varies[:, None, None]
    return region, varies


def _boxes(region: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` int64 inclusive ``(top, left, bottom, right)`` of each region; -1 for an empty one."""
    n, height, width = region.shape
    rows_any, cols_any = region.any(2), region.any(1)
    r = torch.arange(height, device=region.device)
    c = torch.arange(width, device=region.device)
    big = torch.iinfo(torch.int64).max
    top = torch.where(rows_any, r, torch.full_like(r, big)).min(1).values
    bottom = torch.where(rows_any, r, torch.full_like(r, -1)).max(1).values
    left = torch.where(cols_any, c, torch.full_like(c, big)).min(1).values
    right = torch.where(cols_any, c, torch.full_like(c, -1)).max(1).values
    boxes = torch.stack([top, left, bottom, right], 1)
    return torch.where(rows_any.any(1)[:, None], boxes, torch.full_like(boxes, -1))


def map_prompts(
    maps: torch.Tensor,
    valid: torch.Tensor,
    point: str = "centroid",
    threshold: float = REGION_THRESHOLD,
    cutoff: float = CENTROID_CUTOFF,
) -> MapPrompts:
    """Prompts from a batch of maps.

    Parameters
    ----------
    maps : torch.Tensor
        ``(N, S, S)`` float, raw CAMs at the input frame's resolution.
    valid : torch.Tensor
        ``(N, S, S)`` bool, pixels the points may fall on (False = void or letterbox padding).
    point : str
        ``"centroid"`` (:func:`~segaudit.metrics.scores.weighted_centroid` with ``cutoff``) or ``"max"``
        (:func:`~segaudit.metrics.scores.max_point`).
    threshold : float
        Threshold of the normalised map for the region prompt (:func:`thresholded_region`).
    cutoff : float
        Weighted-centroid cutoff, a share of the map's maximum.
    """
    if maps.dim() != 3 or valid.shape != maps.shape or valid.dtype != torch.bool:
        raise ValueError(f"expected maps (N, S, S) and bool valid of that shape, got {tuple(maps.shape)}, "
                         f"{tuple(valid.shape)} {valid.dtype}")
    if point not in POINT_KINDS:
        raise ValueError(f"point must be one of {POINT_KINDS}, got {point!r}")
    if point == "centroid":
        fg, fg_ok = weighted_centroid(maps, valid, cutoff)
    else:
        fg, fg_ok = max_point(maps, valid)
    bg, bg_ok = background_point(maps, valid)
    region, _ = thresholded_region(maps, valid, threshold)
    return MapPrompts(fg, fg_ok, bg, region, _boxes(region), fg_ok & bg_ok)


# --- Segmenters -------------------------------------------------------------------------------------------


@runtime_checkable
class Segmenter(Protocol):
    """A promptable segmenter: prompts in, binary masks out.

    ``segment(image, prompts, outside)`` takes one image ``(S, S, 3)`` uint8 RGB, the prompts of any
    number of maps of it (so a model with an expensive image embedding computes it once), and optionally
    ``outside`` ``(S, S)`` bool, pixels that are not part of the image (letterbox padding). It returns
    ``(P, S, S)`` bool, one mask per prompt, False on ``outside``. ``name`` goes into the table.
    """

    name: str

    def segment(
        self, image: np.ndarray, prompts: Sequence[Prompt], outside: np.ndarray | None = None
    ) -> np.ndarray: ...


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """Pixels within ``radius`` of ``centre`` (Euclidean, pixel centres), plus the pixel nearest to it."""
    rows = np.arange(shape[0])[:, None]
    cols = np.arange(shape[1])[None, :]
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    r = min(max(int(round(centre[0])), 0), shape[0] - 1)
    c = min(max(int(round(centre[1])), 0), shape[1] - 1)
    disc[r, c] = True
    return disc


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a declared dependency; only a broken install lacks it
        raise ImportError(
            "GrabCut prompting needs OpenCV: pip install opencv-python-headless (a segaudit dependency)"
        ) from exc
    return cv2


@dataclass
class GrabCutSegmenter:
    """GrabCut (Rother, Kolmogorov & Blake 2004, "GrabCut: Interactive foreground extraction using iterated
    graph cuts", ACM SIGGRAPH; ``cv2.grabCut``) initialised from CAM prompts.

    GrabCut labels each pixel foreground or background by an s-t min cut of the energy::

        E(a, k, theta, z) = sum_p D(a_p, k_p, theta, z_p) + gamma sum_{(p,q) in C} [a_p != a_q] exp(-beta |z_p - z_q|^2)

    ``D`` the negative log-likelihood of pixel colour ``z_p`` under the foreground or background Gaussian
    mixture (5 components each in OpenCV), re-estimated from the current labelling at every iteration;
    pixels given as *sure* keep their label, the others (*probable*) may change. Instead of the paper's user
    rectangle, the initial labelling is built from the prompts, each written over the previous one:

    1. every pixel probable background;
    2. the thresholded map ``R`` (the prompt's region) probable foreground;
    3. a band of ``border`` pixels along the square's edges sure background (0 = none: objects often touch
       the image edge);
    4. the background point, a disc of radius ``point_radius``, sure background (``"fg+bg"`` prompts only);
    5. the foreground point, a disc of radius ``point_radius``, sure foreground (wins over 3 and 4);
    6. ``outside`` (letterbox padding, not part of the image) sure background (wins over everything).

    The result is every pixel GrabCut ends with as (sure or probable) foreground; no post-processing (no
    connected-component filtering). If the initial labelling has no background pixel or no foreground
    pixel GrabCut cannot fit its colour models and the initial foreground is returned as is.

    Parameters
    ----------
    iterations : int
        GrabCut iterations (default 5, as OpenCV's samples; the paper iterates to convergence, which takes a
        few iterations).
    point_radius : float
        Radius in pixels of the sure discs around the points (default 3: a click, small enough to stay
        inside objects of ~20 px and more; the pixel nearest the point is always included).
    border : int
        Width in pixels of the sure-background band along the edges of the square (default 0).
    seed : int
        Seed of OpenCV's random generator, reset before every call (GrabCut's k-means initialisation of the
        mixtures is random), so a prompt's mask does not depend on what was segmented before it.
    """

    iterations: int = 5
    point_radius: float = 3.0
    border: int = 0
    seed: int = 0
    name: str = field(default="grabcut", init=False)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.point_radius < 0 or self.border < 0:
            raise ValueError(
                f"expected iterations >= 1, point_radius >= 0, border >= 0; got {self.iterations}, "
                f"{self.point_radius}, {self.border}"
            )

    def initial_labels(self, prompt: Prompt, shape: tuple[int, int], outside: np.ndarray | None = None) -> np.ndarray:
        """The ``(S, S)`` uint8 GrabCut initialisation (``cv2.GC_BGD`` 0, ``GC_FGD`` 1, ``GC_PR_BGD`` 2,
        ``GC_PR_FGD`` 3) described in the class docstring."""
        bgd, fgd, pr_bgd, pr_fgd = 0, 1, 2, 3  # cv2.GC_* (fixed by OpenCV's API)
        labels = np.full(shape, pr_bgd, dtype=np.uint8)
        labels[prompt.region] = pr_fgd
        if self.border > 0:
            b = self.border
            labels[:b, :] = labels[-b:, :] = labels[:, :b] = labels[:, -b:] = bgd
        if prompt.background is not None:
            labels[_disc(shape, prompt.background, self.point_radius)] = bgd
        labels[_disc(shape, prompt.foreground, self.point_radius)] = fgd
        if outside is not None:
            labels[outside] = bgd
        return labels

    def segment_one(self, image: np.ndarray, prompt: Prompt, outside: np.ndarray | None = None) -> np.ndarray:
        """``(S, S)`` bool mask of one prompt."""
        cv2 = _import_cv2()
        labels = self.initial_labels(prompt, image.shape[:2], outside)
        is_fg = (labels == 1) | (labels == 3)
        if is_fg.all() or not is_fg.any():
            return is_fg
        cv2.setRNGSeed(self.seed)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        # OpenCV takes BGR; GrabCut's colour models are symmetric in the channels, but keep the convention
        bgr = np.ascontiguousarray(image[..., ::-1])
        cv2.grabCut(bgr, labels, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        return (labels == 1) | (labels == 3)

    def segment(self, image: np.ndarray, prompts: Sequence[Prompt], outside: np.ndarray | None = None) -> np.ndarray:
        """``(P, S, S)`` bool, one GrabCut per prompt (see :class:`Segmenter`)."""
        _check_image(image)
        masks = np.zeros((len(prompts), *image.shape[:2]), dtype=bool)
        for i, prompt in enumerate(prompts):
            masks[i] = self.segment_one(image, prompt, outside)
        return masks


class SamSegmenter:
    """Segment Anything (Kirillov et al. 2023, "Segment Anything", ICCV; the ``segment-anything`` package)
    prompted with CAM points.

    Per image, ``SamPredictor.set_image`` computes the image embedding once (it is reused while the same
    image comes again, e.g. for the next CAM method); per prompt, ``SamPredictor.predict`` gets::

        point_coords = [[col+, row+]] (+ [[col-, row-]] with "fg+bg")    float32, SAM's (x, y) order
        point_labels = [1] (+ [0])                                       int64, 1 = foreground, 0 = background
        box          = [left, top, right, bottom] of the region R        (use_box=True only; None otherwise)
        multimask_output = one point and no box

    With a single point SAM is asked for its three ambiguity-aware masks and the one with the highest
    predicted IoU is kept, as the SAM paper and its predictor's documentation advise for one click; with
    more prompts it returns one mask. Pixel indices are passed as they are: SAM's prompt encoder adds 0.5
    to reach pixel centres. The region itself is not passed as ``mask_input``: SAM expects there its own
    low-resolution logits from a previous prediction, not a binary map. Masks are cleared on ``outside``.

    Parameters
    ----------
    checkpoint : str or path, optional
        A SAM checkpoint file (``sam_vit_h_4b8939.pth`` etc.); segaudit never downloads one.
    model_type : str
        Key of ``segment_anything.sam_model_registry``: ``"vit_h"`` (default), ``"vit_l"``, ``"vit_b"``.
    device : str
        Torch device for SAM.
    use_box : bool
        Also prompt with the box of the thresholded map (default False: points only, as the seed did).
    predictor : object, optional
        An object with ``set_image(image, image_format)`` and ``predict(point_coords=, point_labels=, box=,
        multimask_output=)`` returning ``(masks (C, S, S), scores (C,), logits)``, used instead of loading
        SAM from ``checkpoint`` (an already built ``SamPredictor``, or a stand-in in tests).
    """

    name = "sam"

    def __init__(
        self,
        checkpoint: str | None = None,
        model_type: str = "vit_h",
        *,
        device: str = "cpu",
        use_box: bool = False,
        predictor: Any | None = None,
    ) -> None:
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"model_type must be one of {SAM_MODEL_TYPES}, got {model_type!r}")
        if predictor is None:
            if checkpoint is None:
                raise ValueError("SamSegmenter needs a SAM checkpoint file (or a predictor)")
            predictor = _load_sam_predictor(str(checkpoint), model_type, device)
        self.predictor = predictor
        self.use_box = use_box
        self._image: np.ndarray | None = None

    def _set_image(self, image: np.ndarray) -> None:
        if self._image is not None and self._image.shape == image.shape and np.array_equal(self._image, image):
            return
        self.predictor.set_image(image, image_format="RGB")
        self._image = image.copy()

    def prompt_arrays(self, prompt: Prompt) -> dict[str, Any]:
        """The keyword arguments of ``SamPredictor.predict`` for one prompt."""
        points = [[prompt.foreground[1], prompt.foreground[0]]]
        labels = [1]
        if prompt.background is not None:
            points.append([prompt.background[1], prompt.background[0]])
            labels.append(0)
        box = None
        if self.use_box and prompt.box is not None:
            top, left, bottom, right = prompt.box
            box = np.array([left, top, right, bottom], dtype=np.float32)
        return {
            "point_coords": np.array(points, dtype=np.float32),
            "point_labels": np.array(labels, dtype=np.int64),
            "box": box,
            "multimask_output": len(labels) == 1 and box is None,
        }

    def segment(self, image: np.ndarray, prompts: Sequence[Prompt], outside: np.ndarray | None = None) -> np.ndarray:
        """``(P, S, S)`` bool, SAM's mask for each prompt (see :class:`Segmenter`)."""
        _check_image(image)
        masks = np.zeros((len(prompts), *image.shape[:2]), dtype=bool)
        if not prompts:
            return masks
        self._set_image(image)
        for i, prompt in enumerate(prompts):
            out, scores, _ = self.predictor.predict(**self.prompt_arrays(prompt))
            out, scores = np.asarray(out), np.asarray(scores).reshape(-1)
            if out.ndim != 3 or out.shape[1:] != image.shape[:2] or len(scores) != len(out):
                raise ValueError(f"SAM returned masks {out.shape} and scores {scores.shape} for an image "
                                 f"{image.shape[:2]}")
            masks[i] = out[int(np.argmax(scores))] > 0
        if outside is not None:
            masks &= ~outside
        return masks


def _load_sam_predictor(checkpoint: str, model_type: str, device: str) -> Any:
    try:
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError as exc:
        raise ImportError(
            "SAM prompting needs the segment-anything package: pip install \"segaudit[sam]\" "
            "(or pip install segment-anything), and a checkpoint file from its model zoo"
        ) from exc
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {checkpoint}")
    sam = sam_model_registry[model_type](checkpoint=checkpoint)
    sam.to(device=device)
    sam.eval()
    return SamPredictor(sam)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (S, S, 3) uint8 RGB image, got {image.shape} {image.dtype}")


# --- The prompts table's rows -----------------------------------------------------------------------------


@dataclass
class PromptRows:
    """Rows of the ``prompts`` table (:data:`segaudit.runs.tables.SCHEMAS`) and of the errors table."""

    prompts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def inside_from_boxes(boxes: Sequence[Letterbox]) -> torch.Tensor:
    """``(B, S, S)`` bool, the pixels of each letterboxed image proper (False on the padding)."""
    if not boxes:
        raise ValueError("expected at least one Letterbox")
    size = boxes[0].size
    inside = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for b, box in enumerate(boxes):
        inside[b, box.top : box.top + box.new_height, box.left : box.left + box.new_width] = True
    return inside


def _as_numpy_views(views: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(views, torch.Tensor):
        views = views.detach().cpu().numpy()
    return np.ascontiguousarray(views)


def _checked(masks: Any, count: int, side: tuple[int, int]) -> np.ndarray:
    """A segmenter's output as ``(count, *side)`` bool, or ValueError."""
    masks = np.asarray(masks)
    if masks.shape != (count, *side):
        raise ValueError(f"the segmenter returned masks {masks.shape} for {count} prompts on a {side} image")
    return masks.astype(bool, copy=False)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def prompt_rows(
    views: np.ndarray | torch.Tensor,
    maps: torch.Tensor,
    pairs: torch.Tensor,
    gt_masks: torch.Tensor,
    valid: torch.Tensor,
    *,
    image_ids: Sequence[str],
    method: str,
    layer: str,
    segmenter: Segmenter | None = None,
    points: Sequence[str] = POINT_KINDS,
    prompts: Sequence[str] = PROMPT_KINDS,
    threshold: float = REGION_THRESHOLD,
    cutoff: float = CENTROID_CUTOFF,
    inside: torch.Tensor | None = None,
    file_names: Sequence[str] | None = None,
) -> PromptRows:
    """Segment every map of a batch from its CAM prompts and score the segments against the labels.

    One row per map x ``points`` x ``prompts``, in that order, with the columns of the ``prompts`` table:
    ``image_id, class_id, method, layer, segmenter, point, prompts, point_hit, point_distance,
    iou_with_gt, dice_with_gt, mask_pixels`` (see the module docstring for the formulas and NaN rules;
    ``mask_pixels`` = ``|S & V|``, the segment's valid pixels).

    Parameters
    ----------
    views : np.ndarray or torch.Tensor
        ``(B, S, S, 3)`` uint8 RGB, the letterboxed images (``PreparedBatch.views``).
    maps : torch.Tensor
        ``(N, S, S)`` float, the CAMs upsampled to the input frame, one per (image, class) pair.
    pairs : torch.Tensor
        ``(N, 2)`` int64 ``(image index b, class id k)`` of each map.
    gt_masks, valid : torch.Tensor
        ``(N, S, S)`` bool, the label of class ``k`` in image ``b`` and the non-void pixels.
    image_ids : sequence of str
        ``(B,)`` ids of the images.
    method, layer : str
        The CAM method and layer of the maps (written into the rows).
    segmenter : Segmenter, optional
        Default :class:`GrabCutSegmenter` with its defaults.
    points, prompts : sequence of str
        Subsets of :data:`POINT_KINDS` and :data:`PROMPT_KINDS`.
    threshold, cutoff : float
        Region threshold (:func:`thresholded_region`) and weighted-centroid cutoff.
    inside : torch.Tensor, optional
        ``(B, S, S)`` bool, pixels of the image proper (:func:`inside_from_boxes`); the rest (letterbox
        padding) is given to the segmenter as ``outside``. None: no padding.
    file_names : sequence of str, optional
        ``(B,)`` file names, for error rows.

    Returns
    -------
    PromptRows
        The rows, and one error row (stage ``"prompt"``) per image on which the segmenter failed.
    """
    views = _as_numpy_views(views)
    n = len(maps)
    if views.ndim != 4 or views.shape[3] != 3 or views.dtype != np.uint8:
        raise ValueError(f"expected views (B, S, S, 3) uint8, got {views.shape} {views.dtype}")
    side = views.shape[1:3]
    if maps.dim() != 3 or tuple(maps.shape[1:]) != side:
        raise ValueError(f"expected maps (N, {side[0]}, {side[1]}) to match the views, got {tuple(maps.shape)}")
    if pairs.shape != (n, 2) or gt_masks.shape != maps.shape or valid.shape != maps.shape:
        raise ValueError(f"expected pairs ({n}, 2) and gt_masks, valid {tuple(maps.shape)}; got "
                         f"{tuple(pairs.shape)}, {tuple(gt_masks.shape)}, {tuple(valid.shape)}")
    if gt_masks.dtype != torch.bool or valid.dtype != torch.bool:
        raise ValueError(f"expected bool gt_masks and valid, got {gt_masks.dtype} and {valid.dtype}")
    if len(image_ids) != len(views) or (file_names is not None and len(file_names) != len(views)):
        raise ValueError(f"expected {len(views)} image ids (and file names), one per view")
    if inside is not None and tuple(inside.shape) != (len(views), *side):
        raise ValueError(f"expected inside ({len(views)}, {side[0]}, {side[1]}), got {tuple(inside.shape)}")
    bad = sorted(set(points) - set(POINT_KINDS)) + sorted(set(prompts) - set(PROMPT_KINDS))
    if bad or not points or not prompts:
        raise ValueError(f"points must be from {POINT_KINDS} and prompts from {PROMPT_KINDS}; got {bad or 'none'}")
    segmenter = segmenter if segmenter is not None else GrabCutSegmenter()

    maps, gt_masks, valid = maps.detach().cpu(), gt_masks.cpu(), valid.cpu()
    b_idx, k_idx = pairs[:, 0].cpu().tolist(), pairs[:, 1].cpu().tolist()
    truth_empty = ~(gt_masks & valid).flatten(1).any(1)
    combos = [(p, q) for p in points for q in prompts]
    per_point = {p: map_prompts(maps, valid, p, threshold, cutoff) for p in points}
    hits = {p: point_hit_and_distance(mp.foreground, mp.foreground_ok, gt_masks, valid) for p, mp in per_point.items()}
    segments = {c: torch.zeros(maps.shape, dtype=torch.bool) for c in combos}
    made = {c: torch.zeros(n, dtype=torch.bool) for c in combos}
    out = PromptRows()

    by_image: dict[int, list[int]] = {}
    for i, b in enumerate(b_idx):
        by_image.setdefault(b, []).append(i)
    for b, rows_of_b in by_image.items():
        jobs = [(i, c) for i in rows_of_b for c in combos if bool(per_point[c[0]].defined[i])]
        if not jobs:
            continue
        asked = [per_point[p].prompt(i, with_background=(q == "fg+bg")) for i, (p, q) in jobs]
        outside = None if inside is None else ~inside[b].cpu().numpy()
        try:
            masks = _checked(segmenter.segment(views[b], asked, outside), len(asked), side)
            results: list[np.ndarray | None] = list(masks)
            failures: list[str] = []
        except Exception:  # noqa: BLE001 - retried prompt by prompt, failures become an error row
            results, failures = [], []
            for prompt in asked:
                try:
                    results.append(_checked(segmenter.segment(views[b], [prompt], outside), 1, side)[0])
                except Exception as exc:  # noqa: BLE001 - one failing prompt must not stop the others
                    results.append(None)
                    failures.append(_reason(exc))
        if failures:
            out.errors.append({
                "image_id": image_ids[b],
                "file_name": "" if file_names is None else file_names[b],
                "stage": "prompt",
                "reason": f"{segmenter.name} failed on {len(failures)} of {len(asked)} prompts: {failures[0]}",
            })
        for (i, c), mask in zip(jobs, results, strict=True):
            if mask is not None:
                segments[c][i] = torch.from_numpy(mask)
                made[c][i] = True

    nan = torch.full((n,), float("nan"), dtype=torch.float64)
    scored = {}
    for c in combos:
        undefined = ~made[c] | truth_empty
        iou = torch.where(undefined, nan, segmentation_iou(segments[c], gt_masks, valid))
        dice = torch.where(undefined, nan, segmentation_dice(segments[c], gt_masks, valid))
        pixels = (segments[c] & valid).flatten(1).sum(1)
        scored[c] = (iou.tolist(), dice.tolist(), pixels.tolist(), made[c].tolist())
    hit_lists = {p: (h.tolist(), d.tolist()) for p, (h, d) in hits.items()}
    for i in range(n):
        for p, q in combos:
            iou, dice, pixels, ok = scored[(p, q)]
            out.prompts.append({
                "image_id": image_ids[b_idx[i]],
                "class_id": int(k_idx[i]),
                "method": method,
                "layer": layer,
                "segmenter": segmenter.name,
                "point": p,
                "prompts": q,
                "point_hit": hit_lists[p][0][i],
                "point_distance": hit_lists[p][1][i],
                "iou_with_gt": iou[i],
                "dice_with_gt": dice[i],
                "mask_pixels": int(pixels[i]) if ok[i] else None,
            })
    return out
