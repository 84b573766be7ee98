"""Parquet tables of a run: their schemas, how a run is written, and the one-call loader.

A run lives in ``runs/<run_id>/`` (a local folder or any fsspec URL, e.g. ``s3://bucket/runs/<run_id>``)
and is made only of these files; the report and any later analysis read them and nothing else::

    run.json                  the plan: schema version, run key, inputs, configuration, the shards' images
    run.parquet               one row: config, library versions, model hash, dataset fingerprint (written
                              last: its presence marks a finished run)
    _shards/part-<k>.json     shard k is complete (row counts, worker, seconds)
    images/part-<k>.parquet   one row per image read: size, classes, consistency and review rank
    scores/...                one row per image x class x method x reference mask
    maps/...                  the raw CAM of every scored image x class x method, at feature resolution
    confusion/...             per image, pixels labelled i and predicted j (non-zero cells only)
    thumbnails/...            the model's view of each image with GT and prediction, for the report
    errors/...                one row per thing that could not be read or processed, with the reason
    instances/...             one row per labelled instance x method x layer: mass share, peak, coverage
    findings/...              one row per finding (label error, context reliance, ...) with its evidence
    prompts/...               CAM-prompted segments (only with the prompts option) (segaudit.metrics.prompting)
                              and their IoU with the label

Each shard (a consecutive slice of the dataset's images) writes its part of every table; the run-wide
``findings`` and the images' ``suspicion`` and ``review_rank`` are written when all shards are done
(:func:`segaudit.runs.run.aggregate_run`). Runs of schema version 1 (one ``<table>.parquet`` per table) are
still read by :func:`load_run` and :func:`read_table`.

Distances and pixel counts are measured in the model's input frame (the letterboxed square the model
saw), see :mod:`segaudit.data.preprocess`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMAS",
    "SHARD_TABLES",
    "RunTables",
    "write_table",
    "write_plan",
    "read_plan",
    "write_shard",
    "shard_markers",
    "read_table",
    "load_run",
]

#: 1: one file per table (``<table>.parquet``, still read); 2: a plan (``run.json``) and one part per shard
#: and table (``<table>/part-<shard>.parquet``).
SCHEMA_VERSION = 2

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
            ("label_quality", _f64),
            ("suspicion", _f64),
            ("review_rank", _i64),
            ("worst_class_id", _i64),
            ("unknown_classes", pa.list_(_str)),
            ("unknown_pixels", pa.list_(_i64)),
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
            ("detection", _i64),
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
            ("label_quality", _f64),
        ]
    ),
    # one row per finding (see segaudit.findings.rules): what to look at, why, and the evidence
    "findings": pa.schema(
        [
            ("image_id", _str),
            ("file_name", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("kind", _str),
            ("score", _f64),
            ("rank", _i64),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("seg_iou", _f64),
            ("label_quality", _f64),
            ("recall", _f64),
            ("energy_in_gt", _f64),
            ("energy_in_pred", _f64),
            ("outside_share", _f64),
            ("instance_coverage", _f64),
        ]
    ),
    "maps": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("detection", _i64),
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
    # one row per labelled instance x method x layer x target (see segaudit.metrics.instances); the per-map
    # instance_coverage is repeated on every instance row of its (image, class, method, layer, target)
    "instances": pa.schema(
        [
            ("image_id", _str),
            ("instance", _i64),
            ("annotation_id", _str),
            ("class_id", _i64),
            ("class_name", _str),
            ("method", _str),
            ("layer", _str),
            ("target", _str),
            ("pixels", _i64),
            ("n_instances", _i64),
            ("mass_share", _f64),
            ("class_mass_share", _f64),
            ("peak_height", _f64),
            ("has_peak", _f64),
            ("covered", _f64),
            ("instance_coverage", _f64),
        ]
    ),
    # CAM-prompted segmentation (segaudit.metrics.prompting), only with the audit's `prompts` option: one row per
    # (image, class) map of the primary (method, layer) x
    # point kind x prompt kind; mask_pixels = valid pixels of the segment, null when no segment was made
    # CNN-Fixations (segaudit.cam.fixations), only with the `fixations` method: one row per fixation point
    "fixations": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("y", _i64),
            ("x", _i64),
            ("weight", _f64),
        ]
    ),
    "prompts": pa.schema(
        [
            ("image_id", _str),
            ("class_id", _i64),
            ("method", _str),
            ("layer", _str),
            ("segmenter", _str),
            ("point", _str),
            ("prompts", _str),
            ("point_hit", _f64),
            ("point_distance", _f64),
            ("iou_with_gt", _f64),
            ("dice_with_gt", _f64),
            ("mask_pixels", _i64),
        ]
    ),
}

#: Column meanings, shown in the README and used by the report's tooltips.
COLUMN_DOCS: dict[str, str] = {
    "consistency": "agreement of label, prediction and CAM, 0..1 (higher is more consistent); "
    "per class: seg_iou x min(1, CAM energy in GT / CAM energy in prediction), averaged over methods; "
    "per image: mean over classes weighted by each class's extent |GT or predicted pixels|",
    "review_rank": "1 = the most suspicious image (highest suspicion), the first to review",
    "label_quality": "the model's belief in the labels: softmin over pixels of the predicted probability of each "
    "pixel's label (Lad & Mueller 2023, cleanlab's score; void left out); per image over all its pixels, in the "
    "scores table over the class's labelled or predicted pixels",
    "suspicion": "per-image review score 1 - label_quality^0.75 x consistency^0.25 (segaudit.findings.rules)",
    "unknown_classes": "dataset classes labelled in the image that the model does not know (out of label space)",
    "unknown_pixels": "labelled pixels of each of unknown_classes, in the original image",
    "weight": "a fixation point's share of its (image, class) trace (they sum to 1 per image and class)",
    "y": "row of the fixation point in the model's input frame",
    "x": "column of the fixation point in the model's input frame",
    "kind": "finding kind: label_error, context_reliance, missed_object, neglected_instances, out_of_label_space",
    "score": "strength of the finding's evidence, 0..1 (see segaudit.findings.rules for each kind's formula)",
    "rank": "1 = the strongest finding of its kind",
    "recall": "share of the labelled object the model predicts, |P & G| / |G|",
    "energy_in_gt": "the primary map's positive mass share inside the GT mask",
    "energy_in_pred": "the primary map's positive mass share inside the predicted mask",
    "outside_share": "1 - relevance rank accuracy: share of the map's top-|G| pixels outside the object",
    "target": "pixels whose class logits were summed into the Seg-Grad-CAM target: 'pred' (predicted as the "
    "class) or 'gt' (labelled as the class, used when the model predicts none of it); 'detection' for a "
    "detector (Mask R-CNN): the detection's class score",
    "detection": "index of the detection within its image (0 = highest score) for a detector's per-detection "
    "maps; null for the class-level maps of other models",
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
    "seg_iou": "IoU of the predicted mask with the GT mask for the class (void ignored); for a detection, of its "
    "instance mask with the labelled instance of its class it overlaps most",
    "seg_dice": "Dice of the predicted mask with the GT mask for the class (void ignored)",
    "pixel_accuracy": "share of the image's non-void pixels whose predicted class is the labelled one",
    "cam_max": "maximum of the raw (unnormalised) CAM: its magnitude",
    "instance": "index of the instance among the image's non-crowd instances of known classes (0-based)",
    "annotation_id": "the dataset's id of the instance (COCO annotation id, VOC SegmentationObject index); "
    "null when unknown",
    "pixels": "valid (non-void) pixels of the instance, in the model's input frame",
    "n_instances": "instances of this class in this image",
    "mass_share": "share of the map's positive mass inside the instance",
    "class_mass_share": "share of the map's positive mass on the class's instances that lies inside this one",
    "peak_height": "highest local maximum (3x3 window) of the map inside the instance, as a share of the "
    "map's max; 0 if none",
    "has_peak": "1 if the instance holds a local maximum of the map >= 0.5 x its max",
    "covered": "1 if has_peak or class_mass_share >= 1 / (2 n_instances): the map lights this instance",
    "instance_coverage": "share of the class's instances in the image that the map covers (repeated on each "
    "instance row; NaN without instances; trivially 0 or 1 for a single instance)",
    "segmenter": "the promptable segmenter the CAM prompts were given to: 'grabcut' (OpenCV) or 'sam'",
    "point": "the foreground point prompt: 'centroid' (weighted centroid of the map above 0.6 x max) or "
    "'max' (the map's maximum)",
    "prompts": "'fg': the foreground point and the map thresholded at 0.5; 'fg+bg': also the map's minimum "
    "as a background point",
    "point_hit": "1 if the foreground point lies inside the GT mask, NaN for an empty mask or map",
    "point_distance": "distance in pixels from the foreground point to the nearest GT mask pixel (0 inside)",
    "iou_with_gt": "IoU of the prompted segment with the GT mask (void ignored); NaN without a segment or GT",
    "dice_with_gt": "Dice of the prompted segment with the GT mask (void ignored); NaN without a segment or GT",
}


#: Every table but ``run``, in writing order.
_DATA_TABLES = ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "findings", "prompts", "fixations")

#: Tables a shard writes; ``findings`` (and the images' ranks) are written when the run is aggregated.
SHARD_TABLES = tuple(t for t in _DATA_TABLES if t != "findings")

#: The plan of a sharded run (schema version, run key, inputs, shards); see :func:`write_plan`.
PLAN_FILE = "run.json"
#: The run table; written last, its presence marks a complete run in both layouts.
RUN_FILE = "run.parquet"
#: Folder of the shard completion markers (``_shards/<shard>.json``).
MARKERS = "_shards"


def _schema(table: str) -> pa.Schema:
    return SCHEMAS[table]


def empty_frame(table: str) -> pd.DataFrame:
    """An empty DataFrame with the columns of ``table``."""
    return _schema(table).empty_table().to_pandas()


# ------------------------------------------------------------------------------------------- storage
# A run folder is a local path or any fsspec URL (s3://bucket/runs/x, gs://..., memory://...).


def is_url(path: str | Path) -> bool:
    """Whether ``path`` names a location by URL (``scheme://``) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` for a local path or a URL."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(str(base).removeprefix("file://"), *parts))


def filesystem(path: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem holding ``path`` and the path within it."""
    return fsspec.core.url_to_fs(str(path))


def _write_atomically(path: str | Path, write: Callable[[Any], None]) -> str:
    """Call ``write(file)`` on a hidden temporary file beside ``path``, then rename it to ``path``: a reader
    (or a rerun after a crash) sees the old file or the whole new one, never a torn one. On object stores
    the rename is a copy; the final object still appears whole."""
    fs, target = filesystem(path)
    parent, name = target.rsplit("/", 1) if "/" in target else ("", target)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with fs.open(tmp, "wb") as handle:
            write(handle)
        fs.mv(tmp, target)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    return str(path)


def write_json(obj: Any, path: str | Path) -> str:
    """Write ``obj`` as JSON atomically."""
    data = json.dumps(obj, sort_keys=True, indent=1, default=str).encode()
    return _write_atomically(path, lambda handle: handle.write(data))


def read_json(path: str | Path) -> Any:
    fs, target = filesystem(path)
    with fs.open(target, "rb") as handle:
        return json.loads(handle.read())


def exists(path: str | Path) -> bool:
    fs, target = filesystem(path)
    return fs.exists(target)


def write_table(frame: pd.DataFrame | list[dict[str, Any]], path: str | Path, table: str) -> str:
    """Write ``frame`` as Parquet with the schema of ``table``, atomically (temp file + rename); ``path`` is
    a local path or an fsspec URL.

    Raises
    ------
    ValueError
        If the frame's columns differ from the schema's.
    """
    schema = _schema(table)
    if isinstance(frame, list):
        frame = pd.DataFrame(frame, columns=schema.names) if frame else empty_frame(table)
    if list(frame.columns) != schema.names:
        missing = set(schema.names) - set(frame.columns)
        extra = set(frame.columns) - set(schema.names)
        raise ValueError(f"table {table!r}: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return _write_atomically(path, lambda handle: pq.write_table(arrow, handle))


# -------------------------------------------------------------------------------------- sharded layout


def part_path(run_dir: str | Path, table: str, shard: str) -> str:
    """``<run_dir>/<table>/<shard>.parquet``, e.g. ``runs/x/scores/part-00003.parquet``."""
    return join(run_dir, table, f"{shard}.parquet")


def marker_path(run_dir: str | Path, shard: str) -> str:
    return join(run_dir, MARKERS, f"{shard}.json")


def write_plan(run_dir: str | Path, plan: dict[str, Any]) -> str:
    """Write a sharded run's plan, ``run.json``: ``{"schema_version", "run_key", "shards": [{"name",
    "image_ids"}...], ...}`` (the rest is the caller's: inputs, configuration, the run table's row)."""
    if "shards" not in plan:
        raise ValueError("a plan needs its list of shards")
    return write_json({**plan, "schema_version": SCHEMA_VERSION}, join(run_dir, PLAN_FILE))


def read_plan(run_dir: str | Path) -> dict[str, Any] | None:
    """The plan of a sharded run, or None when ``run_dir`` has none (an old single-file run, or nothing)."""
    path = join(run_dir, PLAN_FILE)
    return read_json(path) if exists(path) else None


def write_shard(run_dir: str | Path, shard: str, frames: dict[str, pd.DataFrame | list[dict[str, Any]]],
                marker: dict[str, Any]) -> dict[str, int]:
    """Write one shard's part of every table in :data:`SHARD_TABLES`, then its completion marker.

    Each part is written atomically, and the marker (``_shards/<shard>.json``, holding ``marker`` and the
    row counts) only after all of them: a shard is complete exactly when its marker exists. A process
    killed in between leaves parts without a marker, which the rerun overwrites. Returns the row counts.
    """
    counts = {}
    for table in SHARD_TABLES:
        frame = frames.get(table, [])
        write_table(frame, part_path(run_dir, table, shard), table)
        counts[table] = len(frame)
    write_json({**marker, "shard": shard, "rows": counts}, marker_path(run_dir, shard))
    return counts


def shard_markers(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The completion markers present in ``run_dir``, by shard name (one listing plus one read each)."""
    fs, folder = filesystem(join(run_dir, MARKERS))
    if not fs.exists(folder):
        return {}
    markers = {}
    for path in sorted(fs.ls(folder, detail=False)):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith("."):
            with fs.open(path, "rb") as handle:
                markers[name[: -len(".json")]] = json.loads(handle.read())
    return markers


