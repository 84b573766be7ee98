"""A corpus of bad and hostile inputs, each run through a whole audit (read -> model + CAMs -> scores).

The corpus is generated here, from a tiny synthetic dataset (3 images of 48 px, COCO and VOC): one COCO
dataset and one VOC dataset that hold every bad item beside the 6 good images, two COCO datasets for the
kinds that change a whole file (no ``categories``, ids from 0), and the clean twins. For every kind:

* the audit completes;
* the bad item is exactly one row of the errors table, with a reason that says what is wrong (or, for
  unusual but valid input such as CMYK or EXIF-rotated images, no row and an audited image);
* every good image's rows (images, scores, maps, thumbnails, confusion, instances, findings) are present
  and equal to those of the run without the bad items (up to float noise from other batch shapes).

The audit runs in-process (the core the Prefect tasks wrap); one Prefect run of the bad COCO dataset
checks the written tables and the HTML report (the HTML file name comes out escaped). Also here: the
clear user errors of the command line that ``tests/test_cli.py`` does not cover.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from segaudit.auditors.batch import BatchRows, explain_batch, finish_tables, score_batch
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import MAX_SIDE, CocoDataset, VocDataset, is_annotation_issue, read_samples
from segaudit.data.readers._image import load_rgb
from segaudit.devtools.synth import generate_dataset
from segaudit.models.registry import load_model
from segaudit.settings import AuditConfig

N_GOOD = 3
SIZE = 48
ROW_TABLES = ("images", "scores", "maps", "thumbnails", "confusion", "instances", "findings")
HTML_NAME = "<img src=x onerror=alert(1)>.png"
NON_UTF8_NAME = b"caf\xe9.png"


@dataclass(frozen=True)
class Expect:
    """What one kind of bad input must give.

    ``key`` finds the item: a file name (``file_name`` column) or, for dataset-level rows, a reason
    pattern alone. ``reason``: regex of its single error row, None for input that must be read without
    any row. ``lost``: whether the image is absent from the images table (it could not be audited).
    """

    kind: str
    file_name: str | None
    reason: str | None
    lost: bool = False


# ---------------------------------------------------------------------------------------------------------
# building the corpus
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    generate_dataset(root, n_train=0, n_val=N_GOOD, size=SIZE, seed=3)
    return root


@pytest.fixture(scope="module")
def model():
    return load_model("demo")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two spinning OpenMP threads made these small
    batches 10 to 40 times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _base_coco(base: Path) -> dict[str, Any]:
    return json.loads((base / "annotations" / "instances_val.json").read_text())


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height`` (CRC fixed): only the header is big."""
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _square(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _copy_anns(data: dict[str, Any], src_image: int, dst_image: int) -> list[dict[str, Any]]:
    """Copies of an image's annotations for another image of the same size (new ids)."""
    anns = [a for a in data["annotations"] if a["image_id"] == src_image]
    return [{**a, "id": 10_000 + dst_image * 100 + k, "image_id": dst_image} for k, a in enumerate(anns)]


def build_coco_corpus(base: Path, root: Path) -> tuple[Path, Path, list[Expect]]:
    """The bad COCO dataset: the good images plus one item per kind. Returns (json, image root, expectations)."""
    data = _base_coco(base)
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    for img in data["images"]:
        shutil.copy(base / "JPEGImages" / img["file_name"], images_dir / img["file_name"])
    first = data["images"][0]["file_name"]
    first_rgb = load_rgb(images_dir / first)
    second_rgb = load_rgb(images_dir / data["images"][1]["file_name"])
    jpeg = (images_dir / first).read_bytes()
    expects: list[Expect] = []
    next_id = [100]

    def add_image(kind, file_name, content, reason=None, lost=False, hw=(SIZE, SIZE), anns_from=None, anns=()):
        image_id = next_id[0]
        next_id[0] += 1
        if isinstance(content, bytes):
            (images_dir / file_name).write_bytes(content)
        elif isinstance(content, Image.Image):
            content.save(images_dir / file_name)
        entry = {"id": image_id, "file_name": file_name}
        if hw is not None:
            entry.update(height=hw[0], width=hw[1])
        data["images"].append(entry)
        if anns_from is not None:
            data["annotations"] += _copy_anns(data, anns_from, image_id)
        for k, ann in enumerate(anns):
            data["annotations"].append({"id": 20_000 + image_id * 10 + k, "image_id": image_id, "iscrowd": 0, **ann})
        shown = file_name if "\0" not in file_name else file_name.replace("\0", "\\x00")
        expects.append(Expect(kind, shown, reason, lost))

    # --- files that are not (readable) images -------------------------------------------------------
    add_image("zero-byte file", "zero.jpg", b"", r"file is empty \(0 bytes\)", lost=True)
    add_image("truncated JPEG", "truncated.jpg", jpeg[: len(jpeg) // 2], r"file is truncated", lost=True)
    add_image("not an image", "notes.jpg", b"these are my notes, not a JPEG\n" * 20,
              r"not a recognised image format", lost=True)
    add_image("missing file", "missing.jpg", None, r"image file not found: missing\.jpg", lost=True)
    add_image("folder instead of a file", "folder.jpg", None, r"found a folder", lost=True)
    (images_dir / "folder.jpg").mkdir()
    add_image("decompression bomb (12000x12000 header)", "bomb.png", _bomb_png(12000, 12000),
              r"over the 100 MP limit \(refused as a possible decompression bomb\)", lost=True)
    add_image("size differs from the JSON", "wrongsize.jpg", jpeg, r"image is 48x48 but annotation says 40x48",
              lost=True, hw=(SIZE, 40))
    # --- unusual but valid images: audited, no row ------------------------------------------------------
    add_image("CMYK JPEG", "cmyk.jpg", Image.fromarray(first_rgb).convert("CMYK"), anns_from=1)
    grey = Image.fromarray(first_rgb).convert("L")
    add_image("greyscale PNG", "grey.png", grey, anns_from=1)
    grey16 = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)  # I;16, 65535 = white
    add_image("16-bit greyscale PNG", "grey16.png", _png_bytes(grey16), anns_from=1)
    alpha = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 1), dtype=np.uint8)
    add_image("RGBA PNG (alpha dropped)", "rgba.png", Image.fromarray(np.concatenate([first_rgb, alpha], 2)),
              anns_from=1)
    add_image("palette PNG", "palette.png", Image.fromarray(first_rgb).quantize(64), anns_from=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    add_image("EXIF-rotated photo", "rotated.png",
              _png_bytes(Image.fromarray(np.ascontiguousarray(np.rot90(second_rgb, 1))), exif=exif), anns_from=2)
    add_image("1x1 image", "dot.png", Image.new("RGB", (1, 1), (200, 30, 30)), hw=(1, 1),
              anns=[{"category_id": 1, "segmentation": [_square(-1, -1, 2, 2)]}])
    wide = np.zeros((200, 5000, 3), np.uint8)
    wide[:, :, 0] = np.linspace(0, 255, 5000, dtype=np.uint8)
    add_image(f"very large image (5000 px > MAX_SIDE {MAX_SIDE})", "large.jpg", Image.fromarray(wide),
              r"image resized: 5000x200 is over the 4096 px side limit; audited at 4096x164", hw=(200, 5000),
              anns=[{"category_id": 2, "segmentation": [_square(1000, 40, 2000, 160)]}])
    # --- hostile file names -------------------------------------------------------------------------------
    (root / "outside.jpg").write_bytes(jpeg)  # a real image one level up: must not be read
    add_image("'../' in the file name", "../outside.jpg", None, r"escapes the image root", lost=True)
    add_image("absolute path", str((images_dir / first).resolve()), None, r"escapes the image root", lost=True)
    add_image("NUL byte in the file name", "a\0b.jpg", None, r"NUL byte", lost=True)
    add_image("file name too long", "x" * 300 + ".jpg", None, r"File name too long|not found", lost=True)
    add_image("HTML in the file name", HTML_NAME, Image.fromarray(first_rgb), anns_from=1)
    add_image("newline in the file name", "line\nbreak.png", Image.fromarray(first_rgb), anns_from=1)
    expects[-1] = Expect(expects[-1].kind, "line\\nbreak.png", None)
    # non-UTF-8 bytes: the file exists under that byte name and the JSON holds the raw byte
    (images_dir / os.fsdecode(NON_UTF8_NAME)).write_bytes(_png_bytes(Image.fromarray(first_rgb)))
    add_image("non-UTF-8 bytes in the file name", "@NONUTF8@", None)
    data["annotations"] += _copy_anns(data, 1, next_id[0] - 1)
    expects[-1] = Expect(expects[-1].kind, None, r"annotation file is not valid UTF-8")
    # --- broken annotations of good images (skipped; the image keeps its other labels) -----------------
    bad_anns = [
        ("polygon with 2 points", {"segmentation": [[1, 1, 20, 20]]}, r"fewer than 3 points"),
        ("polygon with NaN", {"segmentation": [[1, 1, float("nan"), 20, 30, 5]]}, r"NaN or infinite"),
        ("polygon out of bounds", {"segmentation": [_square(100, 100, 140, 140)]}, r"mask is empty"),
        ("polygon at 1e9", {"segmentation": [_square(0, 0, 1e9, 1e9)]}, r"far outside the 48x48 image"),
        ("RLE size differs from the image", {"segmentation": {"size": [24, 24], "counts": [576]}},
         r"RLE size is 24x24 \(WxH\) but the image is 48x48"),
        ("RLE run lengths do not add up", {"segmentation": {"size": [48, 48], "counts": [5, 7]}},
         r"run lengths sum to 12"),
        ("unknown category id", {"category_id": 77, "segmentation": [_square(2, 2, 9, 9)]},
         r"unknown category id 77"),
        ("box-only annotation", {"bbox": [1, 1, 5, 5]}, r"no segmentation"),
    ]
    for k, (kind, ann, reason) in enumerate(bad_anns):
        ann_id = 900 + k
        data["annotations"].append({"id": ann_id, "image_id": 1 + k % N_GOOD, "category_id": 1, "iscrowd": 0, **ann})
        expects.append(Expect(kind, None, rf"^annotation {ann_id} skipped: .*{reason}"))
    # --- dataset-level problems --------------------------------------------------------------------------
    data["images"].append({"id": 1, "file_name": "dup.jpg", "height": SIZE, "width": SIZE})
    expects.append(Expect("duplicate image id", "dup.jpg", r"duplicate image id 1 \(also .*\); kept the first",
                          lost=True))
    data["annotations"].append({"id": 950, "image_id": 4242, "category_id": 1, "segmentation": [_square(1, 1, 5, 5)]})
    expects.append(Expect("annotation of an absent image", None, r"refer to image id 4242, which is not in 'images'"))

    text = json.dumps(data).encode()
    ann_file = root / "annotations.json"
    ann_file.write_bytes(text.replace(b"@NONUTF8@", NON_UTF8_NAME))
    return ann_file, images_dir, expects


def _write_voc_label(path: Path, labels: np.ndarray) -> None:
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def build_voc_corpus(base: Path, root: Path) -> tuple[Path, list[Expect]]:
    """The bad VOC dataset: the base tree plus one item per kind. Returns (root, expectations)."""
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("annotations", "*.json"))
    stems = [s for s in (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()]
    src = stems[0]
    cls = np.asarray(Image.open(root / "SegmentationClass" / f"{src}.png"))
    obj = np.asarray(Image.open(root / "SegmentationObject" / f"{src}.png"))
    expects: list[Expect] = []
    lines = list(stems)

    def add(kind, stem, reason=None, lost=False, image=True, label=cls, objects=obj):
        if image:
            shutil.copy(root / "JPEGImages" / f"{src}.jpg", root / "JPEGImages" / f"{stem}.jpg")
        if label is not None:
            _write_voc_label(root / "SegmentationClass" / f"{stem}.png", label)
        if objects is not None:
            _write_voc_label(root / "SegmentationObject" / f"{stem}.png", objects)
        lines.append(stem)
        expects.append(Expect(kind, f"JPEGImages/{stem}.jpg", reason, lost))

    small = np.asarray(Image.fromarray(cls).resize((40, 40), Image.NEAREST))
    add("VOC label of the wrong size", "v_size", r"label SegmentationClass/v_size\.png is 40x40 but image is 48x48",
        lost=True, label=None)
    _write_voc_label(root / "SegmentationClass" / "v_size.png", small)
    add("VOC label in the wrong mode (RGB, non-VOC colours)", "v_mode",
        r"RGB image with \d+ colour\(s\) not in the VOC colour map", lost=True, label=None)
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:, :, 1] = np.arange(SIZE, dtype=np.uint8)[None, :] * 3 + 1
    Image.fromarray(rgb).save(root / "SegmentationClass" / "v_mode.png")
    add("VOC label values outside the class range", "v_range", r"has values \[9\] outside 0\.\.5", lost=True,
        label=np.where((cls > 0) & (cls < 255), 9, cls))
    add("VOC image listed without its label", "v_nolabel", r"label file not found: SegmentationClass/v_nolabel\.png",
        lost=True, label=None)
    add("VOC label without its image", "v_noimage", r"image file not found: JPEGImages/v_noimage\.jpg", lost=True,
        image=False)
    add("missing SegmentationObject", "v_noobj", r"instances skipped: object label SegmentationObject/v_noobj\.png "
        r"not found", objects=None)
    add("SegmentationObject of the wrong size", "v_objsize", r"instances skipped: object label .* is 40x40",
        objects=small)
    # a stem that is not UTF-8: files named with the raw byte, the split file holding it
    raw = os.fsdecode(b"v_caf\xe9")
    shutil.copy(root / "JPEGImages" / f"{src}.jpg", root / "JPEGImages" / f"{raw}.jpg")
    _write_voc_label(root / "SegmentationClass" / f"{raw}.png", cls)
    _write_voc_label(root / "SegmentationObject" / f"{raw}.png", obj)
    expects.append(Expect("non-UTF-8 VOC file stem", "JPEGImages/v_caf\\xe9.jpg", None))
    expects.append(Expect("'../' in the VOC split file", None, r"'\.\./\.\./etc/passwd' is not a file stem"))
    split = "\n".join(lines).encode() + b"\nv_caf\xe9\n../../etc/passwd\n"
    (root / "ImageSets" / "Segmentation" / "val.txt").write_bytes(split)
    return root, expects


