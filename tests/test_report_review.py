"""``segaudit review RUN --decisions FILE``: the report's exports read back into the run's ``reviews`` table,
without a browser (the browser test exports them from the page itself)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from report_runs import make_run

from segaudit.cli import main
from segaudit.runs.reviews import REVIEW_FIELDS, ReviewFileError, read_decisions, read_reviews
from segaudit.runs.tables import load_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "fake"
    make_run(out, run_id="fake")
    return out


def _decisions(run_dir: Path) -> list[dict]:
    findings = load_run(run_dir, tables=("findings",)).findings
    picked = findings.head(3).to_dict("records")
    out = []
    for rec, decision in zip(picked, ("fix", "ok", "unsure"), strict=True):
        out.append({"file_name": rec["file_name"], "path": "/data/VOC2012/" + rec["file_name"], "image_id": rec["image_id"],
                    "class_id": int(rec["class_id"]), "class_name": rec["class_name"], "kind": rec["kind"],
                    "score": float(rec["score"]), "review_rank": 1, "suggested_fix": "relabel it", "decision": decision,
                    "note": 'shifted, "left"' if decision == "fix" else "", "annotation_ids": ["7", "8"] if decision == "fix" else [],
                    "decided_at": "2026-12-03T10:00:00.000Z"})
    return out


def test_json_export_becomes_the_reviews_table(run_dir: Path, tmp_path: Path) -> None:
    assert load_run(run_dir, tables=("images",)).reviews.empty  # never reviewed: empty, with the columns
    assert list(read_reviews(run_dir).columns)[1:] == list(REVIEW_FIELDS)
    rows = _decisions(run_dir)
    export = tmp_path / "review.json"
    export.write_text(json.dumps({"format": "segaudit-review", "version": 1, "run_id": "fake", "decisions": rows}))
    assert main(["review", str(run_dir), "--decisions", str(export)]) == 0
    reviews = load_run(run_dir, tables=("images",)).reviews
    assert list(reviews["decision"]) == ["fix", "ok", "unsure"] and set(reviews["run_id"]) == {"fake"}
    assert list(reviews["image_id"]) == [r["image_id"] for r in rows]
    assert list(reviews.iloc[0]["annotation_ids"]) == ["7", "8"] and reviews.iloc[0]["note"] == 'shifted, "left"'
    assert reviews["class_id"].tolist() == [r["class_id"] for r in rows]


def test_csv_export_gives_the_same_table(run_dir: Path, tmp_path: Path) -> None:
    rows = _decisions(run_dir)
    export = tmp_path / "review.csv"
    with export.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REVIEW_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "annotation_ids": " ".join(r["annotation_ids"])})
    run_id, frame = read_decisions(export)
    assert run_id == "" and list(frame["decision"]) == ["fix", "ok", "unsure"]
    assert list(frame.iloc[0]["annotation_ids"]) == ["7", "8"] and frame.iloc[0]["note"] == 'shifted, "left"'
    assert main(["review", str(run_dir), "--decisions", str(export)]) == 0
    assert len(load_run(run_dir, tables=("images",)).reviews) == 3


@pytest.mark.parametrize("text, reason", [
    ("not json", "not JSON"),
    ('{"decisions": []}', "not a segaudit review export"),
    ('{"format": "segaudit-review", "decisions": [{"image_id": "img0", "kind": "label_error", "decision": "maybe"}]}',
     "decision 1: decision 'maybe'"),
    ('{"format": "segaudit-review", "decisions": [{"kind": "label_error", "decision": "fix"}]}', "no image_id"),
])
def test_bad_exports_are_refused(text: str, reason: str, run_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "bad.json"
    export.write_text(text)
    with pytest.raises(ReviewFileError, match=reason):
        read_decisions(export)
    assert main(["review", str(run_dir), "--decisions", str(export)]) == 2
    assert reason in capsys.readouterr().err
    assert not (run_dir / "reviews.parquet").exists()


def test_decisions_of_another_run_are_refused(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "other.json"
    export.write_text(json.dumps({"format": "segaudit-review", "run_id": "other", "decisions": _decisions(run_dir)}))
    assert main(["review", str(run_dir), "--decisions", str(export)]) == 2
    assert "run 'other'" in capsys.readouterr().err
    assert main(["review", str(tmp_path), "--decisions", str(export)]) == 2  # not a run folder
