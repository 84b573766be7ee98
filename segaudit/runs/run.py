"""A run as a whole: its identity (key) and folder, its metadata, its plan of shards, resumption, the
aggregation of its shards, and its progress.

A run is planned once (:func:`start_run` writes ``run.json``: the run key, the inputs, and the shards),
each shard is processed and written on its own (:func:`write_shard_rows`, by any worker), and when all
are complete :func:`aggregate_run` computes what needs the whole run (review ranks, findings) and writes
``run.parquet``. Rerunning the same audit (same key) reuses the plan and skips complete shards
(:func:`resume_message` says so); an audit whose inputs changed gets another key, so by default another
folder, and is refused when the user named the folder (``run_id``) of a run with other inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from segaudit.auditors.batch import BatchRows, config_json, versions
from segaudit.console import EnvironmentProblem
from segaudit.data.identity import image_root_of, images_fingerprint
from segaudit.data.readers import SegmentationDataset
from segaudit.data.sample import ImageRef
from segaudit.findings.causal import CONFUSION_COLUMNS, CONTEXT_COLUMNS, TEMPLATE_COLUMNS
from segaudit.findings.ranking import FINDING_INSTANCE_COLUMNS, FINDING_SCORE_COLUMNS, rank_and_find
from segaudit.findings.rules import FindingRules
from segaudit.findings.trust import trusted_primary
from segaudit.models.registry import LoadedModel
from segaudit.runs.shards import Shard, plan_shards
from segaudit.runs.tables import (
    DATA_TABLES,
    MARKERS,
    PLAN_FILE,
    RUN_FILE,
    SCHEMAS,
    SHARD_TABLES,
    filesystem,
    join,
    part_path,
    read_plan,
    read_table,
    shard_markers,
    write_plan,
    write_shard,
    write_table,
)
from segaudit.settings import AuditConfig

__all__ = [
    "plan_batches",
    "run_key",
    "run_directory",
    "run_metadata",
    "audit_config_from_json",
    "start_run",
    "resume_message",
    "RunInputsChanged",
    "pending_shards",
    "write_shard_rows",
    "aggregate_run",
    "write_run_rows",
    "PREPASS_PART",
    "record_prepass",
    "planned_config",
    "worker_name",
    "Progress",
]


def plan_batches(refs: list[ImageRef], batch_size: int) -> list[list[ImageRef]]:
    """Consecutive batches of at most ``batch_size`` refs, in dataset order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [refs[i : i + batch_size] for i in range(0, len(refs), batch_size)]


#: What a run's key covers, in order: the labels, the image root and image files, the model, the settings.
KEY_FIELDS = ("dataset_fingerprint", "image_root", "images_fingerprint", "model_sha256", "model_name", "config_json")


