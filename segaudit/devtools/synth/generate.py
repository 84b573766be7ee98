"""Generating a synthetic dataset: every image's scene, pixels and clean labels, the planted errors in
val, and the files of both layouts (:mod:`segaudit.devtools.synth.writers`).

Determinism: each image draws from its own generator seeded with ``(seed, split, index)`` (its planted
error from ``(seed, 2, index)``), so the train images do not depend on ``n_val`` (and vice versa), and the
same arguments give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segaudit.devtools.synth.annotations import Annotation, scene_annotations
from segaudit.devtools.synth.classes import (
    BACKGROUND_KINDS,
    CLASS_NAMES,
    CONTEXT_BACKGROUND,
    CONTEXT_CLASS,
    P_CONTEXT,
)
from segaudit.devtools.synth.errors import ERROR_KINDS, plant_error, planted_plan
from segaudit.devtools.synth.render import render_scene
from segaudit.devtools.synth.scenes import P_CROWD, sample_scene
from segaudit.devtools.synth.writers import (
    IMAGE_DIR,
    IMAGE_SETS_DIR,
    VOC_CLASS_DIR,
    VOC_OBJECT_DIR,
    coco_annotation,
    coco_file,
    coco_image,
    coco_path,
    image_name,
    make_folders,
    save_jpeg,
    write_json,
    write_name_lists,
    write_voc_labels,
)

__all__ = ["SynthSummary", "generate_dataset"]

_SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class SynthSummary:
    """Where a generated dataset was written and what it holds.

    Parameters
    ----------
    root : Path
        The output directory.
    image_dir : Path
        ``root / "JPEGImages"``.
    coco_train, coco_val : Path
        COCO instance JSON files.
    voc_class_dir, voc_object_dir : Path
        ``SegmentationClass`` and ``SegmentationObject`` directories.
    image_sets_dir : Path
        ``ImageSets/Segmentation`` with ``train.txt``, ``val.txt``, ``trainval.txt``.
    class_names_file, planted_errors_file, dataset_file : Path
        ``class_names.txt``, ``planted_errors.json``, ``dataset.json``.
    n_train, n_val : int
        Number of images per split.
    n_train_annotations, n_val_annotations : int
        Annotations written per split (crowds included, after planting errors in val).
    n_crowd : int
        ``iscrowd=1`` annotations over both splits.
    n_planted : int
        Number of planted val errors.
    """

    root: Path
    image_dir: Path
    coco_train: Path
    coco_val: Path
    voc_class_dir: Path
    voc_object_dir: Path
    image_sets_dir: Path
    class_names_file: Path
    planted_errors_file: Path
    dataset_file: Path
    n_train: int
    n_val: int
    n_train_annotations: int
    n_val_annotations: int
    n_crowd: int
    n_planted: int


@dataclass
class _Split:
    """What one split wrote: its image ids, its annotation count, its crowds and its planted-error records."""

    stems: list[str] = field(default_factory=list)
    n_annotations: int = 0
    n_crowd: int = 0
    manifest: list[dict[str, Any]] = field(default_factory=list)


def _check_arguments(n_train: int, n_val: int, size: int, plant_errors: float) -> None:
    """ValueError on negative counts, ``size < 32`` or ``plant_errors`` outside ``[0, 1]``."""
    if n_train < 0 or n_val < 0:
        raise ValueError(f"image counts must be >= 0, got n_train={n_train}, n_val={n_val}")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    if not 0.0 <= plant_errors <= 1.0:
        raise ValueError(f"plant_errors must be a fraction in [0, 1], got {plant_errors}")


def _draw_image(
    root: Path, split: str, index: int, size: int, seed: int, crowd_prob: float
) -> list[Annotation]:
    """Sample and paint image ``index`` of ``split``, write its JPEG, return its clean annotations."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    scene = sample_scene(rng, size, crowd_prob)
    save_jpeg(render_scene(scene, rng), root, image_name(split, index))
    return scene_annotations(scene)


def _plant(
    kind: str, anns: list[Annotation], size: int, seed: int, index: int
) -> tuple[list[Annotation], dict[str, Any]]:
    """Plant an error of ``kind`` in val image ``index``; the annotations and its ``planted_errors.json`` record."""
    name = image_name("val", index)
    anns, record = plant_error(kind, anns, size, np.random.default_rng([seed, 2, index]))
    record = {"image_id": name, "coco_image_id": index + 1, "file_name": f"{name}.jpg", "kind": kind, **record}
    return anns, record


