"""The Prefect API the ``segaudit`` command talks to: the configured one, checked, or a local server started once.

Without a configured API, Prefect starts a temporary server in every process (about 18 s on an idle 2-core
machine, a minute loaded) on the profile's SQLite database; two of them at once lock that database. So the
CLI (:func:`prepare_api`) instead:

- with ``PREFECT_API_URL`` set (environment or the active profile), checks that it answers, and says in one
  line when it does not (:class:`PrefectUnavailable`);
- otherwise starts one local ``prefect server start`` for the ``PREFECT_HOME`` (on a free loopback port,
  detached, its log in ``PREFECT_HOME/segaudit-server.log``) and records it in
  ``PREFECT_HOME/segaudit-server.json``; later audits, also concurrent ones, reuse it, so only the first
  pays the start and one process owns the database. A file lock makes two first audits start one server.
  ``python -m segaudit.flows.server status|stop`` shows or stops it; it also serves Prefect's UI.
- ``SEGAUDIT_PREFECT_SERVER=ephemeral`` keeps Prefect's temporary server per process (the former behaviour).

Prefect itself is imported only after the environment is set (:func:`quiet_prefect_console`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the profile's API URL is not read (Prefect still uses it, unchecked)
    tomllib = None

from segaudit.console import EnvironmentProblem, apply_prefect_defaults

__all__ = ["MODE_VARIABLE", "PrefectUnavailable", "api_answers", "configured_api_url", "local_server",
           "prefect_home", "prepare_api", "quiet_prefect_console", "stop_local_server"]

MODE_VARIABLE = "SEGAUDIT_PREFECT_SERVER"
"""``reuse`` (default): one local server per ``PREFECT_HOME``, started once; ``ephemeral``: Prefect's own."""
STATE_FILE = "segaudit-server.json"
LOG_FILE = "segaudit-server.log"


class PrefectUnavailable(EnvironmentProblem):
    """The Prefect API does not answer, or a local server could not be started."""


