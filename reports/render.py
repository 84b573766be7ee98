"""Render a run's HTML audit report from its Parquet tables alone.

The report never reads the dataset and never recomputes a CAM: everything comes from the tables of
:mod:`segaudit.runs.tables`, read with :func:`segaudit.runs.tables.load_run` (missing or empty tables give empty
sections). Sections, in order:

1. **header**: dataset, split, image count, model and weights hash, layers, methods, targets, library
   versions, when and how long, the errors count linking to the error list;
2. **findings**: the ranked review list of the ``findings`` table, filterable by kind and class, each row
   linking to its image card;
3. **per-class table**: segmentation IoU, label quality, findings and each CAM metric for one method and
   layer at a time (or one metric for every method), sortable, with histograms of the key scores;
4. **image cards**: every image in review order, paginated; image, GT, prediction and each map as
   overlays with toggles and an opacity control, the methods side by side, the layer sweep, the point
   prompts with the GT outline, instance coverage per instance (:mod:`reports.cards`);
5. **errors**.

Offline and safe: one HTML file with its CSS and script inline and pictures as ``data:`` URIs; no URL is
ever fetched. Up to ``inline_limit`` images the cards are inside the HTML file too; beyond, each page of
cards is a small script in ``<name>_files/`` next to it, loaded on demand with ``<script src>`` (which
works from ``file://``), so a 5k-image report opens as fast as a small one. Every string from the run
travels as inert JSON (:mod:`reports.embed`) and is put into the page as text, never as markup.

Examples
--------
>>> from reports import render_report
>>> render_report("runs/demo")                                    # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup
from segaudit.reports.cards import CardTables, build_cards
from segaudit.reports.embed import page_script, script_json
from segaudit.reports.facets import card_facets, confusion_data, mini_thumbnail
from segaudit.reports.page import METRIC_LABELS, static_text, template_environment
from segaudit.reports.review_list import annotation_ids, entry, images_in_review_order, review_order
from segaudit.reports.sanity import sanity_summary
from segaudit.reports.summary import (
    CLASS_METRICS,
    HISTOGRAM_BINS,
    HISTOGRAM_METRICS,
    class_facts,
    class_scores,
    histograms,
    layer_order,
)
from segaudit.reports.values import as_finite, as_int, as_text

from segaudit.runs.tables import empty_frame, filesystem, is_url, join, load_run, read_table
from segaudit.schema import CENTROID_CUTOFF, COLUMN_DOCS, EVIDENCE_COLUMNS, FINDING_KINDS

__all__ = ["render_report", "PAGE_SIZE", "INLINE_LIMIT", "METRIC_LABELS", "assets_dir"]

#: Image cards per page of the gallery.
PAGE_SIZE = 12

#: Up to this many images the cards live inside the HTML file; beyond, in ``<name>_files/page-*.js``.
INLINE_LIMIT = 300

#: Images whose maps and thumbnails are read at once (bounds memory on large runs).
HEAVY_BATCH = 1000

#: The tables read whole; maps and thumbnails are read in batches of images.
_LIGHT_TABLES = ("images", "scores", "errors", "instances", "findings", "prompts", "fixations", "confusion",
                 "method_trust", "sanity")

_TEMPLATE = "report.html.j2"
#: The page's scripts, in order: the parts report.js calls (review, gallery, label view, cards) come first.
_SCRIPTS = ("sortable.js", "review.js", "gallery.js", "labelview.js", "cards.js", "report.js")
_MARKER = ".segaudit-report"  # marks a page folder as ours, so a re-render may replace it
_DASH = "\u2013"


def assets_dir(out: Path) -> Path:
    """The folder of a report's page scripts: ``report.html`` -> ``report_files/``."""
    return out.with_name(f"{out.stem}_files")


