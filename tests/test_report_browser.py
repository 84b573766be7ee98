"""The report in a real browser: the demo run's report opened in headless Chromium from a file:// URL.

Needs the Playwright Python package (``pip install -e ".[dev]"``) and a Chromium binary: Debian's
(``apt-get install chromium``, at /usr/bin/chromium) or any other given by ``SEGAUDIT_CHROMIUM``. No
browser is downloaded; without either, these tests are skipped with the reason. Screenshots are saved
under the tests' temporary output (the path is printed).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from report_runs import EVIL_CLASS, EVIL_FILE, EVIL_REASON, EVIL_UNKNOWN, make_run
from segaudit.reports import render_report


def _chromium() -> str | None:
    for candidate in (os.environ.get("SEGAUDIT_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


CHROMIUM = _chromium()
sync_api = pytest.importorskip("playwright.sync_api", reason="the Playwright package is not installed "
                               "(pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium, or set "
                                "SEGAUDIT_CHROMIUM to a Chromium binary)")

N_IMAGES = 8


@pytest.fixture(scope="module")
def demo_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo (its data and shipped model) audited on its first images, with a layer sweep and an image
    that cannot be read (an errors row), through the core functions the flow calls."""
    from segaudit.auditors.batch import BatchRows, explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.data.sample import ImageRef
    from segaudit.models.registry import load_model
    from segaudit.runs.run import plan_batches, run_metadata, write_run_rows
    from segaudit.settings import AuditConfig

    data = open_dataset(str(demo_data / "annotations" / "instances_val.json"))
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names, None)
    config = AuditConfig(methods=("gradcam", "gradcampp"), layers=("backbone.4", "backbone.2"), batch_size=8)
    refs = data.refs()[:N_IMAGES] + [ImageRef("missing", "no_such_image.jpg")]
    rows = BatchRows()
    for batch in plan_batches(refs, config.batch_size):
        samples, errors = read_samples(data, batch)
        rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    meta = run_metadata(data, model, config, dataset_path=str(demo_data), split=None)
    out = tmp_path_factory.mktemp("browser") / "runs" / "demo"
    write_run_rows(rows, out, meta)
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nreport screenshots: {folder}")
    return folder