def read_table(
    run_dir: str | Path,
    table: str,
    *,
    image_ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    shards: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One table of a run as a DataFrame, in dataset order, from either layout: ``<table>/<shard>.parquet``
    parts (read as one pyarrow dataset) or an older run's single ``<table>.parquet``.

    Parameters
    ----------
    image_ids : sequence of str, optional
        Only these images' rows (pushed down to the Parquet reader; e.g. the report's gallery rows of the
        heavy ``maps`` and ``thumbnails``).
    columns : sequence of str, optional
        Only these columns.
    shards : sequence of str, optional
        Only these shards' parts (default: every shard of the plan).
    """
    schema = _schema(table)
    plan = read_plan(run_dir)
    if plan is None:
        paths = [join(run_dir, f"{table}.parquet")]
    else:
        names = [s["name"] for s in plan["shards"]] if shards is None else list(shards)
        paths = [part_path(run_dir, table, name) for name in names]
    fs, _ = filesystem(run_dir)
    paths = [filesystem(p)[1] for p in paths]
    if plan is None:
        present = [p for p in paths if fs.exists(p)]
    else:  # one listing of the table's folder (a table may postdate the run, e.g. a new kind of rows)
        folder = filesystem(join(run_dir, table))[1]
        listed = {p.rstrip("/") for p in fs.ls(folder, detail=False)} if fs.exists(folder) else set()
        present = [p for p in paths if p in listed]
    if not present:
        frame = empty_frame(table)
        return frame[list(columns)] if columns else frame
    local = isinstance(fs, LocalFileSystem)  # pyarrow's own local filesystem is faster than fsspec's
    dataset = ds.dataset(present, schema=schema, format="parquet", filesystem=None if local else fs)
    filter_ = ds.field("image_id").isin(list(image_ids)) if image_ids is not None else None
    frame = dataset.to_table(columns=list(columns) if columns else None, filter=filter_).to_pandas()
    if table == "findings" and plan is not None and {"kind", "rank"} <= set(frame.columns):
        # parts hold each shard's findings; the run's order is by kind, then rank (as segaudit.findings.rules.find)
        kinds = {kind: i for i, kind in enumerate(dict.fromkeys(_FINDING_ORDER + tuple(frame["kind"])))}
        order = np.lexsort((frame["rank"].to_numpy(), frame["kind"].map(kinds).to_numpy()))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


#: Finding kinds in the order of :data:`segaudit.findings.rules.FINDING_KINDS` (kept here to read runs without
#: importing the findings logic).
_FINDING_ORDER = ("label_error", "context_reliance", "missed_object", "neglected_instances", "out_of_label_space")


@dataclass
class RunTables:
    """All tables of one run as pandas DataFrames, plus the run's metadata as a dict."""

    run_dir: Path | str
    run: dict[str, Any]
    images: pd.DataFrame
    scores: pd.DataFrame
    maps: pd.DataFrame
    thumbnails: pd.DataFrame
    errors: pd.DataFrame
    confusion: pd.DataFrame
    instances: pd.DataFrame
    findings: pd.DataFrame
    prompts: pd.DataFrame
    fixations: pd.DataFrame
    reviews: pd.DataFrame | None = None  # a reviewer's decisions (segaudit.runs.reviews), if any

    @property
    def class_names(self) -> list[str]:
        return list(self.run["class_names"])

    def confusion_matrix(self) -> np.ndarray:
        """``(K, K)`` int64 pixel counts over the run, rows = label, columns = prediction (void left out);
        ``segaudit.metrics.scores.mean_iou`` of it is the dataset mIoU."""
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


