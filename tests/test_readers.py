"""Tests of the dataset readers (COCO, VOC), shared image decoding, and the real-format fixtures."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segaudit.data.readers import (
    CocoDataset,
    SegmentationDataset,
    VocDataset,
    is_annotation_issue,
    open_dataset,
    read_samples,
)
from segaudit.data.readers._image import load_rgb
from segaudit.data.readers.voc import VOC_CLASSES, voc_colormap
from segaudit.data.sample import IGNORE, ErrorRow, ImageRef, Sample, SampleError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "person"}]


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def write_image(path: Path, w: int, h: int, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3), value, np.uint8)
    arr[:, :, 1] = np.arange(w, dtype=np.uint8)[None, :]
    Image.fromarray(arr).save(path)
    return path


def write_coco(path: Path, images, annotations, categories=CATS) -> Path:
    data = {"images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """Polygon of the pixel rectangle [x0, x1) x [y0, y1) (pycocotools' rasterisation)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def rect_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major, starting with a run of zeros), built with numpy only."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def read_one(ds, image_id: str) -> tuple[Sample, list[ErrorRow]]:
    ref = next(r for r in ds.refs() if r.image_id == image_id)
    return ds.read_with_issues(ref)


H, W = 8, 10


@pytest.fixture
def coco_basic(tmp_path: Path) -> CocoDataset:
    """One 10x8 image with polygon, multi-part polygon, both RLE kinds, crowd and overlapping objects."""
    write_image(tmp_path / "imgs" / "a.png", W, H)
    blob = rect_mask(H, W, 6, 0, 10, 3)
    diag = np.eye(H, W, dtype=bool)
    anns = [
        {"id": 1, "image_id": 5, "category_id": 1, "segmentation": [rect(0, 0, 4, 4)], "iscrowd": 0},
        # later annotation overlapping #1 is painted on top
        {"id": 2, "image_id": 5, "category_id": 2, "segmentation": [rect(2, 2, 6, 6)], "iscrowd": 0},
        # multi-part polygon
        {"id": 3, "image_id": 5, "category_id": 7, "segmentation": [rect(0, 6, 2, 8), rect(8, 6, 10, 8)]},
        {"id": 4, "image_id": 5, "category_id": 1, "segmentation": compressed_rle(blob), "iscrowd": 0},
        # crowd in uncompressed RLE: overrides whatever is below it
        {
            "id": 5,
            "image_id": 5,
            "category_id": 7,
            "segmentation": uncompressed_rle(diag),
            "iscrowd": 1,
            "area": 999,
        },
    ]
    ann = write_coco(tmp_path / "ann.json", [{"id": 5, "file_name": "a.png", "height": H, "width": W}], anns)
    return CocoDataset(ann, image_root=tmp_path / "imgs")


# ---------------------------------------------------------------------------------------------------------
# COCO, generated data
# ---------------------------------------------------------------------------------------------------------
def test_coco_masks_exact(coco_basic: CocoDataset) -> None:
    ds = coco_basic
    assert isinstance(ds, SegmentationDataset)
    assert ds.kind == "coco"
    assert ds.category_names == ("background", "cat", "dog", "person")
    assert ds.load_errors == []
    sample, issues = read_one(ds, "5")
    assert issues == []
    assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
    assert sample.image[0, 3, 1] == 3  # the real pixels, not a placeholder
    by_id = {i.annotation_id: i for i in sample.instances}
    assert list(by_id) == ["1", "2", "3", "4", "5"]
    np.testing.assert_array_equal(by_id["1"].mask, rect_mask(H, W, 0, 0, 4, 4))
    np.testing.assert_array_equal(by_id["2"].mask, rect_mask(H, W, 2, 2, 6, 6))
    np.testing.assert_array_equal(by_id["3"].mask, rect_mask(H, W, 0, 6, 2, 8) | rect_mask(H, W, 8, 6, 10, 8))
    np.testing.assert_array_equal(by_id["4"].mask, rect_mask(H, W, 6, 0, 10, 3))
    diag = np.eye(H, W, dtype=bool)
    np.testing.assert_array_equal(by_id["5"].mask, diag)
    assert by_id["5"].iscrowd and not by_id["1"].iscrowd
    assert [i.category for i in sample.instances] == [1, 2, 3, 1, 3]
    assert all(i.mask.dtype == bool and i.mask.shape == (H, W) for i in sample.instances)

    expected = np.zeros((H, W), np.uint8)
    expected[0:4, 0:4] = 1
    expected[2:6, 2:6] = 2  # on top of 1
    expected[6:8, 0:2] = 3
    expected[6:8, 8:10] = 3
    expected[0:3, 6:10] = 1
    expected[diag] = IGNORE
    np.testing.assert_array_equal(sample.semantic, expected)
    # plain read() returns the same sample
    np.testing.assert_array_equal(ds.read(ImageRef("5", "a.png")).semantic, expected)


def test_coco_polygon_matches_pycocotools_annToMask(tmp_path: Path) -> None:
    """Non-rectangular, multi-part polygons give exactly pycocotools' own COCO.annToMask."""
    from pycocotools.coco import COCO

    write_image(tmp_path / "x.png", 40, 30)
    seg = [[3.5, 2.2, 30.1, 5.0, 20.7, 25.9, 1.0, 20.0], [32.0, 20.0, 39.0, 29.0, 33.0, 29.5]]
    anns = [{"id": 9, "image_id": 1, "category_id": 2, "segmentation": seg, "iscrowd": 0}]
    ann = write_coco(
        tmp_path / "ann.json", [{"id": 1, "file_name": "x.png", "height": 30, "width": 40}], anns
    )
    sample, issues = read_one(CocoDataset(ann), "1")
    coco = COCO()
    coco.dataset = json.loads(ann.read_text())
    coco.createIndex()
    np.testing.assert_array_equal(sample.instances[0].mask, coco.annToMask(coco.anns[9]).astype(bool))
    assert issues == [] and sample.instances[0].mask.sum() > 100


def test_coco_broken_annotations_are_skipped_and_reported(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", W, H)
    good = rect(0, 0, 3, 3)
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [good]},
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5]]},  # 2 points, not a bbox
        {"id": 12, "image_id": 1, "category_id": 99, "segmentation": [good]},  # unknown category
        {"id": 13, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, float("nan"), 2, 3, 3]]},
        {"id": 14, "image_id": 1, "category_id": 2, "segmentation": {"size": [H + 1, W], "counts": [H * W]}},
        {"id": 15, "image_id": 1, "category_id": 2, "segmentation": {"size": [H, W], "counts": "!!garbage"}},
        {"id": 16, "image_id": 1, "category_id": 2, "segmentation": {"size": [H, W], "counts": [3, 4]}},
        {"id": 17, "image_id": 1, "category_id": 2, "segmentation": [rect(20, 20, 30, 30)]},  # outside
        {"id": 18, "image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2]},  # box only
        {"id": 19, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 1, 0, 1]]},  # odd length
        # a degenerate part of an otherwise fine polygon is dropped, the annotation kept
        {"id": 20, "image_id": 1, "category_id": 2, "segmentation": [rect(5, 5, 7, 7), [1, 1, 2, 2]]},
    ]
    ann = write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "height": H, "width": W}], anns)
    ds = CocoDataset(ann)
    samples, errors = read_samples(ds, ds.refs())
    assert len(samples) == 1
    sample = samples[0]
    assert [i.annotation_id for i in sample.instances] == ["10", "20"]
    np.testing.assert_array_equal(sample.instances[1].mask, rect_mask(H, W, 5, 5, 7, 7))
    reasons = {e.reason.split(" ")[1]: e.reason for e in errors}
    assert sorted(reasons, key=int) == [str(i) for i in range(11, 20)]
    assert all(e.stage == "read" and e.image_id == "1" and e.file_name == "a.png" for e in errors)
    assert all(is_annotation_issue(e) for e in errors)
    assert "fewer than 3 points" in reasons["11"]
    assert "unknown category id 99" in reasons["12"]
    assert "NaN" in reasons["13"]
    assert "RLE size" in reasons["14"]
    assert "16" in reasons["16"] and "sum to 7" in reasons["16"]
    assert "empty" in reasons["17"]
    assert "no segmentation" in reasons["18"]
    assert "odd number" in reasons["19"]
    assert all(r.startswith(f"annotation {k} skipped: ") for k, r in reasons.items())
    expected = np.zeros((H, W), np.uint8)
    expected[0:3, 0:3] = 1
    expected[5:7, 5:7] = 2
    np.testing.assert_array_equal(sample.semantic, expected)