def render_report(
    run_dir: str | Path,
    out_path: str | Path | None = None,
    gallery_size: int | None = None,
    page_size: int = PAGE_SIZE,
    inline_limit: int = INLINE_LIMIT,
) -> Path | str:
    """Write the run's HTML audit report.

    Parameters
    ----------
    run_dir : path or URL
        ``runs/<run_id>/`` (a local folder or an fsspec URL, see :func:`segaudit.runs.tables.load_run`).
    out_path : path or URL, optional
        Where to write; ``<run_dir>/report.html`` by default.
    gallery_size : int, optional
        Only the ``gallery_size`` most suspicious images (by ``review_rank``) get a card; all by default.
    page_size : int
        Cards per page.
    inline_limit : int
        Up to this many cards the report is one file; beyond, the pages of cards are written to
        ``<name>_files/`` beside it (see :func:`assets_dir`).

    Returns
    -------
    Path or str
        The written HTML file (its URL, a ``str``, for a run on object storage: the report is rendered
        locally and uploaded beside the run's tables).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a finished run.
    """
    target = str(out_path) if out_path is not None else join(run_dir, "report.html")
    page_size = max(int(page_size), 1)
    tables = load_run(run_dir, tables=_LIGHT_TABLES)
    if is_url(target):  # a run on object storage: render locally, then upload the report beside its tables
        with tempfile.TemporaryDirectory(prefix="segaudit-report-") as tmp:
            local = _render(run_dir, tables, Path(tmp) / _url_name(target), gallery_size, page_size, inline_limit)
            _upload(local, target)
        return target
    return _render(run_dir, tables, Path(target.removeprefix("file://")), gallery_size, page_size, inline_limit)


def _render(
    run_dir: str | Path, tables: Any, out: Path, gallery_size: int | None, page_size: int, inline_limit: int
) -> Path:
    """Render the report to the local file ``out`` (and its page folder); ``tables`` hold the light tables,
    the heavy ones are read from ``run_dir`` batch by batch."""
    run = tables.run
    class_names = [str(n) for n in (run.get("class_names") or [])]
    config = _config(run)
    order = images_in_review_order(tables.images)
    if gallery_size is not None:
        order = order.head(max(int(gallery_size), 0))
    n_cards = len(order)
    inline = n_cards <= inline_limit
    card_of = {str(i): k for k, i in enumerate(order["image_id"])}

    methods = _methods(run, tables.scores)
    layers = _layers(run, tables.scores)
    data = {
        "meta": {
            "page_size": page_size,
            "n_pages": max(math.ceil(n_cards / page_size), 1) if n_cards else 0,
            "n_cards": n_cards,
            "inline": inline,
            "files": assets_dir(out).name,
            "methods": methods,
            "layers": layers,
            "primary_layer": (as_text(run.get("layer")).split(",")[0] or (layers[0] if layers else "")),
            "primary_method": methods[0] if methods else "",
            "class_names": class_names,
            "kinds": list(FINDING_KINDS),
            "metrics": list(CLASS_METRICS),
            "hist_metrics": list(HISTOGRAM_METRICS),
            "hist_bins": HISTOGRAM_BINS,
            "labels": METRIC_LABELS,
            "docs": {k: COLUMN_DOCS[k] for k in (*METRIC_LABELS, "kind", "score", "review_rank", "suspicion")
                     if k in COLUMN_DOCS},
            "cutoff": float(config.get("centroid_cutoff") or CENTROID_CUTOFF),
            "run_key": f"{as_text(run.get('run_id'))}|{as_text(run.get('dataset_fingerprint'))[:16]}",
            "run_id": as_text(run.get("run_id")),
            "dataset_kind": as_text(run.get("dataset_kind")),
        },
        "index": _index(order, tables.findings),
        "facets": card_facets(order, tables.findings, tables.confusion, class_names),
        "findings": _findings(tables, card_of),
        "classes": _classes(tables, class_names),
        "confusion": confusion_data(tables.confusion, class_names),
    }
    with_findings = set(tables.findings["image_id"].astype(str)) if len(tables.findings) else set()
    data["thumbs"] = {}
    pages = _pages(run_dir, tables, order, class_names, page_size, with_findings, data["thumbs"])
    context = {
        "title": f"segaudit report {as_text(run.get('run_id'))}".strip(),
        "header": _header(run, config, tables, methods, layers),
        "versions": _versions(run),
        "config_json": _pretty_json(run.get("config_json")),
        "errors": _errors(tables.errors, card_of),
        "method_trust": _method_trust(tables.method_trust),
        "sanity": sanity_summary(tables.sanity),
        "data_json": Markup(script_json(data)),
        "pages_json": [Markup(script_json(page)) for page in pages] if inline else [],
        "css": Markup(static_text("report.css")),
        "script": Markup("\n".join(static_text(name) for name in _SCRIPTS)),
    }
    html = template_environment().get_template(_TEMPLATE).render(**context)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_pages(assets_dir(out), [] if inline else pages)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


