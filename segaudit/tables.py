"""Parquet tables of a run: their schemas, how a run is written, and the one-call loader.

A run lives in ``runs/<run_id>/`` and is made only of these files; the report and any later analysis
read them and nothing else::

    run.parquet         one row: config, library versions, model hash, dataset fingerprint
    images.parquet      one row per image read: size, classes, consistency and review rank
    scores.parquet      one row per image x class x method x reference mask
    maps.parquet        the raw CAM of every scored image x class x method, at feature resolution
    confusion.parquet   per image, pixels labelled i and predicted j (non-zero cells only)
    thumbnails.parquet  the model's view of each image with GT and prediction, for the report
    errors.parquet      one row per thing that could not be read or processed, with the reason

Distances and pixel counts are measured in the model's input frame (the letterboxed square the model
saw), see :mod:`segaudit.preprocess`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMAS",
    "RunTables",
    "write_table",
    "write_run",
    "load_run",
]

SCHEMA_VERSION = 1

_str = pa.string()
_f64 = pa.float64()
_i64 = pa.int64()

#: Column schemas of every table; writing checks frames against them so the contract cannot drift.
SCHEMAS: dict[str, pa.Schema] = {
    "run": pa.schema(
        [
            ("run_id", _str),
            ("schema_version", _i64),
            ("created_at", _str),
            ("duration_s", _f64),
            ("dataset_kind", _str),
            ("dataset_path", _str),
            ("split", _str),
            ("dataset_fingerprint", _str),
            ("n_images", _i64),
            ("n_errors", _i64),
            ("model_name", _str),
            ("model_sha256", _str),
            ("input_size", _i64),
            ("layer", _str),
            ("methods", pa.list_(_str)),
            ("class_names", pa.list_(_str)),
            ("config_json", _str),
            ("versions_json", _str),
        ]
    ),
    "images": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("width", _i64),
            ("height", _i64),
            ("n_instances", _i64),
            ("gt_classes", pa.list_(_str)),
            ("pred_classes", pa.list_(_str)),
            ("pixel_accuracy", _f64),
            ("consistency", _f64),
            ("review_rank", _i64),
            ("worst_class_id", _i64),
        ]
    ),
    "scores": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("mask", _str),
            ("mask_pixels", _i64),
            ("energy_in_mask", _f64),
            ("pointing_hit", _f64),
            ("relevance_rank", _f64),
            ("auroc", _f64),
            ("iou_at_0_5", _f64),
            ("dice_at_0_5", _f64),
            ("max_point_hit", _f64),
            ("max_point_distance", _f64),
            ("centroid_hit", _f64),
            ("centroid_distance", _f64),
            ("background_point_hit", _f64),
            ("seg_iou", _f64),
            ("seg_dice", _f64),
            ("cam_max", _f64),
            ("consistency", _f64),
        ]
    ),
    "maps": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("height", _i64),
            ("width", _i64),
            ("values", pa.list_(pa.float32())),
        ]
    ),
    "thumbnails": pa.schema(
        [
            ("image_id", _str),
            ("image_jpeg", pa.binary()),
            ("gt_png", pa.binary()),
            ("pred_png", pa.binary()),
        ]
    ),
    "confusion": pa.schema(
        [
            ("image_id", _str),
            ("gt_class_id", _i64),
            ("pred_class_id", _i64),
            ("pixels", _i64),
        ]
    ),
    "errors": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("stage", _str),
            ("reason", _str),
        ]
    ),
}

#: Column meanings, shown in the README and used by the report's tooltips.
COLUMN_DOCS: dict[str, str] = {
    "consistency": "agreement of label, prediction and CAM, 0..1 (higher is more consistent); "
    "per class: seg_iou x min(1, CAM energy in GT / CAM energy in prediction), averaged over methods; "
    "per image: mean over classes weighted by each class's extent |GT or predicted pixels|",
    "review_rank": "1 = the least consistent image, the first to review",
    "target": "pixels whose class logits were summed into the Seg-Grad-CAM target: 'pred' (predicted as the "
    "class) or 'gt' (labelled as the class, used when the model predicts none of it)",
    "mask": "the mask the map is scored against: 'gt' (label) or 'pred' (model prediction)",
    "energy_in_mask": "share of the positive CAM mass inside the mask",
    "pointing_hit": "1 if the CAM maximum lies inside the mask, 0 if not, NaN for an empty mask",
    "relevance_rank": "relevance rank accuracy: share of the |mask| highest-valued pixels inside the mask",
    "auroc": "AUROC of the map as a pixel classifier of the mask (0.5 = chance)",
    "iou_at_0_5": "IoU of the min-max normalised CAM thresholded at 0.5 with the mask",
    "dice_at_0_5": "Dice of the min-max normalised CAM thresholded at 0.5 with the mask",
    "max_point_hit": "1 if the CAM's maximum point is inside the mask",
    "max_point_distance": "distance in pixels from the maximum point to the nearest mask pixel (0 inside)",
    "centroid_hit": "1 if the weighted centroid of the map above 0.6 x max is inside the mask",
    "centroid_distance": "distance in pixels from that centroid to the nearest mask pixel (0 inside)",
    "background_point_hit": "1 if the map's minimum (the background prompt) falls inside the mask: it should not",
    "seg_iou": "IoU of the predicted mask with the GT mask for the class (void ignored)",
    "seg_dice": "Dice of the predicted mask with the GT mask for the class (void ignored)",
    "pixel_accuracy": "share of the image's non-void pixels whose predicted class is the labelled one",
    "cam_max": "maximum of the raw (unnormalised) CAM: its magnitude",
}


#: Every table but ``run``, in writing order.
_DATA_TABLES = ("images", "scores", "maps", "thumbnails", "confusion", "errors")


def empty_frame(table: str) -> pd.DataFrame:
    """An empty DataFrame with the columns of ``table``."""
    return SCHEMAS[table].empty_table().to_pandas()


def write_table(frame: pd.DataFrame | list[dict[str, Any]], path: str | Path, table: str) -> Path:
    """Write ``frame`` as Parquet with the schema of ``table``, atomically (temp file + rename).

    Raises
    ------
    ValueError
        If the frame's columns differ from the schema's.
    """
    schema = SCHEMAS[table]
    if isinstance(frame, list):
        frame = pd.DataFrame(frame, columns=schema.names) if frame else empty_frame(table)
    if list(frame.columns) != schema.names:
        missing = set(schema.names) - set(frame.columns)
        extra = set(frame.columns) - set(schema.names)
        raise ValueError(f"table {table!r}: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(arrow, tmp)
    os.replace(tmp, path)
    return path


def write_run(run_dir: str | Path, frames: dict[str, pd.DataFrame], run: dict[str, Any]) -> Path:
    """Write every table of a run into ``run_dir``; ``run.parquet`` last, so its presence marks a complete run."""
    run_dir = Path(run_dir)
    stale = run_dir / "run.parquet"
    if stale.exists():
        stale.unlink()  # a rewrite in progress is not a complete run
    for name in _DATA_TABLES:
        write_table(frames[name], run_dir / f"{name}.parquet", name)
    row = {**run, "schema_version": SCHEMA_VERSION}
    write_table([{col: row[col] for col in SCHEMAS["run"].names}], run_dir / "run.parquet", "run")
    return run_dir


@dataclass
class RunTables:
    """All tables of one run as pandas DataFrames, plus the run's metadata as a dict."""

    run_dir: Path
    run: dict[str, Any]
    images: pd.DataFrame
    scores: pd.DataFrame
    maps: pd.DataFrame
    thumbnails: pd.DataFrame
    errors: pd.DataFrame
    confusion: pd.DataFrame

    @property
    def class_names(self) -> list[str]:
        return list(self.run["class_names"])

    def confusion_matrix(self) -> np.ndarray:
        """``(K, K)`` int64 pixel counts over the run, rows = label, columns = prediction (void left out);
        ``segaudit.scores.mean_iou`` of it is the dataset mIoU."""
        k = len(self.class_names)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (self.confusion["gt_class_id"].to_numpy(), self.confusion["pred_class_id"].to_numpy()),
                  self.confusion["pixels"].to_numpy())
        return matrix

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.run["config_json"])

    @property
    def versions(self) -> dict[str, str]:
        return json.loads(self.run["versions_json"])


def load_run(run_dir: str | Path, tables: tuple[str, ...] | None = None) -> RunTables:
    """Load a run's tables into pandas.

    Parameters
    ----------
    run_dir : path
        ``runs/<run_id>/``.
    tables : tuple of str, optional
        Only these tables (others come back empty), e.g. ``("images", "scores")`` to skip the heavy
        ``maps`` and ``thumbnails``.

    Examples
    --------
    >>> run = load_run("runs/demo")                                     # doctest: +SKIP
    >>> run.images.sort_values("review_rank").head(10)                  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.parquet"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a segaudit run (no run.parquet)")
    meta = pq.read_table(meta_path).to_pylist()[0]
    frames = {}
    for name in _DATA_TABLES:
        path = run_dir / f"{name}.parquet"
        if (tables is None or name in tables) and path.is_file():
            frames[name] = pq.read_table(path).to_pandas()
        else:
            frames[name] = empty_frame(name)
    return RunTables(run_dir=run_dir, run=meta, **frames)
