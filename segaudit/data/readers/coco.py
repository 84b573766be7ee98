"""COCO instance-segmentation reader (``instances_*.json`` and compatible exports such as labelme's).

The JSON is parsed with :func:`json.load` and indexed with :class:`pycocotools.coco.COCO`; masks are
decoded with :mod:`pycocotools.mask` after this module has validated each segmentation (pycocotools
misreads some malformed input silently, e.g. a 2-point polygon as a box).

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
    * Problems with the *image* (file missing or undecodable, size different from the JSON's,
      a ``file_name`` escaping the image root) raise :class:`~segaudit.data.sample.SampleError`.

Hostile input
    * A ``file_name`` that is absolute, climbs out with ``..``, or holds a NUL byte is refused before
      the file system is touched: image paths cannot escape the image root (symbolic links inside the
      dataset are followed, as the dataset's owner placed them).
    * The JSON is only parsed (never evaluated or unpickled). Bytes that are not UTF-8 are kept as
      they are (``surrogateescape``) so such a file name still opens; ids, file names and category
      names are shown through :func:`~segaudit.data.readers._text.display_text`, so what reaches the
      tables is valid one-line UTF-8.
    * Polygons with vertices more than :data:`POLYGON_MARGIN` image sizes outside the image are
      refused (pycocotools would allocate memory in proportion to the coordinates).
    * Images larger than :data:`~segaudit.data.readers._image.MAX_SIDE` are audited downscaled, their masks
      with them; see :mod:`segaudit.data.readers._image`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from segaudit.data.classmap import is_background_name
from segaudit.data.readers._image import MAX_SIDE, load_rgb_capped
from segaudit.data.readers._text import display_text
from segaudit.data.sample import IGNORE, ErrorRow, ImageRef, Instance, Sample, SampleError

__all__ = ["CocoDataset", "guess_image_root", "POLYGON_MARGIN"]

log = logging.getLogger("segaudit.data.readers")

#: Polygon vertices may lie up to this many image sizes (the longer side) outside the image; farther
#: ones make the annotation unusable ("coordinates far outside the image").
POLYGON_MARGIN = 4

#: Folder names tried first when guessing where the images of a COCO file are.
_PREFERRED_IMAGE_DIRS = ("images", "JPEGImages", "imgs", "img", "input_images", "data")


class _AnnotationProblem(Exception):
    """One annotation cannot be used; the message is the reason (without the annotation id)."""


def _id_key(value: Any) -> tuple[int, Any]:
    """Sort key for ids that may be ints or strings (numbers first, numerically)."""
    if isinstance(value, bool):
        return (2, str(value))
    if isinstance(value, int):
        return (0, value)
    if isinstance(value, float) and value.is_integer():
        return (0, int(value))
    s = str(value)
    try:
        return (0, int(s))
    except ValueError:
        return (1, s)


def _id_str(value: Any) -> str:
    """The string form of a COCO id (``3.0`` and ``3`` are the same id), safe to store and show."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return display_text(value)


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