# ---------------------------------------------------------------------------------------------------------
# auditing in-process
# ---------------------------------------------------------------------------------------------------------
def audit_tables(data, model, mapping: dict[str, str] | None = None, batch_size: int = 16) -> dict[str, pd.DataFrame]:
    """A whole audit in-process: the dataset's load errors, then read -> explain -> score per batch."""
    class_map = build_class_map(data.category_names, model.class_names, mapping)
    config = AuditConfig(thumbnail_size=16, batch_size=batch_size)
    rows = BatchRows(errors=[asdict(e) for e in data.load_errors])
    refs = data.refs()
    for i in range(0, len(refs), batch_size):
        samples, errors = read_samples(data, refs[i : i + batch_size])
        rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    return finish_tables(rows, config.rules, config.methods, config.layers_of(model))


def _rows_of(
    frames: dict[str, pd.DataFrame], ids: dict[str, str], drop: tuple[str, ...] = ()
) -> dict[str, pd.DataFrame]:
    """The rows of the images ``ids`` (image id -> common key), keyed and ordered by that key, without
    the dataset-relative ranks (and the columns ``drop``)."""
    out = {}
    for name in ROW_TABLES:
        frame = frames[name]
        frame = frame[frame["image_id"].isin(ids)].copy()
        frame["image_id"] = frame["image_id"].map(ids)
        frame = frame.drop(columns=[c for c in ("review_rank", "rank", *drop) if c in frame.columns])
        if name == "maps":
            frame["values"] = frame["values"].map(lambda v: np.asarray(v, dtype=np.float64).round(5).tolist())
        keys = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, str | int | np.integer)).all()]
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def assert_same_rows(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in ROW_TABLES:
        assert len(got[name]) == len(want[name]), (name, len(got[name]), len(want[name]))
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-4, atol=1e-5, obj=name)


