"""The CLI's console: Prefect's environment defaults, failures as one line, the local Prefect API's checks,
the report's artifact and a fan-out child's progress (no Prefect server started here)."""

from __future__ import annotations

import errno
import io
import logging
import socket
from types import SimpleNamespace

import pytest

from segaudit.console import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    PREFECT_DEFAULTS,
    EnvironmentProblem,
    apply_prefect_defaults,
    check_writable_folder,
    describe_failure,
    exit_code,
    name_sample,
    report_failure,
)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_defaults_fill_only_what_the_user_left_unset() -> None:
    environ = {"PREFECT_LOGGING_LEVEL": "INFO"}
    applied = apply_prefect_defaults(environ)
    assert environ["PREFECT_LOGGING_LEVEL"] == "INFO" and "PREFECT_LOGGING_LEVEL" not in applied
    assert environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and environ["DO_NOT_TRACK"] == "1"
    assert int(environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120
    assert set(applied) == set(PREFECT_DEFAULTS) - {"PREFECT_LOGGING_LEVEL"}


def test_the_defaults_are_prefect_setting_names() -> None:
    from prefect.settings import Settings

    fields = Settings().to_environment_variables(exclude_unset=False)
    for name in PREFECT_DEFAULTS:
        if name.startswith("PREFECT_"):
            assert name in fields, name


@pytest.mark.parametrize(("exc", "cause", "status"), [
    (OSError(errno.ENOSPC, "No space left on device", "/data/runs/x/part-0.parquet"), "the disk is full", 2),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/runs"), "the file system is read-only", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "permission denied", 2),
    (EnvironmentProblem("the Prefect API at http://x does not answer"), "the Prefect API at http://x", 2),
    (ValueError("bad value\nsecond line"), "ValueError: bad value", 1),
    (KeyboardInterrupt(), "KeyboardInterrupt", 130),
])
def test_each_failure_is_one_line_with_its_cause_and_status(exc, cause, status) -> None:
    line = describe_failure(exc)
    assert "\n" not in line and line.startswith(cause)
    if getattr(exc, "filename", None):
        assert exc.filename in line
    assert exit_code(exc) == status
    stream = io.StringIO()
    assert report_failure(exc, debug=False, stream=stream) == status
    printed = stream.getvalue().strip()
    assert "\n" not in printed and "Traceback" not in printed
    assert printed.startswith("segaudit: interrupted" if status == EXIT_INTERRUPTED else "segaudit: error: ")
    assert ("--debug" in printed) == (status == EXIT_FAILURE)


def test_debug_prints_the_traceback_then_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        stream = io.StringIO()
        assert report_failure(exc, debug=True, stream=stream) == EXIT_FAILURE
    text = stream.getvalue()
    assert text.startswith("Traceback") and text.rstrip().endswith("segaudit: error: RuntimeError: boom")


def test_name_sample_fits_a_line() -> None:
    names = [f"class_{k:03d}" for k in range(133)]
    text = name_sample(names)
    assert text == "133 (class_000, class_001, class_002, class_003, class_004, ...)"
    assert name_sample(["a", "b"]) == "2 (a, b)"


def test_unwritable_output_folder_is_refused_with_the_cause(tmp_path, monkeypatch) -> None:
    check_writable_folder(tmp_path / "new" / "runs")  # absent: its parent is tried, nothing is made
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(EnvironmentProblem, match="cannot write to the output folder"):
        check_writable_folder(tmp_path / "file" / "runs")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr("segaudit.console.tempfile.NamedTemporaryFile", read_only)
    with pytest.raises(EnvironmentProblem, match="file system is read-only"):
        check_writable_folder(tmp_path)
    assert exit_code(EnvironmentProblem("x")) == EXIT_USER_ERROR


def test_api_url_from_the_environment_or_the_active_profile(tmp_path) -> None:
    from segaudit.flows.server import configured_api_url

    assert configured_api_url({"PREFECT_HOME": str(tmp_path)}) is None
    (tmp_path / "profiles.toml").write_text('active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://h:1/api"\n'
                                            '[profiles.other]\nPREFECT_API_URL = "http://o:2/api"\n')
    assert configured_api_url({"PREFECT_HOME": str(tmp_path)}) == "http://h:1/api"
    assert configured_api_url({"PREFECT_HOME": str(tmp_path), "PREFECT_PROFILE": "other"}) == "http://o:2/api"
    assert configured_api_url({"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://e:3/api"}) == "http://e:3/api"


def test_a_configured_api_that_does_not_answer_is_one_line(tmp_path) -> None:
    from segaudit.flows.server import PrefectUnavailable, prepare_api

    url = f"http://127.0.0.1:{_closed_port()}/api"
    environ = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": url}
    with pytest.raises(PrefectUnavailable) as caught:
        prepare_api(environ)
    line = describe_failure(caught.value)
    assert line.startswith(f"the Prefect API at {url} does not answer") and "\n" not in line
    assert environ["PREFECT_LOGGING_LEVEL"] == "WARNING"  # the defaults were set first


def test_ephemeral_mode_leaves_the_api_to_prefect(tmp_path) -> None:
    from segaudit.flows.server import prepare_api

    environ = {"PREFECT_HOME": str(tmp_path), "SEGAUDIT_PREFECT_SERVER": "ephemeral"}
    assert prepare_api(environ) is None and "PREFECT_API_URL" not in environ
    assert not (tmp_path / "segaudit-server.json").exists()


def test_console_handlers_drop_run_errors_and_tracebacks_but_the_record_keeps_them() -> None:
    from segaudit.flows.server import _OneLineFailures, _without_tracebacks

    keep = _OneLineFailures()
    error = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "Finished in state Failed", None, None)
    warning = logging.LogRecord("prefect.task_runs", logging.WARNING, __file__, 1, "retrying", None, None)
    assert not keep.filter(error) and keep.filter(warning)
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        import sys

        record = logging.LogRecord("prefect", logging.WARNING, __file__, 1, "write failed", None, sys.exc_info())
    text = _without_tracebacks(logging.Formatter("%(message)s")).format(record)
    assert text == "write failed" and record.exc_info is not None
    assert "Traceback" in logging.Formatter("%(message)s").format(record)