def test_coco_image_level_errors_are_one_row_each(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", W, H)
    write_image(tmp_path / "small.png", 5, 5)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    images = [
        {"id": 1, "file_name": "ok.png", "height": H, "width": W},
        {"id": 2, "file_name": "missing.jpg", "height": H, "width": W},
        {"id": 3, "file_name": "small.png", "height": H, "width": W},
        {"id": 4, "file_name": "empty.jpg", "height": H, "width": W},
        {"id": 5, "file_name": "text.jpg", "height": H, "width": W},
        {"id": 6, "file_name": "../ok.png", "height": H, "width": W},
        {"id": 7, "file_name": str(tmp_path / "ok.png"), "height": H, "width": W},
    ]
    anns = [
        {"id": i, "image_id": i, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]} for i in range(1, 8)
    ]
    ds = CocoDataset(write_coco(tmp_path / "ann.json", images, anns))
    samples, errors = read_samples(ds, ds.refs())
    assert [s.image_id for s in samples] == ["1"]
    assert [e.image_id for e in errors] == ["2", "3", "4", "5", "6", "7"]
    assert not any(is_annotation_issue(e) for e in errors)
    reasons = {e.image_id: e.reason for e in errors}
    assert reasons["2"].startswith("image file not found: missing.jpg")
    assert reasons["3"].startswith("image is 5x5 but annotation says 10x8")
    assert "empty" in reasons["4"]
    assert "not a recognised image format" in reasons["5"]
    assert "escapes the image root" in reasons["6"] and "escapes the image root" in reasons["7"]
    with pytest.raises(SampleError, match="image file not found"):
        ds.read(ImageRef("2", "missing.jpg"))


