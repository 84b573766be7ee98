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

    # findings: sorting by score and filtering by kind and class change what is shown
    rows = "#finding-table tbody tr"
    n_findings = page.locator(rows).count()
    assert n_findings > 0
    first_scores = _numbers(view.texts(f"{rows} td:nth-child(2)"))
    assert first_scores == sorted(first_scores, reverse=True)
    page.click("#finding-table th[data-key='s']")  # now ascending
    ascending = _numbers(view.texts(f"{rows} td:nth-child(2)"))
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