def _check_kinds(frames: dict[str, pd.DataFrame], expects: list[Expect]) -> None:
    errors, images = frames["errors"], frames["images"]
    assert not errors["reason"].str.startswith("unexpected").any(), errors
    claimed: set[int] = set()
    for e in expects:
        mine = errors if e.file_name is None else errors[errors["file_name"] == e.file_name]
        if e.reason is None:
            assert mine.empty, (e.kind, mine.to_dict("records"))
        else:
            hits = mine[mine["reason"].str.contains(e.reason, regex=True)]
            assert len(hits) == 1, (e.kind, e.reason, mine.to_dict("records"))
            claimed.update(hits.index)
        if e.file_name is not None:
            audited = (images["file_name"] == e.file_name).sum()
            assert audited == (0 if e.lost else 1), (e.kind, audited)
    unclaimed = errors.drop(index=list(claimed))
    assert unclaimed.empty, unclaimed.to_dict("records")  # no row that no kind explains


# ---------------------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------------------
def test_bad_input_corpus(base: Path, model, tmp_path: Path, capsys) -> None:
    kinds: list[str] = []
    # COCO: every bad item beside the good images, against the clean twin
    ann_file, images_dir, coco_expects = build_coco_corpus(base, tmp_path / "coco")
    bad = audit_tables(CocoDataset(ann_file, image_root=images_dir), model)
    clean_data = CocoDataset(base / "annotations" / "instances_val.json", image_root=base / "JPEGImages")
    clean = audit_tables(clean_data, model)
    assert clean["errors"].empty and len(clean["images"]) == N_GOOD
    _check_kinds(bad, coco_expects)
    good = {str(i): str(i) for i in range(1, N_GOOD + 1)}
    assert_same_rows(_rows_of(bad, good), _rows_of(clean, good))
    kinds += [e.kind for e in coco_expects]

    # unusual images that hold the same pixels as a good one give the same rows (the conversion is right)
    by_name = dict(zip(bad["images"]["file_name"], bad["images"]["image_id"], strict=True))
    for variant, source in (("rgba.png", "1"), ("rotated.png", "2"), ("grey16.png", by_name["grey.png"])):
        got = bad["scores"][bad["scores"]["image_id"] == by_name[variant]].drop(columns="image_id")
        want = bad["scores"][bad["scores"]["image_id"] == source].drop(columns="image_id")
        assert len(got) and len(got) == len(want), variant
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True),
                                      check_exact=False, rtol=1e-4, atol=1e-5, obj=variant)
    shown = bad["images"].set_index("file_name")
    assert shown.loc["large.jpg", "width"] == MAX_SIDE and shown.loc["dot.png", "width"] == 1
    assert "caf\\xe9.png" in shown.index and HTML_NAME in shown.index

    # COCO files changed as a whole: compared with the clean run image by image (by file name)
    names = {img["id"]: img["file_name"] for img in _base_coco(base)["images"]}
    clean_by_name = _rows_of(clean, {str(i): n for i, n in names.items()})
    data = _base_coco(base)
    del data["categories"]
    no_cats = CocoDataset(_write_json(tmp_path / "nocats" / "a.json", data), image_root=base / "JPEGImages")
    used = {ann["category_id"] for ann in data["annotations"]}
    mapping = {f"category_{c['id']}": c["name"] for c in _base_coco(base)["categories"] if c["id"] in used}
    frames = audit_tables(no_cats, model, mapping=mapping)
    _check_kinds(frames, [Expect("no 'categories' list", None, r"no 'categories' in annotation file")])
    assert_same_rows(_rows_of(frames, {str(i): n for i, n in names.items()}), clean_by_name)
    kinds.append("no 'categories' list")

    data = _base_coco(base)
    for group in ("images", "annotations", "categories"):
        for item in data[group]:
            item["id"] -= 1
    for ann in data["annotations"]:
        ann["image_id"] -= 1
        ann["category_id"] -= 1
    zero = CocoDataset(_write_json(tmp_path / "zero" / "a.json", data), image_root=base / "JPEGImages")
    assert zero.category_names == tuple(model.class_names)  # category id 0 is a class, not the background
    frames = audit_tables(zero, model)
    assert frames["errors"].empty
    shifted = {str(i - 1): n for i, n in names.items()}
    clean_no_ann_ids = _rows_of(clean, {str(i): n for i, n in names.items()}, drop=("annotation_id",))
    assert_same_rows(_rows_of(frames, shifted, drop=("annotation_id",)), clean_no_ann_ids)
    kinds.append("image, annotation and category ids starting at 0")

    # VOC: every bad item beside the good images, against the clean twin
    voc_root, voc_expects = build_voc_corpus(base, tmp_path / "voc")
    bad = audit_tables(VocDataset(voc_root, split="val"), model)
    clean = audit_tables(VocDataset(base, split="val"), model)
    assert clean["errors"].empty and len(clean["images"]) == N_GOOD
    _check_kinds(bad, voc_expects)
    good = {s: s for s in clean["images"]["image_id"]}
    assert_same_rows(_rows_of(bad, good), _rows_of(clean, good))
    assert "v_caf\\xe9" in set(bad["images"]["image_id"])
    kinds += [e.kind for e in voc_expects]

    assert len(kinds) == len(set(kinds)) >= 25
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(kinds)} kinds, each audited to completion: one error row per bad "
              "item, unusual but valid images audited, every good image's rows unchanged")


