"""Tests of the HTML audit report (reports.render, reports.cards, reports.summary, reports.embed), the run
comparison (reports.compare) and the picture helpers (reports.overlay).

Fake but schema-correct runs (tests/report_runs.py); nothing here needs a dataset, a model or a browser
(tests/test_report_browser.py opens the pages in Chromium).
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_runs import (
    CLASS_NAMES,
    EVIL_CLASS,
    EVIL_FILE,
    EVIL_REASON,
    EVIL_UNKNOWN,
    LAYERS,
    METHODS,
    make_run,
    rewrite_run,
)
from segaudit.reports import compare_runs, render_report
from segaudit.reports.cards import encode_map
from segaudit.reports.compare import class_deltas, image_deltas
from segaudit.reports.embed import page_script, script_json
from segaudit.reports.overlay import (
    blend,
    colorize_cam,
    label_colors,
    normalize_map,
    to_data_uri,
    upsample_map,
)
from segaudit.reports.render import assets_dir
from segaudit.reports.summary import (
    CLASS_METRICS,
    class_facts,
    class_scores,
    class_summary,
    histograms,
    layer_order,
)

from segaudit.findings.rules import FINDING_KINDS
from segaudit.runs.tables import SCHEMAS, load_run, write_table


@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    run_dir = tmp_path / "runs" / "test-run"
    return run_dir, make_run(run_dir)


def _script(html: str, element_id: str) -> str:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert match, element_id
    return match.group(1)


def _data(html: str) -> dict[str, Any]:
    return json.loads(_script(html, "sa-data"))


def _inline_pages(html: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="sa-page-\d+">(.*?)</script>',
                                              html, re.S)]


def _file_page(path: Path) -> tuple[int, dict[str, Any]]:
    match = re.fullmatch(r"window\.segauditPage\((\d+),(.*)\);\n", path.read_text(encoding="utf-8"), re.S)
    assert match, path
    return int(match.group(1)), json.loads(match.group(2))


def _decode_map(entry: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["v"]), dtype="<f4").reshape(entry["h"], entry["w"])


# ----------------------------------------------------------------------------------------------- report


def test_report_header_and_sections(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    path = render_report(run_dir)
    assert path == run_dir / "report.html" and path.is_file()
    assert not assets_dir(path).exists()  # small run: one self-contained file
    html = path.read_text(encoding="utf-8")
    for text in ("deeplabv3_resnet50", "a1b2c3d4e5f6", "backbone.layer4", "backbone.layer2", "/data/VOC2012",
                 "gradcampp", "2.5.0", "1 min 34 s", "pred, gt", "weights DEFAULT"):
        assert text in html, text
    assert 'href="#errors"' in html and 'id="errors"' in html and 'href="#findings"' in html
    # findings come before the classes, the gallery and the errors
    order = [html.index(f'<section id="{s}">') for s in ("findings", "classes", "gallery", "errors")]
    assert order == sorted(order)
    assert html.count('class="error-row"') == len(facts["errors"])

    data = _data(html)
    meta = data["meta"]
    assert meta["methods"] == METHODS and meta["layers"] == ["backbone.layer2", "backbone.layer4"]
    assert meta["primary_layer"] == LAYERS[0] and meta["primary_method"] == METHODS[0]
    assert meta["n_cards"] == len(facts["images"]) and meta["inline"] is True
    assert meta["kinds"] == list(FINDING_KINDS)
    # the image index is in review order
    assert [row[0] for row in data["index"]] == [r["file_name"] for r in facts["images"]]
    assert [row[1] for row in data["index"]] == sorted(row[1] for row in data["index"])
    # findings: in review order (the image's review rank, then kind, then score), each pointing to its card
    order = [(data["index"][f["i"]][1], FINDING_KINDS.index(f["k"]), -f["s"]) for f in data["findings"]]
    assert order == sorted(order) and len(order) == len(facts["findings"])
    assert data["index"][data["findings"][0]["i"]][1] == 1
    for f in data["findings"]:
        assert data["index"][f["i"]][0] == f["f"]
        assert f["key"] == f"{f['id']}|{f['c']}|{f['k']}" and data["index"][f["i"]][6] == f["id"]
        assert f["x"] and f["p"].startswith("/data/VOC2012/")
    # the review list names the annotation ids of the finding's class in its image
    neglected = next(f for f in data["findings"] if f["k"] == "neglected_instances")
    assert neglected["a"] == ["0", "1"]
    # every image with a finding has a row thumbnail; the facets name the kinds and the confusion cells
    assert set(data["thumbs"]) == {f["id"] for f in data["findings"]}
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in data["thumbs"].values())
    assert [facet["k"] for facet in data["facets"]] == [
        list(dict.fromkeys(f["kind"] for f in facts["findings"] if f["image_id"] == row[6])) for row in data["index"]]
    k = len(data["confusion"]["n"])
    matrix = np.asarray(data["confusion"]["m"])
    assert matrix.sum() == sum(r["pixels"] for r in facts["confusion"])
    for row, facet in zip(data["index"], data["facets"], strict=True):
        mine = {r["gt_class_id"] * k + r["pred_class_id"] for r in facts["confusion"] if r["image_id"] == row[6]}
        assert set(facet["x"]) == mine
    assert {f["k"] for f in data["findings"]} == {"label_error", "neglected_instances", "out_of_label_space"}
    # per-class rows: model classes with scores (no background) plus the unknown dataset class
    names = [r["n"] for r in data["classes"]["rows"]]
    assert sorted(n for n in names if n != EVIL_UNKNOWN) == sorted(facts["classes"])
    assert names[-1] == EVIL_UNKNOWN and data["classes"]["rows"][-1]["c"] == -1
    assert {(c["m"], c["l"]) for c in data["classes"]["combos"]} == {(m, lay) for m in METHODS for lay in LAYERS}


def test_cards_carry_the_tables(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    html = render_report(run_dir, page_size=4).read_text(encoding="utf-8")
    pages = _inline_pages(html)
    assert [p["page"] for p in pages] == [0, 1]
    cards = [c for p in pages for c in p["cards"]]
    assert [c["file"] for c in cards] == [r["file_name"] for r in facts["images"]]
    assert [c["i"] for c in cards] == list(range(len(cards)))
    run = load_run(run_dir)
    card = cards[0]
    image_id = card["id"]
    thumb = run.thumbnails.set_index("image_id").loc[image_id]
    assert base64.b64decode(card["img"].split(",", 1)[1]) == thumb["image_jpeg"]
    assert base64.b64decode(card["gt"].split(",", 1)[1]) == thumb["gt_png"]
    assert (card["th"], card["tw"]) == (64, 64)
    maps = run.maps[run.maps["image_id"] == image_id]
    assert len(card["maps"]) == len(maps) == 2 * len(METHODS) * len(LAYERS)
    gt = run.scores[(run.scores["image_id"] == image_id) & (run.scores["mask"] == "gt")]
    for entry in card["maps"]:
        subject = card["subjects"][entry["s"]]
        row = maps[(maps["class_id"] == subject["c"]) & (maps["method"] == entry["m"]) & (maps["layer"] == entry["l"])]
        values = np.asarray(row["values"].iloc[0], dtype=np.float32).reshape(8, 8)
        np.testing.assert_array_equal(_decode_map(entry), values)
        assert entry["lo"] == pytest.approx(values.min()) and entry["hi"] == pytest.approx(values.max())
        score = gt[(gt["class_id"] == subject["c"]) & (gt["method"] == entry["m"]) & (gt["layer"] == entry["l"])]
        for key in ("energy_in_mask", "pointing_hit", "relevance_rank", "auroc"):
            expected = score[key].iloc[0]
            assert (entry["sc"][key] is None and np.isnan(expected)) or entry["sc"][key] == pytest.approx(expected)
    # instance coverage per instance, findings and prompts of the image
    inst = run.instances[run.instances["image_id"] == image_id]
    assert sum(len(g["rows"]) for g in card["inst"]) == len(inst)
    assert {g["cov"] for g in card["inst"]} == set(inst["instance_coverage"])
    assert [r["a"] for r in card["inst"][0]["rows"]] == sorted(inst["annotation_id"].unique())[:2]
    assert {f["kind"] for f in card["find"]} == set(run.findings.loc[run.findings["image_id"] == image_id, "kind"])
    assert len(card["prompts"]) == 2 and {p["pt"] for p in card["prompts"]} == {"centroid", "max"}


def test_report_is_offline_and_escaped(fake_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, _ = fake_run
    out = render_report(run_dir, out_path=tmp_path / "elsewhere" / "r.html", page_size=2)
    assert out == tmp_path / "elsewhere" / "r.html"
    html = out.read_text(encoding="utf-8")
    # no external resource at all; a CSP forbids fetching one
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.IGNORECASE)
    # (the one http:// string is the SVG namespace name, an identifier that is never fetched)
    rest = html.replace('"http://www.w3.org/2000/svg"', "")
    assert "http://" not in rest and "https://" not in rest
    assert "<link" not in html and "@import" not in html and "connect-src 'none'" in html
    # hostile run strings never appear as markup: only the page's own script elements exist
    for evil in (EVIL_CLASS, EVIL_FILE, EVIL_REASON, EVIL_UNKNOWN):
        assert evil not in html
    n_pages = len(_inline_pages(html))
    assert n_pages == 3
    assert html.count("<script") == html.count("</script>") == 2 + n_pages
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html  # the error reason, escaped
    # ... and travel intact as data
    data = _data(html)
    assert EVIL_CLASS in [r["n"] for r in data["classes"]["rows"]]
    assert EVIL_FILE in [row[0] for row in data["index"]]
    assert EVIL_UNKNOWN in [f["n"] for f in data["findings"]]


def test_script_json_is_inert() -> None:
    text = script_json({"a": "</script><!-- & \u2028", "b": float("nan"), "c": np.float32(0.5), "d": np.arange(2)})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028", "b": None, "c": 0.5, "d": [0, 1]}
    assert page_script(3, {"x": "</script>"}) == 'window.segauditPage(3,{"x":"\\u003c/script\\u003e"});\n'


def test_large_reports_put_pages_beside_the_file(fake_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, facts = fake_run
    inline = _inline_pages(render_report(run_dir, tmp_path / "a.html", page_size=4).read_text(encoding="utf-8"))
    out = render_report(run_dir, tmp_path / "b.html", page_size=4, inline_limit=3)
    html = out.read_text(encoding="utf-8")
    folder = tmp_path / "b_files"
    assert assets_dir(out) == folder and _data(html)["meta"]["inline"] is False
    assert _data(html)["meta"]["files"] == "b_files" and _inline_pages(html) == []
    files = sorted(folder.glob("page-*.js"))
    assert [f.name for f in files] == ["page-00001.js", "page-00002.js"]
    assert [_file_page(f) for f in files] == [(p["page"], p) for p in inline]
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert EVIL_FILE not in text and "</script" not in text
    # a re-render replaces the pages; an inline re-render removes them
    render_report(run_dir, out, gallery_size=2, page_size=1, inline_limit=0)
    assert sorted(p.name for p in folder.glob("page-*.js")) == ["page-00001.js", "page-00002.js"]
    assert _file_page(folder / "page-00002.js")[1]["cards"][0]["file"] == facts["images"][1]["file_name"]
    render_report(run_dir, out)
    assert not folder.exists()
    # a folder that is not ours is never deleted
    (tmp_path / "c_files").mkdir()
    (tmp_path / "c_files" / "precious.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        render_report(run_dir, tmp_path / "c.html", inline_limit=0)
    assert (tmp_path / "c_files" / "precious.txt").read_text() == "keep"


def test_gallery_size_limits_cards(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    data = _data(render_report(run_dir, gallery_size=2).read_text(encoding="utf-8"))
    assert data["meta"]["n_cards"] == 2 and len(data["index"]) == 2
    assert [f["i"] for f in data["findings"] if f["f"] not in {r[0] for r in data["index"]}] == \
        [None] * sum(f["f"] not in {r[0] for r in data["index"]} for f in data["findings"])


def test_report_without_errors_scores_or_findings(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir, n_errors=0, with_scores=False)
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert 'class="error-row"' not in html and "No errors" in html
    data = _data(html)
    assert data["findings"] == [] and data["classes"]["rows"] == [] and data["classes"]["combos"] == []
    cards = [c for p in _inline_pages(html) for c in p["cards"]]
    assert len(cards) == 6 and all(len(c["maps"]) == 2 * len(METHODS) * len(LAYERS) for c in cards)  # from maps


def test_report_with_only_run_table(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    for name in SCHEMAS:
        if name != "run":
            (run_dir / f"{name}.parquet").unlink(missing_ok=True)
    html = render_report(run_dir).read_text(encoding="utf-8")
    data = _data(html)
    assert data["meta"]["n_cards"] == 0 and data["index"] == [] and _inline_pages(html) == []


def test_report_of_detector_and_classifier_rows(tmp_path: Path) -> None:
    """A detector's per-detection maps and scores (``detection`` set, ``target`` "detection") and a
    classifier's run (GT-mask rows only, no prediction picture) render, one subject per detection."""
    run_dir = tmp_path / "run"
    make_run(run_dir, n_images=2)
    run = load_run(run_dir)
    scores = run.scores[run.scores["mask"] == "gt"].assign(seg_iou=np.nan)
    detections = [scores.assign(detection=d, target="detection") for d in (0, 1)]
    maps = [run.maps.assign(detection=d, target="detection") for d in (0, 1)]
    write_table(pd.concat(detections, ignore_index=True), run_dir / "scores.parquet", "scores")
    write_table(pd.concat(maps, ignore_index=True), run_dir / "maps.parquet", "maps")
    write_table(run.thumbnails.assign(pred_png=[b""] * len(run.thumbnails)), run_dir / "thumbnails.parquet",
                "thumbnails")
    html = render_report(run_dir).read_text(encoding="utf-8")
    cards = [c for p in _inline_pages(html) for c in p["cards"]]
    assert all(c["pred"] is None for c in cards)
    for card in cards:
        assert sorted(s["d"] for s in card["subjects"]) == [0, 0, 1, 1]
        assert len(card["maps"]) == 2 * 2 * len(METHODS) * len(LAYERS)
        assert len({(m["s"], m["m"], m["l"]) for m in card["maps"]}) == len(card["maps"])
        assert card["inst"] and card["prompts"]  # class-level rows go to the class's first detection
    data = _data(html)
    combo = data["classes"]["combos"][0]
    assert max(combo["images"]) <= 2  # two detections of a class in an image count as one image
    assert all(r["seg_iou"] is None for r in data["classes"]["rows"])


