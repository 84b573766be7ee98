"""Parsing and indexing a COCO instances file: images, annotations per image, categories.

:func:`index_coco_file` reads the JSON once and builds a :class:`CocoIndex`; :class:`~segaudit.data.readers.coco.CocoDataset`
reads images and decodes masks from it.

Ids
    JSON ids are keyed by *type and value* (:func:`typed_id`): ``true`` is not ``1`` (in Python
    ``True == 1``), and ``"1"`` is not ``1``. Ids are shown and stored as strings (:func:`id_str`), so two
    images whose ids differ only in type (``"1"`` and ``1``) would share a row key: the later one is
    refused as *ambiguous* (a row in ``load_errors``) and annotations are never given to it. An annotation
    whose ``image_id`` matches no image exactly but is the string form of exactly one image's id
    (``"3"`` for image ``3``) is given to that image, as before.

Limits (memory stays flat in the annotation count)
    At most :data:`MAX_ANNOTATIONS_PER_IMAGE` annotations are kept per image and
    :data:`MAX_ANNOTATIONS_TOTAL` in all; the others are dropped while indexing, so that the parsed JSON
    can be freed, and the image gets one row ``"annotation limit: ..."`` when it is read. (Parsing the JSON
    itself still takes memory in proportion to the file.)
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segaudit.data.classmap import is_background_name
from segaudit.data.readers._text import display_text
from segaudit.data.sample import ErrorRow

__all__ = [
    "CocoIndex",
    "index_coco_file",
    "typed_id",
    "id_str",
    "id_sort_key",
    "MAX_ANNOTATIONS_PER_IMAGE",
    "MAX_ANNOTATIONS_TOTAL",
]

#: Annotations kept per image (COCO has at most 93 per image, LVIS a few hundred); the rest are reported.
MAX_ANNOTATIONS_PER_IMAGE = 1000

#: Annotations kept over the whole file (COCO train2017 has 860,001); the rest are reported per image.
MAX_ANNOTATIONS_TOTAL = 4_000_000

_ID_TYPES = int | str | float


def typed_id(value: Any) -> tuple[str, Any]:
    """The key of a JSON id by type and value: ``("bool", True)``, ``("int", 3)`` (also for ``3.0``),
    ``("float", 2.5)`` or ``("str", "3")``."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("int", int(value)) if value.is_integer() else ("float", value)
    return ("str", str(value))


def id_sort_key(value: Any) -> tuple[int, Any]:
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


def id_str(value: Any) -> str:
    """The string form of a COCO id (``3.0`` and ``3`` are the same id), safe to store and show."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return display_text(value)


def _type_name(value: Any) -> str:
    return {"bool": "a boolean", "int": "a number", "float": "a number", "str": "a string"}[typed_id(value)[0]]


@dataclass
class CocoIndex:
    """What a COCO file says, indexed.

    Attributes
    ----------
    fingerprint : str
        sha256 of the file's bytes.
    images : dict
        Image entry by id string (:func:`id_str`), ambiguous and duplicate ids left out.
    order : list of str
        Image ids sorted by :func:`id_sort_key`.
    annotations : dict
        Kept annotations by image id string, in file order.
    dropped : dict
        Annotations past the limits, by image id string.
    category_names, category_ids : tuple
        ``"background"`` then the categories sorted by id; the COCO id of each (None for background).
    category_index : dict
        Category id string -> index into ``category_names``.
    background_ids : set of str
        Ids of categories named background.
    load_errors : list of ErrorRow
    """

    fingerprint: str
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    category_names: tuple[str, ...] = ()
    category_ids: tuple[Any, ...] = ()
    category_index: dict[str, int] = field(default_factory=dict)
    background_ids: set[str] = field(default_factory=set)
    load_errors: list[ErrorRow] = field(default_factory=list)

    def note(self, image_id: str | None, file_name: str | None, reason: str) -> None:
        self.load_errors.append(ErrorRow(image_id=image_id, file_name=file_name, stage="read", reason=reason))


def _parse_json(raw: bytes, path: Path, note: Callable[[str], None]) -> Any:
    """Parse the annotation file; bytes that are not UTF-8 are kept (``surrogateescape``) with a note."""
    try:
        try:
            return json.loads(raw)
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
            data = json.loads(text)
            note("annotation file is not valid UTF-8; its undecodable bytes are kept as they are "
                 "(file names still open) and shown as \\xNN")
            return data
    except RecursionError:
        raise ValueError(f"COCO annotation file {path} is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ValueError(f"COCO annotation file {path} is not valid JSON: {display_text(exc)}") from None


def _check_layout(data: Any, path: Path) -> list[Any]:
    """The ``annotations`` list of a COCO instances file; ValueError naming what the file is instead."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(
            f"{path} is not a COCO instances file: expected a JSON object with an 'images' list "
            "and an 'annotations' list"
        )
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise ValueError(
            f"{path} has no 'annotations' list (an image-info file without labels?); "
            "expected a COCO instances file"
        )
    if anns and isinstance(anns[0], dict) and "segments_info" in anns[0]:
        raise ValueError(
            f"{path} is in COCO panoptic format (annotations have 'segments_info'); convert it to "
            "detection format first (panopticapi's converters/panoptic2detection_coco_format.py)"
        )
    return anns


