"""The report's Prefect artifact: where the rendered HTML report is and how to open it, on the flow run's page.

A browser does not follow a ``file://`` link from a page served over HTTP (the Prefect UI), so the artifact
is Markdown that names the file and gives the commands that open it: in a browser on the machine that ran
the flow, or served over HTTP by Python's own file server (the README's "Schedule an audit" names it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from segaudit.tasks.artifacts import artifact_key

from segaudit.runs.tables import is_url

__all__ = ["SERVE_PORT", "report_artifact_markdown", "report_artifact_task", "report_link"]

SERVE_PORT = 8765
"""The port the artifact's ``python -m http.server`` command serves a run folder on."""


def report_link(report: str) -> str:
    """The link to a report: its URL for a run on object storage, else the ``file://`` URL of its absolute path."""
    return report if is_url(report) else Path(report.removeprefix("file://")).resolve().as_uri()


def report_artifact_markdown(report: str, run_name: str) -> str:
    """Markdown naming the report and how to open it: a link for an ``http(s)`` URL, the copy command for
    other object storage, and for a local file its path, a command that opens it in a browser, and one that
    serves its folder at ``http://127.0.0.1:SERVE_PORT/`` (any browser, also through an SSH tunnel)."""
    title = f"## segaudit report of run `{run_name}`\n\n"
    if report.startswith(("http://", "https://")):
        return f"{title}[Open the report]({report})\n"
    if is_url(report):
        folder = report.rsplit("/", 1)[0]
        return (f"{title}The report is on object storage: `{report}`.\n\nCopy its run folder and open "
                f"`report.html` from the copy, e.g. `segaudit report {folder}` after copying, or:\n\n"
                f"```bash\npython -c \"import fsspec; fsspec.filesystem('{report.split('://')[0]}')"
                f".get('{folder}', 'run-copy', recursive=True)\"\n```\n")
    path = Path(report.removeprefix("file://")).resolve()
    return (
        f"{title}On the machine that ran this flow: `{path}` (it opens offline; keep its `report_files/` "
        "folder beside it when there is one). A browser does not open `file://` links from this page; "
        "open it there with\n\n"
        f"```bash\npython -m webbrowser -t {shlex.quote(path.as_uri())}\n```\n\n"
        f"or serve its folder and open http://127.0.0.1:{SERVE_PORT}/{path.name} (from another machine: "
        f"`ssh -L {SERVE_PORT}:127.0.0.1:{SERVE_PORT} <that machine>` first):\n\n"
        f"```bash\npython -m http.server {SERVE_PORT} --bind 127.0.0.1 --directory {shlex.quote(str(path.parent))}\n```\n"
    )


@task(name="report-artifact", cache_policy=NO_CACHE)
def report_artifact_task(report: str) -> UUID:
    """Publish the report's Markdown artifact (key ``segaudit-report-<run folder>``)."""
    run_name = report.rstrip("/").rsplit("/", 2)[-2] if "/" in report.rstrip("/") else "run"
    return create_markdown_artifact(
        report_artifact_markdown(report, run_name),
        key=artifact_key("report", run_name),
        description=f"The HTML audit report of run {run_name}: where it is and how to open it.",
    )