def test_coco_load_errors_and_sorting(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "height": 4, "width": 4} for i in (10, 2, 1)]
    images.append({"id": 2, "file_name": "dup.png"})
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]},
        {"id": 2, "image_id": 404, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]},
        {"id": 3, "image_id": 404, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]},
        {
            "id": 4,
            "image_id": "10",
            "category_id": 1,
            "segmentation": [rect(0, 0, 2, 2)],
        },  # str id of image 10
    ]
    path = write_coco(tmp_path / "ann.json", images, anns)
    ds = CocoDataset(path)
    assert [r.image_id for r in ds.refs()] == ["1", "2", "10"]
    assert [r.file_name for r in ds.refs()] == ["1.png", "2.png", "10.png"]
    reasons = [e.reason for e in ds.load_errors]
    assert any("duplicate image id 2" in r for r in reasons)
    assert any(
        e.image_id == "404" and "2 annotation(s) refer to image id 404" in e.reason for e in ds.load_errors
    )
    assert ds.fingerprint() == hashlib.sha256(path.read_bytes()).hexdigest()
    write_image(tmp_path / "10.png", 4, 4)
    sample, _ = read_one(ds, "10")
    assert [i.annotation_id for i in sample.instances] == ["4"]


def test_coco_labelme_style_background_and_prefix(tmp_path: Path) -> None:
    write_image(tmp_path / "JPEGImages" / "p.jpg", W, H)
    cats = [{"id": 0, "name": "_background_"}, {"id": 1, "name": "person"}, {"id": 2, "name": "tv/monitor"}]
    anns = [
        {"id": 0, "image_id": 0, "category_id": 2, "segmentation": [rect(0, 0, 2, 2)], "iscrowd": 0},
        {"id": 1, "image_id": 0, "category_id": 0, "segmentation": [rect(4, 4, 6, 6)], "iscrowd": 0},
    ]
    images = [{"id": 0, "file_name": "JPEGImages/p.jpg", "height": H, "width": W}]
    ds = CocoDataset(write_coco(tmp_path / "annotations.json", images, anns, cats))
    assert ds.category_names == ("background", "person", "tv/monitor")
    assert ds.image_root == tmp_path.resolve()
    sample, issues = read_one(ds, "0")
    assert [(i.annotation_id, i.category) for i in sample.instances] == [("0", 2)]
    assert len(issues) == 1 and "background category" in issues[0].reason
    # a given image_root is the only place looked in: the file next to the annotation file is not read
    ds2 = CocoDataset(tmp_path / "annotations.json", image_root=tmp_path / "nowhere")
    with pytest.raises(SampleError, match=r"image file not found: JPEGImages/p\.jpg \(looked in [^)]*nowhere\)$"):
        ds2.read(ds2.refs()[0])