class Page:
    """A report opened in a fresh page, recording console messages, page errors, dialogs and requests."""

    def __init__(self, browser: Any, path: Path, width: int = 1400) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": 1000})
        self.page.on("console", lambda m: self.problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                     else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("html[data-ready='1']")
        self.page.wait_for_selector(".img-card[data-ready='1']")

    def texts(self, selector: str) -> list[str]:
        return self.page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")

    def check_clean(self) -> None:
        assert self.problems == []
        assert self.dialogs == []
        assert all(u.startswith(("file:", "data:", "blob:")) for u in self.requests), self.requests

    def close(self) -> None:
        self.page.close()


def _png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _numbers(texts: list[str]) -> list[float]:
    return [float(t) for t in texts if t not in ("\u2013", "")]


def test_demo_report_in_chromium(demo_run: Path, browser: Any, shots: Path) -> None:
    report = render_report(demo_run, page_size=5)
    view = Page(browser, report)
    page = view.page
    page.screenshot(path=str(shots / "report_top.png"))
    page.screenshot(path=str(shots / "report_full.png"), full_page=True)

    # the header and the error list
    assert page.locator("#errors-link").inner_text() == "1"
    assert page.locator("#error-table .error-row").count() == 1

    # findings: in review order first (ranks from 1 up); sorting by score and filtering by kind and class
    rows = "#finding-table tbody tr"
    n_findings = page.locator(rows).count()
    assert n_findings > 0
    ranks = _numbers(view.texts(f"{rows} td:nth-child(1)"))
    assert ranks == sorted(ranks) and ranks[0] >= 1
    score_col = "td:nth-child(4)"
    page.click("#finding-table th[data-key='s']")  # strongest first
    first_scores = _numbers(view.texts(f"{rows} {score_col}"))
    assert first_scores == sorted(first_scores, reverse=True)
    page.click("#finding-table th[data-key='s']")  # now ascending
    ascending = _numbers(view.texts(f"{rows} {score_col}"))
    assert ascending == sorted(ascending) and ascending[0] <= first_scores[-1]
    kinds = set(page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.kind)"))
    kind = sorted(kinds)[0]
    page.click(f"#finding-controls button[data-kind='{kind}']")
    after = page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.kind)")
    assert kind not in after
    page.click(f"#finding-controls button[data-kind='{kind}']")
    options = page.eval_on_selector_all("#finding-class option", "os => os.map(o => [o.value, o.textContent])")[1:]
    value, text = options[0]
    page.select_option("#finding-class", value)
    names = set(page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.class)"))
    assert names == {text.rsplit(" (", 1)[0]}
    assert len(options) == 1 or page.locator(rows).count() < n_findings
    page.select_option("#finding-class", "")

    # the per-class table sorts by a metric, both ways
    def class_order() -> list[str]:
        return [t.strip() for t in view.texts("#class-table tbody tr td:first-child")]

    by_name = class_order()
    assert by_name == sorted(by_name, key=str.lower)
    column = page.eval_on_selector_all("#class-table thead th", "hs => hs.map(h => h.dataset.key)").index(
        "m:energy_in_mask") + 1
    page.click("#class-table th[data-key='m:energy_in_mask']")
    desc = _numbers(view.texts(f"#class-table tbody td:nth-child({column})"))
    assert desc == sorted(desc, reverse=True)
    order_desc = class_order()
    page.click("#class-table th[data-key='m:energy_in_mask']")
    order_asc = class_order()
    assert order_asc != order_desc and set(order_asc) == set(by_name)
    page.select_option("#class-view", "metric")
    assert view.texts("#class-table thead th")[5:] == ["gradcam", "gradcampp"]
    page.locator("#classes").screenshot(path=str(shots / "classes.png"))

    # an image card: toggling an overlay or the opacity changes the picture
    card = page.locator("#card-0")
    viewer = card.locator("[data-role='viewer']")
    card.locator("input[data-toggle='gt']").uncheck()  # a label-error card opens with GT and prediction shown
    card.locator("input[data-toggle='pred']").uncheck()
    card.locator("input[data-toggle='cam']").check()
    before = _png_pixels(viewer.screenshot())
    card.locator("input[data-toggle='cam']").uncheck()
    without_cam = _png_pixels(viewer.screenshot())
    assert np.abs(before - without_cam).mean() > 2.0
    card.locator("input[data-toggle='cam']").check()
    card.locator("input[data-toggle='gt']").check()
    with_gt = _png_pixels(viewer.screenshot())
    assert np.abs(before - with_gt).max() > 30
    card.locator("[data-role='opacity']").fill("100")
    opaque = _png_pixels(viewer.screenshot())
    assert np.abs(opaque - with_gt).mean() > 2.0
    # the layer sweep: one panel per layer, early to late; the methods side by side
    assert [t.split("energy")[0].strip() for t in view.texts("#card-0 [data-role='layers'] .panel .cap")] == [
        "backbone.2", "backbone.4"]
    assert card.locator("[data-role='methods'] .panel").count() == 2
    card.screenshot(path=str(shots / "card.png"))

    # a finding's link opens its image card with its class selected
    page.select_option("#finding-class", "")
    link = page.locator("#finding-table tbody tr a").first
    href = link.get_attribute("href")
    finding_class = link.locator("xpath=ancestor::tr").get_attribute("data-class")
    link.click()
    index = href.split("-")[1]
    page.wait_for_selector(f"#card-{index}.hl")
    selected = page.eval_on_selector(f"#card-{index} select[data-role='subject']",
                                     "s => s.options[s.selectedIndex].textContent")
    assert selected.startswith(finding_class)

    # pagination
    page.click("#gallery-pager button.next")
    page.wait_for_selector("#card-5")
    assert page.locator("#cards .img-card").count() == N_IMAGES - 5

    view.check_clean()
    view.close()