def test_read_samples_reports_lost_images_and_skipped_annotations_apart(base: Path, tmp_path: Path) -> None:
    ann_file, images_dir, expects = build_coco_corpus(base, tmp_path / "coco")
    data = CocoDataset(ann_file, image_root=images_dir)
    samples, errors = read_samples(data, data.refs())
    lost = {e.file_name for e in expects if e.lost}
    rows = data.load_errors + errors
    assert {r.file_name for r in rows if r.file_name and not is_annotation_issue(r)} == lost
    assert {s.file_name for s in samples}.isdisjoint(lost)
    for row in rows:  # every string is storable UTF-8 on one line
        for text in (row.image_id or "", row.file_name or "", row.reason):
            text.encode("utf-8")
            assert "\n" not in text and "\0" not in text


# ---------------------------------------------------------------------------------------------------------
# security: paths cannot escape the dataset root
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "file_name",
    ["../secret.png", "a/../../secret.png", "..\\secret.png", "/etc/passwd", "C:/Windows/win.ini", "\\\\host\\x.png"],
)
def test_coco_image_paths_cannot_escape_the_root(tmp_path: Path, file_name: str) -> None:
    root = tmp_path / "data"
    (root / "images" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "secret.png")  # readable if the path escaped
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "secret.png")
    ann = _write_json(root / "a.json", {"images": [{"id": 1, "file_name": file_name}], "annotations": []})
    data = CocoDataset(ann, image_root=root / "images")
    samples, errors = read_samples(data, data.refs())
    assert samples == [] and len(errors) == 1
    assert "escapes the image root" in errors[0].reason


