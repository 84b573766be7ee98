"""segaudit's HTML audit report, rendered from a run's Parquet tables alone.

>>> from reports import render_report
>>> render_report("runs/demo")                                    # doctest: +SKIP
"""

from reports.render import render_report

__all__ = ["render_report"]
