"""Parquet tables of a run: how a run is written and read, and the one-call loader (the tables' schemas and
column docs are in :mod:`segaudit.schema`).

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
    sanity/prepass.parquet    the run's sanity check (segaudit.auditors.calibration); the pre-pass also
                              writes faithfulness/prepass.parquet and errors/prepass.parquet

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

from segaudit.schema import COLUMN_DOCS, DATA_TABLES, FINDING_KINDS, SCHEMA_VERSION, SCHEMAS, SHARD_TABLES

__all__ = [
    "SCHEMA_VERSION",
    "SCHEMAS",
    "COLUMN_DOCS",
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
        # the shards' parts, and the run's own (its pre-pass: segaudit.runs.run.record_prepass)
        names = [s["name"] for s in plan["shards"]] + list(plan.get("run_parts", ())) if shards is None else list(shards)
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
        kinds = {kind: i for i, kind in enumerate(dict.fromkeys(FINDING_KINDS + tuple(frame["kind"])))}
        order = np.lexsort((frame["rank"].to_numpy(), frame["kind"].map(kinds).to_numpy()))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


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
    faithfulness: pd.DataFrame
    context: pd.DataFrame
    class_templates: pd.DataFrame
    method_trust: pd.DataFrame
    sanity: pd.DataFrame
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
              for name in DATA_TABLES}
    from segaudit.runs.reviews import read_reviews  # noqa: PLC0415 (reviews imports this module)

    return RunTables(run_dir=run_dir if is_url(run_dir) else Path(str(run_dir).removeprefix("file://")),
                     run=meta, **frames, reviews=read_reviews(run_dir))
