"""COCO instance-segmentation reader (``instances_*.json`` and compatible exports such as labelme's).

The JSON is parsed and indexed by :mod:`~segaudit.data.readers.coco_json` (ids keyed by type and value,
limits on annotations per image and in all); each segmentation is validated and decoded by
:mod:`~segaudit.data.readers.coco_segments`. This module finds the images and builds the samples.

Categories
    Index 0 is ``"background"``. A category named ``background`` / ``_background_`` (labelme exports
    one with id 0) is that background, not an object class. The other categories, sorted by id, get
    indices ``1..K``. Without a ``categories`` list, categories are named ``category_<id>`` from the ids
    the annotations use, and a note is added to :attr:`CocoDataset.load_errors`.

Semantic map
    Non-crowd instances are painted in annotation order (later ones on top); then crowd pixels
    (``iscrowd=1``) are set to :data:`~segaudit.data.sample.IGNORE`. ``Sample.instances`` lists every decoded
    annotation, crowd ones with ``iscrowd=True``. The decoded mask is trusted over the ``area`` field.

Problems
    * Dataset-level problems found while indexing (annotations whose image id is not in ``images``,
      duplicate image ids, a missing ``categories`` list, ...) go to :attr:`CocoDataset.load_errors`.
    * Problems with one *annotation* (polygon with fewer than 3 points, NaN coordinates, undecodable
      RLE, RLE size different from the image, unknown or background category id, empty mask) do not
      lose the image: the annotation is skipped and reported by :meth:`CocoDataset.read_with_issues`
      as an :class:`~segaudit.data.sample.ErrorRow` (stage ``"read"``) whose reason starts with
      ``"annotation <id> skipped: "``. :func:`segaudit.data.readers.read_samples` returns those rows along
      with the samples. Plain :meth:`CocoDataset.read` logs them at WARNING level.
    * Annotations past the limits (:data:`~segaudit.data.readers.coco_json.MAX_ANNOTATIONS_PER_IMAGE`,
      :data:`~segaudit.data.readers.coco_json.MAX_ANNOTATIONS_TOTAL`, and :data:`MAX_MASK_BYTES` of decoded
      masks per image) are skipped with one row ``"annotation limit: ..."`` per image.
    * Problems with the *image* (file missing or undecodable, size different from the JSON's,
      a ``file_name`` escaping the image root) raise :class:`~segaudit.data.sample.SampleError`.

Hostile input
    * A ``file_name`` that is absolute, climbs out with ``..``, or holds a NUL byte is refused before
      the file system is touched: image paths cannot escape the image root (symbolic links inside the
      dataset are followed, as the dataset's owner placed them). With an explicit ``image_root`` images
      are looked for there only; without one, under the guessed root and then next to the annotation file.
    * The JSON is only parsed (never evaluated or unpickled). Bytes that are not UTF-8 are kept as
      they are (``surrogateescape``) so such a file name still opens; ids, file names and category
      names are shown through :func:`~segaudit.data.readers._text.display_text`, so what reaches the
      tables is valid one-line UTF-8.
    * Polygons with vertices more than :data:`~segaudit.data.readers.coco_segments.POLYGON_MARGIN` image
      sizes outside the image are refused (pycocotools would allocate memory in proportion to the
      coordinates).
    * Images larger than :data:`~segaudit.data.readers._image.MAX_SIDE` are audited downscaled, their masks
      with them; see :mod:`segaudit.data.readers._image`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segaudit.data.readers._image import MAX_SIDE, load_rgb_capped, read_logging_issues, resize_issues
from segaudit.data.readers._text import display_text
from segaudit.data.readers.coco_json import (
    MAX_ANNOTATIONS_PER_IMAGE,
    MAX_ANNOTATIONS_TOTAL,
    id_str,
    index_coco_file,
)
from segaudit.data.readers.coco_segments import POLYGON_MARGIN, AnnotationProblem, segmentation_to_mask
from segaudit.data.sample import IGNORE, ErrorRow, ImageRef, Instance, Sample, SampleError

__all__ = ["CocoDataset", "guess_image_root", "POLYGON_MARGIN", "MAX_MASK_BYTES"]

log = logging.getLogger("segaudit.data.readers")

#: Bytes of decoded instance masks (one byte per pixel each) read per image; the annotations past it are
#: skipped with a row (e.g. 218 masks of a 640x480 image; COCO has at most 93 per image).
MAX_MASK_BYTES = 64 << 20

#: Folder names tried first when guessing where the images of a COCO file are.
_PREFERRED_IMAGE_DIRS = ("images", "JPEGImages", "imgs", "img", "input_images", "data")


def _truthy(value: Any) -> bool:
    """COCO flags are 0/1, sometimes strings or bools."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no")
    try:
        return bool(value)
    except Exception:
        return False


