"""Dataset readers: COCO instance files and Pascal VOC segmentation folders.

Both readers follow the :class:`SegmentationDataset` protocol: :meth:`~SegmentationDataset.refs` lists
the images cheaply, :meth:`~SegmentationDataset.read` turns one :class:`~segaudit.data.sample.ImageRef` into a
:class:`~segaudit.data.sample.Sample` in dataset space, and :func:`read_samples` reads a batch without ever
raising for bad data.

Error reporting
    * ``dataset.load_errors``: dataset-level problems found while indexing (e.g. COCO annotations
      whose image id is not in ``images``); rows with stage ``"read"``. Report them once per dataset;
      :func:`read_samples` does not repeat them.
    * An image that cannot be read: :meth:`~SegmentationDataset.read` raises
      :class:`~segaudit.data.sample.SampleError`; :func:`read_samples` turns it into exactly one
      :class:`~segaudit.data.sample.ErrorRow` and no sample.
    * One bad *annotation* of an image that is otherwise fine (COCO: bad polygon, undecodable RLE,
      unknown category...; VOC: an object with no class pixels): the image is still read without it;
      :meth:`~SegmentationDataset.read_with_issues` returns the sample plus one ErrorRow per skipped
      annotation, and :func:`read_samples` returns those rows too. Their reason starts with
      ``"annotation "`` (COCO), ``"object "`` or ``"instances skipped"`` (VOC), or ``"image resized"``
      (an image over :data:`~segaudit.data.readers._image.MAX_SIDE`, audited downscaled);
      :func:`is_annotation_issue` tells them apart from rows of lost images.

Bad and hostile input (``tests/test_bad_inputs.py`` runs a corpus of them through whole audits)
    * Paths: image paths come only from the dataset's own names, checked lexically (no absolute paths,
      no ``..``, no NUL) before the file system is touched, so they cannot leave the dataset root.
    * Content is parsed, never executed: JSON with :mod:`json`, label and image files with Pillow; no
      pickle, no ``eval``. (Model checkpoints are loaded with ``weights_only=True``, see
      :mod:`segaudit.models.registry`.)
    * Every string that reaches a table is valid one-line UTF-8 (:func:`~segaudit.data.readers._text.display_text`);
      escaping HTML is the report's job (Jinja2 autoescape).
    * Size: see :data:`~segaudit.data.readers._image.MAX_PIXELS` (refused) and
      :data:`~segaudit.data.readers._image.MAX_SIDE` (downscaled).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from segaudit.data.readers._image import MAX_PIXELS, MAX_SIDE
from segaudit.data.readers._text import display_text
from segaudit.data.readers.coco import CocoDataset
from segaudit.data.readers.voc import VOC_CLASSES, VocDataset
from segaudit.data.sample import ErrorRow, ImageRef, Sample, SampleError

__all__ = [
    "SegmentationDataset",
    "CocoDataset",
    "VocDataset",
    "VOC_CLASSES",
    "read_samples",
    "open_dataset",
    "is_annotation_issue",
    "count_image_files",
    "MAX_PIXELS",
    "MAX_SIDE",
]

log = logging.getLogger("segaudit.data.readers")

_ISSUE_PREFIXES = ("annotation ", "object ", "instances skipped", "image resized")


@runtime_checkable
class SegmentationDataset(Protocol):
    """What every reader provides.

    Attributes
    ----------
    kind : str
        ``"coco"`` or ``"voc"``.
    category_names : tuple of str
        Dataset categories; index 0 is ``"background"``.
    load_errors : list of ErrorRow
        Problems found while indexing; reported, not fatal.
    """

    kind: str
    category_names: tuple[str, ...]
    load_errors: list[ErrorRow]

    def refs(self) -> list[ImageRef]:
        """Every image, in a deterministic order (sorted by id)."""
        ...

    def read(self, ref: ImageRef) -> Sample:
        """One sample; raises :class:`SampleError` for anything wrong with this image."""
        ...

    def read_with_issues(self, ref: ImageRef) -> tuple[Sample, list[ErrorRow]]:
        """One sample and the rows of annotations skipped in it; raises :class:`SampleError` like read."""
        ...

    def fingerprint(self) -> str:
        """sha256 hex digest identifying the labels (annotation file / split and label files)."""
        ...


def is_annotation_issue(row: ErrorRow) -> bool:
    """Whether an error row from :func:`read_samples` is a skipped annotation of an image that was read.

    Parameters
    ----------
    row : ErrorRow

    Returns
    -------
    bool
        True for per-annotation rows (the image is among the samples), False for a lost image.
    """
    return row.stage == "read" and row.reason.startswith(_ISSUE_PREFIXES)


def read_samples(
    dataset: SegmentationDataset, refs: Sequence[ImageRef]
) -> tuple[list[Sample], list[ErrorRow]]:
    """Read a batch of images.

    Every ref yields either a :class:`Sample` or exactly one :class:`ErrorRow` (stage ``"read"``) saying
    why it could not be read. Skipped annotations of images that *were* read add further rows (see
    :func:`is_annotation_issue`). Never raises for bad data; an unexpected exception from a reader also
    becomes a row, naming the exception type.

    Parameters
    ----------
    dataset : SegmentationDataset
    refs : sequence of ImageRef

    Returns
    -------
    samples : list of Sample
        In the order of ``refs``.
    errors : list of ErrorRow
        In the order of ``refs``.
    """
    samples: list[Sample] = []
    errors: list[ErrorRow] = []
    reader = getattr(dataset, "read_with_issues", None)
    for ref in refs:
        try:
            if reader is not None:
                sample, issues = reader(ref)
            else:
                sample, issues = dataset.read(ref), []
        except SampleError as exc:
            errors.append(_safe_row(ErrorRow(ref.image_id, ref.file_name, "read", str(exc) or "unreadable sample")))
            continue
        except Exception as exc:  # a reader bug or an odd file must not stop the batch
            log.exception("unexpected error reading %s", display_text(ref.file_name))
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(
                _safe_row(ErrorRow(ref.image_id, ref.file_name, "read", f"unexpected {type(exc).__name__}: {first}"))
            )
            continue
        samples.append(sample)
        errors.extend(_safe_row(row) for row in issues)
    return samples, errors


def _safe_row(row: ErrorRow) -> ErrorRow:
    """The row with every string made storable (:func:`display_text`); a last guard, readers already do it."""
    return ErrorRow(
        None if row.image_id is None else display_text(row.image_id),
        None if row.file_name is None else display_text(row.file_name),
        row.stage,
        display_text(row.reason),
    )


def count_image_files(dataset: SegmentationDataset, refs: Sequence[ImageRef]) -> int:
    """How many of ``refs`` have an image file where the dataset looks for it (nothing is decoded).

    A cheap check for a wrong image root before a long audit: when none of the first refs is found, every
    image would become a "not found" row.

    Parameters
    ----------
    dataset : SegmentationDataset
    refs : sequence of ImageRef

    Returns
    -------
    int
    """
    found = 0
    locate = getattr(dataset, "image_path", None)
    for ref in refs:
        try:
            found += locate is None or locate(ref).is_file()
        except (SampleError, OSError, ValueError):
            continue
    return found


def _coco_split_file(ann_dir: Path, split: str | None) -> tuple[Path, str]:
    """Pick ``annotations/instances_<split>.json``; ValueError listing the available splits."""
    files = sorted(ann_dir.glob("instances_*.json"))
    available = [p.stem[len("instances_") :] for p in files]
    if split is not None:
        for name in (split, f"{split}2017"):
            p = ann_dir / f"instances_{name}.json"
            if p.is_file():
                return p, name
        raise ValueError(
            f"unknown split {split!r}: no {ann_dir / f'instances_{split}.json'}; available splits: "
            f"{', '.join(available)}"
        )
    if len(files) == 1:
        return files[0], available[0]
    for name in ("val2017", "val"):
        if name in available:
            return ann_dir / f"instances_{name}.json", name
    raise ValueError(f"several splits in {ann_dir}; pass split= one of: {', '.join(available)}")


def open_dataset(
    path: str | Path, split: str | None = None, image_root: str | Path | None = None
) -> SegmentationDataset:
    """Open a dataset, telling its format from the path.

    * a ``.json`` file: COCO (``image_root`` as given, else guessed);
    * a folder with ``SegmentationClass/``: VOC (``split`` default: ``"val"`` when
      ``ImageSets/Segmentation/val.txt`` exists, else every label file);
    * a folder with ``annotations/instances_<split>.json``: COCO (``split`` default: the only one,
      else ``val2017``/``val``; ``"val"`` also finds ``instances_val2017.json``), images guessed among
      ``<split>/``, ``images/<split>/``, ``images/``, ``JPEGImages/``, the folder itself...;
    * a folder with ``annotations.json`` (labelme's COCO export): COCO.

    Parameters
    ----------
    path : str or Path
    split : str, optional
    image_root : str or Path, optional
        COCO only: the folder the images' ``file_name`` entries are relative to.

    Returns
    -------
    SegmentationDataset

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The format cannot be recognised, or the split is unknown (the message lists what exists).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise ValueError(f"cannot open {path}: expected a COCO annotation .json file or a dataset folder")
        return CocoDataset(path, image_root=image_root)
    if (path / "SegmentationClass").is_dir():
        if image_root is not None:
            log.warning("image_root is ignored for VOC datasets (images are in %s/JPEGImages)", path)
        if split is None and (path / "ImageSets" / "Segmentation" / "val.txt").is_file():
            split = "val"
        return VocDataset(path, split=split)
    ann_dir = path / "annotations"
    if ann_dir.is_dir() and any(ann_dir.glob("instances_*.json")):
        ann_file, name = _coco_split_file(ann_dir, split)
        candidates = [
            path / name,
            path / "images" / name,
            path / f"{name}2017",
            path / "images",
            path / "JPEGImages",
            path,
        ]
        if name.endswith("2017"):
            candidates.insert(1, path / name[: -len("2017")])
        return CocoDataset(ann_file, image_root=image_root, image_root_candidates=candidates)
    if (path / "annotations.json").is_file():
        return CocoDataset(path / "annotations.json", image_root=image_root)
    jsons = sorted(p.name for p in path.glob("*.json"))
    hint = f" It holds {', '.join(jsons)}: pass the COCO annotation file itself." if jsons else ""
    raise ValueError(
        f"cannot tell the dataset format of {path}: expected a COCO .json file, a VOC folder with "
        f"SegmentationClass/, or a folder with annotations/instances_<split>.json.{hint}"
    )