# --------------------------------------------------------------------------------------------- sections


def _header(
    run: dict[str, Any], config: dict[str, Any], tables: Any, methods: Sequence[str], layers: Sequence[str]
) -> dict[str, Any]:
    sha = as_text(run.get("model_sha256"))
    fingerprint = as_text(run.get("dataset_fingerprint"))
    images, errors = tables.images, tables.errors
    n_errors = as_int(run.get("n_errors"))
    consistency = pd.to_numeric(images["consistency"], errors="coerce") if len(images) else pd.Series([], dtype=float)
    targets = [as_text(config.get("target"))] if config.get("target") else []
    if len(tables.scores):
        targets += [t for t in pd.unique(tables.scores["target"].dropna().astype(str)) if t and t not in targets]
    primary = as_text(run.get("layer")).split(",")[0]
    return {
        "run_id": as_text(run.get("run_id")),
        "created_at": as_text(run.get("created_at")),
        "duration": _duration(run.get("duration_s")),
        "dataset_kind": as_text(run.get("dataset_kind")),
        "dataset_path": as_text(run.get("dataset_path")),
        "split": as_text(run.get("split")),
        "fingerprint": fingerprint,
        "fingerprint_short": fingerprint[:12],
        "n_images": as_int(run.get("n_images")),
        "n_rows": len(images),
        "n_errors": n_errors if n_errors is not None else len(errors),
        "n_findings": len(tables.findings),
        "model_name": as_text(run.get("model_name")),
        "model_arch": as_text(config.get("model_arch")),
        "weights": as_text(config.get("weights")),
        "model_sha256": sha,
        "model_sha_short": sha[:12],
        "input_size": as_int(run.get("input_size")),
        "layers": [{"name": name, "primary": name == primary} for name in layers] or
                  [{"name": primary, "primary": True}],
        "methods": list(methods),
        "targets": targets,
        "score": as_text(config.get("score")),
        "n_classes": len(run.get("class_names") or []),
        "schema_version": as_int(run.get("schema_version")),
        "mean_consistency": _fmt(float(consistency.mean()) if consistency.notna().any() else math.nan),
    }


def _versions(run: dict[str, Any]) -> list[tuple[str, str]]:
    raw = run.get("versions_json")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return [("versions_json", as_text(raw))]
    if not isinstance(data, dict):
        return [("versions_json", as_text(raw))]
    return [(str(k), as_text(v)) for k, v in sorted(data.items())]


def _index(order: pd.DataFrame, findings: pd.DataFrame) -> list[list[Any]]:
    """Per card, in review order: file name, review rank, suspicion, label quality, consistency, findings,
    image id."""
    counts = findings.groupby(findings["image_id"].astype(str)).size() if len(findings) else pd.Series(dtype=int)
    out = []
    for rec in order.to_dict("records"):
        image_id = str(rec["image_id"])
        out.append([
            as_text(rec.get("file_name")) or image_id,
            as_int(rec.get("review_rank")),
            as_finite(rec.get("suspicion")),
            as_finite(rec.get("label_quality")),
            as_finite(rec.get("consistency")),
            int(counts.get(image_id, 0)),
            image_id,
        ])
    return out


