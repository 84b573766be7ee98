"""Prefect flows: wiring of the tasks in :mod:`tasks`, nothing else."""

from flows.audit import audit

__all__ = ["audit"]