def test_page_points_are_the_cores(demo_run: Path, browser: Any) -> None:
    """The point prompts the page draws are segaudit.metrics.scores' on the map upsampled to the thumbnail."""
    import torch

    from segaudit.cam.maps import upsample_maps
    from segaudit.metrics.scores import CENTROID_CUTOFF, background_point, max_point, weighted_centroid
    from segaudit.runs.tables import load_run

    report = render_report(demo_run, page_size=2)
    view = Page(browser, report)
    run = load_run(demo_run)
    checked = 0
    for index in (0, 1):
        card = view.page.evaluate(f"JSON.parse(document.getElementById('sa-page-0').textContent).cards[{index}]")
        thumb = run.thumbnails.set_index("image_id").loc[card["id"]]
        gt = np.asarray(Image.open(io.BytesIO(thumb["gt_png"])))
        valid = torch.from_numpy(gt != 255)[None]
        maps = run.maps[run.maps["image_id"] == card["id"]]
        for k, entry in enumerate(card["maps"]):
            subject = card["subjects"][entry["s"]]
            row = maps[(maps["class_id"] == subject["c"]) & (maps["method"] == entry["m"]) & (maps["layer"] == entry["l"])]
            raw = torch.tensor(np.asarray(row["values"].iloc[0], np.float32).reshape(entry["h"], entry["w"]))[None]
            full = upsample_maps(raw, gt.shape)
            expected = [max_point(full, valid), weighted_centroid(full, valid, CENTROID_CUTOFF), background_point(full, valid)]
            got = view.page.evaluate(f"document.getElementById('card-{index}').mapPoints({k})")
            for j, (point, defined) in enumerate(expected):
                if not bool(defined[0]):
                    assert got[j] is None
                    continue
                assert got[j] is not None
                r, c = point[0].tolist()
                if j == 1:
                    assert got[j] == pytest.approx([r, c], abs=1e-3)
                elif [r, c] != got[j]:  # only a tie (float32 rounding) may pick another pixel
                    assert full[0, int(r), int(c)].item() == pytest.approx(full[0, got[j][0], got[j][1]].item(), rel=1e-5)
                checked += 1
    assert checked > 10
    view.check_clean()
    view.close()


def test_paged_report_loads_pages_from_files(demo_run: Path, browser: Any, tmp_path: Path) -> None:
    report = render_report(demo_run, tmp_path / "paged.html", page_size=2, inline_limit=0)
    assert (tmp_path / "paged_files" / "page-00004.js").is_file()
    view = Page(browser, report)
    page = view.page
    assert page.locator("#cards .img-card").count() == 2
    page.click("#gallery-pager button.next")
    page.wait_for_selector("#card-2")
    # a link to an image on a page not loaded yet
    page.evaluate("location.hash = '#card-7'")
    page.wait_for_selector("#card-7.hl")
    page.wait_for_selector("#card-7[data-ready='1']")
    assert any(u.endswith("paged_files/page-00004.js") for u in view.requests)
    view.check_clean()
    view.close()


def test_hostile_strings_stay_text(browser: Any, tmp_path: Path, shots: Path) -> None:
    run_dir = tmp_path / "runs" / "hostile"
    make_run(run_dir)
    report = render_report(run_dir, page_size=4)
    view = Page(browser, report)
    page = view.page
    page.evaluate("location.hash = '#card-0'")
    page.screenshot(path=str(shots / "hostile.png"), full_page=True)
    assert EVIL_CLASS in page.locator("#class-table").inner_text()
    assert EVIL_UNKNOWN in page.locator("#finding-table").inner_text()
    assert EVIL_REASON in page.locator("#error-table").inner_text()
    files = view.texts(".img-card .file")
    assert EVIL_FILE in files or page.evaluate("document.body.textContent").count(EVIL_FILE) > 0
    # nothing from the run became an element: no injected script or image, no dialog
    assert page.locator("script:not([type='application/json'])").count() == 1
    assert page.locator("script[type='application/json']").count() == 1 + 2  # the data and two pages
    assert page.locator("img[src='x']").count() == 0 and page.locator("b", has_text="unknown").count() == 0
    view.check_clean()
    view.close()


def test_fixation_points_are_drawn_on_the_card(demo_data: Path, browser: Any, tmp_path: Path, shots: Path) -> None:
    """Issue 8: the shipped VGG-FCN's CNN-Fixations, picked in a card, draw one dot per fixation point."""
    from segaudit.auditors.batch import explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.models.registry import load_model
    from segaudit.runs.run import run_metadata, write_run_rows
    from segaudit.runs.tables import load_run
    from segaudit.settings import AuditConfig

    data = open_dataset(str(demo_data / "annotations" / "instances_val.json"))
    model = load_model("demo-fcn")
    config = AuditConfig(methods=("gradcam", "fixations"), batch_size=4)
    samples, errors = read_samples(data, data.refs()[:4])
    rows = score_batch(explain_batch(samples, model, build_class_map(data.category_names, model.class_names),
                                     config, errors), model, config)
    out = tmp_path / "runs" / "fcn"
    write_run_rows(rows, out, run_metadata(data, model, config, dataset_path=str(demo_data), split=None))
    run = load_run(out)
    view = Page(browser, render_report(out))
    card = view.page.locator("#card-0")
    assert card.locator(".pt-fixation").count() == 0  # Grad-CAM is shown first
    card.locator("select[data-role='method']").select_option("fixations")
    dots = card.locator("[data-role='viewer'] .pt-fixation").count()
    image_id = run.images.sort_values("review_rank")["image_id"].iloc[0]
    subject = view.page.eval_on_selector("#card-0 select[data-role='subject']", "s => s.options[s.selectedIndex].text")
    class_id = next(i for i, name in enumerate(run.class_names) if subject.startswith(name))
    expected = run.fixations[(run.fixations["image_id"] == image_id) & (run.fixations["class_id"] == class_id)]
    assert dots == len(expected) > 0, (dots, len(expected), subject)
    # at the input layer, Grad-CAM (computed at features.22 only) still shows its map side by side
    strip = card.locator("[data-role='methods']")
    assert strip.locator(".panel").count() == 2 and strip.locator(".placeholder").count() == 0
    assert "gradcam @ features.22" in strip.inner_text()
    card.screenshot(path=str(shots / "fixations_card.png"))
    view.check_clean()
    view.close()


