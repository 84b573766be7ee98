"""From dataset samples to the model's input frame: letterboxing, class mapping and batching.

Every image is resized so its longer side equals the model's ``input_size`` and padded to a square
(a *letterbox*): aspect ratios are kept and images of any size batch together. Labels follow with
nearest-neighbour resizing; the padding is void (255) so no score ever counts it. All distances and pixel
counts in the tables are in this frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from segaudit.data.classmap import ClassMap
from segaudit.data.sample import IGNORE, Sample

__all__ = ["Letterbox", "PreparedBatch", "letterbox_geometry", "letterbox_image", "letterbox_labels", "prepare_batch"]


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``(height, width)`` lands inside the ``size`` x ``size`` square."""

    height: int
    width: int
    size: int
    new_height: int
    new_width: int
    top: int
    left: int


def letterbox_geometry(height: int, width: int, size: int) -> Letterbox:
    """Scale the longer side to ``size``, centre the result in a square."""
    scale = size / max(height, width)
    new_h = max(1, min(size, round(height * scale)))
    new_w = max(1, min(size, round(width * scale)))
    return Letterbox(height, width, size, new_h, new_w, (size - new_h) // 2, (size - new_w) // 2)


def letterbox_image(image: np.ndarray, box: Letterbox, fill: tuple[int, int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)`` uint8, bilinear (antialiased when shrinking)."""
    out = np.empty((box.size, box.size, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    if (box.new_height, box.new_width) == image.shape[:2]:
        resized = image
    else:
        resized = np.asarray(Image.fromarray(image).resize((box.new_width, box.new_height), Image.BILINEAR))
    out[box.top : box.top + box.new_height, box.left : box.left + box.new_width] = resized
    return out


def letterbox_labels(labels: np.ndarray, box: Letterbox, fill: int = IGNORE) -> np.ndarray:
    """``(H, W)`` integer or bool labels -> ``(size, size)``, nearest neighbour, padding = ``fill``."""
    dtype = np.uint8 if labels.dtype == bool else labels.dtype
    out = np.full((box.size, box.size), fill, dtype=dtype)
    src = labels.astype(dtype, copy=False)
    if (box.new_height, box.new_width) != labels.shape:
        src = np.asarray(Image.fromarray(src).resize((box.new_width, box.new_height), Image.NEAREST))
    out[box.top : box.top + box.new_height, box.left : box.left + box.new_width] = src
    return out


@dataclass
class PreparedBatch:
    """A batch in the model's frame.

    Attributes
    ----------
    images : torch.Tensor
        ``(B, 3, S, S)`` float32, normalised.
    views : np.ndarray
        ``(B, S, S, 3)`` uint8, what the model sees (for thumbnails).
    gt : torch.Tensor
        ``(B, S, S)`` int64 model class ids, 255 = void (dataset void, unmapped classes, padding).
    instances : list of list of (int, torch.Tensor)
        Per image, the non-crowd instances mapped to model classes: ``(class_id, (S, S) bool mask)``.
    samples : list of Sample
        The dataset samples, in batch order.
    boxes : list of Letterbox
    unknown_classes : list of dict of str to int
        Per image, the dataset classes the model does not know (mapped to void) with their labelled pixel
        counts in the original image: candidates for the out-of-label-space finding.
    """

    images: torch.Tensor
    views: np.ndarray
    gt: torch.Tensor
    instances: list[list[tuple[int, torch.Tensor]]]
    samples: list[Sample]
    boxes: list[Letterbox]
    unknown_classes: list[dict[str, int]] = field(default_factory=list)

    @property
    def valid(self) -> torch.Tensor:
        """``(B, S, S)`` bool: pixels that count in scores (not void)."""
        return self.gt != IGNORE


def prepare_batch(
    samples: list[Sample],
    class_map: ClassMap,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> PreparedBatch:
    """Letterbox, map classes and normalise a list of samples into one batch."""
    if not samples:
        raise ValueError("prepare_batch needs at least one sample")
    fill = tuple(int(round(255 * m)) for m in mean)  # pads normalise to ~0
    views, gts, instances, boxes, unknown = [], [], [], [], []
    for sample in samples:
        unknown.append(_unknown_classes(sample, class_map))
        box = letterbox_geometry(*sample.image.shape[:2], size)
        boxes.append(box)
        views.append(letterbox_image(sample.image, box, fill))
        gts.append(letterbox_labels(class_map.apply(sample.semantic), box))
        mapped = []
        for inst in sample.instances:
            cls = int(class_map.lut[inst.category])
            if inst.iscrowd or cls == IGNORE or cls == 0:
                continue
            mapped.append((cls, torch.from_numpy(letterbox_labels(inst.mask, box, fill=0).astype(bool))))
        instances.append(mapped)
    views_arr = np.stack(views)
    images = torch.from_numpy(views_arr).permute(0, 3, 1, 2).float().div_(255.0)
    images = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    gt = torch.from_numpy(np.stack(gts)).long()
    return PreparedBatch(images.contiguous(), views_arr, gt, instances, list(samples), boxes, unknown)


def _unknown_classes(sample: Sample, class_map: ClassMap) -> dict[str, int]:
    """Labelled pixels of each dataset class of ``sample`` that ``class_map`` sends to void."""
    counts = np.bincount(sample.semantic.ravel(), minlength=256)
    out = {}
    for k in np.nonzero(counts)[0].tolist():
        if 0 < k < len(sample.category_names) and class_map.lut[k] == IGNORE:
            out[sample.category_names[k]] = int(counts[k])
    return out