def prefect_home(environ: MutableMapping[str, str]) -> Path:
    """``PREFECT_HOME`` as Prefect resolves it (default ``~/.prefect``)."""
    return Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def configured_api_url(environ: MutableMapping[str, str]) -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active profile of ``profiles.toml`` (what
    ``prefect config set PREFECT_API_URL=...`` writes), else None."""
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    path = Path(environ.get("PREFECT_PROFILES_PATH") or prefect_home(environ) / "profiles.toml")
    if tomllib is None:
        return None
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return (profiles.get("profiles", {}).get(active, {}) or {}).get("PREFECT_API_URL") or None


def api_answers(url: str, timeout: float = 5.0, healthy: bool = False) -> str | None:
    """None when an HTTP server answers at ``url``'s ``/health`` (any status: Prefect Cloud needs a key for
    it; with ``healthy``, only 200, as a local Prefect server answers), else why not."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}" if healthy else None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason).splitlines()[0] if str(reason) else type(reason).__name__


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_state(home: Path) -> dict | None:
    try:
        return json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _startup_timeout(environ: MutableMapping[str, str]) -> float:
    try:
        return float(environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    except ValueError:
        return 180.0


def local_server(environ: MutableMapping[str, str]) -> str:
    """The API URL of this ``PREFECT_HOME``'s local server, started (detached) when none answers; raise
    :class:`PrefectUnavailable` with the end of its log when it does not start within the start-up timeout."""
    home = prefect_home(environ)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "segaudit-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second audit waits here for the first one's server
        state = _read_state(home)
        if state and api_answers(state["url"], timeout=3, healthy=True) is None:
            return state["url"]
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        server_env = {k: v for k, v in environ.items() if k != "PREFECT_API_URL"}
        with open(home / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=server_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        try:
            _wait_started(proc, url, home, _startup_timeout(environ))
        except BaseException:  # not started in time, or Ctrl-C: no server is left behind unrecorded
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            raise
        (home / STATE_FILE).write_text(json.dumps({"url": url, "pid": proc.pid, "started": time.time()}))
        return url


def _wait_started(proc: subprocess.Popen, url: str, home: Path, timeout: float) -> None:
    """Wait until the server at ``url`` is healthy; raise :class:`PrefectUnavailable` with the last line of
    its log when it exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while api_answers(url, timeout=2, healthy=True) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"it exited with status {proc.returncode}" if proc.poll() is not None else f"not in {timeout:.0f} s"
            tail = [ln for ln in (home / LOG_FILE).read_text(errors="replace").splitlines() if ln.strip()][-1:]
            raise PrefectUnavailable(
                f"a local Prefect server did not start ({why}; log {home / LOG_FILE}: "
                f"{tail[0][:200] if tail else 'empty'}); set PREFECT_API_URL to a running server, raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set SEGAUDIT_PREFECT_SERVER=ephemeral")
        time.sleep(0.5)


def stop_local_server(environ: MutableMapping[str, str]) -> bool:
    """Stop the local server this ``PREFECT_HOME`` records; return whether one was running."""
    home = prefect_home(environ)
    state = _read_state(home)
    (home / STATE_FILE).unlink(missing_ok=True)
    if not state:
        return False
    try:
        os.killpg(state["pid"], signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    for _ in range(100):
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    return True


def prepare_api(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set Prefect's environment for this process before Prefect is imported: the quiet defaults
    (:func:`segaudit.console.apply_prefect_defaults`) and ``PREFECT_API_URL`` (checked, or the local
    server's); return the URL (None: Prefect's temporary server, ``SEGAUDIT_PREFECT_SERVER=ephemeral``)."""
    environ = os.environ if environ is None else environ
    apply_prefect_defaults(environ)
    if "prefect" in sys.modules and environ is os.environ:
        # Prefect has read its settings already (a program calling segaudit.cli.main, a test harness): its
        # API is the one in its settings, and starting another server here would not change that
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        if url and (why := api_answers(url)) is not None:
            raise PrefectUnavailable(f"the Prefect API at {url} does not answer ({why})")
        return url or None
    url = configured_api_url(environ)
    if url:
        why = api_answers(url)
        if why is not None:
            raise PrefectUnavailable(f"the Prefect API at {url} does not answer ({why}); start that server, or "
                                     "unset PREFECT_API_URL to let segaudit start a local one")
        return url
    if environ.get(MODE_VARIABLE, "reuse") == "ephemeral":
        return None
    environ["PREFECT_API_URL"] = url = local_server(environ)
    return url


class _OneLineFailures(logging.Filter):
    """On the console: no tracebacks, and no ERROR records of flow and task runs (the CLI prints the failure
    as one line; the run's logs in the API keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR
                    and record.name.startswith(("prefect.flow_runs", "prefect.task_runs")))


def _without_tracebacks(formatter: logging.Formatter | None) -> logging.Formatter:
    """``formatter`` printing records without their traceback (the record itself is left as it is: the API
    log handler still sends the traceback)."""
    formatter = formatter or logging.Formatter()
    formatter.formatException = lambda exc_info: ""  # type: ignore[method-assign]
    formatter.formatStack = lambda stack_info: ""  # type: ignore[method-assign]
    return formatter


def quiet_prefect_console(debug: bool = False) -> None:
    """Import Prefect (its settings are read now) and, unless ``debug``, keep tracebacks off its console
    handlers."""
    import prefect  # noqa: F401 - sets up Prefect's logging handlers

    if debug:
        return
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _OneLineFailures) for f in handler.filters) and not _is_api_handler(handler):
                handler.addFilter(_OneLineFailures())
                handler.setFormatter(_without_tracebacks(handler.formatter))


def _is_api_handler(handler: logging.Handler) -> bool:
    return type(handler).__name__ == "APILogHandler"


def main(argv: list[str] | None = None) -> int:
    """``python -m segaudit.flows.server status|stop``: this ``PREFECT_HOME``'s local server."""
    command = (argv if argv is not None else sys.argv[1:] or ["status"])[0]
    if command == "stop":
        print("stopped" if stop_local_server(os.environ) else "no local segaudit server was running")
        return 0
    state = _read_state(prefect_home(os.environ))
    if state and api_answers(state["url"], timeout=3) is None:
        print(f"running: {state['url']} (UI: {state['url'].removesuffix('/api')}, pid {state['pid']})")
        return 0
    print("not running")
    return 1 if command == "status" else 2


if __name__ == "__main__":
    sys.exit(main())