def _dims(img: dict[str, Any]) -> tuple[int, int] | None:
    """``(height, width)`` from an image entry, or None when absent or invalid."""
    try:
        h, w = float(img["height"]), float(img["width"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (h.is_integer() and w.is_integer()) or h <= 0 or w <= 0:
        return None
    return int(h), int(w)


def _safe_relative(file_name: str) -> PurePosixPath:
    """Dataset-relative image path; SampleError when it is absolute, climbs out with ``..`` or holds NUL.

    Purely lexical (nothing on disk is looked at), so a hostile name never reaches the file system.
    """
    norm = file_name.replace("\\", "/")
    rel = PurePosixPath(norm)
    shown = display_text(file_name)
    if rel.is_absolute() or (len(norm) > 1 and norm[1] == ":") or ".." in rel.parts:
        raise SampleError(f"image path escapes the image root (absolute or '..'): {shown}")
    if "\x00" in norm:
        raise SampleError(f"image file name holds a NUL byte, which no file name can: {shown}")
    if not rel.parts or str(rel) in ("", "."):
        raise SampleError(f"image entry has an empty file_name: {shown!r}")
    return rel


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False instead of an OSError (e.g. a name too long for the file system)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _is_empty(segm: Any) -> bool:
    """None, ``[]`` or ``{}`` (compared by type, so that no odd value is ever compared with ``==``)."""
    return segm is None or (isinstance(segm, list | dict) and not segm)


def guess_image_root(
    annotation_file: str | Path,
    file_names: Sequence[str],
    extra_candidates: Sequence[Path] = (),
) -> Path:
    """Guess the folder a COCO file's ``file_name`` entries are relative to.

    Tries, in order, ``extra_candidates``, the annotation file's folder, its parent, their
    ``images``/``JPEGImages``/... sub-folders and then any other sub-folders (at most 50 each), and
    returns the one where most of the first 20 ``file_names`` exist (the annotation file's folder when
    none has any).

    Parameters
    ----------
    annotation_file : str or Path
    file_names : sequence of str
        ``file_name`` entries of the images.
    extra_candidates : sequence of Path
        Folders to try first (e.g. ``<root>/val2017`` for the split being opened).

    Returns
    -------
    Path
    """
    ann_dir = Path(annotation_file).resolve().parent
    probe: list[PurePosixPath] = []
    for fn in file_names[:20]:
        try:
            probe.append(_safe_relative(str(fn)))
        except SampleError:
            continue
    candidates: list[Path] = [Path(c) for c in extra_candidates] + [ann_dir, ann_dir.parent]
    for base in (ann_dir, ann_dir.parent):
        candidates += [base / n for n in _PREFERRED_IMAGE_DIRS]
        try:
            subdirs = sorted(e.path for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            subdirs = []
        candidates += [Path(p) for p in subdirs[:50]]
    best, best_hits, seen = ann_dir, 0, set()
    for cand in candidates:
        if cand in seen or not cand.is_dir():
            continue
        seen.add(cand)
        hits = sum(_is_file(cand / p) for p in probe)
        if hits > best_hits:
            best, best_hits = cand, hits
            if hits == len(probe):
                break
    return best


class CocoDataset:
    """A COCO instance-segmentation annotation file and its images.

    Parameters
    ----------
    annotation_file : str or Path
        The COCO JSON (``instances_val2017.json``, labelme's ``annotations.json``, ...).
    image_root : str or Path, optional
        Folder the images' ``file_name`` entries are relative to. Default: guessed with
        :func:`guess_image_root` (the annotation file's folder, its parent, or one of their
        sub-folders, whichever holds the images). Only when it is guessed, a ``file_name`` missing under
        it is also tried relative to the annotation file's folder; a given ``image_root`` is the only
        place images are read from.
    image_root_candidates : sequence of str or Path, optional
        Folders to try first when guessing ``image_root`` (used by :func:`segaudit.data.readers.open_dataset`).
    max_side : int or None
        Images whose longer side exceeds this are read downscaled to it, with their masks
        (:data:`~segaudit.data.readers._image.MAX_SIDE` by default; None: never).

    Attributes
    ----------
    kind : str
        ``"coco"``.
    category_names : tuple of str
        ``"background"`` then the dataset's categories sorted by id.
    category_ids : tuple
        COCO category id of each index (``None`` for background).
    load_errors : list of ErrorRow
        Problems found while indexing (stage ``"read"``); reported, not fatal.
    image_root_given : bool
        Whether ``image_root`` was given (then no other folder is looked in).

    Raises
    ------
    FileNotFoundError
        The annotation file does not exist.
    ValueError
        Not JSON, not a COCO instances file (or a panoptic one), no images, more than 254 categories.
    """

    kind: str = "coco"

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path | None = None,
        *,
        image_root_candidates: Sequence[str | Path] = (),
        max_side: int | None = MAX_SIDE,
    ) -> None:
        self.max_side = max_side
        self.annotation_file = path = Path(annotation_file)
        if not path.exists():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        if path.is_dir():
            raise ValueError(f"expected a COCO annotation .json file, got a folder: {path}")
        index = index_coco_file(path)
        self._index = index
        self.load_errors: list[ErrorRow] = index.load_errors
        self.category_names: tuple[str, ...] = index.category_names
        self.category_ids: tuple[Any, ...] = index.category_ids
        self._images = index.images
        self._order = index.order
        self._ann_dir = path.resolve().parent
        self.image_root_given = image_root is not None
        if image_root is None:
            self.image_root = guess_image_root(
                path, [self._images[s]["file_name"] for s in self._order], [Path(c) for c in image_root_candidates]
            )
        else:
            self.image_root = Path(image_root)

    # ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return (
            f"CocoDataset({str(self.annotation_file)!r}, image_root={str(self.image_root)!r}: "
            f"{len(self._order)} images, {len(self.category_names) - 1} categories)"
        )

    def refs(self) -> list[ImageRef]:
        """Every image, sorted by id (numeric ids numerically).

        Returns
        -------
        list of ImageRef
        """
        return [ImageRef(image_id=s, file_name=display_text(self._images[s]["file_name"])) for s in self._order]

    def fingerprint(self) -> str:
        """sha256 hex digest of the annotation file's bytes."""
        return self._index.fingerprint

    def _image_dirs(self) -> tuple[Path, ...]:
        """Where images are looked for: the given image root only, else the guessed one then the annotation
        file's folder (worked out once per root: resolving a path costs a system call per folder)."""
        root = Path(self.image_root)
        known = self.__dict__.get("_dirs_of_root")
        if known is None or known[0] != root:
            only_root = self.image_root_given or root.resolve() == self._ann_dir
            self._dirs_of_root = (root, (root,) if only_root else (root, self._ann_dir))
        return self._dirs_of_root[1]

    def resolve_image(self, file_name: str) -> Path:
        """Path of an image: under ``image_root`` (and, only when the root was guessed, under the annotation
        file's folder).

        Raises
        ------
        SampleError
            ``file_name`` escapes the root, or the file exists in none of those places.
        """
        rel = _safe_relative(file_name)
        shown = display_text(file_name)
        dirs = self._image_dirs()
        for base in dirs:
            p = base / rel
            try:
                if p.is_file():
                    return p
                if p.is_dir():
                    raise SampleError(f"expected an image file but found a folder: {shown}")
            except OSError as exc:  # e.g. a name too long for the file system
                raise SampleError(f"cannot access image file {shown}: {exc.strerror or exc}") from None
        raise SampleError(f"image file not found: {shown} (looked in {' and '.join(str(d) for d in dirs)})")

    def image_path(self, ref: ImageRef) -> Path:
        """Where the image of ``ref`` is (see :meth:`resolve_image`); SampleError when it is not found."""
        img = self._images.get(ref.image_id)
        if img is None:
            raise SampleError(f"image id {ref.image_id} is not in {self.annotation_file.name}")
        return self.resolve_image(str(img["file_name"]))

    def read(self, ref: ImageRef) -> Sample:
        """Read one image with its labels; skipped annotations are logged (see :meth:`read_with_issues`).

        Raises
        ------
        SampleError
            See :meth:`read_with_issues`.
        """
        return read_logging_issues(self, ref)

    def read_with_issues(self, ref: ImageRef) -> tuple[Sample, list[ErrorRow]]:
        """Read one image and decode its annotations.

        Parameters
        ----------
        ref : ImageRef
            One of :meth:`refs`.

        Returns
        -------
        sample : Sample
            ``image`` ``(H, W, 3)`` uint8, ``semantic`` ``(H, W)`` uint8 in dataset space, one
            :class:`Instance` per usable annotation with a ``(H, W)`` bool mask.
        issues : list of ErrorRow
            One row (stage ``"read"``) per skipped annotation, reason ``"annotation <id> skipped: ..."``.

        Raises
        ------
        SampleError
            Unknown image id, image file missing/undecodable/escaping the root, or image size different
            from the annotation file's.
        """
        sid = ref.image_id
        img = self._images.get(sid)
        if img is None:
            raise SampleError(f"image id {sid} is not in {self.annotation_file.name}")
        raw_name = str(img["file_name"])
        file_name = display_text(raw_name)
        path = self.resolve_image(raw_name)
        json_hw = _dims(img)
        image, (full_h, full_w) = load_rgb_capped(
            path, name=file_name, expected_hw=json_hw, max_side=self.max_side
        )
        if json_hw is not None and (full_h, full_w) != json_hw:
            raise SampleError(
                f"image is {full_w}x{full_h} but annotation says {json_hw[1]}x{json_hw[0]} (width x height): "
                f"{file_name}"
            )
        h, w = image.shape[:2]
        issues = resize_issues(sid, file_name, (full_h, full_w), (h, w), self.max_side, "masks")
        semantic, instances = self._decode_annotations(sid, file_name, (full_h, full_w), (h, w), issues)
        return Sample(sid, file_name, image, semantic, instances, self.category_names, has_instances=True), issues

    def _decode_annotations(self, sid: str, file_name: str, full_hw: tuple[int, int], hw: tuple[int, int],
                            issues: list[ErrorRow]) -> tuple[np.ndarray, list[Instance]]:
        """The semantic map and instances of image ``sid`` at ``hw``; skipped annotations append to ``issues``.

        Non-crowd masks are painted in annotation order, then crowd pixels set to IGNORE. At most
        ``MAX_MASK_BYTES // (h * w)`` masks are decoded; the rest, with those dropped while indexing, get
        one ``"annotation limit: ..."`` row.
        """
        h, w = hw
        semantic = np.zeros((h, w), dtype=np.uint8)
        crowd = np.zeros((h, w), dtype=bool)
        instances: list[Instance] = []
        anns = self._index.annotations.get(sid, [])
        most = max(1, MAX_MASK_BYTES // (h * w))
        for ann in anns[:most]:
            ann_id = None if ann.get("_segaudit_no_id") else id_str(ann["id"])
            try:
                cat_idx = self._category_of(ann)
                if "segmentation" not in ann or _is_empty(ann["segmentation"]):
                    raise AnnotationProblem("it has no segmentation (box-only annotation)")
                mask = segmentation_to_mask(ann["segmentation"], *full_hw, (h, w))
                if not mask.any():
                    raise AnnotationProblem("its mask is empty (0 pixels inside the image)")
            except AnnotationProblem as exc:
                shown = ann_id if ann_id is not None else f"{ann['id']} (no id)"
                issues.append(ErrorRow(sid, file_name, "read", f"annotation {shown} skipped: {exc}"))
                continue
            is_crowd = _truthy(ann.get("iscrowd", 0))
            instances.append(Instance(category=cat_idx, mask=mask, iscrowd=is_crowd, annotation_id=ann_id))
            if is_crowd:
                crowd |= mask
            else:
                semantic[mask] = cat_idx
        semantic[crowd] = IGNORE
        skipped = self._index.dropped.get(sid, 0) + max(0, len(anns) - most)
        if skipped:
            issues.append(ErrorRow(sid, file_name, "read", (
                f"annotation limit: {skipped} of {len(anns) + self._index.dropped.get(sid, 0)} annotations skipped "
                f"(at most {min(most, MAX_ANNOTATIONS_PER_IMAGE)} per {w}x{h} image are read, "
                f"{MAX_ANNOTATIONS_TOTAL} per file)")))
        return semantic, instances

    def _category_of(self, ann: dict[str, Any]) -> int:
        cid = ann.get("category_id")
        if cid is None:
            raise AnnotationProblem("it has no category_id")
        scid = id_str(cid)
        if scid in self._index.background_ids:
            raise AnnotationProblem(f"its category id {scid} is the background category")
        idx = self._index.category_index.get(scid)
        if idx is None:
            raise AnnotationProblem(f"unknown category id {scid} (not in 'categories')")
        return idx
