"""Tests of the synthetic dataset generator :mod:`segaudit.devtools.synth`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segaudit.devtools.synth import (
    CLASS_NAMES,
    CONTEXT_BACKGROUND,
    CONTEXT_CLASS,
    ERROR_KINDS,
    add_synth_arguments,
    generate_dataset,
    synth_main,
)
from segaudit.devtools.synth.generate import _generate
from segaudit.devtools.synth.masks import uncompressed_rle, void_border
from segaudit.devtools.synth.scenes import sample_scene

SIZE = 64
N_TRAIN, N_VAL = 12, 12


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    generate_dataset(root, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=0)
    return root


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupted")
    s = generate_dataset(root, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=0, plant_errors=0.5)
    assert s.n_planted == 6
    return root


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A moderately sized set with crowds forced often, to see every segmentation encoding."""
    root = tmp_path_factory.mktemp("crowded")
    _generate(root, n_train=40, n_val=8, size=96, seed=1, plant_errors=0.0, crowd_prob=0.5)
    return root


def _coco(path: Path) -> COCO:
    return COCO(str(path))


def _painted(coco: COCO, image_id: int, size: int) -> np.ndarray:
    """Semantic map from COCO: non-crowd annotations painted in annotation order."""
    sem = np.zeros((size, size), dtype=np.uint8)
    for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        if not a["iscrowd"]:
            sem[coco.annToMask(a).astype(bool)] = a["category_id"]
    return sem


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------------------------------------- layout


def test_layout_and_summary(tmp_path: Path) -> None:
    s = generate_dataset(tmp_path / "d", n_train=3, n_val=2, size=SIZE, seed=0)
    root = tmp_path / "d"
    assert s.root == root and s.n_train == 3 and s.n_val == 2 and s.n_planted == 0
    stems = [f"train_{i:06d}" for i in range(3)] + [f"val_{i:06d}" for i in range(2)]
    for stem in stems:
        assert (root / "JPEGImages" / f"{stem}.jpg").is_file()
        assert (root / "SegmentationClass" / f"{stem}.png").is_file()
        assert (root / "SegmentationObject" / f"{stem}.png").is_file()
    sets = root / "ImageSets" / "Segmentation"
    assert (sets / "train.txt").read_text().split() == stems[:3]
    assert (sets / "val.txt").read_text().split() == stems[3:]
    assert (sets / "trainval.txt").read_text().split() == stems
    assert tuple((root / "class_names.txt").read_text().split()) == CLASS_NAMES
    assert json.loads((root / "planted_errors.json").read_text()) == []
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["arguments"] == {"n_train": 3, "n_val": 2, "size": SIZE, "seed": 0, "plant_errors": 0.0}
    assert tuple(meta["class_names"]) == CLASS_NAMES
    coco = json.loads(s.coco_train.read_text())
    assert {"info", "licenses", "images", "annotations", "categories"} <= coco.keys()
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES[1:])
    assert all(c["supercategory"] == "shape" for c in coco["categories"])
    assert [im["id"] for im in coco["images"]] == [1, 2, 3]
    assert coco["images"][0]["file_name"] == "train_000000.jpg"
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (SIZE, SIZE)
    with Image.open(root / "JPEGImages" / "train_000000.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SIZE, SIZE)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_train=1, n_val=1, plant_errors=1.5)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_train=-1)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, size=8)


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_identical_bytes(tmp_path: Path, corrupted: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=0, plant_errors=0.5)
    for rel in [
        "annotations/instances_train.json",
        "annotations/instances_val.json",
        "SegmentationClass/val_000003.png",
        "SegmentationObject/train_000005.png",
        "JPEGImages/val_000002.jpg",
        "planted_errors.json",
        "dataset.json",
    ]:
        assert (again / rel).read_bytes() == (corrupted / rel).read_bytes(), rel


def test_different_seed_differs(tmp_path: Path, clean: Path) -> None:
    other = tmp_path / "other"
    generate_dataset(other, n_train=N_TRAIN, n_val=N_VAL, size=SIZE, seed=1)
    rel = "annotations/instances_train.json"
    assert (other / rel).read_bytes() != (clean / rel).read_bytes()
    assert (other / "JPEGImages/train_000000.jpg").read_bytes() != (
        clean / "JPEGImages/train_000000.jpg"
    ).read_bytes()


def test_splits_are_independent(tmp_path: Path, clean: Path) -> None:
    fewer_val = tmp_path / "fewer_val"
    generate_dataset(fewer_val, n_train=N_TRAIN, n_val=3, size=SIZE, seed=0)
    rel = "annotations/instances_train.json"
    assert (fewer_val / rel).read_bytes() == (clean / rel).read_bytes()
    for i in range(N_TRAIN):
        rel = f"JPEGImages/train_{i:06d}.jpg"
        assert (fewer_val / rel).read_bytes() == (clean / rel).read_bytes()
    fewer_train = tmp_path / "fewer_train"
    generate_dataset(fewer_train, n_train=2, n_val=N_VAL, size=SIZE, seed=0)
    rel = "annotations/instances_val.json"
    assert (fewer_train / rel).read_bytes() == (clean / rel).read_bytes()


# ---------------------------------------------------------------------------------------------- COCO


def test_coco_loads_and_decodes(crowded: Path) -> None:
    kinds: dict[str, int] = {}
    for split in ("train", "val"):
        coco = _coco(crowded / "annotations" / f"instances_{split}.json")
        ids = [a["id"] for a in coco.dataset["annotations"]]
        assert len(ids) == len(set(ids))
        for a in coco.loadAnns(coco.getAnnIds()):
            img = coco.imgs[a["image_id"]]
            m = coco.annToMask(a)
            assert m.shape == (img["height"], img["width"])
            assert int(m.sum()) == a["area"] > 0
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            seg = a["segmentation"]
            if isinstance(seg, list):
                kind = "polygon"
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
                assert a["iscrowd"] == 0
            elif isinstance(seg["counts"], str):
                kind = "rle"
                assert a["iscrowd"] == 0
            else:
                kind = "crowd"
                assert a["iscrowd"] == 1 and seg["size"] == [img["height"], img["width"]]
                assert sum(seg["counts"]) == img["height"] * img["width"]
                assert a["category_id"] == CLASS_NAMES.index("disc")
            kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"polygon", "rle", "crowd"}
    assert kinds["polygon"] > kinds["rle"]