def test_coco_without_categories(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", W, H)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 18, "segmentation": [rect(0, 0, 2, 2)]},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": [rect(4, 4, 6, 6)]},
    ]
    ds = CocoDataset(write_coco(tmp_path / "i.json", [{"id": 1, "file_name": "a.png"}], anns, None))
    assert ds.category_names == ("background", "category_3", "category_18")
    assert ds.load_errors == [
        ErrorRow(None, None, "read", "no 'categories' in annotation file; named categories by id")
    ]
    sample = ds.read(ds.refs()[0])  # no height/width in the JSON: the decoded size is used
    assert sample.semantic[0, 0] == 2 and sample.semantic[5, 5] == 1


def test_coco_exif_rotated_photo_annotated_on_raw_pixels(tmp_path: Path) -> None:
    raw = np.zeros((20, 30, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    Image.fromarray(raw).save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (30, 20, 3)  # displayed orientation by default
    images = [{"id": 1, "file_name": "r.jpg", "height": 20, "width": 30}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [rect(0, 0, 30, 1)]}]
    ds = CocoDataset(write_coco(tmp_path / "a.json", images, anns))
    sample = ds.read(ds.refs()[0])
    assert sample.image.shape == (20, 30, 3) and sample.semantic[0].tolist() == [1] * 30


@pytest.mark.parametrize(
    ("content", "exc", "match"),
    [
        (None, FileNotFoundError, "not found"),
        ("{not json", ValueError, "not valid JSON"),
        ('{"annotations": []}', ValueError, "expected a JSON object with an 'images' list"),
        ('{"images": [], "annotations": []}', ValueError, "no images"),
        ('{"images": [{"id": 1, "file_name": "a.png"}]}', ValueError, "no 'annotations' list"),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"segments_info": []}]}',
            ValueError,
            "panoptic",
        ),
    ],
)
def test_coco_constructor_errors(tmp_path: Path, content, exc, match) -> None:
    path = tmp_path / "ann.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(exc, match=match):
        CocoDataset(path)


# ---------------------------------------------------------------------------------------------------------
# VOC, generated data
# ---------------------------------------------------------------------------------------------------------
def save_palette_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(voc_colormap(256).ravel().tolist())
    im.save(path)


def make_voc(root: Path, stems=("a", "b"), splits=None, objects=True) -> dict[str, np.ndarray]:
    labels = {}
    for n, stem in enumerate(stems):
        write_image(root / "JPEGImages" / f"{stem}.jpg", W, H)
        lab = np.zeros((H, W), np.uint8)
        lab[1:4, 1:4] = 15  # person
        lab[5:8, 5:9] = 8 + n  # cat / chair
        lab[0, :] = IGNORE
        save_palette_png(root / "SegmentationClass" / f"{stem}.png", lab)
        labels[stem] = lab
        if objects:
            obj = np.zeros((H, W), np.uint8)
            obj[1:4, 1:4] = 1
            obj[5:8, 5:9] = 2
            obj[7, 0] = 3  # an object whose class pixel is background: skipped, reported
            obj[0, :] = IGNORE
            save_palette_png(root / "SegmentationObject" / f"{stem}.png", obj)
    if splits:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        for name, members in splits.items():
            (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(members) + "\n")
    return labels


def test_voc_reads_classes_objects_and_void(tmp_path: Path) -> None:
    labels = make_voc(tmp_path, splits={"val": ["b", "a", ""], "train": ["a"]})
    ds = VocDataset(tmp_path)
    assert isinstance(ds, SegmentationDataset)
    assert ds.kind == "voc" and ds.category_names == VOC_CLASSES
    assert [(r.image_id, r.file_name) for r in ds.refs()] == [
        ("a", "JPEGImages/a.jpg"),
        ("b", "JPEGImages/b.jpg"),
    ]
    samples, errors = read_samples(ds, ds.refs())
    assert [s.image_id for s in samples] == ["a", "b"]
    for s in samples:
        np.testing.assert_array_equal(s.semantic, labels[s.image_id])
        assert s.image.shape == (H, W, 3)
        assert s.has_instances
        assert [(i.annotation_id, i.category) for i in s.instances] == [
            ("1", 15),
            ("2", 8 if s.image_id == "a" else 9),
        ]
        np.testing.assert_array_equal(s.instances[0].mask, rect_mask(H, W, 1, 1, 4, 4))
        assert int((s.semantic == IGNORE).sum()) == W
    assert [(e.image_id, e.reason.split(":")[0]) for e in errors] == [
        ("a", "object 3 skipped"),
        ("b", "object 3 skipped"),
    ]
    assert all(is_annotation_issue(e) for e in errors)
    assert [r.image_id for r in VocDataset(tmp_path, split="train").refs()] == ["a"]