def run_key(meta: dict[str, Any]) -> str:
    """The identity of a run: a hash of everything it read (:data:`KEY_FIELDS`: the annotations'
    fingerprint, the image root, the image files' identity from :func:`segaudit.data.identity.images_fingerprint`,
    the model hash and name) and the configuration. The same inputs give the same key (so the same run
    folder); a changed image, label, model or setting gives another."""
    material = json.dumps([meta.get(name, "") for name in KEY_FIELDS], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def run_directory(out: str | Path, run_id: str | None, meta: dict[str, Any]) -> str:
    """``<out>/<run_id>`` (a local path or a URL); by default ``<dataset split>-<model>-<key>``."""
    if run_id is None:
        model = Path(meta["model_name"]).stem.replace("torchvision:", "")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{meta['split'] or meta['dataset_kind']}-{model}").strip("-")
        run_id = f"{stem}-{run_key(meta)}"
    else:
        meta["run_id_given"] = True  # the user named the folder: start_run refuses a run of other inputs there
    meta["run_id"] = run_id
    return join(out, run_id)


def run_metadata(
    data: SegmentationDataset,
    model: LoadedModel,
    config: AuditConfig,
    *,
    dataset_path: str,
    split: str | None,
    **settings: Any,
) -> dict[str, Any]:
    """The ``run`` table's row; ``n_images``, ``n_errors`` and ``duration_s`` are set by :func:`aggregate_run`.

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
        "image_root": image_root_of(data),
        "images_fingerprint": images_fingerprint(data),
        "n_images": 0,
        "n_errors": 0,
        "model_name": model.name,
        "model_sha256": model.sha256,
        "input_size": model.input_size,
        "layer": ",".join(config.layers_of(model)),
        "methods": list(config.methods),
        "class_names": list(model.class_names),
        "config_json": config_json(config, model_arch=model.arch, seeds=audit_seeds(), **settings),
        "versions_json": json.dumps(versions(), sort_keys=True),
    }


def audit_seeds() -> dict[str, int]:
    """Every seed the audit uses, for the run's metadata. The model, the CAMs and the scores draw no random
    numbers; only GrabCut (``--prompts grabcut``) does, from OpenCV's generator reset to this seed before
    each call (:class:`segaudit.metrics.prompting.GrabCutSegmenter`). Synthetic data records its own seed in
    ``dataset.json``."""
    from segaudit.metrics.prompting import GrabCutSegmenter

    return {"grabcut": int(GrabCutSegmenter.seed)}


def audit_config_from_json(text: str) -> AuditConfig:
    """The :class:`AuditConfig` recorded in a run's ``config_json`` (other recorded settings are ignored)."""
    return AuditConfig.from_json(json.loads(text))


def _rules_methods_layers(meta: dict[str, Any]) -> tuple[FindingRules | None, list[str], list[str]]:
    settings = json.loads(meta["config_json"])
    rules = FindingRules(**settings["rules"]) if "rules" in settings else None
    return rules, list(meta.get("methods") or ()), [x for x in meta.get("layer", "").split(",") if x]


# ------------------------------------------------------------------------------------------- the plan


def _clear_run(run_dir: str) -> None:
    """Remove what an earlier run with another key (or an older layout) left in ``run_dir``; nothing else."""
    fs, root = filesystem(run_dir)
    names = [*DATA_TABLES, MARKERS]
    for name in names:
        path = f"{root}/{name}"
        if fs.exists(path):
            fs.rm(path, recursive=True)
    for name in (PLAN_FILE, RUN_FILE, *(f"{t}.parquet" for t in SCHEMAS)):
        path = f"{root}/{name}"
        if fs.exists(path):
            fs.rm(path)


def start_run(
    run_dir: str,
    meta: dict[str, Any],
    refs: list[ImageRef],
    shard_size: int,
    inputs: dict[str, Any],
    resume: bool = True,
) -> dict[str, Any]:
    """Plan a run into ``run_dir``, or take up the plan already there.

    With ``resume`` and a plan of the same :func:`run_key` in ``run_dir``, that plan is returned as it is
    (its shards, its ``created_at``): complete shards will be skipped. With
    ``resume``, a plan of another key and a user-given ``run_id`` (``meta["run_id_given"]``, set by
    :func:`run_directory`), :class:`RunInputsChanged` is raised. Otherwise whatever a run left there is
    removed and a new plan is written: ``{"run_key", "run": meta, "inputs", "shard_size", "shards"}``.

    Parameters
    ----------
    run_dir : str
        Local folder or fsspec URL.
    meta : dict
        The run table's row (:func:`run_metadata`).
    refs : list of ImageRef
        The images to audit, in order.
    shard_size : int
        Images per shard.
    inputs : dict
        What a worker needs to redo the work: ``dataset``, ``split``, ``image_root``, ``model``,
        ``weights``, ``mapping``.
    """
    key = run_key(meta)
    existing = read_plan(run_dir)
    if resume and existing is not None and existing.get("run_key") == key:
        return existing
    if resume and existing is not None and meta.get("run_id_given"):
        raise RunInputsChanged(_changed_inputs_line(run_dir, existing, meta))
    _clear_run(run_dir)
    plan = {
        "run_key": key,
        "run": meta,
        "inputs": inputs,
        "shard_size": shard_size,
        # a run without images still has one (empty) shard: it carries the dataset's indexing errors
        "shards": [s.to_json() for s in plan_shards(refs, shard_size) or [Shard(f"part-{0:05d}", ())]],
    }
    write_plan(run_dir, plan)
    return read_plan(run_dir)


class RunInputsChanged(EnvironmentProblem, ValueError):
    """The folder named by the user (``run_id``) holds a run of other inputs; the message is one line (the
    CLI prints it as a user error, exit status 2: :func:`segaudit.console.exit_code`)."""


def _changed_inputs_line(run_dir: str, existing: dict[str, Any], meta: dict[str, Any]) -> str:
    old = existing.get("run") or {}
    changed = [name for name in KEY_FIELDS if old.get(name, "") != meta.get(name, "")] or ["run key"]
    return (f"run {meta.get('run_id')} in {run_dir} was made from other inputs (changed: {', '.join(changed)}); "
            "pass another run id, do not resume, or delete that folder")


def resume_message(plan: dict[str, Any], todo: list[Shard]) -> str:
    """``"resuming run X: 3 of 8 shards done"`` when some shards of the plan are already complete (so
    :func:`start_run` took up an existing plan: a new one has none), else ``""``."""
    total = len(plan["shards"])
    if len(todo) == total:
        return ""
    return f"resuming run {plan['run'].get('run_id', '?')}: {total - len(todo)} of {total} shards done"


def plan_shards_of(plan: dict[str, Any]) -> list[Shard]:
    return [Shard.from_json(s) for s in plan["shards"]]


def pending_shards(run_dir: str, plan: dict[str, Any]) -> list[Shard]:
    """The plan's shards without a completion marker of this run (the work left)."""
    markers = shard_markers(run_dir)
    done = {name for name, marker in markers.items() if marker.get("run_key") == plan["run_key"]}
    return [s for s in plan_shards_of(plan) if s.name not in done]


def worker_name() -> str:
    """Who processed a shard, as recorded in its marker: ``$SEGAUDIT_WORKER`` if set, else the host name."""
    return os.environ.get("SEGAUDIT_WORKER") or socket.gethostname()


def write_shard_rows(run_dir: str, shard: Shard, rows: BatchRows, run_key_: str, seconds: float = 0.0,
                     **marker: Any) -> dict[str, int]:
    """Write a processed shard's parts and then its completion marker; return the row counts.

    The marker records the run key, the worker (:func:`worker_name`), its process id and ``seconds``.
    """
    tables = {name: getattr(rows, name) for name in SHARD_TABLES}
    info = {"run_key": run_key_, "worker": worker_name(), "pid": os.getpid(), "seconds": round(seconds, 3),
            "n_images": len(shard.image_ids), **marker}
    return write_shard(run_dir, shard.name, tables, info)


# ------------------------------------------------------------------------------------------- pre-pass

#: Name of the parts the run's pre-pass writes (``sanity/prepass.parquet``, ``faithfulness/...``, ``errors/...``).
PREPASS_PART = "prepass"


def record_prepass(run_dir: str, plan: dict[str, Any], prepass: Any) -> dict[str, Any]:
    """Write the rows of the run's pre-pass (:class:`segaudit.auditors.calibration.Prepass`) as the run's
    ``prepass`` parts, then record it in the plan (``plan["prepass"]``; its chosen layer becomes the run
    table's ``layer``), so that a resumed run reuses it; return the updated plan. The plan is written last:
    a run interrupted in between redoes the pre-pass."""
    for table in ("sanity", "faithfulness", "errors"):
        write_table(getattr(prepass, table), part_path(run_dir, table, PREPASS_PART), table)
    plan = {**plan, "prepass": prepass.to_json(), "run_parts": [PREPASS_PART]}
    if prepass.layer:
        plan["run"] = {**plan["run"], "layer": prepass.layer}
    write_plan(run_dir, plan)
    return read_plan(run_dir)


def planned_config(config: AuditConfig, plan: dict[str, Any]) -> AuditConfig:
    """``config`` with the layer the run's pre-pass chose (when it chose one: the user fixed no layer)."""
    layer = (plan.get("prepass") or {}).get("layer")
    return replace(config, layers=(layer,)) if layer and not config.layers else config


# ------------------------------------------------------------------------------------------ aggregate


def aggregate_run(run_dir: str) -> dict[str, int]:
    """Finish a run whose shards are all complete: set each image's ``suspicion`` and ``review_rank`` and
    compute the findings over every shard (:func:`segaudit.findings.ranking.rank_and_find`), rewrite the images
    parts, write the findings parts (each finding in its image's shard), then ``run.parquet``.

    Safe to repeat (it recomputes from the shards' own columns), and ``run.parquet`` goes first and comes
    back last, so an interrupted aggregation leaves an unfinished run, never a wrong one.

    Returns
    -------
    dict
        Row counts per table (``findings`` included).

    Raises
    ------
    RuntimeError
        Some shards are not complete (they are named).
    """
    plan = read_plan(run_dir)
    if plan is None:
        raise FileNotFoundError(f"{run_dir} has no {PLAN_FILE}: not a planned run")
    missing = [s.name for s in pending_shards(run_dir, plan)]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(plan['shards'])} shards of {run_dir} are not complete "
                           f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); rerun to finish them")
    fs, root = filesystem(run_dir)
    if fs.exists(f"{root}/{RUN_FILE}"):
        fs.rm(f"{root}/{RUN_FILE}")
    names = [s["name"] for s in plan["shards"]]
    parts = [read_table(run_dir, "images", shards=[name]) for name in names]
    shard_of = [name for name, part in zip(names, parts, strict=True) for _ in range(len(part))]
    images = pd.concat(parts, ignore_index=True) if parts else read_table(run_dir, "images")
    scores = read_table(run_dir, "scores", columns=FINDING_SCORE_COLUMNS)
    instances = read_table(run_dir, "instances", columns=FINDING_INSTANCE_COLUMNS)
    meta = plan["run"]
    rules, methods, layers = _rules_methods_layers(meta)
    trust, methods, layers = trusted_primary(
        read_table(run_dir, "faithfulness"), read_table(run_dir, "sanity") if "sanity" in SCHEMAS else None,
        scores, methods, layers, json.loads(meta["config_json"]).get("primary", "first"))
    causal = {"context": read_table(run_dir, "context", columns=CONTEXT_COLUMNS),
              "class_templates": read_table(run_dir, "class_templates", columns=TEMPLATE_COLUMNS),
              "confusion": read_table(run_dir, "confusion", columns=CONFUSION_COLUMNS)}
    ranked, findings = rank_and_find(images, scores, instances, rules, methods, layers, **causal)
    write_table(trust, part_path(run_dir, "method_trust", names[0]), "method_trust")  # one run-level part
    image_shard = dict(zip(images["image_id"], shard_of, strict=True))
    finding_shard = findings["image_id"].map(image_shard).fillna(names[0] if names else "").to_numpy()  # run-wide
    image_shards = pd.Series(shard_of, dtype=object).to_numpy()
    for name in names:
        write_table(ranked[image_shards == name].reset_index(drop=True), part_path(run_dir, "images", name), "images")
        write_table(findings[finding_shard == name].reset_index(drop=True), part_path(run_dir, "findings", name),
                    "findings")
    markers = shard_markers(run_dir)
    n_errors = sum(markers[name]["rows"]["errors"] for name in names) + (plan.get("prepass") or {}).get("n_errors", 0)
    started = datetime.fromisoformat(meta["created_at"])
    row = {
        **meta,
        "schema_version": plan["schema_version"],
        "n_images": len(ranked),
        "n_errors": n_errors,
        "methods": methods,  # the primary (chosen) method and layer first
        "layer": ",".join(layers),
        "duration_s": round((datetime.now(timezone.utc) - started).total_seconds(), 3),
    }
    write_table([{col: row[col] for col in SCHEMAS["run"].names}], join(run_dir, RUN_FILE), "run")
    counts = {table: sum(markers[name]["rows"][table] for name in names) for table in SHARD_TABLES}
    return {**counts, "findings": len(findings), "method_trust": len(trust)}


