"""Property-based fuzzing of the dataset readers (hypothesis): mutated COCO files, VOC trees and image bytes.

The property, for every mutated input: opening the dataset either works or raises the documented
``ValueError`` (not a COCO file, no images, ...); reading every image never raises; every image gives
exactly one sample or one error row; no row is the readers' last-resort ``"unexpected <Exception>"``
(so every problem has a reason written for it); every string is one line of valid UTF-8; and every
sample is well formed (mask shapes, label values, instance classes).

Examples are derandomised (the same ones on every run, so CI is stable) and no example database is written.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segaudit.data.readers import CocoDataset, VocDataset, is_annotation_issue, read_samples
from segaudit.data.readers._image import load_rgb
from segaudit.data.sample import IGNORE, ErrorRow, Sample, SampleError

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIDE = 12

# JSON values, with the ones readers have to think about: NaN, huge numbers, paths that climb out,
# NUL and lone surrogates, odd containers.
_SPECIAL_TEXT = st.sampled_from(
    ["", "../a.png", "/etc/passwd", "a\x00b.png", "\ud800", "caf\udce9.png", "<b>x</b>", "x" * 300, "a.png",
     "b.jpg", "0", "1", "background", "_background_", "segments_info", "counts", "size"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, -1, SIDE, SIDE + 1, 2**31, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | _SPECIAL_TEXT
    | st.text(max_size=12)
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(_SPECIAL_TEXT | st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)
_SPECIAL_NUMBERS = st.sampled_from(
    [0, -1, 1, 2, SIDE, SIDE + 1, 0.5, 1e9, -1e9, 1e300, 2**64, float("nan"), float("inf"), True]
)
_POLYGONS = st.lists(st.lists(_SPECIAL_NUMBERS | st.floats(-30, 30), max_size=10), max_size=3)
#: What a replaced value is drawn from: the values readers must think about, often; any JSON, sometimes.
VALUES = st.one_of(_SPECIAL_TEXT, _SPECIAL_NUMBERS, _POLYGONS, JSON)
_IDS = _SPECIAL_NUMBERS | _SPECIAL_TEXT
#: The fields that matter most to the reader, with values of about their kind; a mutation picks one of
#: them 3 times in 4 (grammar-aware fuzzing: random values at random places rarely hit a field).
_FIELD_VALUES = {
    "id": _IDS, "image_id": _IDS, "category_id": _IDS, "file_name": _SPECIAL_TEXT | st.text(max_size=8),
    "name": _SPECIAL_TEXT, "height": _SPECIAL_NUMBERS, "width": _SPECIAL_NUMBERS, "iscrowd": _SPECIAL_NUMBERS,
    "segmentation": _POLYGONS | JSON, "counts": JSON | _SPECIAL_TEXT, "size": JSON,
    "images": JSON, "annotations": JSON, "categories": JSON,
}
_FIELDS = set(_FIELD_VALUES)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _base_coco() -> dict[str, Any]:
    square = [2, 2, 9, 2, 9, 9, 2, 9]
    from pycocotools import mask as mask_utils

    m = np.zeros((SIDE, SIDE), np.uint8, order="F")
    m[4:8, 1:6] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": SIDE, "width": SIDE},
            {"id": 2, "file_name": "b.jpg", "height": SIDE, "width": SIDE},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [square], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": rle, "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 2, "segmentation": {"size": [SIDE, SIDE], "counts": [40, 10, 94]},
             "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}],
    }


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON tree, the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """Apply one random mutation (replace, delete, duplicate, insert) at a random place of ``doc``."""
    paths = _paths(doc)
    fields = [p for p in paths if p and (p[-1] in _FIELDS or (len(p) > 1 and p[-2] == "segmentation"))]
    focus = bool(fields) and data.draw(st.integers(0, 3), label="focus") > 0  # 3 times in 4
    path = data.draw(st.sampled_from(fields if focus else paths), label="path")
    op = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "insert"]), label="op")
    if not path:
        return data.draw(VALUES) if op == "replace" else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "replace":
        field = _FIELD_VALUES.get(key) if isinstance(key, str) else None
        strategy = field if field is not None and data.draw(st.integers(0, 3), label="typed") > 0 else VALUES
        parent[key] = data.draw(strategy, label="value")
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif op == "insert" and isinstance(parent, list):
        parent.insert(key, data.draw(VALUES, label="inserted"))
    elif op == "insert" and isinstance(parent, dict):
        parent[data.draw(_SPECIAL_TEXT, label="new key")] = data.draw(VALUES, label="inserted")
    return doc


def check_batch(refs: list, samples: list[Sample], errors: list[ErrorRow], names: tuple[str, ...]) -> None:
    """The reader's promises for one batch (see the module docstring)."""
    lost = [row for row in errors if not is_annotation_issue(row)]
    assert len(samples) + len(lost) == len(refs), (len(samples), [r.reason for r in lost], len(refs))
    for row in errors:
        assert not row.reason.startswith("unexpected"), row
        for text in (row.image_id or "", row.file_name or "", row.reason):
            text.encode("utf-8")  # storable in Parquet
            assert "\n" not in text and "\x00" not in text
    for sample in samples:
        h, w = sample.image.shape[:2]
        assert sample.image.dtype == np.uint8 and sample.image.shape == (h, w, 3) and h > 0 and w > 0
        assert sample.semantic.shape == (h, w) and sample.semantic.dtype == np.uint8
        values = set(np.unique(sample.semantic).tolist())
        assert values <= set(range(len(names))) | {IGNORE}, values
        for inst in sample.instances:
            assert inst.mask.shape == (h, w) and inst.mask.dtype == bool and inst.mask.any()
            assert 1 <= inst.category < len(names)
        sample.image_id.encode("utf-8")
        sample.file_name.encode("utf-8")


