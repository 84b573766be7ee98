"""The label annotations of a synthetic image, as drawn (clean) or corrupted by a planted error, before
they are written as COCO JSON and VOC PNGs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segaudit.devtools.synth.scenes import Scene

__all__ = ["Annotation", "scene_annotations"]


@dataclass
class Annotation:
    """One annotation of one image, before it is turned into COCO JSON."""

    category: int
    mask: np.ndarray  # (H, W) bool, exactly what a COCO reader decodes
    kind: str  # "polygon", "rle" or "crowd"
    polygon: list[list[float]] | None = None
    iscrowd: bool = False
    ann_id: int = 0


def scene_annotations(scene: Scene) -> list[Annotation]:
    """Clean annotations of a scene: objects in drawing order, then the crowd (ids not yet assigned)."""
    anns: list[Annotation] = []
    for o in scene.objects:
        assert o.visible_mask is not None
        if o.as_rle:
            anns.append(Annotation(o.category, o.visible_mask, "rle"))
        else:
            anns.append(Annotation(o.category, o.full_mask, "polygon", polygon=[o.polygon]))
    if scene.crowd is not None:
        anns.append(Annotation(scene.crowd.category, scene.crowd.mask, "crowd", iscrowd=True))
    return anns
