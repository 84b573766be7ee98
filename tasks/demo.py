"""The demo deployment's data: the synthetic demo dataset, generated where the flow runs when absent."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from segaudit.devtools.demo import ensure_demo_data

__all__ = ["demo_data_task"]


@task(name="demo-data", cache_policy=NO_CACHE)
def demo_data_task(root: str) -> str:
    """Generate the demo dataset in ``root`` unless it is there (:func:`segaudit.devtools.demo.ensure_demo_data`);
    return its COCO annotation file."""
    return str(ensure_demo_data(root) / "annotations" / "instances_val.json")
