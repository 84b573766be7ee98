"""The one sample type every reader returns, and the error row that replaces a sample it cannot read.

A :class:`Sample` is in *dataset space*: its category indices point into the dataset's own
``category_names`` (index 0 is always ``"background"``). Mapping to a model's classes happens later
(:mod:`segaudit.data.classmap`), so readers never need to know which model will look at the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segaudit.schema import VOID_LABEL as IGNORE  # label value of void / ignored pixels

__all__ = ["IGNORE", "Instance", "Sample", "ErrorRow", "SampleError", "ImageRef"]



class SampleError(Exception):
    """A sample cannot be read; the message is the reason shown in the errors table."""


@dataclass(frozen=True)
class ImageRef:
    """Where one image and its labels are, before reading anything.

    Parameters
    ----------
    image_id : str
        Stable identifier (COCO ``id`` as a string, VOC file stem).
    file_name : str
        Image path relative to the dataset's image root, as written in the dataset.
    """

    image_id: str
    file_name: str


@dataclass(frozen=True)
class Instance:
    """One annotated object.

    Parameters
    ----------
    category : int
        Index into :attr:`Sample.category_names` (never 0, the background).
    mask : np.ndarray
        ``(H, W)`` bool, the object's pixels.
    iscrowd : bool
        COCO crowd region (a group of objects); crowd pixels are void in :attr:`Sample.semantic`.
    annotation_id : str or None
        The dataset's own id for the annotation, when it has one.
    """

    category: int
    mask: np.ndarray
    iscrowd: bool = False
    annotation_id: str | None = None


@dataclass
class Sample:
    """An image with its labels, in dataset space.

    Parameters
    ----------
    image_id, file_name : str
        As in :class:`ImageRef`.
    image : np.ndarray
        ``(H, W, 3)`` uint8 RGB.
    semantic : np.ndarray
        ``(H, W)`` uint8: 0 background, ``k`` the category ``category_names[k]``, 255 void (ignored).
    instances : list of Instance
        Object masks at image resolution; empty when the dataset has no instance labels.
    category_names : tuple of str
        The dataset's categories; ``category_names[0] == "background"``.
    has_instances : bool
        Whether the dataset provides instance labels for this image (VOC without SegmentationObject: no).
    """

    image_id: str
    file_name: str
    image: np.ndarray
    semantic: np.ndarray
    instances: list[Instance] = field(default_factory=list)
    category_names: tuple[str, ...] = ("background",)
    has_instances: bool = True

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}")
        if self.semantic.shape != self.image.shape[:2]:
            raise ValueError(
                f"semantic mask {self.semantic.shape} does not match image {self.image.shape[:2]}"
            )


@dataclass(frozen=True)
class ErrorRow:
    """One row of the errors table: something that could not be read or processed, and why.

    Parameters
    ----------
    image_id, file_name : str or None
        What failed, when it is known.
    stage : str
        Pipeline stage: ``"read"``, ``"infer"``, ``"score"``, ...
    reason : str
        A one-line explanation a user can act on.
    """

    image_id: str | None
    file_name: str | None
    stage: str
    reason: str