def test_report_artifact_names_the_file_and_how_to_open_it(tmp_path) -> None:
    from segaudit.tasks.report import SERVE_PORT, report_artifact_markdown

    report = tmp_path / "runs" / "r1" / "report.html"
    text = report_artifact_markdown(str(report), "r1")
    assert str(report.resolve()) in text and "](file://" not in text
    assert f"python -m http.server {SERVE_PORT} --bind 127.0.0.1 --directory {report.parent.resolve()}" in text
    assert f"http://127.0.0.1:{SERVE_PORT}/report.html" in text
    assert "[Open the report](https://x/r1/report.html)" in report_artifact_markdown("https://x/r1/report.html", "r1")
    assert "fsspec.filesystem('s3')" in report_artifact_markdown("s3://b/runs/r1/report.html", "r1")


def test_a_fan_out_child_counts_its_own_shards() -> None:
    from segaudit.tasks.artifacts import ShardProgress

    plan = {"run": {"run_id": "r"}, "shards": [{"name": f"part-{k}", "image_ids": list(range(25))} for k in range(4)]}
    mine = [SimpleNamespace(name="part-1", image_ids=list(range(25))),
            SimpleNamespace(name="part-3", image_ids=list(range(25)))]
    child = ShardProgress(plan, mine, artifact=False, own_share=True)
    assert (child.progress.total, child.progress.done, child.shards_total) == (50, 0, 2)
    child.on_batch(50)
    assert child.progress.line().startswith("50/50 images")
    parent = ShardProgress(plan, mine, artifact=False)
    assert (parent.progress.total, parent.progress.done, parent.shards_total) == (100, 50, 4)


def test_a_local_server_must_be_healthy_a_remote_one_only_reachable() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from segaudit.flows.server import api_answers

    class NotPrefect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api"
        assert api_answers(url) is None  # something answers: a Cloud API without a key answers 401/404 too
        assert api_answers(url, healthy=True) == "HTTP 404"  # not a Prefect server to reuse
    finally:
        server.shutdown()
    assert "refused" in api_answers(f"http://127.0.0.1:{_closed_port()}/api").lower()


def test_a_local_server_that_does_not_start_is_one_line_with_its_log(tmp_path) -> None:
    import subprocess
    import sys

    from segaudit.flows.server import LOG_FILE, PrefectUnavailable, _wait_started

    url = f"http://127.0.0.1:{_closed_port()}/api"
    with open(tmp_path / LOG_FILE, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", "print('address already in use'); raise SystemExit(3)"],
                                stdout=log)
        proc.wait()
    with pytest.raises(PrefectUnavailable) as caught:
        _wait_started(proc, url, tmp_path, timeout=60)
    line = describe_failure(caught.value)
    assert "exited with status 3" in line and "address already in use" in line and "\n" not in line
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(PrefectUnavailable, match="not in 1 s"):
            _wait_started(slow, url, tmp_path, timeout=1)
    finally:
        slow.kill()
        slow.wait()