def _rle_string_counts(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (LEB128-like, as in maskApi.c ``rleFrString``) to counts."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise _AnnotationProblem("compressed RLE string ends in the middle of a number")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise _AnnotationProblem(f"compressed RLE string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_counts(counts: Sequence[int], h: int, w: int) -> None:
    if any(c < 0 for c in counts):
        raise _AnnotationProblem("RLE has negative run lengths")
    total = sum(counts)
    if total != h * w:
        raise _AnnotationProblem(f"RLE run lengths sum to {total}, expected {h}*{w} = {h * w}")


def _segmentation_to_mask(segm: Any, h: int, w: int, out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a COCO segmentation and decode it at ``(h, w)``, or resized to ``out_hw``.

    Parameters
    ----------
    segm : list or dict
        Polygon(s) ``[[x1, y1, x2, y2, ...], ...]`` (a flat list is one polygon), uncompressed RLE
        ``{"size": [h, w], "counts": [int, ...]}`` or compressed RLE (``counts`` a string).
    h, w : int
        Image size the annotation was drawn at (an RLE's ``size`` must equal it).
    out_hw : (int, int), optional
        Size to return the mask at (a downscaled image): polygons are scaled before rasterising, RLE
        masks are decoded at ``(h, w)`` and resized (nearest neighbour). Default ``(h, w)``.

    Returns
    -------
    np.ndarray
        ``out_hw`` bool mask.

    Raises
    ------
    _AnnotationProblem
        The segmentation is malformed.
    """
    from pycocotools import mask as mask_utils

    oh, ow = out_hw if out_hw is not None else (h, w)
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise _AnnotationProblem(f"RLE segmentation needs 'counts' and 'size', got keys {sorted(segm)}")
        size = segm["size"]
        if not (isinstance(size, list | tuple) and len(size) == 2):
            raise _AnnotationProblem(f"RLE 'size' must be [height, width], got {size!r}")
        try:
            sh, sw = (int(v) for v in size)
        except (TypeError, ValueError):
            raise _AnnotationProblem(f"RLE 'size' must be [height, width], got {size!r}") from None
        if (sh, sw) != (h, w):
            raise _AnnotationProblem(f"RLE size is {sw}x{sh} (WxH) but the image is {w}x{h}")
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise _AnnotationProblem("uncompressed RLE counts must be integers")
            _check_counts(counts, h, w)
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        elif isinstance(counts, str | bytes):
            text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
            _check_counts(_rle_string_counts(text), h, w)
            rle = {"size": [h, w], "counts": text.encode("ascii")}
        else:
            raise _AnnotationProblem(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    elif isinstance(segm, list):
        if not segm:
            raise _AnnotationProblem("segmentation is empty")
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in segm):
            segm = [segm]  # a single flat polygon
        parts: list[list[float]] = []
        short: list[int] = []
        for i, part in enumerate(segm):
            if not isinstance(part, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in part
            ):
                raise _AnnotationProblem(f"polygon part {i} is not a list of numbers")
            if not all(math.isfinite(v) for v in part):
                raise _AnnotationProblem(f"polygon part {i} has NaN or infinite coordinates")
            if len(part) % 2:
                raise _AnnotationProblem(f"polygon part {i} has an odd number of coordinates ({len(part)})")
            if len(part) < 6:
                short.append(i)
                continue
            parts.append([float(v) for v in part])
        if not parts:
            npts = [len(p) // 2 for p in segm]
            raise _AnnotationProblem(f"polygon has fewer than 3 points (points per part: {npts})")
        if short:
            # Degenerate parts of an otherwise valid polygon cover no area; dropping them changes nothing.
            log.debug("dropping degenerate polygon parts %s", short)
        margin = POLYGON_MARGIN * max(h, w)
        for i, part in enumerate(parts):
            xs, ys = part[0::2], part[1::2]
            if min(xs) < -margin or max(xs) > w + margin or min(ys) < -margin or max(ys) > h + margin:
                raise _AnnotationProblem(
                    f"polygon part {i} has coordinates far outside the {w}x{h} image "
                    f"(x {min(xs):.6g}..{max(xs):.6g}, y {min(ys):.6g}..{max(ys):.6g})"
                )
        if (oh, ow) != (h, w):
            sx, sy = ow / w, oh / h
            parts = [[v * (sx if j % 2 == 0 else sy) for j, v in enumerate(part)] for part in parts]
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, oh, ow))
    else:
        raise _AnnotationProblem(
            f"segmentation must be a polygon list or an RLE dict, got {type(segm).__name__}"
        )
    try:
        mask = mask_utils.decode(rle)
    except Exception as exc:  # pycocotools raises ValueError / TypeError on bad RLE
        raise _AnnotationProblem(f"cannot decode segmentation: {display_text(exc)}") from None
    if mask.ndim == 3:
        mask = mask[:, :, 0]
    if mask.shape != (oh, ow):  # an RLE of a downscaled image
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((ow, oh), Image.NEAREST))
    return np.ascontiguousarray(mask.astype(bool))


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
        sub-folders, whichever holds the images). At read time a ``file_name`` missing under
        ``image_root`` is also tried relative to the annotation file's folder.
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
    coco : pycocotools.coco.COCO
        The pycocotools index (annotations whose image id is unknown are left out).

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
        from pycocotools.coco import COCO

        self.max_side = max_side
        self.annotation_file = Path(annotation_file)
        path = self.annotation_file
        if not path.exists():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        if path.is_dir():
            raise ValueError(f"expected a COCO annotation .json file, got a folder: {path}")
        raw = path.read_bytes()
        self._fingerprint = hashlib.sha256(raw).hexdigest()
        self.load_errors: list[ErrorRow] = []
        data = self._parse_json(raw, path)
        del raw
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError(
                f"{path} is not a COCO instances file: expected a JSON object with an 'images' list "
                "and an 'annotations' list"
            )
        anns_in = data.get("annotations")
        if not isinstance(anns_in, list):
            raise ValueError(
                f"{path} has no 'annotations' list (an image-info file without labels?); "
                "expected a COCO instances file"
            )
        if anns_in and isinstance(anns_in[0], dict) and "segments_info" in anns_in[0]:
            raise ValueError(
                f"{path} is in COCO panoptic format (annotations have 'segments_info'); convert it to "
                "detection format first (panopticapi's converters/panoptic2detection_coco_format.py)"
            )

        # --- images -------------------------------------------------------------------------------
        images: dict[str, dict[str, Any]] = {}
        raw_ids: dict[str, Any] = {}
        for i, img in enumerate(data["images"]):
            if not isinstance(img, dict) or "id" not in img or not isinstance(img["id"], int | str | float):
                self._note(None, None, f"images[{i}] has no usable 'id'; skipped")
                continue
            sid = _id_str(img["id"])
            fn = img.get("file_name")
            if not isinstance(fn, str) or not fn.strip():
                self._note(sid, None, f"image {sid} has no 'file_name'; skipped")
                continue
            if sid in images:
                self._note(
                    sid,
                    display_text(fn),
                    f"duplicate image id {sid} (also {display_text(images[sid]['file_name'])}); kept the first",
                )
                continue
            images[sid] = img
            raw_ids[sid] = img["id"]
        if not images:
            raise ValueError(f"no images in {path}: its 'images' list is empty or has no usable entries")

        # --- annotations ---------------------------------------------------------------------------
        anns: list[dict[str, Any]] = []
        orphans: dict[str, int] = defaultdict(int)
        for i, ann in enumerate(anns_in):
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int | str | float):
                self._note(None, None, f"annotations[{i}] has no usable 'image_id'; skipped")
                continue
            sid = _id_str(ann["image_id"])
            if sid not in images:
                orphans[sid] += 1
                continue
            fix: dict[str, Any] = {}
            if type(ann["image_id"]) is not type(raw_ids[sid]) or ann["image_id"] != raw_ids[sid]:
                fix["image_id"] = raw_ids[sid]  # e.g. "3" for image 3: pycocotools groups by exact value
            if not isinstance(ann.get("id"), int | str | float):
                fix.update(id=f"#{i}", _segaudit_no_id=True)
            if not isinstance(ann.get("category_id"), int | str | float):
                fix["category_id"] = None
            if fix:
                ann = {**ann, **fix}
            anns.append(ann)
        for sid, n in sorted(orphans.items(), key=lambda kv: _id_key(kv[0])):
            self._note(
                sid, None, f"{n} annotation(s) refer to image id {sid}, which is not in 'images'; ignored"
            )

        # --- categories ----------------------------------------------------------------------------
        cats_in = data.get("categories")
        names: list[str] = ["background"]
        ids: list[Any] = [None]
        self._cat_index: dict[str, int] = {}
        self._background_ids: set[str] = set()
        categories: list[dict[str, Any]] = []
        if isinstance(cats_in, list) and cats_in:
            valid = []
            for i, cat in enumerate(cats_in):
                if not isinstance(cat, dict) or not isinstance(cat.get("id"), int | str | float):
                    self._note(None, None, f"categories[{i}] has no usable 'id'; skipped")
                    continue
                valid.append(cat)
            for cat in sorted(valid, key=lambda c: _id_key(c["id"])):
                cid = _id_str(cat["id"])
                name = cat.get("name")
                name = display_text(name).strip() if name is not None and str(name).strip() else ""
                name = name or f"category_{cid}"
                if cid in self._cat_index or cid in self._background_ids:
                    self._note(None, None, f"duplicate category id {cid} ({name!r}); kept the first")
                    continue
                if is_background_name(name):
                    self._background_ids.add(cid)
                    continue
                if name in names:
                    self._note(
                        None,
                        None,
                        f"category name {name!r} is used by several ids; named id {cid} '{name} (id {cid})'",
                    )
                    name = f"{name} (id {cid})"
                self._cat_index[cid] = len(names)
                names.append(name)
                ids.append(cat["id"])
            categories = valid
        else:
            seen = sorted(
                {_id_str(a["category_id"]) for a in anns if a.get("category_id") is not None}, key=_id_key
            )
            for cid in seen:
                self._cat_index[cid] = len(names)
                names.append(f"category_{cid}")
                ids.append(cid)
            categories = [{"id": cid, "name": f"category_{cid}"} for cid in seen]
            self._note(None, None, "no 'categories' in annotation file; named categories by id")
        if len(names) > 255:
            raise ValueError(
                f"{path} has {len(names) - 1} categories; at most 254 fit in uint8 labels (255 is void)"
            )
        self.category_names: tuple[str, ...] = tuple(names)
        self.category_ids: tuple[Any, ...] = tuple(ids)

        # --- pycocotools index ---------------------------------------------------------------------
        coco = COCO()
        coco.dataset = {
            "images": list(images.values()),
            "annotations": anns,
            "categories": categories,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco
        self._images = images
        self._raw_ids = raw_ids
        self._order = sorted(images, key=_id_key)

        # --- image root ----------------------------------------------------------------------------
        self._ann_dir = path.resolve().parent
        if image_root is None:
            self.image_root = guess_image_root(
                path, [images[s]["file_name"] for s in self._order], [Path(c) for c in image_root_candidates]
            )
        else:
            self.image_root = Path(image_root)

    # ------------------------------------------------------------------------------------------------
    def _note(self, image_id: str | None, file_name: str | None, reason: str) -> None:
        self.load_errors.append(ErrorRow(image_id=image_id, file_name=file_name, stage="read", reason=reason))

    def _parse_json(self, raw: bytes, path: Path) -> Any:
        """Parse the annotation file; bytes that are not UTF-8 are kept (``surrogateescape``) with a note."""
        try:
            try:
                return json.loads(raw)
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
                data = json.loads(text)
                self._note(
                    None, None, "annotation file is not valid UTF-8; its undecodable bytes are kept as they are "
                    "(file names still open) and shown as \\xNN"
                )
                return data
        except RecursionError:
            raise ValueError(f"COCO annotation file {path} is not usable JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            raise ValueError(f"COCO annotation file {path} is not valid JSON: {display_text(exc)}") from None

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
        return self._fingerprint

    def resolve_image(self, file_name: str) -> Path:
        """Path of an image: under ``image_root``, else under the annotation file's folder.

        Raises
        ------
        SampleError
            ``file_name`` escapes the root, or the file exists in neither place.
        """
        rel = _safe_relative(file_name)
        shown = display_text(file_name)
        for base in (self.image_root, self._ann_dir):
            p = Path(base) / rel
            try:
                if p.is_file():
                    return p
                if p.is_dir():
                    raise SampleError(f"expected an image file but found a folder: {shown}")
            except OSError as exc:  # e.g. a name too long for the file system
                raise SampleError(f"cannot access image file {shown}: {exc.strerror or exc}") from None
        if self.image_root.resolve() == self._ann_dir:
            raise SampleError(f"image file not found: {shown} (looked in {self.image_root})")
        raise SampleError(f"image file not found: {shown} (looked in {self.image_root} and {self._ann_dir})")

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
        sample, issues = self.read_with_issues(ref)
        for row in issues:
            log.warning("%s (%s): %s", row.image_id, row.file_name, row.reason)
        return sample

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
        issues: list[ErrorRow] = []
        if (h, w) != (full_h, full_w):
            issues.append(ErrorRow(sid, file_name, "read", (
                f"image resized: {full_w}x{full_h} is over the {self.max_side} px side limit; audited at {w}x{h} "
                "with its masks resized to match")))

        semantic = np.zeros((h, w), dtype=np.uint8)
        crowd = np.zeros((h, w), dtype=bool)
        instances: list[Instance] = []
        for ann in self.coco.imgToAnns.get(self._raw_ids[sid], []):
            ann_id = None if ann.get("_segaudit_no_id") else _id_str(ann["id"])
            try:
                cat_idx = self._category_of(ann)
                if "segmentation" not in ann or _is_empty(ann["segmentation"]):
                    raise _AnnotationProblem("it has no segmentation (box-only annotation)")
                mask = _segmentation_to_mask(ann["segmentation"], full_h, full_w, (h, w))
                if not mask.any():
                    raise _AnnotationProblem("its mask is empty (0 pixels inside the image)")
            except _AnnotationProblem as exc:
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
        sample = Sample(
            image_id=sid,
            file_name=file_name,
            image=image,
            semantic=semantic,
            instances=instances,
            category_names=self.category_names,
            has_instances=True,
        )
        return sample, issues

    def _category_of(self, ann: dict[str, Any]) -> int:
        cid = ann.get("category_id")
        if cid is None:
            raise _AnnotationProblem("it has no category_id")
        scid = _id_str(cid)
        if scid in self._background_ids:
            raise _AnnotationProblem(f"its category id {scid} is the background category")
        idx = self._cat_index.get(scid)
        if idx is None:
            raise _AnnotationProblem(f"unknown category id {scid} (not in 'categories')")
        return idx