def test_occluded_instances_are_rle(crowded: Path) -> None:
    """A polygon annotation is never partly hidden by a later annotation of the same image."""
    coco = _coco(crowded / "annotations" / "instances_train.json")
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        for i, a in enumerate(anns):
            later = np.zeros_like(masks[i])
            for m in masks[i + 1 :]:
                later |= m
            assert not (masks[i] & later).any()  # visible masks do not overlap
            if isinstance(a["segmentation"], list):
                # the polygon is the whole object: nothing drawn later covers it
                assert masks[i].sum() == a["area"]


def test_uncompressed_rle_roundtrip() -> None:
    rng = np.random.default_rng(0)
    for first in (False, True):
        m = rng.random((7, 5)) < 0.4
        m[0, 0] = first
        rle = uncompressed_rle(m)
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5)).astype(bool)
        assert np.array_equal(decoded, m)


# ---------------------------------------------------------------------------------------------- VOC


def _check_voc_against_coco(root: Path, split: str) -> None:
    coco = _coco(root / "annotations" / f"instances_{split}.json")
    size = coco.imgs[1]["height"]
    for img in coco.imgs.values():
        stem = Path(img["file_name"]).stem
        with Image.open(root / "SegmentationClass" / f"{stem}.png") as im:
            assert im.mode == "P"
            pal = im.getpalette()
            assert pal is not None and pal[255 * 3 : 256 * 3] == [224, 224, 192]
            assert pal[3:6] == [128, 0, 0]
            sem = np.asarray(im)
        obj = _png(root / "SegmentationObject" / f"{stem}.png")
        assert set(np.unique(sem).tolist()) <= {0, 1, 2, 3, 4, 5, 255}
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        if any(not a["iscrowd"] for a in anns):
            assert (sem == 255).any()
        valid = sem != 255
        assert np.array_equal(valid, obj != 255)  # one void mask shared by both files
        painted = _painted(coco, img["id"], size)
        assert np.array_equal(sem[valid], painted[valid])
        # void is only at borders: a pixel whose 3x3 neighbourhood is uniform in COCO is not void
        # (unless it is crowd)
        crowd = np.zeros((size, size), dtype=bool)
        inst = np.zeros((size, size), dtype=np.int32)
        k = 0
        for a in anns:
            m = coco.annToMask(a).astype(bool)
            if a["iscrowd"]:
                crowd |= m
            else:
                k += 1
                inst[m] = k
        assert np.array_equal(obj[valid], inst[valid])
        assert (sem[crowd] == 255).all()
        inst[crowd] = 1000
        interior = ~void_border(inst) & ~crowd
        assert valid[interior].all()


def test_voc_matches_coco(clean: Path, crowded: Path) -> None:
    _check_voc_against_coco(clean, "train")
    _check_voc_against_coco(clean, "val")
    _check_voc_against_coco(crowded, "train")


def test_voc_matches_corrupted_coco(corrupted: Path) -> None:
    _check_voc_against_coco(corrupted, "val")


def test_void_border() -> None:
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[2:4, 2:4] = 1
    void = void_border(labels)
    assert void[1:5, 1:5].all() and void.sum() == 16


# ---------------------------------------------------------------------------------------------- context cue


def test_context_cue() -> None:
    boat = CLASS_NAMES.index(CONTEXT_CLASS)
    counts = {True: [0, 0], False: [0, 0]}  # has boat -> [water, total]
    for i in range(200):
        scene = sample_scene(np.random.default_rng([7, 0, i]), 64)
        has_boat = any(o.category == boat for o in scene.objects)
        counts[has_boat][0] += scene.background == CONTEXT_BACKGROUND
        counts[has_boat][1] += 1
    assert min(counts[True][1], counts[False][1]) >= 40
    assert counts[True][0] / counts[True][1] >= 0.8
    assert counts[False][0] / counts[False][1] <= 0.4
    assert counts[False][0] > 0  # water without boats exists


