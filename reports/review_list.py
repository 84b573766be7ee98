"""The review list: what the report's reviewer decides on, one entry per finding, in one review order.

A finding (``findings`` table) becomes an entry the page can mark "fix", "OK" or "unsure" and export. Each
entry carries what an annotator needs to act on it without the report: the image's file name and full
path (the dataset path joined with the file name for a VOC root or a COCO image folder), its image id,
the class, the kind, the score, a suggested fix (:data:`SUGGESTED_FIX`, one sentence per kind) and the
annotation ids of the class's instances in the image (``instances`` table; the ids a COCO-style fix list
names).

**Review order** (the same in the findings table, the gallery and the exports): by the image's
``review_rank`` (1 = most suspicious image; images without a rank last), then the finding kinds in
:data:`segaudit.findings.rules.FINDING_KINDS` order, then the finding's score, strongest first. A finding's
``key`` (image id, class id, kind) identifies it across renders of the same run, so decisions kept in the
browser still apply after ``segaudit report`` re-renders the page.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import numpy as np
import pandas as pd
from segaudit.reports.values import as_int, as_text

__all__ = ["SUGGESTED_FIX", "suggested_fix", "finding_key", "image_path", "annotation_ids", "review_order", "entry",
           "images_in_review_order"]

#: Image folders the COCO reader looks in beside the annotation file (``segaudit.data.readers.coco``).
IMAGE_DIRS = ("images", "JPEGImages", "imgs", "img", "input_images", "data")

#: One sentence per finding kind: what a reviewer who agrees with the finding should do.
SUGGESTED_FIX: dict[str, str] = {
    "label_error": "relabel the {c} mask: the model and its CAM disagree with it",
    "context_reliance": "check the {c} label; the model is right but looks outside the object",
    "missed_object": "check that {c} is there and fully labelled; the model misses most of it",
    "neglected_instances": "check that every {c} instance is labelled; the map covers few of them",
    "out_of_label_space": "map {c} to a model class or mark it void",
}


def suggested_fix(kind: str, class_name: str) -> str:
    """The suggested fix of a finding of ``kind`` on ``class_name`` ("" for an unknown kind)."""
    return SUGGESTED_FIX.get(kind, "").format(c=class_name or "the class")


def finding_key(image_id: Any, class_id: Any, kind: Any) -> str:
    """The identity of a finding across renders: ``"<image id>|<class id>|<kind>"``."""
    cid = as_int(class_id)
    return f"{as_text(image_id)}|{'' if cid is None else cid}|{as_text(kind)}"


def image_path(run: dict[str, Any], file_name: str) -> str:
    """The image's full path. VOC: ``<root>/JPEGImages/<name>``. COCO (the run records the annotation
    file, not the image folder): the first of the annotation file's folder, its parent and their
    :data:`IMAGE_DIRS` sub-folders that holds the file, as the COCO reader looks for it; else the name
    joined with the annotation file's folder. The name alone without a dataset path."""
    root = as_text(run.get("dataset_path"))
    if not root or not file_name or posixpath.isabs(file_name):
        return file_name
    if as_text(run.get("dataset_kind")) == "voc":
        return posixpath.join(root, file_name if "/" in file_name else posixpath.join("JPEGImages", file_name))
    folder = posixpath.dirname(root) if root.lower().endswith(".json") else root
    for base in (folder, posixpath.dirname(folder)):
        for sub in ("", *IMAGE_DIRS):
            candidate = posixpath.join(base, sub, file_name) if sub else posixpath.join(base, file_name)
            if os.path.isfile(candidate):
                return candidate
    return posixpath.join(folder, file_name)


def annotation_ids(instances: pd.DataFrame) -> dict[tuple[str, int], list[str]]:
    """``(image id, class id) -> annotation ids`` of the class's labelled instances, in instance order."""
    out: dict[tuple[str, int], list[str]] = {}
    if instances.empty or "annotation_id" not in instances:
        return out
    frame = instances.drop_duplicates(["image_id", "class_id", "instance"])
    for rec in frame.to_dict("records"):
        ann = as_text(rec.get("annotation_id"))
        if ann:
            ids = out.setdefault((str(rec["image_id"]), int(rec["class_id"])), [])
            if ann not in ids:
                ids.append(ann)
    return out


def review_order(findings: pd.DataFrame, rank_of: dict[str, int | None], kinds: tuple[str, ...]) -> pd.DataFrame:
    """``findings`` in review order (see the module docstring); ``rank_of`` maps image ids to review ranks."""
    if findings.empty:
        return findings
    kind_order = {k: i for i, k in enumerate(kinds)}
    rank = findings["image_id"].astype(str).map(lambda i: rank_of.get(i))
    key = findings.assign(
        _rank=pd.to_numeric(rank, errors="coerce").fillna(np.inf),
        _kind=findings["kind"].map(kind_order).fillna(len(kind_order)),
        _score=-pd.to_numeric(findings["score"], errors="coerce").fillna(-1.0),
    )
    key = key.sort_values(["_rank", "_kind", "_score"], kind="mergesort")
    return key.drop(columns=["_rank", "_kind", "_score"])


def entry(rec: dict[str, Any], run: dict[str, Any], anns: dict[tuple[str, int], list[str]]) -> dict[str, Any]:
    """The review fields of one finding record (image id, full path, suggested fix, annotation ids, key)."""
    file_name = as_text(rec.get("file_name")) or as_text(rec.get("image_id"))
    cid = as_int(rec.get("class_id"))
    return {
        "id": as_text(rec.get("image_id")),
        "p": image_path(run, file_name),
        "x": suggested_fix(as_text(rec.get("kind")), as_text(rec.get("class_name"))),
        "a": anns.get((as_text(rec.get("image_id")), cid), []) if cid is not None else [],
        "key": finding_key(rec.get("image_id"), cid, rec.get("kind")),
    }


def images_in_review_order(images: pd.DataFrame) -> pd.DataFrame:
    """Images by ``review_rank`` (missing ranks last, then by suspicion, then by file name)."""
    if images.empty:
        return images
    key = images.assign(
        _rank=pd.to_numeric(images["review_rank"], errors="coerce").fillna(np.inf),
        _susp=-pd.to_numeric(images.get("suspicion"), errors="coerce").fillna(-np.inf),
        _name=images["file_name"].astype(str),
    )
    key = key.sort_values(["_rank", "_susp", "_name"], kind="mergesort")
    return key.drop(columns=["_rank", "_susp", "_name"]).reset_index(drop=True)
