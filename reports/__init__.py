"""segaudit's HTML audit report and run comparison, rendered from runs' Parquet tables alone.

>>> from reports import render_report, compare_runs
>>> render_report("runs/demo")                                    # doctest: +SKIP
>>> compare_runs("runs/a", "runs/b")                              # doctest: +SKIP
"""

from reports.compare import compare_runs
from reports.render import render_report

__all__ = ["render_report", "compare_runs"]
