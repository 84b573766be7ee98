"""Promptable segmenters: prompts from a class activation map (:mod:`segaudit.metrics.cam_prompts`) in,
binary masks out (:class:`Segmenter`).

* :class:`GrabCutSegmenter` (default, offline, no weights): OpenCV's GrabCut (Rother, Kolmogorov & Blake
  2004, "GrabCut: Interactive foreground extraction using iterated graph cuts", ACM SIGGRAPH / ToG 23(3)),
  initialised from the prompts instead of a user's rectangle.
* :class:`SamSegmenter`: Segment Anything (Kirillov et al. 2023, "Segment Anything", ICCV), the
  ``segment-anything`` package's ``SamPredictor`` with point prompts (and optionally the box of ``R``), for
  users who have a SAM checkpoint (``pip install "segaudit[sam]"``; weights are not downloaded by segaudit).

Coordinates are ``(row, col)`` pixel indices of the ``S x S`` frame, like the rest of segaudit; SAM's
``(x, y)`` order is produced only inside :class:`SamSegmenter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segaudit.metrics.cam_prompts import Prompt

__all__ = ["SAM_MODEL_TYPES", "Segmenter", "GrabCutSegmenter", "SamSegmenter"]

#: Model types of ``segment_anything.sam_model_registry``.
SAM_MODEL_TYPES: tuple[str, ...] = ("default", "vit_h", "vit_l", "vit_b")


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
