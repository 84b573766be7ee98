"""Findings: from a run's tables alone (pandas, no torch) to per-image suspicion and review ranks
(:mod:`~segaudit.findings.ranking`) and the ranked findings a user reads (:mod:`~segaudit.findings.rules`).
May import numpy, pandas and :mod:`segaudit.schema`.
"""