def _findings(tables: Any, card_of: dict[str, int]) -> list[dict[str, Any]]:
    """The review list: every finding in review order (:func:`segaudit.reports.review_list.review_order`),
    with what a reviewer exports (:func:`segaudit.reports.review_list.entry`)."""
    findings = tables.findings
    if findings.empty:
        return []
    ranks = {str(i): as_int(r) for i, r in zip(tables.images["image_id"], tables.images["review_rank"], strict=True)} \
        if len(tables.images) else {}
    anns = annotation_ids(tables.instances)
    out = []
    for rec in review_order(findings, ranks, FINDING_KINDS).to_dict("records"):
        evidence = {k: as_finite(rec.get(k)) for k in EVIDENCE_COLUMNS if as_finite(rec.get(k)) is not None}
        out.append({
            "k": as_text(rec.get("kind")),
            "s": as_finite(rec.get("score")),
            "r": as_int(rec.get("rank")),
            "c": as_int(rec.get("class_id")),
            "n": as_text(rec.get("class_name")),
            "f": as_text(rec.get("file_name")) or as_text(rec.get("image_id")),
            "i": card_of.get(str(rec.get("image_id"))),
            "m": as_text(rec.get("method")),
            "l": as_text(rec.get("layer")),
            "e": evidence,
            **entry(rec, tables.run, anns),
        })
    return out