def test_voc_split_cannot_name_files_outside_the_root(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("annotations", "*.json"))
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("../../x\n/etc/passwd\na/b\n..\nval_000000\n")
    data = VocDataset(root, split="val")
    assert [r.image_id for r in data.refs()] == ["val_000000"]
    assert len(data.load_errors) == 4 and all("is not a file stem" in r.reason for r in data.load_errors)


# ---------------------------------------------------------------------------------------------------------
# the Prefect flow once: the tables are written (non-UTF-8 names included) and the report escapes HTML
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_flow_writes_the_corpus_and_the_report_escapes_names(prefect_server, base: Path, model, tmp_path) -> None:
    from segaudit.flows.audit import audit

    from segaudit.runs.tables import load_run

    ann_file, images_dir, expects = build_coco_corpus(base, tmp_path / "coco")
    run_dir = audit(dataset=str(ann_file), image_root=str(images_dir), model="demo", out=str(tmp_path / "runs"),
                    run_id="corpus", batch_size=8)
    run = load_run(run_dir)
    frames = audit_tables(CocoDataset(ann_file, image_root=images_dir), model)
    assert sorted(zip(run.errors["file_name"].fillna(""), run.errors["reason"], strict=True)) == sorted(
        zip(frames["errors"]["file_name"].fillna(""), frames["errors"]["reason"], strict=True)
    )
    assert sorted(run.images["file_name"]) == sorted(frames["images"]["file_name"])
    html = (Path(run_dir) / "report.html").read_text(encoding="utf-8")
    # the name is in the page, but only as text: HTML-escaped, or as inert JSON (reports.embed)
    assert "<img src=x" not in html
    escaped = ("&lt;img src=x onerror=alert(1)&gt;.png", "\\u003cimg src=x onerror=alert(1)\\u003e.png")
    assert any(form in html for form in escaped)
    assert html.count("<script>") == 1  # the page's own code only


