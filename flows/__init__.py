"""Prefect flows (``flows/`` in the repository, installed as ``segaudit.flows``): wiring of the tasks in
:mod:`segaudit.tasks`, nothing else. May import Prefect, :mod:`segaudit.tasks` and the core's settings and
run helpers.
"""

from segaudit.flows.audit import audit

__all__ = ["audit"]
