"""The ``audit/demo`` deployment's flow: the ``audit`` flow on the synthetic demo data, made first when absent.

It is named ``audit`` like :func:`segaudit.flows.audit.audit`, so its deployment is ``audit/demo`` beside
``audit/voc-val`` and ``audit/coco-val`` in the Prefect UI; it runs that flow's body in the same flow run
(``audit.fn``), after :func:`segaudit.tasks.demo.demo_data_task` made ``data`` in the flow's working folder
(the project root, see ``prefect.yaml``) if a fresh clone does not have it yet.
"""

from __future__ import annotations

from prefect import flow
from segaudit.flows.audit import audit
from segaudit.tasks.demo import demo_data_task


@flow(name="audit", log_prints=True)
def audit_demo(data: str = "demo_data", model: str = "demo", out: str = "runs", run_id: str = "demo-scheduled",
               report: bool = True) -> str:
    """Audit the demo dataset in ``data`` (generated when absent) with ``model``; return the run folder."""
    dataset = demo_data_task(data)
    return audit.fn(dataset=dataset, model=model, out=out, run_id=run_id, report=report)
