"""Issue 15: a run's identity covers everything it read, and readers keep their promises (image root,
typed image ids, annotation limits)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segaudit.data.identity import images_fingerprint
from segaudit.data.readers import CocoDataset, coco_json, read_samples
from segaudit.data.sample import ImageRef
from segaudit.runs.run import RunInputsChanged, pending_shards, resume_message, run_directory, start_run
from segaudit.runs.tables import write_shard

W, H = 16, 12


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _coco(path: Path, images: list[dict], anns: list[dict]) -> Path:
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _three(tmp_path: Path) -> tuple[Path, Path]:
    """An annotation file and an image folder of three images with one annotation each."""
    root = tmp_path / "images"
    images = []
    anns = []
    for i in range(1, 4):
        _image(root / f"{i}.png", i)
        images.append({"id": i, "file_name": f"{i}.png", "height": H, "width": W})
        anns.append({"id": 10 + i, "image_id": i, "category_id": 1, "segmentation": _rect(1, 1, 8, 8), "iscrowd": 0})
    return _coco(tmp_path / "ann.json", images, anns), root


# ------------------------------------------------------------------------------------------- identity


def test_images_fingerprint_follows_missing_corrupt_and_moved_images(tmp_path: Path) -> None:
    ann, root = _three(tmp_path)
    base = images_fingerprint(CocoDataset(ann, image_root=root))
    assert images_fingerprint(CocoDataset(ann, image_root=root)) == base
    # same size and modification time, other bytes: the content hash of a small file tells them apart
    target = root / "2.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size
    corrupt = images_fingerprint(CocoDataset(ann, image_root=root))
    assert corrupt != base
    (root / "3.png").unlink()
    assert images_fingerprint(CocoDataset(ann, image_root=root)) not in (base, corrupt)
    # the same files under another root are another input
    other = tmp_path / "copy"
    shutil.copytree(root, other)
    assert images_fingerprint(CocoDataset(ann, image_root=other)) != images_fingerprint(
        CocoDataset(ann, image_root=root))


def _meta(**over: str) -> dict:
    meta = {"dataset_fingerprint": "d", "image_root": "/r", "images_fingerprint": "i", "model_sha256": "m",
            "model_name": "demo", "config_json": "{}", "split": "", "dataset_kind": "coco",
            "created_at": "2026-12-03T00:00:00+00:00"}
    return {**meta, **over}


def test_resume_says_so_and_a_named_run_of_other_inputs_is_refused(tmp_path: Path) -> None:
    refs = [ImageRef(str(i), f"{i}.png") for i in range(4)]
    meta = _meta()
    run_dir = run_directory(tmp_path, "mine", meta)
    plan = start_run(run_dir, meta, refs, 2, {})
    assert resume_message(plan, pending_shards(run_dir, plan)) == ""  # a new run
    write_shard(run_dir, plan["shards"][0]["name"], {}, {"run_key": plan["run_key"]})
    again = start_run(run_dir, _meta(), refs, 2, {})
    assert resume_message(again, pending_shards(run_dir, again)) == "resuming run mine: 1 of 2 shards done"
    changed = _meta(images_fingerprint="other")
    run_directory(tmp_path, "mine", changed)
    with pytest.raises(RunInputsChanged, match=r"^run mine in .* was made from other inputs \(changed: "
                                               r"images_fingerprint\); pass another run id"):
        start_run(run_dir, changed, refs, 2, {})
    # without a user-given id the changed input has its own folder
    assert run_directory(tmp_path, None, _meta(images_fingerprint="other")) != run_directory(tmp_path, None, _meta())


@pytest.mark.slow
def test_changed_image_folder_gives_a_new_correct_run_through_the_flow(prefect_server, tmp_path: Path) -> None:
    from segaudit.flows.audit import audit

    from segaudit.runs.tables import load_run

    ann, root = _three(tmp_path)
    settings = {"model": "demo", "image_root": str(root), "out": str(tmp_path / "runs"), "methods": ["gradcam"],
                "batch_size": 4, "report": False}
    first = audit(dataset=str(ann), **settings)
    run = load_run(first)
    assert len(run.images) == 3 and len(run.errors) == 0
    named = audit(dataset=str(ann), run_id="named", **settings)
    (root / "1.png").unlink()
    (root / "2.png").write_bytes(b"not an image")
    second = audit(dataset=str(ann), **settings)
    assert second != first
    run = load_run(second)
    assert sorted(run.images["image_id"]) == ["3"]
    assert sorted(run.errors["image_id"]) == ["1", "2"] and set(run.errors["stage"]) == {"read"}
    assert len(load_run(first).images) == 3  # the earlier run is left as it was
    with pytest.raises(ValueError, match="was made from other inputs"):
        audit(dataset=str(ann), run_id="named", **settings)
    assert len(load_run(named).images) == 3


# -------------------------------------------------------------------------------------------- readers


def test_given_image_root_is_the_only_place_images_are_read(tmp_path: Path) -> None:
    ann = _coco(tmp_path / "ann.json", [{"id": 1, "file_name": "x.png", "height": H, "width": W}], [])
    _image(tmp_path / "x.png")  # next to the annotation file, not under the root
    (tmp_path / "root").mkdir()
    ds = CocoDataset(ann, image_root=tmp_path / "root")
    samples, errors = read_samples(ds, ds.refs())
    assert samples == [] and len(errors) == 1
    assert errors[0].reason == f"image file not found: x.png (looked in {tmp_path / 'root'})"
    guessed = CocoDataset(ann)  # no root given: the annotation file's folder is where the image is
    samples, errors = read_samples(guessed, guessed.refs())
    assert [s.image_id for s in samples] == ["1"] and errors == []


def test_true_and_1_image_ids_keep_their_own_annotations(tmp_path: Path) -> None:
    _image(tmp_path / "t.png", 1)
    _image(tmp_path / "o.png", 2)
    images = [{"id": True, "file_name": "t.png", "height": H, "width": W},
              {"id": 1, "file_name": "o.png", "height": H, "width": W}]
    anns = [{"id": 1, "image_id": True, "category_id": 1, "segmentation": _rect(0, 0, 4, 4)},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": _rect(8, 6, 14, 11)}]
    ds = CocoDataset(_coco(tmp_path / "ann.json", images, anns))
    samples, errors = read_samples(ds, ds.refs())
    assert errors == [] and ds.load_errors == []
    got = {s.file_name: [(i.annotation_id, i.category) for i in s.instances] for s in samples}
    assert got == {"t.png": [("1", 1)], "o.png": [("2", 2)]}


def test_string_and_number_ids_that_print_alike_are_ambiguous(tmp_path: Path) -> None:
    _image(tmp_path / "n.png", 1)
    _image(tmp_path / "s.png", 2)
    images = [{"id": 1, "file_name": "n.png", "height": H, "width": W},
              {"id": "1", "file_name": "s.png", "height": H, "width": W}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rect(0, 0, 4, 4)},
            {"id": 2, "image_id": "1", "category_id": 2, "segmentation": _rect(8, 6, 14, 11)}]
    ds = CocoDataset(_coco(tmp_path / "ann.json", images, anns))
    assert [r.file_name for r in ds.refs()] == ["n.png"]
    reasons = [e.reason for e in ds.load_errors]
    assert reasons[0].startswith("ambiguous image id 1: a string here, a number for n.png")
    assert reasons[1] == "1 annotation(s) refer to image id 1, which is ambiguous (see its row); ignored"
    (sample,), errors = read_samples(ds, ds.refs())
    assert errors == [] and [(i.annotation_id, i.category) for i in sample.instances] == [("1", 1)]


def test_a_string_id_still_finds_its_only_image(tmp_path: Path) -> None:
    _image(tmp_path / "n.png")
    images = [{"id": 3, "file_name": "n.png", "height": H, "width": W}]
    anns = [{"id": 1, "image_id": "3", "category_id": 1, "segmentation": _rect(0, 0, 4, 4)}]
    ds = CocoDataset(_coco(tmp_path / "ann.json", images, anns))
    (sample,), errors = read_samples(ds, ds.refs())
    assert errors == [] and [i.annotation_id for i in sample.instances] == ["1"]


def test_annotations_past_the_limits_become_one_row(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(coco_json, "MAX_ANNOTATIONS_PER_IMAGE", 3)
    _image(tmp_path / "a.png", 1)
    _image(tmp_path / "b.png", 2)
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
              {"id": 2, "file_name": "b.png", "height": H, "width": W}]
    anns = [{"id": k, "image_id": 1 + k % 2, "category_id": 1, "segmentation": _rect(0, 0, 4, 4)} for k in range(10)]
    ds = CocoDataset(_coco(tmp_path / "ann.json", images, anns))
    samples, errors = read_samples(ds, ds.refs())
    assert [[i.annotation_id for i in s.instances] for s in samples] == [["0", "2", "4"], ["1", "3", "5"]]
    assert [(e.image_id, e.reason.split(" (")[0]) for e in errors] == [
        ("1", "annotation limit: 2 of 5 annotations skipped"), ("2", "annotation limit: 2 of 5 annotations skipped")]
    monkeypatch.setattr(coco_json, "MAX_ANNOTATIONS_TOTAL", 4)
    ds = CocoDataset(_coco(tmp_path / "ann.json", images, anns))
    samples, errors = read_samples(ds, ds.refs())
    assert sum(len(s.instances) for s in samples) == 4 and len(errors) == 2
