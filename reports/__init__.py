"""segaudit's HTML audit report and run comparison, rendered from runs' Parquet tables alone
(``reports/`` in the repository, installed as ``segaudit.reports``). May import numpy, pandas, pyarrow,
Pillow, Jinja2, :mod:`segaudit.runs.tables` and :mod:`segaudit.schema`; never torch or Prefect.

>>> from segaudit.reports import render_report, compare_runs
>>> render_report("runs/demo")                                    # doctest: +SKIP
>>> compare_runs("runs/a", "runs/b")                              # doctest: +SKIP
"""

from segaudit.reports.compare import compare_runs
from segaudit.reports.render import render_report

__all__ = ["render_report", "compare_runs"]