def test_report_missing_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        render_report(tmp_path)


def test_report_of_a_run_on_object_storage() -> None:
    fsspec = pytest.importorskip("fsspec")
    url = "memory://segaudit-report-test/runs/r1"
    try:
        make_run(url, n_images=3)
        out = render_report(url, inline_limit=1, page_size=2)
        assert out == f"{url}/report.html"
        fs = fsspec.filesystem("memory")
        html = fs.cat_file(f"{url}/report.html").decode("utf-8")
        assert _data(html)["meta"]["n_cards"] == 3
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{url}/report_files", detail=False)) == [
            ".segaudit-report", "page-00001.js", "page-00002.js"]
    finally:
        fsspec.filesystem("memory").rm("/segaudit-report-test", recursive=True)


def test_reports_and_schema_do_not_import_torch() -> None:
    # the report renders on machines without torch: it reads the run's tables and segaudit.schema only
    code = ("import sys, segaudit.schema, segaudit.reports, segaudit.runs.tables, segaudit.findings.rules; "
            "loaded = sorted(m for m in ('torch', 'torchvision') if m in sys.modules); "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_encode_map() -> None:
    values = np.array([[1.5, -2.0], [np.nan, 0.25]], np.float32)
    text, lo, hi = encode_map(values)
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(text), "<f4"), [1.5, -2.0, 0.0, 0.25])
    assert (lo, hi) == (-2.0, 1.5)
    assert encode_map(np.full(3, np.nan))[1:] == (None, None)