# ------------------------------------------------------------------------------ issue 17: acting on a report

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


@pytest.fixture()
def fake_report(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The fake run (6 images, hostile strings) rendered with 2 cards per page (3 pages, inline)."""
    run_dir = tmp_path / "runs" / "fake"
    facts = make_run(run_dir)
    return run_dir, render_report(run_dir, page_size=2), facts


def _until(page: Any, expression: str, seconds: float = 10.0) -> None:
    """Wait until ``expression`` is true in the page (polled with evaluate: the report's CSP forbids the
    eval that Playwright's wait_for_function uses)."""
    for _ in range(int(seconds / 0.05)):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"not true after {seconds} s: {expression}")


def _shown_cards(page: Any) -> list[int]:
    _until(page, "document.querySelectorAll('#cards .img-card').length > 0 || "
                 "document.querySelector('#cards .empty') !== null")
    return page.eval_on_selector_all("#cards .img-card", "cs => cs.map(c => +c.id.slice(5))")


def _all_shown_cards(page: Any) -> list[int]:
    """Every card the gallery's filters keep, over all its pages."""
    seen = _shown_cards(page)
    while page.locator("#gallery-pager button.next").is_enabled():
        page.click("#gallery-pager button.next")
        _until(page, f"!document.getElementById('card-{seen[-1]}')")
        seen += _shown_cards(page)
    return seen


def _axe(page: Any) -> list[tuple[str, str, int]]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("axe.run(document).then(r => r.violations.map(v => [v.id, v.impact, v.nodes.length]))")
    return [tuple(v) for v in found if v[1] in ("serious", "critical")]


def test_review_decisions_persist_and_export(fake_report: tuple[Path, Path, dict[str, Any]], browser: Any,
                                             tmp_path: Path) -> None:
    from segaudit.cli import main
    from segaudit.runs.tables import load_run

    run_dir, report, facts = fake_report
    view = Page(browser, report)
    page = view.page
    rows = page.locator("#finding-table tbody tr")
    keys = rows.evaluate_all("rs => rs.map(r => r.dataset.key)")
    rows.nth(0).locator("button[data-decision='fix']").click()
    rows.nth(0).locator("input.note").fill("mask shifted, \"see\" left edge")
    rows.nth(0).locator("input.note").press("Enter")
    rows.nth(0).locator("input.note").dispatch_event("change")
    rows.nth(1).locator("button[data-decision='unsure']").click()
    rows.nth(2).focus()
    page.keyboard.press("o")  # the keys decide the focused row
    assert "fix 1 \u00b7 OK 1 \u00b7 unsure 1" in page.locator("#review-counts").inner_text()
    page.reload()
    page.wait_for_selector("html[data-ready='1']")
    pressed = rows.evaluate_all("rs => rs.slice(0, 4).map(r => (r.querySelector('[aria-pressed=true]') || {}).dataset)")
    assert [p["decision"] if p else None for p in pressed] == ["fix", "unsure", "ok", None]
    # the card shows the same decision on its finding
    first = facts["findings"]
    card_key = keys[0]
    page.evaluate("location.hash = '#card-0'")
    page.wait_for_selector("#card-0[data-ready='1']")
    on_card = page.locator(f"#card-0 .decide[data-key='{card_key}'] [aria-pressed='true']")
    assert on_card.count() == (1 if card_key.split("|")[0] == page.evaluate("JSON.parse(document.getElementById("
                                                                            "'sa-data').textContent).index[0][6]") else 0)
    exports = {}
    for button, name in (("#export-csv", "csv"), ("#export-json", "json"), ("#export-coco", "coco")):
        with page.expect_download() as download:
            page.click(button)
        exports[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(exports[name])
    # read back: JSON and CSV give the same three decisions
    for name in ("csv", "json"):
        assert main(["review", str(run_dir), "--decisions", str(exports[name])]) == 0
        reviews = load_run(run_dir, tables=("images",)).reviews
        got = {f"{r.image_id}|{r.class_id}|{r.kind}": r.decision for r in reviews.itertuples()}
        assert got == {keys[0]: "fix", keys[1]: "unsure", keys[2]: "ok"}, name
        fixed = reviews[reviews["decision"] == "fix"].iloc[0]
        finding = next(f for f in first if f"{f['image_id']}|{f['class_id']}|{f['kind']}" == keys[0])
        assert fixed["file_name"] == finding["file_name"] and fixed["score"] == pytest.approx(finding["score"])
        assert fixed["path"].startswith("/data/VOC2012/") and fixed["suggested_fix"]
        assert fixed["note"] == 'mask shifted, "see" left edge'  # CSV quoting survives
    coco = __import__("json").loads(exports["coco"].read_text())
    assert coco["annotation_ids"] == [int(a) for a in reviews[reviews["decision"] == "fix"].iloc[0]["annotation_ids"]]
    view.check_clean()
    view.close()


def test_review_rejects_a_bad_export(fake_report: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from segaudit.cli import main

    run_dir, _, _ = fake_report
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "segaudit-review", "decisions": [{"image_id": "img1", "kind": "label_error", '
                   '"decision": "delete"}]}')
    assert main(["review", str(run_dir), "--decisions", str(bad)]) == 2
    assert "decision 1" in capsys.readouterr().err and not (run_dir / "reviews.parquet").exists()


def test_confusion_cell_filters_the_gallery(fake_report: tuple[Path, Path, dict[str, Any]], browser: Any) -> None:
    _, report, facts = fake_report
    view = Page(browser, report)
    page = view.page
    data = page.evaluate("JSON.parse(document.getElementById('sa-data').textContent)")
    cell = page.locator("#confusion-table button.cell[data-gt='0']:not([data-pred='0'])").first
    g, p = int(cell.get_attribute("data-gt")), int(cell.get_attribute("data-pred"))
    assert int(cell.inner_text()) == sum(r["pixels"] for r in facts["confusion"]
                                         if r["gt_class_id"] == g and r["pred_class_id"] == p)
    cell.click()
    expected = sorted(i for i, row in enumerate(data["index"]) if any(
        r["image_id"] == row[6] and r["gt_class_id"] == g and r["pred_class_id"] == p for r in facts["confusion"]))
    assert sorted(_all_shown_cards(page)) == expected and len(expected) < len(data["index"])
    assert page.locator("#gallery-cell").is_visible()
    # the row-normalised view shows shares of the label's pixels
    page.check("#confusion-norm")
    assert page.locator("#confusion-table button.cell").first.inner_text().endswith("%")
    view.check_clean()
    view.close()


def test_gallery_filters_and_sorts(fake_report: tuple[Path, Path, dict[str, Any]], browser: Any) -> None:
    _, report, facts = fake_report
    view = Page(browser, report)
    page = view.page
    data = page.evaluate("JSON.parse(document.getElementById('sa-data').textContent)")
    index = data["index"]
    page.select_option("#gallery-kind", "neglected_instances")
    assert _all_shown_cards(page) == [next(i for i, r in enumerate(index) if r[6] == "img0")]
    page.click("#gallery-reset")
    page.fill("#gallery-rank-lo", "2")
    page.fill("#gallery-rank-hi", "4")
    page.locator("#gallery-rank-hi").dispatch_event("change")
    assert sorted(index[i][1] for i in _all_shown_cards(page)) == [2, 3, 4]
    page.click("#gallery-reset")
    page.select_option("#gallery-score", "lq")
    page.fill("#gallery-lo", "0.5")
    page.locator("#gallery-lo").dispatch_event("change")
    assert sorted(_all_shown_cards(page)) == [i for i, r in enumerate(index) if r[3] >= 0.5]
    page.click("#gallery-reset")
    page.select_option("#gallery-sort", "susp")
    page.select_option("#gallery-dir", "desc")
    shown = _all_shown_cards(page)
    assert [index[i][2] for i in shown] == sorted((r[2] for r in index), reverse=True)
    # a class row of the per-class table filters the gallery to the class's images
    button = page.locator("#class-table tbody tr button.to-gallery").first
    class_id = int(button.get_attribute("data-class-id"))
    button.click()
    assert sorted(_all_shown_cards(page)) == [i for i, facet in enumerate(data["facets"]) if class_id in facet["c"]]
    # grid mode and its size
    page.check("#gallery-grid")
    assert page.eval_on_selector("#cards", "c => c.classList.contains('grid')")
    view.check_clean()
    view.close()


def test_keyboard_navigation(fake_report: tuple[Path, Path, dict[str, Any]], browser: Any) -> None:
    _, report, _ = fake_report
    view = Page(browser, report)
    page = view.page
    page.evaluate("location.hash = '#card-1'")
    page.wait_for_selector("#card-1.hl")
    _until(page, "document.activeElement && document.activeElement.id === 'card-1'")
    page.keyboard.press("j")  # next card: on the next page
    _until(page, "document.activeElement && document.activeElement.id === 'card-2'")
    page.keyboard.press("k")
    _until(page, "document.activeElement && document.activeElement.id === 'card-1'")
    gt = page.locator("#card-1 input[data-toggle='gt']")
    before = gt.is_checked()
    page.keyboard.press("g")
    assert gt.is_checked() != before
    method = page.locator("#card-1 select[data-role='method']")
    first = method.input_value()
    page.keyboard.press("m")
    assert method.input_value() != first
    page.keyboard.press("f")
    assert page.locator("#card-1 .decide [data-decision='fix'][aria-pressed='true']").count() == 1
    # sort headers are reachable and work by keyboard
    header = page.locator("#finding-table th[data-key='s']")
    header.focus()
    page.keyboard.press("Enter")
    assert page.locator("#finding-table th[data-key='s']").get_attribute("aria-sort") == "descending"
    view.check_clean()
    view.close()


def test_label_error_view(fake_report: tuple[Path, Path, dict[str, Any]], browser: Any) -> None:
    _, report, _ = fake_report
    view = Page(browser, report)
    page = view.page
    card = page.locator("#card-0")
    lv = card.locator("[data-role='label-view']")
    assert lv.get_attribute("open") is not None  # every fake image has a label-error finding
    assert card.locator("input[data-toggle='gt']").is_checked() and card.locator("input[data-toggle='pred']").is_checked()
    reading = lv.locator("[data-role='reading']").inner_text()
    assert reading.startswith("The model predicts ") and "the label says" in reading
    assert lv.locator(".lv-legend .lv-item").count() >= 3
    stack = lv.locator(".lv-panel .stack").first
    box = stack.bounding_box()
    stack.hover(position={"x": box["width"] * 0.7, "y": box["height"] * 0.75})
    assert "GT " in lv.locator("[data-role='readout']").inner_text()
    assert "CAM " in lv.locator("[data-role='readout']").inner_text()
    view.check_clean()
    view.close()


def test_report_has_no_serious_accessibility_violation(fake_report: tuple[Path, Path, dict[str, Any]],
                                                       browser: Any) -> None:
    _, report, _ = fake_report
    view = Page(browser, report)
    assert _axe(view.page) == []
    view.close()


def test_compare_page_warns_and_is_accessible(browser: Any, tmp_path: Path) -> None:
    """The same images as VOC and as COCO: the page pairs them by file name, says why its deltas need
    care, sorts the images A / B column by keyboard, and has no serious accessibility violation."""
    from report_runs import rewrite_run
    from segaudit.reports import compare_runs

    make_run(tmp_path / "voc", seed=0, run_id="run-voc")
    make_run(tmp_path / "coco", seed=1, run_id="run-coco")
    rewrite_run(tmp_path / "coco", coco=True)
    out = compare_runs(tmp_path / "voc", tmp_path / "coco")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(out.resolve().as_uri())
    warnings = page.locator("#compare-warnings li").all_inner_texts()
    assert any(w.startswith("Dataset formats differ") for w in warnings)
    assert page.locator("text=The runs share no image").count() == 0
    assert page.locator(".changed-row").count() > 0 and page.locator(".changed-row a.card-link").count() > 0
    header = page.locator("#class-deltas-base th[data-col='1']")
    header.focus()
    page.keyboard.press("Enter")
    assert header.get_attribute("aria-sort") == "ascending"
    sums = [sum(int(x) for x in t.split(" / ")) for t in page.locator("#class-deltas-base tbody td:nth-child(2)").all_inner_texts()]
    assert sums == sorted(sums)
    assert _axe(page) == []
    assert problems == []
    page.close()