# ---------------------------------------------------------------------------------------------------------
# COCO
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_coco")
    rng = np.random.default_rng(0)
    (root / "a.png").write_bytes(_png(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)))
    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(root / "b.jpg")
    (root / "notes.png").write_text("not an image")
    return root


def _read_all_coco(path: Path, image_root: Path) -> None:
    try:
        data = CocoDataset(path, image_root=image_root)
    except ValueError as exc:  # documented: not JSON, not a COCO instances file, no images, ...
        assert str(exc)
        return
    for row in data.load_errors:
        row.reason.encode("utf-8")
        assert "\n" not in row.reason
    refs = data.refs()
    samples, errors = read_samples(data, refs)
    check_batch(refs, samples, errors, data.category_names)


@FUZZ
@given(data=st.data())
def test_coco_reader_on_mutated_json(coco_dir: Path, data: st.DataObject) -> None:
    doc = _base_coco()
    for _ in range(data.draw(st.integers(1, 4), label="n mutations")):
        doc = _mutate(doc, data)
    path = coco_dir / "annotations.json"
    path.write_text(json.dumps(doc))
    _read_all_coco(path, coco_dir)


@FUZZ
@given(data=st.data())
def test_coco_reader_on_mutated_bytes(coco_dir: Path, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(_base_coco()).encode())
    for _ in range(data.draw(st.integers(1, 6), label="n edits")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] = data.draw(st.sampled_from(list(b'"[]{},:0159.-e\\ \xe9\xff\x00nN')), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    path = coco_dir / "annotations_bytes.json"
    path.write_bytes(bytes(raw))
    _read_all_coco(path, coco_dir)


# ---------------------------------------------------------------------------------------------------------
# VOC
# ---------------------------------------------------------------------------------------------------------
_NAMES = ("background", "disc", "square", "triangle")


@st.composite
def label_files(draw, classes: int) -> bytes | None:
    """A label PNG: usually sensible, sometimes of another size, mode or value range; or garbage or none."""
    kind = draw(st.sampled_from(["good", "good", "size", "values", "mode", "bytes", "missing"]))
    if kind == "missing":
        return None
    h, w = (SIDE, SIDE) if kind != "size" else (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    values = list(range(classes)) + [IGNORE] + ([classes, classes + 7, 254] if kind == "values" else [])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = rng.choice(np.asarray(values, np.uint8), size=(h, w))
    if kind == "mode":
        mode = draw(st.sampled_from(["RGB", "RGBA", "LA", "I;16", "1"]))
        if mode == "I;16":  # 16-bit labels: small values are fine, large ones are not labels
            im = Image.fromarray(arr.astype(np.uint16) * draw(st.sampled_from([1, 300])))
        elif mode == "1":
            im = Image.fromarray(arr > 0)
        else:
            im = Image.fromarray(arr).convert(mode)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    png = _png(arr)
    if kind == "bytes":
        raw = bytearray(png)
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw[: draw(st.integers(0, len(raw)))])
    return png


@st.composite
def image_files(draw) -> bytes | None:
    kind = draw(st.sampled_from(["good", "good", "mode", "size", "bytes", "empty", "missing"]))
    if kind == "missing":
        return None
    if kind == "empty":
        return b""
    h, w = (SIDE, SIDE) if kind != "size" else (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    rgb = np.full((h, w, 3), draw(st.integers(0, 255)), np.uint8)
    mode = draw(st.sampled_from(["RGB", "L", "P", "RGBA", "CMYK", "I;16"])) if kind == "mode" else "RGB"
    if mode == "I;16":
        im = Image.fromarray(np.full((h, w), 4000, np.uint16))
    else:
        im = Image.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    raw = buf.getvalue()
    if kind == "bytes":
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        raw = bytes(b[: draw(st.integers(0, len(b)))])
    return raw


def _to_bytes(text: str) -> bytes:
    """``text`` as a file would hold it: lone surrogates of undecodable bytes back to those bytes, others as
    (invalid) UTF-8 of the surrogate itself."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


_SPLIT_LINES = st.sampled_from(["a", "b", "c", "../a", "/etc/passwd", "a/b", "..", ".", "# comment", "a # note",
                                "  b  ", "", "x" * 300, "caf\udce9", "\ud800", "a\x00b"])


@FUZZ
@given(
    images=st.tuples(image_files(), image_files()),
    labels=st.tuples(label_files(len(_NAMES)), label_files(len(_NAMES))),
    objects=st.tuples(label_files(6), label_files(6)),
    split=st.lists(_SPLIT_LINES, max_size=6) | st.binary(max_size=40),
    class_names=st.none() | st.lists(st.sampled_from(["background", "_background_", "disc", "", "__ignore__",
                                                        "cat", "caf\udce9"]), max_size=5),
    object_dir=st.booleans(),
)
def test_voc_reader_on_mutated_trees(images, labels, objects, split, class_names, object_dir) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz_voc_"))
    try:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (root / sub).mkdir(parents=True)
        if object_dir:
            (root / "SegmentationObject").mkdir()
        for stem, image, label, obj in zip("ab", images, labels, objects, strict=True):
            if image is not None:
                (root / "JPEGImages" / f"{stem}.png").write_bytes(image)
            if label is not None:
                (root / "SegmentationClass" / f"{stem}.png").write_bytes(label)
            if obj is not None and object_dir:
                (root / "SegmentationObject" / f"{stem}.png").write_bytes(obj)
        split_bytes = split if isinstance(split, bytes) else _to_bytes("\n".join(split))
        (root / "ImageSets" / "Segmentation" / "val.txt").write_bytes(split_bytes)
        if class_names is not None:
            (root / "class_names.txt").write_bytes(_to_bytes("\n".join(class_names)))
        try:
            data = VocDataset(root, split="val")
        except ValueError as exc:  # documented: empty split, bad class names, ...
            assert str(exc)
            return
        refs = data.refs()
        samples, errors = read_samples(data, refs)
        check_batch(refs, samples, errors, data.category_names)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# image decoding
# ---------------------------------------------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE + 3, 3), dtype=np.uint8))
    if fmt == "GIF":
        im = im.convert("P")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


_ENCODED = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")}


@FUZZ
@given(
    fmt=st.sampled_from(sorted(_ENCODED)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.none() | st.integers(0, 10**6),
)
def test_image_decoder_on_mutated_bytes(fmt: str, edits, cut) -> None:
    raw = bytearray(_ENCODED[fmt])
    for at, value in edits:
        raw[at % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    path = Path(tempfile.mkdtemp(prefix="fuzz_img_")) / f"x.{fmt.lower()}"
    try:
        path.write_bytes(bytes(raw))
        try:
            rgb = load_rgb(path)
        except SampleError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