# ---------------------------------------------------------------------------------------------- summary


def _frames(run_dir: Path):
    return load_run(run_dir)


def test_class_scores_match_pandas(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = fake_run
    run = _frames(run_dir)
    means = class_scores(run.scores, run.instances)
    gt = run.scores[(run.scores["mask"] == "gt") & (run.scores["class_id"] > 0)]
    assert 0 not in set(means["class_id"])
    assert len(means) == len(gt.groupby(["class_id", "method", "layer"]))
    for (c, m, lay), frame in gt.groupby(["class_id", "method", "layer"]):
        row = means[(means["class_id"] == c) & (means["method"] == m) & (means["layer"] == lay)].iloc[0]
        assert row["n_images"] == frame["image_id"].nunique()
        for metric in ("energy_in_mask", "auroc", "consistency"):
            assert row[metric] == pytest.approx(frame[metric].mean(), nan_ok=True)
        inst = run.instances[(run.instances["class_id"] == c) & (run.instances["method"] == m)
                             & (run.instances["layer"] == lay)]
        per_map = inst.groupby("image_id")["instance_coverage"].first()
        assert row["instance_coverage"] == pytest.approx(per_map.mean() if len(per_map) else np.nan, nan_ok=True)


def test_class_scores_count_each_image_once() -> None:
    """A detector's several rows for one (image, class) weigh as one image."""
    rows = pd.DataFrame({
        "image_id": ["a", "a", "a", "b"], "class_id": [1, 1, 1, 1], "class_name": ["x"] * 4,
        "method": ["gradcam"] * 4, "layer": ["l"] * 4, "mask": ["gt"] * 4, "detection": [0, 1, 2, None],
        **{m: [0.0, 0.0, 0.0, 1.0] for m in CLASS_METRICS if m != "instance_coverage"},
        "seg_iou": [0.0, 0.0, 0.0, 1.0], "label_quality": [0.2, 0.2, 0.2, 0.4],
    })
    means = class_scores(rows)
    assert means["energy_in_mask"].item() == pytest.approx(0.5) and means["n_images"].item() == 2
    facts = class_facts(rows, ["bg", "x"])
    assert facts["seg_iou"].item() == pytest.approx(0.5) and facts["label_quality"].item() == pytest.approx(0.3)
    assert histograms(rows)[("energy_in_mask", "gradcam", "l")][1] == [1] + [0] * 8 + [1]


def test_class_facts_and_histograms(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, facts = fake_run
    run = _frames(run_dir)
    table = class_facts(run.scores, CLASS_NAMES, run.findings, FINDING_KINDS)
    assert list(table["class_name"]) == [n for n in CLASS_NAMES[1:] if n in facts["classes"]] + [EVIL_UNKNOWN]
    assert table["findings/out_of_label_space"].tolist()[-1] == 1
    label_errors = run.findings[run.findings["kind"] == "label_error"].groupby("class_name").size()
    for rec in table.to_dict("records")[:-1]:
        assert rec["findings/label_error"] == label_errors.get(rec["class_name"], 0)
    hist = histograms(run.scores)
    gt = run.scores[(run.scores["mask"] == "gt") & (run.scores["class_id"] > 0)]
    for (metric, method, layer), counts in hist.items():
        values = gt[(gt["method"] == method) & (gt["layer"] == layer)][metric]
        assert sum(counts[0]) == values.notna().sum()
        assert sum(sum(v) for k, v in counts.items() if k != 0) == values.notna().sum()


def test_class_summary_is_wide(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = fake_run
    run = _frames(run_dir)
    wide = class_summary(run.scores, METHODS, layer=LAYERS[0], instances=run.instances)
    long = class_scores(run.scores, run.instances)
    row = long[(long["class_id"] == 1) & (long["method"] == "gradcampp") & (long["layer"] == LAYERS[0])]
    if len(row):
        assert wide.loc[wide["class_id"] == 1, "gradcampp/auroc"].item() == pytest.approx(row["auroc"].item())
    assert list(class_summary(run.scores.iloc[:0], METHODS).columns)[:4] == ["class_id", "class_name", "n_images",
                                                                             "seg_iou"]


def test_layer_order() -> None:
    assert layer_order(["backbone.16", "backbone.2", "classifier", "backbone.4", "backbone.2"]) == [
        "backbone.2", "backbone.4", "backbone.16", "classifier"]
    assert layer_order(["backbone.layer4", "backbone.layer1"]) == ["backbone.layer1", "backbone.layer4"]


# ---------------------------------------------------------------------------------------------- compare


def test_compare_runs(tmp_path: Path) -> None:
    make_run(tmp_path / "a", seed=0, run_id="run-a")
    make_run(tmp_path / "b", seed=1, run_id="run-b", layers=["backbone.layer2"])
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    deltas, methods = class_deltas(a, b)
    assert methods == METHODS
    # each run at its primary layer: A at layer4, B at layer2
    ma, mb = class_scores(a.scores, a.instances), class_scores(b.scores, b.instances)
    for rec in deltas.to_dict("records"):
        cid_a = CLASS_NAMES.index(rec["class_name"])
        va = ma[(ma["class_id"] == cid_a) & (ma["method"] == "gradcam") & (ma["layer"] == "backbone.layer4")]
        vb = mb[(mb["class_id"] == cid_a) & (mb["method"] == "gradcam") & (mb["layer"] == "backbone.layer2")]
        expected = (vb["energy_in_mask"].item() if len(vb) else np.nan) - (va["energy_in_mask"].item() if len(va) else np.nan)
        assert rec["gradcam/energy_in_mask_delta"] == pytest.approx(expected, nan_ok=True)
    changed = image_deltas(a, b, top=4)
    assert len(changed) == 4 and changed["change"].is_monotonic_decreasing
    expected = (b.images.set_index("image_id")["suspicion"] - a.images.set_index("image_id")["suspicion"]).abs()
    assert changed["change"].iloc[0] >= expected.max() - 1e-12

    out = compare_runs(tmp_path / "a", tmp_path / "b", top=3)
    assert out == tmp_path / "b" / "compare.html"
    html = out.read_text(encoding="utf-8")
    assert html.count('class="img-card changed-row"') == 3
    assert html.count('class="class-row"') == (1 + len(METHODS)) * len(deltas)
    assert "run-a" in html and "run-b" in html
    for evil in (EVIL_CLASS, EVIL_FILE):
        assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.IGNORECASE)


def test_compare_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segaudit.cli import EXIT_USER_ERROR, main

    make_run(tmp_path / "a", n_images=3)
    make_run(tmp_path / "b", n_images=3, seed=2)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.html")]) == 0
    assert f"comparison: {tmp_path / 'c.html'}" in capsys.readouterr().out
    assert (tmp_path / "c.html").is_file()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path)]) == EXIT_USER_ERROR
    assert "not a segaudit run" in capsys.readouterr().err


