"""What the ``segaudit`` command shows on the console: Prefect's environment defaults, failures as one line.

Torch-free and Prefect-free on purpose: the CLI imports it before anything heavy, so that

- :func:`apply_prefect_defaults` sets Prefect's settings *before* Prefect is imported (Prefect reads its
  environment once, when ``prefect`` is first imported; a variable set later has no effect): warnings only,
  no anonymous telemetry, a server start-up timeout that fits a loaded machine. Each default is a
  ``setdefault``: a variable the user set wins, so ``PREFECT_LOGGING_LEVEL=INFO`` or
  ``PREFECT_SERVER_ANALYTICS_ENABLED=true`` turn them back on.
- :func:`describe_failure` turns any exception into one line that names the cause, and :func:`exit_code`
  decides the exit status; the CLI prints the traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import TextIO

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "PREFECT_DEFAULTS",
    "EnvironmentProblem",
    "apply_prefect_defaults",
    "check_writable_folder",
    "describe_failure",
    "exit_code",
    "name_sample",
    "report_failure",
]

EXIT_FAILURE = 1
"""An unexpected error (a bug, or a cause segaudit does not know): one line, ``--debug`` for the traceback."""
EXIT_USER_ERROR = 2
"""Something the user can fix: a wrong option, an unreachable Prefect API, an output folder that cannot be
written, a full disk."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C), as a shell reports SIGINT."""

PREFECT_DEFAULTS: dict[str, str] = {
    # the CLI's own progress line is the output; Prefect's INFO lines (task started/finished) would break it
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    # no anonymous usage data from the server (its heartbeat also wrote to the database and logged
    # "Failed to send telemetry" offline) nor from the client SDK (the DO_NOT_TRACK convention Prefect reads)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Prefect's default (20 s) is shorter than a start on a loaded 2-core machine (measured 18 s idle)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
"""Environment defaults for Prefect (names from ``prefect/settings/models/``: ``logging.level``,
``server.logging_level``, ``server.analytics_enabled``, ``server.ephemeral.startup_timeout_seconds``)."""


class EnvironmentProblem(Exception):
    """Something outside segaudit's inputs stops the audit (the Prefect API does not answer, the output folder
    cannot be written); the message says what and what to do, in one line."""


def apply_prefect_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`PREFECT_DEFAULTS` in ``environ`` (default ``os.environ``) where unset; return those set.

    Call it before ``prefect`` is imported; afterwards Prefect has read its settings and ignores them."""
    environ = os.environ if environ is None else environ
    applied = {}
    for name, value in PREFECT_DEFAULTS.items():
        if name not in environ:
            environ[name] = applied[name] = value
    return applied


def name_sample(names: Iterable[str], first: int = 5) -> str:
    """``"133 (a, b, c, d, e, ...)"``: how many names and the first few, for a warning that fits on a line."""
    names = list(names)
    shown = ", ".join(str(n) for n in names[:first])
    return f"{len(names)} ({shown}{', ...' if len(names) > first else ''})"


_OS_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
}


def describe_failure(exc: BaseException) -> str:
    """One line naming the cause of ``exc``: for an ``OSError`` the file and what went wrong with it, else the
    exception's type and the first line of its message."""
    if isinstance(exc, OSError) and exc.errno is not None:
        cause = _OS_CAUSES.get(exc.errno, exc.strerror or os.strerror(exc.errno))
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{cause}{where}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if isinstance(exc, EnvironmentProblem):
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def exit_code(exc: BaseException) -> int:
    """:data:`EXIT_USER_ERROR` for what the user can fix (an :class:`EnvironmentProblem`, an ``OSError``: a
    path, a permission, a full disk, a refused connection), :data:`EXIT_INTERRUPTED` for Ctrl-C, else
    :data:`EXIT_FAILURE`."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, EnvironmentProblem | OSError):
        return EXIT_USER_ERROR
    return EXIT_FAILURE


def report_failure(exc: BaseException, debug: bool, stream: TextIO | None = None) -> int:
    """Print ``exc`` as ``segaudit: error: <cause>`` (and its traceback first with ``debug``); return the exit
    status. Interruptions print ``segaudit: interrupted``."""
    stream = sys.stderr if stream is None else stream
    if debug:
        traceback.print_exception(exc, file=stream)
    if isinstance(exc, KeyboardInterrupt):
        stream.write("\nsegaudit: interrupted\n")
    else:
        hint = "" if debug or exit_code(exc) == EXIT_USER_ERROR else " (run again with --debug for the traceback)"
        stream.write(f"segaudit: error: {describe_failure(exc)}{hint}\n")
    stream.flush()
    return exit_code(exc)


def check_writable_folder(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`EnvironmentProblem` unless ``folder`` (a local path) takes a new file, so that a read-only
    or full output folder is said before the model loads rather than by a failed shard. An absent folder is
    not made: its nearest existing parent is tried (the folder is made there later)."""
    path = Path(folder).absolute()
    probe_in = path
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(probe_in))
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".segaudit-probe-") as probe:
            probe.write(b"0")
            probe.flush()
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write to the output folder {path}: {describe_failure(exc)}") from exc