def _classes(tables: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class facts, the metric means per (method, layer) and the histograms, as lists per class."""
    facts = class_facts(tables.scores, class_names, tables.findings, FINDING_KINDS)
    rows = [
        {
            "c": int(r["class_id"]),
            "n": as_text(r["class_name"]),
            "images": int(r["n_images"]),
            "seg_iou": as_finite(r["seg_iou"]),
            "label_quality": as_finite(r["label_quality"]),
            "findings": {k: int(r[f"findings/{k}"]) for k in FINDING_KINDS},
        }
        for r in facts.to_dict("records")
    ]
    position = {(row["c"], row["n"] if row["c"] < 0 else ""): i for i, row in enumerate(rows)}
    means = class_scores(tables.scores, tables.instances)
    combos = []
    for (method, layer), frame in means.groupby(["method", "layer"], sort=False):
        values = {m: [None] * len(rows) for m in CLASS_METRICS}
        counts = [0] * len(rows)
        for r in frame.to_dict("records"):
            i = position.get((int(r["class_id"]), ""))
            if i is None:
                continue
            counts[i] = int(r["n_images"])
            for m in CLASS_METRICS:
                values[m][i] = as_finite(r[m])
        combos.append({"m": str(method), "l": str(layer), "images": counts, "v": values})
    hist = []
    for (metric, method, layer), table in histograms(tables.scores).items():
        per_class = [None] * len(rows)
        for class_id, counts in table.items():
            i = position.get((int(class_id), ""))
            if i is not None:
                per_class[i] = counts
        hist.append({"metric": metric, "m": method, "l": layer, "all": table.get(0), "classes": per_class})
    return {"rows": rows, "combos": combos, "hist": hist}


def _pages(
    run_dir: str | Path, tables: Any, order: pd.DataFrame, class_names: Sequence[str], page_size: int,
    with_findings: set[str], thumbs: dict[str, str],
) -> list[dict[str, Any]]:
    """The pages of cards; the heavy tables (maps, thumbnails) are read for ``HEAVY_BATCH`` images at a time.
    Fills ``thumbs`` with the small thumbnail of each image in ``with_findings`` (for the findings rows)."""
    card_tables = CardTables(
        images=tables.images, thumbnails=empty_frame("thumbnails"), maps=empty_frame("maps"), scores=tables.scores,
        instances=tables.instances, findings=tables.findings, prompts=tables.prompts,
        fixations=getattr(tables, "fixations", None),
    )
    pages = []
    per_batch = max(HEAVY_BATCH // page_size, 1) * page_size
    for batch in range(0, len(order), per_batch):
        ids = [str(i) for i in order["image_id"].iloc[batch : batch + per_batch]]
        pictures = read_table(run_dir, "thumbnails", image_ids=ids)
        card_tables.set_heavy(read_table(run_dir, "maps", image_ids=ids), pictures)
        card_tables.set_context(read_table(run_dir, "context", image_ids=ids))
        for image_id, jpeg in zip(pictures["image_id"].astype(str), pictures["image_jpeg"], strict=True):
            if image_id in with_findings and image_id not in thumbs:
                uri = mini_thumbnail(jpeg)
                if uri:
                    thumbs[image_id] = uri
        for start in range(batch, min(batch + per_batch, len(order)), page_size):
            cards = build_cards(card_tables, order.iloc[start : start + page_size], start, class_names)
            pages.append({"page": start // page_size, "cards": cards})
    return pages


def _errors(errors: pd.DataFrame, card_of: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "stage": as_text(r.get("stage")),
            "file_name": as_text(r.get("file_name")) or as_text(r.get("image_id")),
            "image_id": as_text(r.get("image_id")),
            "reason": as_text(r.get("reason")),
            "card": card_of.get(as_text(r.get("image_id"))),
        }
        for r in errors.to_dict("records")
    ]


def _method_trust(trust: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the method-trust section (:mod:`segaudit.findings.trust`): AUCs as text, the sanity verdict
    (``"fails"`` shown as a warning, ``"passes"``, or ``"not run"``) and whether the findings use the map."""
    rows = []
    for r in trust.to_dict("records"):
        passes = r.get("passes_sanity")
        verdict = "not run" if passes is None or pd.isna(passes) else ("passes" if bool(passes) else "fails")
        rows.append({"method": as_text(r.get("method")), "layer": as_text(r.get("layer")),
                     "n_pairs": as_int(r.get("n_pairs")),
                     **{k: _fmt(_or_nan(as_finite(r.get(k)))) for k in ("deletion_auc", "insertion_auc", "faithfulness",
                                                               "faithfulness_se", "sanity_ssim")},
                     "sanity": verdict, "chosen": bool(r.get("chosen"))})
    return rows


# ---------------------------------------------------------------------------------------------- helpers


def _or_nan(v: float | None) -> float:
    return math.nan if v is None else v


def _write_pages(folder: Path, pages: list[dict[str, Any]]) -> None:
    """Replace ``folder`` with the page scripts (or remove it when the cards are inline)."""
    if folder.exists() and not (folder / _MARKER).is_file() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and was not written by segaudit; not overwriting it")
    if not pages:
        if folder.exists():
            shutil.rmtree(folder)
        return
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / _MARKER).write_text("page scripts of a segaudit report\n", encoding="utf-8")
    for page in pages:
        (tmp / _page_file(page["page"])).write_text(page_script(page["page"], page), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def _url_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or "report.html"


def _upload(local: Path, url: str) -> None:
    """Copy a locally rendered report (and its page folder, if any) to ``url``, replacing older copies."""
    fs, path = filesystem(url)
    folder = path.rsplit("/", 1)[0] + "/" + assets_dir(local).name if "/" in path else assets_dir(local).name
    if fs.exists(folder):
        if not fs.exists(f"{folder}/{_MARKER}"):
            raise FileExistsError(f"{folder} exists and was not written by segaudit; not overwriting it")
        fs.rm(folder, recursive=True)
    if assets_dir(local).is_dir():
        for item in sorted(assets_dir(local).iterdir()):
            fs.put_file(str(item), f"{folder}/{item.name}")
    fs.put_file(str(local), path)


def _page_file(page: int) -> str:
    return f"page-{page + 1:05d}.js"


def _config(run: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(run.get("config_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _methods(run: dict[str, Any], *frames: pd.DataFrame) -> list[str]:
    methods = [str(m) for m in (run.get("methods") or [])]
    for frame in frames:
        if len(frame) and "method" in frame:
            methods += [m for m in pd.unique(frame["method"].dropna().astype(str)) if m not in methods]
    return methods


def _layers(run: dict[str, Any], *frames: pd.DataFrame) -> list[str]:
    """All layers, early to late (natural order of their names, see :func:`segaudit.reports.summary.layer_order`)."""
    names = [x for x in as_text(run.get("layer")).split(",") if x]
    for frame in frames:
        if len(frame) and "layer" in frame:
            names += [x for x in pd.unique(frame["layer"].dropna().astype(str)) if x]
    return layer_order(names)


def _pretty_json(raw: Any) -> str:
    if not raw:
        return ""
    try:
        return json.dumps(json.loads(raw), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return as_text(raw)


def _duration(seconds: Any) -> str:
    s = _float(seconds)
    if math.isnan(s):
        return _DASH
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan






def _fmt(v: float) -> str:
    return _DASH if math.isnan(v) else f"{v:.3f}"