def test_compare_coco_and_voc_of_the_same_images(tmp_path: Path) -> None:
    """Issue 17: the same images read as VOC (A) and as COCO (B) pair by file name, with warnings."""
    make_run(tmp_path / "voc", seed=0, run_id="run-voc")
    make_run(tmp_path / "coco", seed=0, run_id="run-coco")
    rewrite_run(tmp_path / "coco", coco=True)
    a, b = load_run(tmp_path / "voc"), load_run(tmp_path / "coco")
    assert image_deltas(a, b, method="gradcam").empty  # the same scores: nothing changed
    html = compare_runs(tmp_path / "voc", tmp_path / "coco").read_text(encoding="utf-8")
    assert "The runs share no image" not in html and "images by file name (6 in both runs)" in html
    warnings = re.findall(r'<li class="compare-warning">(.*?)</li>', html)
    assert any(w.startswith("Dataset formats differ: A reads voc, B reads coco") for w in warnings)
    assert any(w.startswith("Splits differ") for w in warnings) and any(w.startswith("Image ids differ") for w in warnings)
    assert "No image changed" in html and 'class="img-card changed-row"' not in html
    # no finding is new or resolved; every delta is 0 and no cell is coloured
    assert "New in B (0)" in html and "Resolved since A (0)" in html
    assert "+0.000" in html and "rgba(46, 160, 67" not in html


