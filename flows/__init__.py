"""Prefect flows (``flows/`` in the repository, installed as ``segaudit.flows``): wiring of the tasks in
:mod:`segaudit.tasks`, nothing else. May import Prefect, :mod:`segaudit.tasks` and the core's settings and
run helpers.

``audit`` is imported on first use, so that :mod:`segaudit.flows.server` can set Prefect's environment
before anything imports Prefect (or torch).
"""

__all__ = ["audit"]


def __getattr__(name: str):
    if name == "audit":
        from segaudit.flows.audit import audit

        return audit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
