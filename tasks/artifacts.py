"""Prefect artifacts of an audit: a progress bar updated as shards finish, and, when the run is done, a
Markdown summary and a table of the top findings (built by :mod:`segaudit.runs.summary`).

Artifact keys are ``segaudit-<what>-<run id>`` (lowercase letters, digits and dashes, as Prefect requires),
so each run's artifacts keep a history across reruns in the Prefect UI.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from segaudit.runs.run import Progress
from segaudit.runs.summary import summary_markdown, top_findings
from segaudit.runs.tables import join, load_run

__all__ = ["artifact_key", "ShardProgress", "publish_summary_task"]


def artifact_key(kind: str, run_id: str) -> str:
    """``segaudit-<kind>-<run id>`` in the characters Prefect allows in artifact keys."""
    return re.sub(r"[^a-z0-9-]+", "-", f"segaudit-{kind}-{run_id}".lower()).strip("-")


class ShardProgress:
    """Progress of a run's images: a Prefect progress artifact updated as shards finish, and a line on
    standard error (images/s and ETA; redrawn in place per batch on a terminal, one line per shard
    otherwise). Thread-safe: shard tasks may report concurrently.

    ``own_share``: the progress of a fan-out child (``audit-shards``), counted over its ``pending`` shards
    alone ("50/50 images", not the whole run's count), with an unkeyed progress artifact on its own flow
    run's page; the parent's keyed artifact follows the whole run."""

    def __init__(self, plan: dict[str, Any], pending: list[Any], *, artifact: bool = True,
                 own_share: bool = False) -> None:
        run_id = plan["run"]["run_id"]
        shards = len(pending) if own_share else len(plan["shards"])
        total = sum(len(s.image_ids) for s in pending) if own_share else sum(len(s["image_ids"]) for s in plan["shards"])
        done = total - sum(len(s.image_ids) for s in pending)
        self.progress = Progress(total, done=done, skipped=done)
        self.shards_total, self.shards_done = shards, shards - len(pending)
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()
        self.artifact_id = None
        if artifact:
            self.artifact_id = create_progress_artifact(
                progress=self._percent(), key=None if own_share else artifact_key("progress", run_id),
                description=(f"images of this flow run's {shards} shard(s) of run {run_id} audited" if own_share
                             else f"images of run {run_id} audited ({shards} shards)"))

    def _percent(self) -> float:
        return round(100.0 * min(1.0, self.progress.fraction), 2)

    def on_batch(self, images: int) -> None:
        """A loader batch of ``images`` was scored."""
        with self._lock:
            self.progress.add(images)
            if self._tty:
                sys.stderr.write(f"\r{self.progress.line()}   ")
                sys.stderr.flush()

    def shard_done(self, summary: dict[str, Any]) -> None:
        """A shard was written (``summary`` from the shard task)."""
        with self._lock:
            self.shards_done += 1
            line = f"{summary['shard']} done ({self.shards_done}/{self.shards_total} shards): {self.progress.line()}"
            sys.stderr.write(("\r" if self._tty else "") + line + "\n")
            sys.stderr.flush()
            if self.artifact_id is not None:
                update_progress_artifact(self.artifact_id, self._percent())

    def sync(self, completed_images: int, completed_shards: int) -> None:
        """Set the counts from the shards found complete on storage (a fanned-out run)."""
        with self._lock:
            changed = completed_shards != self.shards_done
            self.progress.done, self.shards_done = completed_images, completed_shards
            if changed:
                sys.stderr.write(f"{self.shards_done}/{self.shards_total} shards: {self.progress.line()}\n")
                if self.artifact_id is not None:
                    update_progress_artifact(self.artifact_id, self._percent())


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary_task(run_dir: str, report: bool, per_kind: int = 5) -> dict[str, Any]:
    """Create the run's Markdown summary and top-findings table artifacts; return their ids."""
    run = load_run(run_dir, tables=("images", "findings"))
    run_id = run.run["run_id"]
    markdown = summary_markdown(run, join(run_dir, "report.html") if report else None)
    summary = create_markdown_artifact(markdown, key=artifact_key("summary", run_id),
                                       description=f"segaudit run {run_id}")
    rows = top_findings(run.findings, per_kind)
    table = create_table_artifact(rows, key=artifact_key("top-findings", run_id),
                                  description=f"the {per_kind} strongest findings of each kind in run {run_id}")
    return {"summary": summary, "top_findings": table}
