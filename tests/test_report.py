"""Tests of the HTML audit report (reports.render) and its picture helpers (reports.overlay).

A fake but schema-correct run is written with :func:`segaudit.tables.write_table`; nothing here needs a
dataset or a model.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from reports import render_report
from reports.overlay import (
    blend,
    colorize_cam,
    label_colors,
    normalize_map,
    to_data_uri,
    upsample_map,
)
from reports.render import class_summary
from segaudit.tables import SCHEMAS, load_run, write_table

EVIL_CLASS = "<script>alert(1)</script>"
EVIL_FILE = "img_<script>.jpg"
CLASS_NAMES = ["background", "aeroplane", "bicycle", EVIL_CLASS, "dog"]
METHODS = ["gradcam", "gradcampp"]
N_IMAGES = 6
SIZE = 64  # thumbnail side
FEAT = 8  # map side


def _png(labels: np.ndarray, palette: bool) -> bytes:
    img = Image.fromarray(labels.astype(np.uint8))
    if palette:
        img = img.convert("P")
        img.putpalette(label_colors(256).reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def _file_name(i: int) -> str:
    return EVIL_FILE if i == 3 else f"JPEGImages/2007_{i:06d}.jpg"


def _run_row(n_errors: int) -> dict[str, Any]:
    return {
        "run_id": "test-run",
        "schema_version": 1,
        "created_at": "2025-01-01T12:00:00+00:00",
        "duration_s": 93.5,
        "dataset_kind": "voc",
        "dataset_path": "/data/VOC2012",
        "split": "val",
        "dataset_fingerprint": "f" * 64,
        "n_images": N_IMAGES + n_errors,
        "n_errors": n_errors,
        "model_name": "deeplabv3_resnet50",
        "model_sha256": "a1b2c3d4e5f6" + "0" * 52,
        "input_size": SIZE,
        "layer": "backbone.layer4",
        "methods": METHODS,
        "class_names": CLASS_NAMES,
        "config_json": json.dumps({"batch_size": 4, "methods": METHODS}),
        "versions_json": json.dumps({"torch": "2.5.0", "numpy": "2.1.0", "segaudit": "0.1.0"}),
    }


def _make_run(run_dir: Path, n_errors: int = 2, with_scores: bool = True, seed: int = 0) -> dict[str, Any]:
    """Write a complete fake run; return facts the tests check against."""
    rng = np.random.default_rng(seed)
    images, scores, maps, thumbs = [], [], [], []
    consistency = rng.uniform(0.05, 0.95, N_IMAGES)
    ranks = np.argsort(np.argsort(consistency)) + 1  # 1 = least consistent
    for i in range(N_IMAGES):
        image_id = f"img{i}"
        classes = sorted(rng.choice([1, 2, 3, 4], size=2, replace=False).tolist())
        gt = np.zeros((SIZE, SIZE), np.uint8)
        gt[8:30, 8:30] = classes[0]
        gt[34:60, 30:60] = classes[1]
        gt[0:3, :] = 255  # void border
        pred = np.zeros_like(gt)
        pred[10:32, 6:28] = classes[0]
        worst = classes[1]
        images.append(
            {
                "image_id": image_id,
                "file_name": _file_name(i),
                "width": 500,
                "height": 375,
                "n_instances": 2,
                "gt_classes": [CLASS_NAMES[c] for c in classes],
                "pred_classes": [CLASS_NAMES[classes[0]]],
                "consistency": float(consistency[i]),
                "review_rank": int(ranks[i]),
                "worst_class_id": worst,
            }
        )
        rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        thumbs.append(
            {
                "image_id": image_id,
                "image_jpeg": _jpeg(rgb),
                "gt_png": _png(gt, palette=i % 2 == 0),
                "pred_png": _png(pred, palette=False),
            }
        )
        for c in classes:
            for method in METHODS:
                maps.append(
                    {
                        "image_id": image_id,
                        "class_id": c,
                        "method": method,
                        "layer": "backbone.layer4",
                        "target": "gt" if c == worst else "pred",
                        "height": FEAT,
                        "width": FEAT,
                        "values": rng.random(FEAT * FEAT, dtype=np.float32).tolist(),
                    }
                )
                for mask in ("gt", "pred"):
                    empty = mask == "pred" and c == worst
                    nan = float("nan")
                    scores.append(
                        {
                            "image_id": image_id,
                            "class_id": c,
                            "class_name": CLASS_NAMES[c],
                            "method": method,
                            "layer": "backbone.layer4",
                            "target": "pred",
                            "mask": mask,
                            "mask_pixels": 0 if empty else 400,
                            "energy_in_mask": nan if empty else float(rng.random()),
                            "pointing_hit": nan if empty else float(rng.integers(0, 2)),
                            "iou_at_0_5": nan if empty else float(rng.random()),
                            "max_point_hit": nan if empty else float(rng.integers(0, 2)),
                            "max_point_distance": nan if empty else float(rng.random() * 10),
                            "centroid_hit": nan if empty else float(rng.integers(0, 2)),
                            "centroid_distance": nan if empty else float(rng.random() * 10),
                            "seg_iou": 0.0 if c == worst else 0.7,
                            "cam_max": float(rng.random()),
                            "consistency": float(rng.random()),
                        }
                    )
        # background rows must not appear in the class table
        scores.append({**scores[-1], "class_id": 0, "class_name": "background"})
    errors = [
        {
            "image_id": f"bad{k}",
            "file_name": f"JPEGImages/broken_{k}.jpg",
            "stage": "read",
            "reason": f"cannot identify image file (case {k})",
        }
        for k in range(n_errors)
    ]
    write_table([_run_row(n_errors)], run_dir / "run.parquet", "run")
    write_table(images, run_dir / "images.parquet", "images")
    write_table(scores if with_scores else [], run_dir / "scores.parquet", "scores")
    write_table(maps, run_dir / "maps.parquet", "maps")
    write_table(thumbs, run_dir / "thumbnails.parquet", "thumbnails")
    write_table(errors, run_dir / "errors.parquet", "errors")
    order = sorted(images, key=lambda r: r["review_rank"])
    return {
        "images": order,
        "classes": sorted({c for r in images for c in r["gt_classes"]}),
        "errors": errors,
    }


@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path / "runs" / "test-run"
    facts = _make_run(run_dir)
    return run_dir, facts


def _n_img(html: str) -> int:
    return len(re.findall(r'<img src="data:image/', html))


# ----------------------------------------------------------------------------------------------- report


def test_report_contents(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    path = render_report(run_dir, gallery_size=4)
    assert path == run_dir / "report.html"
    assert path.is_file()
    html = path.read_text(encoding="utf-8")

    # summary header
    for text in (
        "deeplabv3_resnet50",
        "a1b2c3d4e5f6",
        "backbone.layer4",
        "/data/VOC2012",
        "gradcampp",
        "2.5.0",
    ):
        assert text in html
    assert 'href="#errors"' in html and 'id="errors"' in html

    # class table: the classes present in scores, escaped, background excluded
    table = html.split('id="class-table"')[1].split("</table>")[0]
    for name in facts["classes"]:
        expected = name.replace("<", "&lt;").replace(">", "&gt;")
        assert expected in table
    body = table.split("<tbody>")[1].split("</tbody>")[0]
    assert ">background<" not in body and "class id 0" not in body
    assert body.count("<tr>") == len(facts["classes"])

    # gallery: gallery_size rows in review-rank order, rank 1 first
    assert html.count('class="gallery-row"') == 4
    rank1 = facts["images"][0]["file_name"].replace("<", "&lt;").replace(">", "&gt;")
    gallery = html.split('id="gallery"')[1].split('id="errors"')[0]
    first_row = gallery.split('class="gallery-row"')[1]
    assert rank1 in first_row and 'data-rank="1"' in first_row
    ranks = [int(r) for r in re.findall(r'data-rank="(\d+)"', gallery)]
    assert ranks == [1, 2, 3, 4]
    # per row: image, GT overlay, prediction overlay and one CAM per method
    assert _n_img(html) == 4 * (3 + len(METHODS))
    assert "max " in gallery and "energy in GT" in gallery

    # errors
    assert html.count('class="error-row"') == len(facts["errors"])
    for err in facts["errors"]:
        assert err["file_name"] in html and err["reason"] in html


def test_report_is_self_contained_and_escaped(fake_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, _ = fake_run
    out = render_report(run_dir, out_path=tmp_path / "elsewhere" / "r.html", gallery_size=12)
    assert out == tmp_path / "elsewhere" / "r.html"
    html = out.read_text(encoding="utf-8")
    assert html.count('class="gallery-row"') == N_IMAGES
    assert _n_img(html) == N_IMAGES * (3 + len(METHODS))
    # no external resource at all
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html
    # dataset strings are escaped
    assert EVIL_CLASS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL_FILE not in html
    assert "img_&lt;script&gt;.jpg" in html
    # the only <script> tag is the page's own sorting code
    assert html.count("<script>") == 1


def test_report_without_errors(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _make_run(run_dir, n_errors=0)
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert 'class="error-row"' not in html
    assert "No errors" in html


def test_report_with_empty_scores(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _make_run(run_dir, with_scores=False)
    html = render_report(run_dir, gallery_size=3).read_text(encoding="utf-8")
    assert "No scores in this run" in html
    assert html.count('class="gallery-row"') == 3
    # CAMs come from the maps table, not from scores
    assert _n_img(html) == 3 * (3 + len(METHODS))


def test_report_with_only_run_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_table([_run_row(0)], run_dir / "run.parquet", "run")
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert "No images in this run" in html and "No scores in this run" in html and "No errors" in html
    assert _n_img(html) == 0


def test_report_missing_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        render_report(tmp_path)


def test_class_summary(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    scores = load_run(run_dir, tables=("scores",)).scores
    summary = class_summary(scores, METHODS)
    assert 0 not in set(summary["class_id"])
    assert sorted(summary["class_name"]) == sorted(facts["classes"])
    gt = scores[(scores["mask"] == "gt") & (scores["method"] == "gradcam") & (scores["class_id"] == 1)]
    row = summary[summary["class_id"] == 1]
    if len(gt):
        assert row["gradcam/energy_in_mask"].item() == pytest.approx(gt["energy_in_mask"].mean())
        assert row["n_images"].item() == gt["image_id"].nunique()
    assert list(class_summary(scores.iloc[:0], METHODS).columns)[:4] == [
        "class_id",
        "class_name",
        "n_images",
        "seg_iou",
    ]


def test_fake_run_matches_schemas(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = fake_run
    tables = load_run(run_dir)
    for name in ("images", "scores", "maps", "thumbnails", "errors"):
        assert list(getattr(tables, name).columns) == SCHEMAS[name].names


# ---------------------------------------------------------------------------------------------- overlay


def test_colorize_cam_endpoints() -> None:
    rgb = colorize_cam(np.array([[0.0, 0.5, 1.0, -3.0, 7.0, np.nan]]))
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 128])  # dark blue
    np.testing.assert_array_equal(rgb[0, 1], [128, 255, 128])  # green in the middle
    np.testing.assert_array_equal(rgb[0, 2], [128, 0, 0])  # dark red
    np.testing.assert_array_equal(rgb[0, 3], rgb[0, 0])  # clipped
    np.testing.assert_array_equal(rgb[0, 4], rgb[0, 2])
    np.testing.assert_array_equal(rgb[0, 5], rgb[0, 0])  # NaN drawn as 0


def test_blend() -> None:
    img = np.full((4, 4, 3), 100, np.uint8)
    ovl = np.full((4, 4, 3), 200, np.uint8)
    assert (blend(img, ovl, 0.0) == 100).all()
    assert (blend(img, ovl, 1.0) == 200).all()
    assert (blend(img, ovl, 0.5) == 150).all()
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    out = blend(img, ovl, 1.0, mask=mask)
    assert out[0, 0, 0] == 200 and out[1, 1, 0] == 100
    with pytest.raises(ValueError):
        blend(img, ovl, 1.5)


def test_label_colors_voc() -> None:
    cmap = label_colors(256)
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    np.testing.assert_array_equal(cmap[0], [0, 0, 0])
    np.testing.assert_array_equal(cmap[1], [128, 0, 0])  # aeroplane
    np.testing.assert_array_equal(cmap[2], [0, 128, 0])
    np.testing.assert_array_equal(cmap[15], [192, 128, 128])  # person
    np.testing.assert_array_equal(cmap[255], [224, 224, 192])  # void
    np.testing.assert_array_equal(label_colors(21), cmap[:21])


def test_upsample_constant_map_is_constant() -> None:
    out = upsample_map(np.full((5, 7), 0.25, np.float32), (33, 20))
    assert out.shape == (33, 20) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.25, atol=1e-7)


@pytest.mark.parametrize(
    "src, size", [((8, 8), (64, 64)), ((7, 5), (32, 23)), ((13, 17), (4, 6)), ((1, 3), (5, 9))]
)
def test_upsample_matches_torch(src: tuple[int, int], size: tuple[int, int]) -> None:
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(1).standard_normal(src).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(values)[None, None], size=size, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(upsample_map(values, size), expected, atol=1e-5, rtol=0)


def test_normalize_map() -> None:
    out = normalize_map(np.array([[2.0, 4.0], [3.0, np.nan]]))
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.5, 0.0]])
    assert (normalize_map(np.ones((3, 3))) == 0).all()


def test_to_data_uri_roundtrip() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    uri = to_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, rgb)
    assert to_data_uri(rgb, fmt="JPEG").startswith("data:image/jpeg;base64,")
