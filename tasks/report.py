"""The report's Prefect artifact: a link to the rendered HTML report, shown on the flow run's page."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE
from segaudit.tasks.artifacts import artifact_key

from segaudit.runs.tables import is_url

__all__ = ["report_link", "report_link_task"]


def report_link(report: str) -> str:
    """The link to a report: its URL for a run on object storage, else the ``file://`` URL of its absolute path."""
    return report if is_url(report) else Path(report.removeprefix("file://")).resolve().as_uri()


@task(name="report-link", cache_policy=NO_CACHE)
def report_link_task(report: str) -> UUID:
    """Publish a link artifact to the report (key ``segaudit-report-<run folder>``)."""
    run_name = report.rstrip("/").rsplit("/", 2)[-2] if "/" in report.rstrip("/") else "run"
    return create_link_artifact(
        link=report_link(report),
        link_text=f"segaudit report of {run_name}",
        key=artifact_key("report", run_name),
        description=f"The HTML audit report of run {run_name} (opens offline: keep its `report_files/` folder "
        "beside it when there is one).",
    )