# ---------------------------------------------------------------------------------------------------------
# clear user errors of the command line (one line, exit status 2, no traceback)
# ---------------------------------------------------------------------------------------------------------
def _cli_error(capsys, argv: list[str]) -> str:
    from segaudit.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("segaudit: error: "), captured.err
    return lines[0]


def test_cli_dataset_with_no_images(capsys, tmp_path: Path, base: Path) -> None:
    empty = _write_json(tmp_path / "empty.json", {"images": [], "annotations": [], "categories": []})
    assert "no images" in _cli_error(capsys, ["run", str(empty)])
    voc = tmp_path / "voc"
    shutil.copytree(base, voc, ignore=shutil.ignore_patterns("annotations", "*.json"))
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    assert "no images" in _cli_error(capsys, ["run", str(voc), "--split", "val"])


def test_cli_invalid_json(capsys, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"images": [')
    assert "not valid JSON" in _cli_error(capsys, ["run", str(path)])


def test_cli_wrong_image_root(capsys, base: Path, tmp_path: Path) -> None:
    ann = str(base / "annotations" / "instances_val.json")
    line = _cli_error(capsys, ["run", ann, "--image-root", str(tmp_path / "nowhere")])
    assert "image root not found" in line
    line = _cli_error(capsys, ["run", ann, "--image-root", str(tmp_path)])
    assert "none of the first" in line and str(tmp_path) in line


def test_cli_output_folder_holding_another_run(capsys, base: Path, model, tmp_path: Path) -> None:
    from segaudit.runs.run import run_metadata, write_run_rows

    ann = base / "annotations" / "instances_val.json"
    data = CocoDataset(ann)
    meta = run_metadata(data, model, AuditConfig(), dataset_path="/elsewhere/data.json", split=None)
    meta.update(run_id="mine", dataset_fingerprint="f" * 64, model_name="other.pt", model_sha256="0" * 64)
    other = tmp_path / "runs" / "mine"
    write_run_rows(BatchRows(errors=[asdict(e) for e in data.load_errors]), other, meta)
    line = _cli_error(capsys, ["run", str(ann), "--out", str(tmp_path / "runs"), "--run-id", "mine"])
    assert "holds another run" in line and "/elsewhere/data.json" in line and "other.pt" in line
    line = _cli_error(capsys, ["run", str(ann), "--out", str(other)])
    assert "is a run folder itself" in line
    line = _cli_error(capsys, ["run", str(ann), "--run-id", "../escape"])
    assert "--run-id '../escape' must be a plain folder name" in line


def test_model_checkpoint_that_would_run_code_is_refused_by_the_cli(capsys, base: Path, tmp_path: Path) -> None:
    import pickle

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "segaudit-checkpoint-v1", "payload": RunsCode()}, protocol=2))
    line = _cli_error(capsys, ["run", str(base / "annotations" / "instances_val.json"), "--model", str(evil)])
    assert re.search(r"refusing to load .*weights_only=True", line)
    assert not (tmp_path / "pwned").exists()
