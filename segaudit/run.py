"""A run as a whole: its batches, its identity (key) and folder, and its metadata row."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from segaudit.audit import AuditConfig, BatchRows, config_json, finish_tables, versions
from segaudit.models import LoadedModel
from segaudit.readers import SegmentationDataset
from segaudit.sample import ImageRef
from segaudit.tables import write_run

__all__ = ["plan_batches", "run_key", "run_directory", "run_metadata", "write_run_rows", "dataset_error_rows"]


def plan_batches(refs: list[ImageRef], batch_size: int) -> list[list[ImageRef]]:
    """Consecutive batches of at most ``batch_size`` refs, in dataset order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [refs[i : i + batch_size] for i in range(0, len(refs), batch_size)]


def dataset_error_rows(dataset: SegmentationDataset) -> BatchRows:
    """Rows of the errors table for problems found while indexing the dataset."""
    return BatchRows(errors=[asdict(e) for e in dataset.load_errors])


def run_key(meta: dict[str, Any]) -> str:
    """The identity of a run: a hash of the dataset fingerprint, the model hash and the configuration.
    The same data, model and settings give the same key (so the same run folder)."""
    material = json.dumps(
        [meta["dataset_fingerprint"], meta["model_sha256"], meta["model_name"], meta["config_json"]], sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def run_directory(out: str | Path, run_id: str | None, meta: dict[str, Any]) -> Path:
    """``<out>/<run_id>``; by default ``<dataset split>-<model>-<key>``."""
    if run_id is None:
        model = Path(meta["model_name"]).stem.replace("torchvision:", "")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{meta['split'] or meta['dataset_kind']}-{model}").strip("-")
        run_id = f"{stem}-{run_key(meta)}"
    meta["run_id"] = run_id
    return Path(out) / run_id


def run_metadata(
    data: SegmentationDataset,
    model: LoadedModel,
    config: AuditConfig,
    *,
    dataset_path: str,
    split: str | None,
    **settings: Any,
) -> dict[str, Any]:
    """The ``run`` table's row; ``n_images``, ``n_errors`` and ``duration_s`` are set by :func:`write_run_rows`.

    ``settings`` are the other options that change results (weights, mapping, limit...), recorded in
    ``config_json`` next to the :class:`AuditConfig`.
    """
    return {
        "run_id": "",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": 0.0,
        "dataset_kind": data.kind,
        "dataset_path": str(dataset_path),
        "split": split or "",
        "dataset_fingerprint": data.fingerprint(),
        "n_images": 0,
        "n_errors": 0,
        "model_name": model.name,
        "model_sha256": model.sha256,
        "input_size": model.input_size,
        "layer": ",".join(config.layers_of(model)),
        "methods": list(config.methods),
        "class_names": list(model.class_names),
        "config_json": config_json(config, model_arch=model.arch, **settings),
        "versions_json": json.dumps(versions(), sort_keys=True),
    }


def write_run_rows(rows: BatchRows, run_dir: str | Path, meta: dict[str, Any]) -> dict[str, int]:
    """Turn all rows into tables and write the run; return the row counts."""
    frames = finish_tables(rows)
    started = datetime.fromisoformat(meta["created_at"])
    meta = {
        **meta,
        "n_images": len(frames["images"]),
        "n_errors": len(frames["errors"]),
        "duration_s": round((datetime.now(timezone.utc) - started).total_seconds(), 3),
    }
    write_run(run_dir, frames, meta)
    return {name: len(frame) for name, frame in frames.items()}