def write_run_rows(rows: BatchRows, run_dir: str | Path, meta: dict[str, Any]) -> dict[str, int]:
    """Write all rows of a run processed in one go (as one shard) and aggregate it; return the row counts."""
    run_dir = str(run_dir)
    image_ids = [r["image_id"] for r in rows.images]
    plan = start_run(run_dir, meta, [ImageRef(i, "") for i in image_ids], max(1, len(image_ids)), {}, resume=False)
    (shard,) = plan_shards_of(plan)
    write_shard_rows(run_dir, shard, rows, plan["run_key"])
    return aggregate_run(run_dir)


# ------------------------------------------------------------------------------------------- progress


@dataclass
class Progress:
    """Images done out of a total, their rate and the time left, for long runs.

    ``rate = images processed since start / seconds since start`` (images skipped because their shard was
    already complete count as done but not into the rate); ``eta = images left / rate``.
    """

    total: int
    done: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, images: int) -> None:
        self.done += images

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def eta_seconds(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 else (0.0 if left == 0 else None)

    def line(self) -> str:
        """E.g. ``1024/5000 images (20.5%), 12.3 images/s, ETA 5m23s``."""
        eta = self.eta_seconds
        text = "?" if eta is None else _duration(eta)
        return f"{self.done}/{self.total} images ({100 * self.fraction:.1f}%), {self.rate:.1f} images/s, ETA {text}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
