"""Writing a synthetic dataset in the COCO and Pascal VOC layouts: the JPEG images, the COCO instances files,
the VOC class and object PNGs (255 void borders and crowds), the image sets and the class names (the file
list is in :mod:`segaudit.devtools.synth`).

JSON is written with a fixed key order and fixed ``info``, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segaudit.data.readers.voc import voc_colormap
from segaudit.devtools.synth.annotations import Annotation
from segaudit.devtools.synth.classes import CLASS_NAMES
from segaudit.devtools.synth.masks import bbox, encode_rle, uncompressed_rle, void_border
from segaudit.schema import VOID_LABEL

__all__ = [
    "IMAGE_DIR",
    "ANNOTATION_DIR",
    "VOC_CLASS_DIR",
    "VOC_OBJECT_DIR",
    "IMAGE_SETS_DIR",
    "make_folders",
    "coco_path",
    "image_name",
    "save_jpeg",
    "write_voc_labels",
    "voc_maps",
    "coco_annotation",
    "coco_image",
    "coco_file",
    "write_json",
    "write_name_lists",
]

_INFO = {
    "description": "segaudit synthetic shapes dataset",
    "url": "",
    "version": "1.0",
    "year": 2025,
    "contributor": "segaudit.devtools.synth",
    "date_created": "2025/01/01",  # fixed so that runs are byte-identical
}
_LICENSES = [{"url": "https://creativecommons.org/publicdomain/zero/1.0/", "id": 1, "name": "CC0 1.0"}]


#: The folders of a dataset, relative to its root.
IMAGE_DIR = Path("JPEGImages")
ANNOTATION_DIR = Path("annotations")
VOC_CLASS_DIR = Path("SegmentationClass")
VOC_OBJECT_DIR = Path("SegmentationObject")
IMAGE_SETS_DIR = Path("ImageSets", "Segmentation")


def make_folders(root: Path) -> None:
    """Make the dataset's folders under ``root`` (existing ones are kept)."""
    for d in (IMAGE_DIR, ANNOTATION_DIR, VOC_CLASS_DIR, VOC_OBJECT_DIR, IMAGE_SETS_DIR):
        (root / d).mkdir(parents=True, exist_ok=True)


def coco_path(root: Path, split: str) -> Path:
    """``root/annotations/instances_<split>.json``."""
    return root / ANNOTATION_DIR / f"instances_{split}.json"


def image_name(split: str, index: int) -> str:
    """``train_000123`` style image id."""
    return f"{split}_{index:06d}"


def save_jpeg(rgb: np.ndarray, root: Path, name: str) -> None:
    """Write a ``(H, W, 3)`` uint8 RGB image as ``root/JPEGImages/<name>.jpg`` (quality 95)."""
    Image.fromarray(rgb).save(root / IMAGE_DIR / f"{name}.jpg", format="JPEG", quality=95)


def save_palette_png(labels: np.ndarray, path: Path, palette: list[int]) -> None:
    """Write a ``(H, W)`` uint8 label map as a mode-"P" PNG with ``palette``."""
    im = Image.fromarray(labels.astype(np.uint8))
    im.putpalette(palette)
    im.save(path, format="PNG")


def voc_maps(anns: list[Annotation], size: int) -> tuple[np.ndarray, np.ndarray]:
    """VOC class and object label maps of one image from its (final) annotations.

    Non-crowd annotations are painted in order (later ones win); crowd regions and the pixels on
    either side of every instance boundary (3x3 neighbourhood holding another instance, crowd or
    background) are 255 in both maps, as in Pascal VOC where both files share one void mask.

    Returns
    -------
    semantic : np.ndarray
        ``(size, size)`` uint8: class index, 255 void.
    objects : np.ndarray
        ``(size, size)`` uint8: instance index 1..n in annotation order (non-crowd), 0 background, 255 void.
    """
    semantic = np.zeros((size, size), dtype=np.uint8)
    objects = np.zeros((size, size), dtype=np.int32)
    crowd = np.zeros((size, size), dtype=bool)
    k = 0
    for a in anns:
        if a.iscrowd:
            crowd |= a.mask
            continue
        k += 1
        semantic[a.mask] = a.category
        objects[a.mask] = k
    if k > 254:  # pragma: no cover - at most 5 objects per image
        raise ValueError("too many instances for a VOC object PNG")
    ids = objects.copy()
    ids[crowd] = 1000
    void = void_border(ids) | crowd
    semantic[void] = VOID_LABEL
    objects[void] = VOID_LABEL
    return semantic, objects.astype(np.uint8)


def coco_annotation(a: Annotation, image_id: int) -> dict[str, Any]:
    """COCO annotation dict; ``area`` and ``bbox`` from the mask a COCO reader will decode."""
    if a.kind == "polygon":
        assert a.polygon is not None
        segmentation: Any = a.polygon
    elif a.kind == "crowd":
        segmentation = uncompressed_rle(a.mask)
    else:
        segmentation = encode_rle(a.mask)
    return {
        "id": int(a.ann_id),
        "image_id": int(image_id),
        "category_id": int(a.category),
        "segmentation": segmentation,
        "area": int(a.mask.sum()),
        "bbox": bbox(a.mask),
        "iscrowd": int(a.iscrowd),
    }


def write_json(obj: Any, path: Path, indent: int | None = None) -> None:
    """Deterministic JSON (fixed key order as built, compact unless ``indent``)."""
    with path.open("w", encoding="utf-8") as f:
        if indent is None:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=indent)
        f.write("\n")


def write_voc_labels(anns: list[Annotation], size: int, root: Path, name: str) -> None:
    """Write the VOC ``SegmentationClass`` and ``SegmentationObject`` PNGs of one image (:func:`voc_maps`)."""
    semantic, objects = voc_maps(anns, size)
    save_palette_png(semantic, root / VOC_CLASS_DIR / f"{name}.png", _voc_palette())
    save_palette_png(objects, root / VOC_OBJECT_DIR / f"{name}.png", _voc_palette())


@functools.cache
def _voc_palette() -> list[int]:
    """The Pascal VOC colour map as a flat PIL palette (768 ints)."""
    return voc_colormap(256).flatten().tolist()


def coco_image(coco_id: int, name: str, size: int) -> dict[str, Any]:
    """The COCO ``images`` entry of one ``size x size`` image."""
    return {
        "id": coco_id,
        "file_name": f"{name}.jpg",
        "width": size,
        "height": size,
        "license": 1,
        "flickr_url": "",
        "coco_url": "",
        "date_captured": "",
    }


def coco_file(images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO instances file: fixed ``info`` and licence, the images, annotations and shape categories."""
    categories = [{"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES) if i > 0]
    return {
        "info": dict(_INFO),
        "licenses": [dict(lic) for lic in _LICENSES],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_name_lists(root: Path, stems: dict[str, list[str]]) -> None:
    """Write ``ImageSets/Segmentation/{train,val,trainval}.txt`` and ``class_names.txt`` under ``root``."""
    sets_dir = root / IMAGE_SETS_DIR
    for split in ("train", "val"):
        (sets_dir / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems[split]), encoding="utf-8")
    (sets_dir / "trainval.txt").write_text(
        "".join(f"{s}\n" for s in stems["train"] + stems["val"]), encoding="utf-8"
    )
    (root / "class_names.txt").write_text("".join(f"{c}\n" for c in CLASS_NAMES), encoding="utf-8")
