"""What the report pages share: the templates folder, its Jinja environment, the page's own CSS and scripts,
and the short labels of the metrics (:mod:`segaudit.reports.render` and :mod:`segaudit.reports.compare`)."""

from __future__ import annotations

from pathlib import Path

import jinja2

__all__ = ["TEMPLATES", "METRIC_LABELS", "template_environment", "static_text"]

#: The folder of the page templates, CSS and scripts.
TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Short labels of the metrics shown in the page (tooltips come from :data:`segaudit.schema.COLUMN_DOCS`).
METRIC_LABELS: dict[str, str] = {
    "consistency": "consistency",
    "energy_in_mask": "energy in GT",
    "pointing_hit": "pointing hit",
    "relevance_rank": "rank accuracy",
    "auroc": "AUROC",
    "iou_at_0_5": "IoU@0.5",
    "dice_at_0_5": "Dice@0.5",
    "max_point_hit": "max-point hit",
    "centroid_hit": "centroid hit",
    "background_point_hit": "bg-point hit",
    "instance_coverage": "instance coverage",
    "seg_iou": "seg IoU",
    "label_quality": "label quality",
    "recall": "recall",
    "energy_in_gt": "energy in GT",
    "energy_in_pred": "energy in pred",
    "outside_share": "outside share",
    "context_reliance": "causal drop",
    "hallucination": "hallucination",
    "template_correlation": "template corr.",
    "confusion_share": "confusion",
}


def template_environment() -> jinja2.Environment:
    """The Jinja environment of the report pages (templates of this package, HTML autoescaped)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static_text(name: str) -> str:
    """The page's own CSS or script (files of this package, never run data)."""
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"{name} must not contain a closing script or style tag")
    return text
