"""The ``reviews`` table of a run: a reviewer's decisions on its findings, read back from the report.

The report (``reports/templates/review.js``) lets a reviewer mark each finding "fix", "ok" or "unsure"
and exports the decisions as JSON (``{"format": "segaudit-review", "decisions": [...]}``) or CSV with the
columns of :data:`REVIEW_FIELDS`. ``segaudit review RUN --decisions FILE`` reads such a file with
:func:`read_decisions` and writes it into the run as ``reviews.parquet`` (:func:`write_reviews`);
:func:`segaudit.runs.tables.load_run` then gives it as ``run.reviews`` (:func:`read_reviews`; an empty
frame for a run never reviewed). Torch-free: only pandas and pyarrow.

Each row is one decision::

    run_id, image_id, file_name, path, class_id, class_name, kind, score, review_rank, suggested_fix,
    decision ("fix" | "ok" | "unsure"), note, annotation_ids (list of str), decided_at (ISO 8601 text)

A bad export never writes a partial table: :func:`read_decisions` raises :class:`ReviewFileError` naming
the row and the problem.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segaudit.runs.tables import exists, filesystem, join

__all__ = ["REVIEWS_SCHEMA", "REVIEW_FIELDS", "DECISIONS", "REVIEWS_FILE", "ReviewFileError", "read_decisions",
           "write_reviews", "read_reviews"]

#: The decisions a reviewer can make.
DECISIONS = ("fix", "ok", "unsure")

#: The table's file in a run folder.
REVIEWS_FILE = "reviews.parquet"

REVIEWS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("image_id", pa.string()),
    ("file_name", pa.string()),
    ("path", pa.string()),
    ("class_id", pa.int64()),
    ("class_name", pa.string()),
    ("kind", pa.string()),
    ("score", pa.float64()),
    ("review_rank", pa.int64()),
    ("suggested_fix", pa.string()),
    ("decision", pa.string()),
    ("note", pa.string()),
    ("annotation_ids", pa.list_(pa.string())),
    ("decided_at", pa.string()),
])

#: The fields of an export (JSON keys, CSV header), i.e. the table's columns but ``run_id``.
REVIEW_FIELDS = tuple(n for n in REVIEWS_SCHEMA.names if n != "run_id")


class ReviewFileError(ValueError):
    """An export that cannot be read: not JSON/CSV of the report's review export, or a bad row."""


def read_decisions(path: str | Path) -> tuple[str, pd.DataFrame]:
    """The decisions of a report export (``.json`` or ``.csv``), as ``(run_id, frame)``; the frame has the
    columns of :data:`REVIEWS_SCHEMA` (``run_id`` from the JSON export, "" for a CSV one).

    Raises
    ------
    ReviewFileError
        If the file is neither export, or a row has no image id or kind, or an unknown decision.
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    run_id = ""
    if Path(path).suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReviewFileError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != "segaudit-review" or not isinstance(data.get("decisions"), list):
            raise ReviewFileError(f"{path}: not a segaudit review export (no format 'segaudit-review' with decisions)")
        run_id = str(data.get("run_id") or "")
        rows = data["decisions"]
    records = [_record(row, k, run_id) for k, row in enumerate(rows, start=1)]
    frame = pd.DataFrame(records, columns=REVIEWS_SCHEMA.names)
    return run_id, frame


def _record(row: Any, number: int, run_id: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ReviewFileError(f"decision {number}: not an object")
    decision = _text(row.get("decision")).lower()
    if decision not in DECISIONS:
        raise ReviewFileError(f"decision {number}: decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if not _text(row.get("image_id")) or not _text(row.get("kind")):
        raise ReviewFileError(f"decision {number}: no image_id or kind")
    anns = row.get("annotation_ids")
    if isinstance(anns, str):  # the CSV export joins them with spaces
        anns = anns.split()
    return {
        "run_id": run_id,
        "image_id": _text(row.get("image_id")),
        "file_name": _text(row.get("file_name")),
        "path": _text(row.get("path")),
        "class_id": _int(row.get("class_id")),
        "class_name": _text(row.get("class_name")),
        "kind": _text(row.get("kind")),
        "score": _float(row.get("score")),
        "review_rank": _int(row.get("review_rank")),
        "suggested_fix": _text(row.get("suggested_fix")),
        "decision": decision,
        "note": _text(row.get("note")),
        "annotation_ids": [_text(a) for a in (anns or []) if _text(a)],
        "decided_at": _text(row.get("decided_at")),
    }


def write_reviews(run_dir: str | Path, frame: pd.DataFrame) -> str:
    """Write ``frame`` (columns of :data:`REVIEWS_SCHEMA`) as the run's ``reviews.parquet``, replacing an
    older one; returns its path."""
    table = pa.Table.from_pandas(frame[list(REVIEWS_SCHEMA.names)], schema=REVIEWS_SCHEMA, preserve_index=False)
    target = join(run_dir, REVIEWS_FILE)
    fs, path = filesystem(target)
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as handle:
        pq.write_table(table, handle)
    fs.mv(tmp, path)
    return target


def read_reviews(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``reviews`` table (empty, with the schema's columns, when the run was never reviewed)."""
    target = join(run_dir, REVIEWS_FILE)
    if not exists(target):
        return REVIEWS_SCHEMA.empty_table().to_pandas()
    fs, path = filesystem(target)
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle, schema=REVIEWS_SCHEMA).to_pandas()


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return int(v) if math.isfinite(v) else None


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