def read_run_row(run_dir: str | Path) -> dict[str, Any]:
    """The run table's row. Raises FileNotFoundError for a folder that is not a finished run (and says how
    far a sharded run got)."""
    path = join(run_dir, RUN_FILE)
    if not exists(path):
        plan = read_plan(run_dir)
        if plan is not None:
            done = len(set(shard_markers(run_dir)) & {s["name"] for s in plan["shards"]})
            raise FileNotFoundError(f"{run_dir} is an unfinished run ({done} of {len(plan['shards'])} shards "
                                    f"complete, not aggregated): run the same audit again to resume it")
        raise FileNotFoundError(f"{run_dir} is not a segaudit run (no {RUN_FILE})")
    fs, target = filesystem(path)
    with fs.open(target, "rb") as handle:
        return pq.read_table(handle).to_pylist()[0]


def load_run(run_dir: str | Path, tables: tuple[str, ...] | None = None) -> RunTables:
    """Load a finished run's tables into pandas, from a local folder or an fsspec URL.

    Reads the sharded layout (``run.json``, ``<table>/part-<shard>.parquet``; each table as one pyarrow
    dataset over its parts) and the older one-file-per-table layout alike.

    Parameters
    ----------
    run_dir : path or URL
        ``runs/<run_id>/``.
    tables : tuple of str, optional
        Only these tables (others come back empty), e.g. ``("images", "scores")`` to skip the heavy
        ``maps`` and ``thumbnails``.

    Examples
    --------
    >>> run = load_run("runs/demo")                                     # doctest: +SKIP
    >>> run.images.sort_values("review_rank").head(10)                  # doctest: +SKIP
    """
    meta = read_run_row(run_dir)
    frames = {name: read_table(run_dir, name) if tables is None or name in tables else empty_frame(name)
              for name in _DATA_TABLES}
    from segaudit.runs.reviews import read_reviews  # noqa: PLC0415 (reviews imports this module)

    return RunTables(run_dir=run_dir if is_url(run_dir) else Path(str(run_dir).removeprefix("file://")),
                     run=meta, **frames, reviews=read_reviews(run_dir))
