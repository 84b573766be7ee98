"""What a finished run says in a few lines: a Markdown summary and the top findings as table rows.

Built from the run's tables alone (like the report); the Prefect flow publishes them as artifacts.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from segaudit.runs.tables import RunTables

__all__ = ["summary_markdown", "top_findings"]

#: Columns of the top-findings table (the ``findings`` table's, the evidence shortened).
TOP_FINDING_COLUMNS = ("kind", "rank", "score", "file_name", "class_name", "method", "layer", "seg_iou",
                       "label_quality", "recall", "outside_share", "instance_coverage")


def _cell(value: Any) -> Any:
    """A JSON-safe table cell: floats rounded to 4 places, NaN and missing values as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return round(value, 4)
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return value


def top_findings(findings: pd.DataFrame, per_kind: int = 5) -> list[dict[str, Any]]:
    """The ``per_kind`` strongest findings of each kind (by ``rank``), kinds in the table's order, as
    records with the columns :data:`TOP_FINDING_COLUMNS`."""
    if findings.empty:
        return []
    top = findings[findings["rank"] <= per_kind]
    return [{col: _cell(rec.get(col)) for col in TOP_FINDING_COLUMNS} for rec in top.to_dict("records")]


def _fmt(value: Any, digits: int = 3) -> str:
    value = _cell(value)
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary_markdown(run: RunTables, report: str | None = None, review: int = 10) -> str:
    """A Markdown summary of a run: what was audited, how many images and errors, findings per kind, and
    the ``review`` images to look at first (by ``review_rank``)."""
    meta = run.run
    lines = [
        f"# segaudit run `{meta['run_id']}`",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {meta['dataset_kind']} `{meta['dataset_path']}` {meta['split']} "
        f"(fingerprint `{meta['dataset_fingerprint'][:12]}`) |",
        f"| model | `{meta['model_name']}` (sha256 `{meta['model_sha256'][:12]}`) |",
        f"| methods, layer | {', '.join(meta['methods'])}; `{meta['layer']}` |",
        f"| images audited | {meta['n_images']} |",
        f"| error rows | {meta['n_errors']} |",
        f"| duration | {meta['duration_s']:.0f} s |",
        f"| tables | `{run.run_dir}` |",
    ]
    if report:
        lines.append(f"| report | `{report}` |")
    lines += ["", "## Findings", ""]
    if run.findings.empty:
        lines.append("No findings.")
    else:
        lines += ["| kind | findings | strongest score |", "|---|---:|---:|"]
        for kind, group in run.findings.groupby("kind", sort=False):
            lines.append(f"| {kind} | {len(group)} | {_fmt(group['score'].max())} |")
    lines += ["", f"## The {review} images to review first", ""]
    if run.images.empty:
        lines.append("No images.")
    else:
        lines += ["| rank | file | suspicion | label quality | consistency |", "|---:|---|---:|---:|---:|"]
        for rec in run.images.sort_values("review_rank").head(review).to_dict("records"):
            lines.append(f"| {rec['review_rank']} | `{rec['file_name']}` | {_fmt(rec['suspicion'])} | "
                         f"{_fmt(rec['label_quality'])} | {_fmt(rec['consistency'])} |")
    return "\n".join(lines) + "\n"