def _index_images(index: CocoIndex, images_in: list[Any]) -> tuple[dict[tuple[str, Any], str], set[str]]:
    """Fill ``index.images``; return the id string of each typed id, and the ambiguous id strings."""
    by_typed: dict[tuple[str, Any], str] = {}
    ambiguous: set[str] = set()
    for i, img in enumerate(images_in):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img["id"], _ID_TYPES):
            index.note(None, None, f"images[{i}] has no usable 'id'; skipped")
            continue
        sid, key = id_str(img["id"]), typed_id(img["id"])
        fn = img.get("file_name")
        if not isinstance(fn, str) or not fn.strip():
            index.note(sid, None, f"image {sid} has no 'file_name'; skipped")
            continue
        if sid in index.images:
            first = index.images[sid]
            if key in by_typed:
                reason = f"duplicate image id {sid} (also {display_text(first['file_name'])}); kept the first"
            else:
                ambiguous.add(sid)
                reason = (f"ambiguous image id {sid}: {_type_name(img['id'])} here, {_type_name(first['id'])} for "
                          f"{display_text(first['file_name'])}; kept the first, this image and the annotations "
                          "of its id are skipped")
            index.note(sid, display_text(fn), reason)
            continue
        index.images[sid] = img
        by_typed[key] = sid
    return by_typed, ambiguous


def _image_of(ann_image_id: Any, by_typed: dict[tuple[str, Any], str], index: CocoIndex,
              ambiguous: set[str]) -> str | None:
    """The image an annotation belongs to: the exact typed id, else an unambiguous id of the same string."""
    sid = by_typed.get(typed_id(ann_image_id))
    if sid is not None:
        return sid
    sid = id_str(ann_image_id)
    if sid in index.images and sid not in ambiguous and typed_id(index.images[sid]["id"])[0] != "bool":
        return sid  # e.g. "3" for image 3
    return None


def _index_annotations(index: CocoIndex, anns_in: list[Any], by_typed: dict[tuple[str, Any], str],
                       ambiguous: set[str]) -> set[str]:
    """Fill ``index.annotations`` and ``index.dropped``; return the category ids the annotations use."""
    kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    orphans: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    used_categories: set[str] = set()
    total = 0
    for i, ann in enumerate(anns_in):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), _ID_TYPES):
            index.note(None, None, f"annotations[{i}] has no usable 'image_id'; skipped")
            continue
        sid = _image_of(ann["image_id"], by_typed, index, ambiguous)
        if sid is None:
            orphans[id_str(ann["image_id"])] += 1
            continue
        if isinstance(ann.get("category_id"), _ID_TYPES):
            used_categories.add(id_str(ann["category_id"]))
        if len(kept[sid]) >= MAX_ANNOTATIONS_PER_IMAGE or total >= MAX_ANNOTATIONS_TOTAL:
            dropped[sid] += 1
            continue
        fix: dict[str, Any] = {}
        if not isinstance(ann.get("id"), _ID_TYPES):
            fix.update(id=f"#{i}", _segaudit_no_id=True)
        if not isinstance(ann.get("category_id"), _ID_TYPES):
            fix["category_id"] = None
        kept[sid].append({**ann, **fix} if fix else ann)
        total += 1
    for sid, n in sorted(orphans.items(), key=lambda kv: id_sort_key(kv[0])):
        why = "which is ambiguous (see its row)" if sid in ambiguous else "which is not in 'images'"
        index.note(sid, None, f"{n} annotation(s) refer to image id {sid}, {why}; ignored")
    index.annotations, index.dropped = dict(kept), dict(dropped)
    return used_categories


def _index_categories(index: CocoIndex, cats_in: Any, used: set[str], path: Path) -> None:
    """Fill the category fields: background first, then the categories sorted by id."""
    names: list[str] = ["background"]
    ids: list[Any] = [None]
    if isinstance(cats_in, list) and cats_in:
        valid = []
        for i, cat in enumerate(cats_in):
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), _ID_TYPES):
                index.note(None, None, f"categories[{i}] has no usable 'id'; skipped")
                continue
            valid.append(cat)
        for cat in sorted(valid, key=lambda c: id_sort_key(c["id"])):
            cid = id_str(cat["id"])
            name = cat.get("name")
            name = display_text(name).strip() if name is not None and str(name).strip() else ""
            name = name or f"category_{cid}"
            if cid in index.category_index or cid in index.background_ids:
                index.note(None, None, f"duplicate category id {cid} ({name!r}); kept the first")
                continue
            if is_background_name(name):
                index.background_ids.add(cid)
                continue
            if name in names:
                index.note(None, None,
                           f"category name {name!r} is used by several ids; named id {cid} '{name} (id {cid})'")
                name = f"{name} (id {cid})"
            index.category_index[cid] = len(names)
            names.append(name)
            ids.append(cat["id"])
    else:
        for cid in sorted(used, key=id_sort_key):
            index.category_index[cid] = len(names)
            names.append(f"category_{cid}")
            ids.append(cid)
        index.note(None, None, "no 'categories' in annotation file; named categories by id")
    if len(names) > 255:
        raise ValueError(f"{path} has {len(names) - 1} categories; at most 254 fit in uint8 labels (255 is void)")
    index.category_names, index.category_ids = tuple(names), tuple(ids)


def index_coco_file(path: Path) -> CocoIndex:
    """Read, parse and index a COCO instances file.

    Raises
    ------
    ValueError
        Not JSON, not a COCO instances file (or a panoptic one), no images, more than 254 categories.
    """
    raw = path.read_bytes()
    index = CocoIndex(fingerprint=hashlib.sha256(raw).hexdigest())
    data = _parse_json(raw, path, lambda reason: index.note(None, None, reason))
    del raw
    anns_in = _check_layout(data, path)
    by_typed, ambiguous = _index_images(index, data["images"])
    if not index.images:
        raise ValueError(f"no images in {path}: its 'images' list is empty or has no usable entries")
    used = _index_annotations(index, anns_in, by_typed, ambiguous)
    del anns_in
    _index_categories(index, data.get("categories"), used, path)
    del data  # only the kept annotations stay in memory
    index.order = sorted(index.images, key=id_sort_key)
    return index