def _generate_split(
    root: Path,
    split: str,
    n: int,
    size: int,
    seed: int,
    crowd_prob: float,
    plan: dict[int, str],
) -> _Split:
    """Write the images, VOC PNGs and COCO file of one split, planting the errors of ``plan``.

    Annotation ids count from 1 in image order; a spurious (planted) annotation gets an id after all the
    clean ones of the split, and its record in the manifest gets that id too.
    """
    out = _Split()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    spurious: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (annotation, manifest record)
    next_id = 1
    for index in range(n):
        name = image_name(split, index)
        coco_id = index + 1
        anns = _draw_image(root, split, index, size, seed, crowd_prob)
        for a in anns:
            a.ann_id = next_id
            next_id += 1
        if index in plan:
            anns, record = _plant(plan[index], anns, size, seed, index)
            out.manifest.append(record)
        write_voc_labels(anns, size, root, name)
        for a in anns:
            d = coco_annotation(a, coco_id)
            if a.ann_id == 0:  # spurious: ids after all clean ones, fixed below
                spurious.append((d, out.manifest[-1]))
            annotations.append(d)
            out.n_crowd += int(a.iscrowd)
        images.append(coco_image(coco_id, name, size))
        out.stems.append(name)
    for d, record in spurious:
        d["id"] = next_id
        record["annotation_id"] = next_id
        next_id += 1
    out.n_annotations = len(annotations)
    write_json(coco_file(images, annotations), coco_path(root, split))
    return out


def _dataset_record(arguments: dict[str, Any], train: _Split, val: _Split) -> dict[str, Any]:
    """The content of ``dataset.json``: generator arguments, class names, the context cue and counts."""
    return {
        "generator": "segaudit.devtools.synth.generate_dataset",
        "arguments": arguments,
        "class_names": list(CLASS_NAMES),
        "background_kinds": list(BACKGROUND_KINDS),
        "context_class": CONTEXT_CLASS,
        "context_background": CONTEXT_BACKGROUND,
        "p_context": P_CONTEXT,
        "error_kinds": list(ERROR_KINDS),
        "counts": {
            "train_images": len(train.stems),
            "val_images": len(val.stems),
            "train_annotations": train.n_annotations,
            "val_annotations": val.n_annotations,
            "crowd_annotations": train.n_crowd + val.n_crowd,
            "planted_errors": len(val.manifest),
        },
    }


def _generate(
    out_dir: str | Path, n_train: int, n_val: int, size: int, seed: int, plant_errors: float, crowd_prob: float
) -> SynthSummary:
    """:func:`generate_dataset` with the crowd probability exposed (tests force crowds with it; the
    default is :data:`~segaudit.devtools.synth.scenes.P_CROWD`)."""
    _check_arguments(n_train, n_val, size, plant_errors)
    root = Path(out_dir)
    make_folders(root)
    train = _generate_split(root, "train", n_train, size, seed, crowd_prob, {})
    val = _generate_split(root, "val", n_val, size, seed, crowd_prob, planted_plan(n_val, plant_errors, seed))
    write_name_lists(root, {"train": train.stems, "val": val.stems})
    write_json(val.manifest, root / "planted_errors.json", indent=1)
    arguments: dict[str, Any] = {
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "seed": seed,
        "plant_errors": plant_errors,
    }
    if crowd_prob != P_CROWD:
        arguments["crowd_prob"] = crowd_prob
    write_json(_dataset_record(arguments, train, val), root / "dataset.json", indent=2)
    return SynthSummary(
        root=root,
        image_dir=root / IMAGE_DIR,
        coco_train=coco_path(root, "train"),
        coco_val=coco_path(root, "val"),
        voc_class_dir=root / VOC_CLASS_DIR,
        voc_object_dir=root / VOC_OBJECT_DIR,
        image_sets_dir=root / IMAGE_SETS_DIR,
        class_names_file=root / "class_names.txt",
        planted_errors_file=root / "planted_errors.json",
        dataset_file=root / "dataset.json",
        n_train=n_train,
        n_val=n_val,
        n_train_annotations=train.n_annotations,
        n_val_annotations=val.n_annotations,
        n_crowd=train.n_crowd + val.n_crowd,
        n_planted=len(val.manifest),
    )


def generate_dataset(
    out_dir: str | Path,
    n_train: int = 600,
    n_val: int = 100,
    size: int = 128,
    seed: int = 0,
    plant_errors: float = 0.0,
) -> SynthSummary:
    """Generate the synthetic shapes dataset in COCO and Pascal VOC layouts (see the module docstring).

    Parameters
    ----------
    out_dir : str or Path
        Output directory; created if needed. Files of the same name are overwritten, nothing is deleted.
    n_train, n_val : int
        Number of train and val images. Image ``i`` of a split depends only on ``(seed, split, i)``.
    size : int
        Image height and width in pixels (at least 32).
    seed : int
        Seed; the same arguments give byte-identical files.
    plant_errors : float
        Fraction of val images (``round(plant_errors * n_val)`` of them) that get exactly one planted
        annotation error, cycling through :data:`ERROR_KINDS`. Train labels are always clean and image
        pixels never change. The ground truth is written to ``planted_errors.json``.

    Returns
    -------
    SynthSummary
        Paths and counts of what was written.

    Raises
    ------
    ValueError
        On negative counts, ``size < 32`` or ``plant_errors`` outside ``[0, 1]``.
    """
    return _generate(out_dir, n_train, n_val, size, seed, plant_errors, P_CROWD)