def test_compare_method_lists_and_findings(tmp_path: Path) -> None:
    make_run(tmp_path / "a", seed=0, run_id="run-a")
    make_run(tmp_path / "b", seed=0, run_id="run-b")
    rewrite_run(tmp_path / "b", methods=["gradcam"])
    html = compare_runs(tmp_path / "a", tmp_path / "b").read_text(encoding="utf-8")
    warnings = re.findall(r'<li class="compare-warning">(.*?)</li>', html)
    assert [w for w in warnings if w.startswith("Method lists differ")] == [
        "Method lists differ: A gradcam, gradcampp, B gradcam; compared on gradcam. The first method decides "
        "findings and suspicion, so those differ when the first methods do."]
    assert 'class="img-card changed-row"' not in html  # per-class deltas all 0.000: nothing listed as changed
    # a run with other scores: changed images link to their cards in both reports; findings new and resolved
    make_run(tmp_path / "c", seed=1, run_id="run-c")
    html = compare_runs(tmp_path / "a", tmp_path / "c", tmp_path / "out" / "cmp.html").read_text(encoding="utf-8")
    links = re.findall(r'class="card-link" href="([^"]+)"', html)
    assert links and all(href.startswith(("../a/report.html#card-", "../c/report.html#card-")) for href in links)
    a, c = load_run(tmp_path / "a"), load_run(tmp_path / "c")
    key = lambda f: {(r.image_id, r.class_name.lower(), r.kind) for r in f.itertuples()}  # noqa: E731
    assert f"New in B ({len(key(c.findings) - key(a.findings))})" in html
    assert f"Resolved since A ({len(key(a.findings) - key(c.findings))})" in html
    # the images A / B column sorts: its cells carry a sort key
    assert re.search(r'<td data-v="\d+">\d+ / \d+</td>', html)