def test_voc_splits_and_class_names(tmp_path: Path) -> None:
    make_voc(tmp_path, objects=False)
    ds = VocDataset(tmp_path, split="val")  # no ImageSets: every label file, with a note
    assert [r.image_id for r in ds.refs()] == ["a", "b"]
    assert len(ds.load_errors) == 1 and "no ImageSets/Segmentation/" in ds.load_errors[0].reason
    s = ds.read(ds.refs()[0])
    assert not s.has_instances and s.instances == []
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"unknown split 'val'.*available splits: empty, train"):
        VocDataset(tmp_path, split="val")
    with pytest.raises(ValueError, match="no images in the split"):
        VocDataset(tmp_path, split="empty")
    assert len(VocDataset(tmp_path, split=None).refs()) == 2
    (tmp_path / "class_names.txt").write_text("__ignore__\n_background_\nperson\n")
    assert VocDataset(tmp_path, split="train").category_names == ("background", "person")
    with pytest.raises(ValueError, match="must start with the background class"):
        VocDataset(tmp_path, split="train", class_names=["cat", "dog"])
    names = ["background"] + [f"c{i}" for i in range(30)]
    assert len(VocDataset(tmp_path, split="train", class_names=names).category_names) == 31


def test_voc_label_problems(tmp_path: Path) -> None:
    make_voc(tmp_path, stems=("a", "b", "c", "d", "e", "f"), objects=False)
    cls = tmp_path / "SegmentationClass"
    # out-of-range values
    bad = np.zeros((H, W), np.uint8)
    bad[0, 0], bad[1, 1] = 30, 21
    save_palette_png(cls / "b.png", bad)
    # size mismatch
    save_palette_png(cls / "c.png", np.zeros((H + 1, W), np.uint8))
    # missing label and missing image
    (cls / "d.png").unlink()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\nc\nd\ne\nf\n")
    (tmp_path / "JPEGImages" / "e.jpg").unlink()
    # RGB label with VOC colours -> indices
    rgb_lab = np.zeros((H, W), np.uint8)
    rgb_lab[2:4, 2:4] = 12
    rgb_lab[0, 0] = IGNORE
    Image.fromarray(voc_colormap()[rgb_lab]).save(cls / "f.png")
    ds = VocDataset(tmp_path)
    samples, errors = read_samples(ds, ds.refs())
    assert [s.image_id for s in samples] == ["a", "f"]
    np.testing.assert_array_equal(samples[1].semantic, rgb_lab)
    reasons = {e.image_id: e.reason for e in errors}
    assert "values [21, 30] outside 0..20" in reasons["b"]
    assert "is 10x9 but image is 10x8" in reasons["c"]
    assert reasons["d"] == "label file not found: SegmentationClass/d.png"
    assert reasons["e"] == "image file not found: JPEGImages/e.jpg"
    # greyscale L labels are read as values; RGB with a foreign colour is refused
    Image.fromarray(rgb_lab, mode="L").save(cls / "f.png")
    np.testing.assert_array_equal(ds.read(ImageRef("f", "JPEGImages/f.jpg")).semantic, rgb_lab)
    odd = voc_colormap()[rgb_lab]
    odd[5, 5] = (1, 2, 3)
    Image.fromarray(odd).save(cls / "f.png")
    with pytest.raises(SampleError, match=r"not in the VOC colour map: \(1, 2, 3\)"):
        ds.read(ImageRef("f", "JPEGImages/f.jpg"))


def test_voc_fingerprint_tracks_labels(tmp_path: Path) -> None:
    make_voc(tmp_path, splits={"val": ["a", "b"]})
    fp = VocDataset(tmp_path).fingerprint()
    assert len(fp) == 64 and fp == VocDataset(tmp_path).fingerprint()
    save_palette_png(tmp_path / "SegmentationClass" / "a.png", np.zeros((H, W), np.uint8))
    assert VocDataset(tmp_path).fingerprint() != fp