def test_scene_constraints() -> None:
    overlapping = 0
    for i in range(60):
        scene = sample_scene(np.random.default_rng([3, 0, i]), 96)
        assert 1 <= len(scene.objects) <= 5
        hidden = False
        for o in scene.objects:
            assert o.visible_mask is not None
            assert o.visible_mask.sum() >= 0.4 * o.full_mask.sum()
            hidden |= bool((o.full_mask & ~o.visible_mask).any())
        overlapping += hidden
    assert 5 <= overlapping <= 35


# ------------------------------------------------------------------------------------------ planted errors


def test_planted_errors(clean: Path, corrupted: Path) -> None:
    manifest = json.loads((corrupted / "planted_errors.json").read_text())
    assert len(manifest) == 6
    assert {r["kind"] for r in manifest} == set(ERROR_KINDS)
    assert len({r["image_id"] for r in manifest}) == 6
    assert all(r["image_id"].startswith("val_") for r in manifest)

    # pixels never change; train labels stay clean
    for i in range(N_VAL):
        rel = f"JPEGImages/val_{i:06d}.jpg"
        assert (corrupted / rel).read_bytes() == (clean / rel).read_bytes()
    rel = "annotations/instances_train.json"
    assert (corrupted / rel).read_bytes() == (clean / rel).read_bytes()

    before = _coco(clean / "annotations" / "instances_val.json")
    after = _coco(corrupted / "annotations" / "instances_val.json")
    touched = {r["coco_image_id"] for r in manifest}
    for image_id in before.getImgIds():  # untouched images keep exactly the same annotations
        if image_id not in touched:
            assert before.getAnnIds(imgIds=[image_id]) == after.getAnnIds(imgIds=[image_id])

    for r in manifest:
        img = after.imgs[r["coco_image_id"]]
        assert img["file_name"] == r["file_name"] == f"{r['image_id']}.jpg"
        stem = r["image_id"]
        sem = _png(corrupted / "SegmentationClass" / f"{stem}.png")
        kind = r["kind"]
        if kind == "delete":
            gone = r["detail"]["removed_annotation_id"]
            assert r["annotation_id"] is None
            assert gone in before.anns and gone not in after.anns
            m = before.annToMask(before.anns[gone]).astype(bool)
            assert set(np.unique(sem[m]).tolist()) <= {0, 255}
            assert len(after.getAnnIds(imgIds=[img["id"]])) == len(before.getAnnIds(imgIds=[img["id"]])) - 1
            continue
        ann = after.anns[r["annotation_id"]]
        assert ann["image_id"] == img["id"]
        m_after = after.annToMask(ann).astype(bool)
        assert m_after.any()
        if kind == "spurious":
            assert r["annotation_id"] not in before.anns
            assert ann["category_id"] == CLASS_NAMES.index(r["category"])
            assert r["detail"]["overlap_with_objects"] <= 0.2
            continue
        m_before = before.annToMask(before.anns[r["annotation_id"]]).astype(bool)
        assert before.anns[r["annotation_id"]]["category_id"] == CLASS_NAMES.index(r["category"])
        if kind == "swap_class":
            assert ann["category_id"] != before.anns[r["annotation_id"]]["category_id"]
            assert ann["category_id"] == CLASS_NAMES.index(r["detail"]["to"])
            assert np.array_equal(m_after, m_before)
            continue
        assert isinstance(ann["segmentation"], dict)  # mask corruptions are written as RLE
        assert ann["area"] == r["detail"]["area"] and ann["bbox"] == r["detail"]["bbox"]
        if kind == "shift":
            dx, dy = r["detail"]["dx"], r["detail"]["dy"]
            assert 0.10 * SIZE - 1 <= np.hypot(dx, dy) <= 0.16 * SIZE + 1
            ys, xs = np.nonzero(m_after)
            assert (m_before[ys - dy, xs - dx]).all()
        elif kind == "erode":
            assert (m_after <= m_before).all() and m_after.sum() < m_before.sum()
        elif kind == "dilate":
            assert (m_after >= m_before).all() and m_after.sum() > m_before.sum()


# ---------------------------------------------------------------------------------------------- CLI


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    args = parser.parse_args(
        [str(tmp_path / "cli"), "--n-train", "2", "--n-val", "2", "--size", "48", "--plant-errors", "0.5"]
    )
    assert (args.n_train, args.n_val, args.size, args.seed, args.plant_errors) == (2, 2, 48, 0, 0.5)
    assert synth_main(args) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "cli") in out and "planted errors: 1" in out
    bad = parser.parse_args([str(tmp_path / "bad"), "--plant-errors", "2"])
    assert synth_main(bad) == 2