def test_report_link() -> None:
    from segaudit.tasks.report import report_link

    assert report_link("s3://bucket/runs/x/report.html") == "s3://bucket/runs/x/report.html"
    link = report_link("runs/x/report.html")
    assert link.startswith("file:///") and link.endswith("/runs/x/report.html")


def test_fake_run_matches_schemas(fake_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = fake_run
    tables = load_run(run_dir)
    for name in ("images", "scores", "maps", "thumbnails", "errors", "instances", "findings", "prompts"):
        assert list(getattr(tables, name).columns) == SCHEMAS[name].names
    write_table(tables.images, run_dir / "images.parquet", "images")  # round-trips


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


def test_cards_show_the_causal_context_test_and_the_list_the_new_kinds(fake_run, tmp_path: Path) -> None:
    from report_runs import jpeg

    run_dir, facts = fake_run
    run = load_run(run_dir)
    first = facts["images"][0]
    class_id = CLASS_NAMES.index(first["gt_classes"][0])
    views = [jpeg(np.full((64, 64, 3), v, np.uint8)) for v in (30, 220)]
    write_table([{"image_id": first["image_id"], "class_id": class_id, "class_name": CLASS_NAMES[class_id],
                  "object_pixels": 484, "score": 0.9, "score_object_only": 0.3, "context_reliance": 0.6, "iou": 0.8,
                  "iou_object_only": 0.2, "context_iou_drop": 0.6, "hallucination": 0.7, "outside_share": 0.4,
                  "object_only_jpeg": views[0], "context_only_jpeg": views[1]}],
                run_dir / "context.parquet", "context")
    nan = float("nan")
    base = {k: nan for k in ("seg_iou", "label_quality", "recall", "energy_in_gt", "energy_in_pred", "outside_share",
                             "instance_coverage", "context_reliance", "hallucination", "template_correlation",
                             "confusion_share")}
    extra = [
        {**base, "image_id": first["image_id"], "file_name": first["file_name"], "class_id": class_id,
         "class_name": CLASS_NAMES[class_id], "kind": "context_hallucination", "score": 0.7, "rank": 1,
         "method": METHODS[0], "layer": LAYERS[0], "target": "pred", "hallucination": 0.7, "context_reliance": 0.6},
        {**base, "image_id": first["image_id"], "file_name": first["file_name"], "class_id": class_id,
         "class_name": CLASS_NAMES[class_id], "kind": "context_reliance", "score": 0.8, "rank": 1,
         "method": METHODS[0], "layer": LAYERS[0], "target": "pred", "outside_share": 0.8},
        {**base, "image_id": "", "file_name": "", "class_id": 1, "class_name": f"{CLASS_NAMES[1]} ~ {CLASS_NAMES[2]}",
         "kind": "class_entanglement", "score": 0.3, "rank": 1, "method": "", "layer": "", "target": "",
         "template_correlation": 0.9, "confusion_share": 0.1},
    ]
    findings = pd.concat([run.findings, pd.DataFrame(extra)], ignore_index=True)
    write_table(findings, run_dir / "findings.parquet", "findings")
    html = render_report(run_dir).read_text(encoding="utf-8")
    card = next(c for p in _inline_pages(html) for c in p["cards"] if c["id"] == first["image_id"])
    (test,) = card["ctx"]
    assert card["subjects"][test["s"]]["c"] == class_id
    assert base64.b64decode(test["obj"].split(",", 1)[1]) == views[0]
    assert base64.b64decode(test["ctx"].split(",", 1)[1]) == views[1]
    assert (test["sc"], test["so"], test["drop"], test["hal"], test["out"]) == (0.9, 0.3, 0.6, 0.7, 0.4)
    assert all(c["ctx"] == [] for p in _inline_pages(html) for c in p["cards"] if c["id"] != first["image_id"])
    listed = {f["k"]: f for f in _data(html)["findings"]}
    assert listed["context_hallucination"]["e"] == {"context_reliance": 0.6, "hallucination": 0.7}
    assert listed["context_reliance"]["e"] == {"outside_share": 0.8}  # no causal drop: the page says "from the map only"
    assert listed["class_entanglement"]["e"] == {"template_correlation": 0.9, "confusion_share": 0.1}
    assert listed["class_entanglement"]["i"] is None  # run-wide: no card
    assert listed["class_entanglement"]["n"] == f"{CLASS_NAMES[1]} ~ {CLASS_NAMES[2]}"
    assert "from the map only" in html and "Causal context test" in html

def test_method_trust_section_flags_a_method_that_fails_sanity(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert 'id="trust"' in html and "No faithfulness checks" in html and "trust-row" not in html
    trust = pd.DataFrame([
        {"method": "gradcam", "layer": "backbone.4", "n_pairs": 28, "deletion_auc": 0.014, "insertion_auc": 0.78,
         "faithfulness": 0.766, "faithfulness_se": 0.044, "sanity_ssim": 0.2, "sanity_spearman": 0.1,
         "passes_sanity": True, "chosen": True},
        {"method": "eigencam", "layer": "backbone.4", "n_pairs": 28, "deletion_auc": 0.4, "insertion_auc": 0.5,
         "faithfulness": 0.1, "faithfulness_se": 0.1, "sanity_ssim": 0.93, "sanity_spearman": 0.9,
         "passes_sanity": False, "chosen": False},
        {"method": "gradcampp", "layer": "backbone.4", "n_pairs": 28, "deletion_auc": 0.47, "insertion_auc": 0.48,
         "faithfulness": 0.014, "faithfulness_se": 0.117, "sanity_ssim": float("nan"), "sanity_spearman": float("nan"),
         "passes_sanity": None, "chosen": False},
    ])
    write_table(trust, run_dir / "method_trust.parquet", "method_trust")
    html = render_report(run_dir).read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="trust-row[^"]*">.*?</tr>', html, flags=re.S)
    assert len(rows) == 3
    assert "trust-fail" in rows[1] and "fails sanity" in rows[1] and "eigencam" in rows[1]
    assert "trust-fail" not in rows[0] and "chosen" in rows[0] and "0.766 ± 0.044" in rows[0]
    assert "not run" in rows[2] and "chosen" not in rows[2].split("gradcampp", 1)[1].replace('data-col', '')