def test_voc_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        VocDataset(tmp_path / "nope")
    (tmp_path / "VOC2012" / "SegmentationClass").mkdir(parents=True)
    with pytest.raises(ValueError, match="no SegmentationClass/ folder; did you mean .*VOC2012"):
        VocDataset(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# read_samples and open_dataset
# ---------------------------------------------------------------------------------------------------------
def test_read_samples_never_raises(coco_basic: CocoDataset) -> None:
    class Flaky:
        kind = "coco"
        category_names = ("background",)
        load_errors: list[ErrorRow] = []

        def refs(self):
            return [ImageRef("1", "1.jpg"), ImageRef("2", "2.jpg")]

        def read(self, ref):
            if ref.image_id == "1":
                raise SampleError("bad one")
            raise RuntimeError("boom")

        def fingerprint(self):
            return "x"

    samples, errors = read_samples(Flaky(), Flaky().refs())
    assert samples == []
    assert errors == [
        ErrorRow("1", "1.jpg", "read", "bad one"),
        ErrorRow("2", "2.jpg", "read", "unexpected RuntimeError: boom"),
    ]
    refs = [*coco_basic.refs(), ImageRef("nope", "nope.jpg")]
    samples, errors = read_samples(coco_basic, refs)
    assert len(samples) == 1 and [e.image_id for e in errors] == ["nope"]


def test_open_dataset_dispatch(tmp_path: Path) -> None:
    # COCO folder layout: annotations/instances_<split>.json, images in <split>/
    root = tmp_path / "coco"
    write_image(root / "val2017" / "000001.jpg", W, H)
    write_image(root / "train2017" / "000002.jpg", W, H)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]}]
    write_coco(root / "annotations" / "instances_val2017.json", [{"id": 1, "file_name": "000001.jpg"}], anns)
    write_coco(root / "annotations" / "instances_train2017.json", [{"id": 2, "file_name": "000002.jpg"}], [])
    ds = open_dataset(root, split="val")
    assert isinstance(ds, CocoDataset) and ds.image_root == root / "val2017"
    assert len(read_samples(ds, ds.refs())[0]) == 1
    ds = open_dataset(root, split="train2017")
    assert ds.image_root == root / "train2017" and len(read_samples(ds, ds.refs())[0]) == 1
    assert open_dataset(root).refs()[0].image_id == "1"  # val2017 preferred when several
    with pytest.raises(ValueError, match="available splits: train2017, val2017"):
        open_dataset(root, split="test")
    # a .json file
    ds = open_dataset(root / "annotations" / "instances_val2017.json")
    assert isinstance(ds, CocoDataset) and ds.image_root == (root / "val2017").resolve()
    # VOC
    make_voc(tmp_path / "voc", splits={"val": ["a"], "train": ["b"]})
    ds = open_dataset(tmp_path / "voc")
    assert isinstance(ds, VocDataset) and [r.image_id for r in ds.refs()] == ["a"]
    assert [r.image_id for r in open_dataset(tmp_path / "voc", split="train").refs()] == ["b"]
    # unknown
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot tell the dataset format.*x.json"):
        open_dataset(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(ValueError, match="expected a COCO annotation .json"):
        open_dataset(tmp_path / "a.txt")


# ---------------------------------------------------------------------------------------------------------
# image decoding
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I", "F", "I;16", "YCbCr"])
def test_load_rgb_any_mode(tmp_path: Path, mode: str) -> None:
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[:, :, 0] = 200
    im = Image.fromarray(rgb).convert(mode) if mode not in ("I", "F", "I;16") else None
    if mode == "I;16":
        im = Image.fromarray(np.full((6, 7), 65535, np.uint16))
        im.save(tmp_path / "x.png")
    elif mode == "I":
        im = Image.fromarray(np.full((6, 7), 257 * 100, np.int32), mode="I")
        im.save(tmp_path / "x.tif")
    elif mode == "F":
        im = Image.fromarray(np.full((6, 7), 0.5, np.float32), mode="F")
        im.save(tmp_path / "x.tif")
    elif mode in ("CMYK", "YCbCr"):
        im.save(tmp_path / "x.tif" if mode == "CMYK" else tmp_path / "x.jpg")
    else:
        im.save(tmp_path / "x.png")
    path = next(tmp_path.iterdir())
    out = load_rgb(path)
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    if mode == "I;16":
        assert (out == 255).all()
    if mode == "I":
        assert (out == 100).all()
    if mode == "F":
        assert (out == 128).all()


def test_load_rgb_refuses_bad_files(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    write_image(tmp_path / "big.png", 100, 100)
    with pytest.raises(SampleError, match="cannot decode image .*trunc.png: file is truncated"):
        load_rgb(tmp_path / "trunc.png")
    with pytest.raises(SampleError, match="empty"):
        load_rgb(tmp_path / "zero.jpg")
    with pytest.raises(SampleError, match="not a recognised image format"):
        load_rgb(tmp_path / "text.png", name="text.png")
    with pytest.raises(SampleError, match="image file not found: nothing.jpg"):
        load_rgb(tmp_path / "nothing.jpg", name="nothing.jpg")
    with pytest.raises(SampleError, match="decompression bomb"):
        load_rgb(tmp_path / "big.png", max_pixels=5000)


# ---------------------------------------------------------------------------------------------------------
# real-format fixtures (skipped when ../shared/fixtures/real is absent)
# ---------------------------------------------------------------------------------------------------------
def real(sub: str) -> Path:
    path = FIXTURES / sub
    if not path.exists():
        pytest.skip(f"real fixtures not available: {path}")
    return path


def test_real_coco_labelme() -> None:
    ds = open_dataset(real("coco-labelme"))
    assert isinstance(ds, CocoDataset)
    assert len(ds.category_names) == 21 and ds.category_names[0] == "background"
    assert "_background_" not in ds.category_names and ds.category_names[20] == "tv/monitor"
    assert [r.file_name for r in ds.refs()] == [
        "JPEGImages/2011_000003.jpg",
        "JPEGImages/2011_000025.jpg",
        "JPEGImages/2011_000006.jpg",
    ]
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and ds.load_errors == []
    assert [len(s.instances) for s in samples] == [3, 3, 6]
    assert sum(len(s.instances) for s in samples) == 12
    assert [s.image.shape for s in samples] == [(338, 500, 3), (375, 500, 3), (375, 500, 3)]
    assert [sorted(np.unique(s.semantic).tolist()) for s in samples] == [
        [0, 5, 15],
        [0, 6, 7],
        [0, 9, 15, 18],
    ]
    # the two multi-part polygons (ids 1 and 11) decode to one mask each
    inst = {i.annotation_id: i for s in samples for i in s.instances}
    assert inst["1"].category == 15 and inst["11"].category == 18
    assert inst["11"].mask.sum() > 10000 and not any(i.iscrowd for i in inst.values())


def test_real_coco_labelme_agrees_with_voc_labelme() -> None:
    coco = CocoDataset(real("coco-labelme") / "annotations.json")
    voc = VocDataset(real("voc-labelme"), split="trainval")
    by_stem = {s.image_id: s for s in read_samples(voc, voc.refs())[0]}
    for s in read_samples(coco, coco.refs())[0]:
        v = by_stem[Path(s.file_name).stem]
        assert s.image.shape == v.image.shape  # the same photo (re-encoded JPEG: pixels differ slightly)
        assert np.abs(s.image.astype(int) - v.image.astype(int)).mean() < 5
        valid = v.semantic != IGNORE
        assert (s.semantic[valid] == v.semantic[valid]).mean() > 0.99  # polygons vs. rasterised PNG
        assert sorted(i.category for i in s.instances) == sorted(i.category for i in v.instances)


def test_real_coco_panoptic_sample() -> None:
    path = real("coco-panoptic-sample") / "panoptic_coco_detection_format.json"
    ds = open_dataset(path)
    assert ds.image_root.name == "input_images"  # guessed
    assert len(ds.category_names) == 134
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and [s.image_id for s in samples] == ["142238", "439180"]
    assert sum(len(s.instances) for s in samples) == 50
    assert sum(i.iscrowd for s in samples for i in s.instances) == 3
    areas = {str(a["id"]): a["area"] for a in json.loads(path.read_text())["annotations"]}
    assert all(int(i.mask.sum()) == areas[i.annotation_id] for s in samples for i in s.instances)
    for s in samples:
        crowd = np.zeros(s.semantic.shape, bool)
        for i in s.instances:
            crowd |= i.mask if i.iscrowd else False
        np.testing.assert_array_equal(s.semantic == IGNORE, crowd)
        assert int(s.semantic[s.semantic != IGNORE].max()) < len(ds.category_names)
    assert [int((s.semantic == IGNORE).sum()) for s in samples] == [24295, 8260]


def test_real_coco_annotations_without_images(tmp_path: Path) -> None:
    path = real("coco-annotations-without-images") / "instances_val2017.json"
    ds = CocoDataset(path)
    assert len(ds.category_names) == 81 and ds.load_errors == []
    samples, errors = read_samples(ds, ds.refs())
    assert samples == [] and [e.image_id for e in errors] == ["139", "255917"]
    assert all(e.reason.startswith("image file not found: 0000") for e in errors)
    # with stand-in images of the right size, all 37 annotations decode
    for img in json.loads(path.read_text())["images"]:
        write_image(tmp_path / img["file_name"], img["width"], img["height"])
    ds = CocoDataset(path, image_root=tmp_path)
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and sum(len(s.instances) for s in samples) == 37
    crowd = [i for s in samples for i in s.instances if i.iscrowd]
    assert len(crowd) == 1 and int(crowd[0].mask.sum()) == 3386  # its 'area' field says 4015
    assert int((samples[1].semantic == IGNORE).sum()) == 3386


def test_real_coco_without_categories(tmp_path: Path) -> None:
    path = real("coco-without-categories") / "instances.json"
    ds = open_dataset(path)
    assert ds.category_names == ("background", "category_1", "category_18")
    assert [e.reason for e in ds.load_errors] == [
        "no 'categories' in annotation file; named categories by id"
    ]
    samples, errors = read_samples(ds, ds.refs())
    assert samples == [] and len(errors) == 2 and all("image file not found" in e.reason for e in errors)
    for img in json.loads(path.read_text())["images"]:
        write_image(tmp_path / img["file_name"], img["width"], img["height"])
    samples, errors = read_samples(CocoDataset(path, image_root=tmp_path), ds.refs())
    assert errors == [] and [[i.category for i in s.instances] for s in samples] == [[1], [2]]


def test_real_voc_labelme() -> None:
    root = real("voc-labelme")
    assert [r.image_id for r in open_dataset(root).refs()] == ["2011_000025"]  # "val" by default
    ds = VocDataset(root, split=None)
    assert ds.category_names[0] == "background" and len(ds.category_names) == 21
    assert "potted plant" in ds.category_names
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and [s.image_id for s in samples] == ["2011_000003", "2011_000006", "2011_000025"]
    assert all(s.has_instances for s in samples)
    assert [len(s.instances) for s in samples] == [3, 6, 3]
    assert [int((s.semantic == IGNORE).sum()) for s in samples] == [9460, 909, 0]
    assert [sorted(np.unique(s.semantic).tolist()) for s in samples] == [
        [0, 5, 15, 255],
        [0, 9, 15, 18, 255],
        [0, 6, 7],
    ]
    assert [i.annotation_id for i in samples[1].instances] == ["1", "2", "3", "4", "5", "7"]
    assert [i.category for i in samples[0].instances] == [15, 15, 5]
    for s in samples:
        assert all(i.mask.any() and not (i.mask & (s.semantic == 0)).all() for i in s.instances)


def test_real_voc_resized_borders() -> None:
    ds = open_dataset(real("voc-resized-borders"))
    assert isinstance(ds, VocDataset) and ds.category_names == VOC_CLASSES
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and len(samples) == 3
    assert all(s.image.shape == (513, 513, 3) and not s.has_instances and s.instances == [] for s in samples)
    assert [sorted(np.unique(s.semantic).tolist()) for s in samples] == [
        [0, 1, 255],
        [0, 17, 255],
        [0, 3, 255],
    ]
    assert [int((s.semantic == IGNORE).sum()) for s in samples] == [12612, 8773, 8215]


def test_real_photos_decode() -> None:
    photos = sorted(real("photos").rglob("*.jpg"))
    assert len(photos) >= 5
    for p in photos:
        arr = load_rgb(p)
        assert arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8 and arr.std() > 5
    big = load_rgb(real("photos") / "document-scanner" / "IMG_20220721_162811.jpg")
    assert big.shape == (1990, 3494, 3)
