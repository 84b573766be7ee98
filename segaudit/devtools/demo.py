"""The embedded demo: synthetic data with planted label errors, and how many of them an audit surfaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from segaudit.devtools.synth import generate_dataset

__all__ = ["DEMO_DATA", "ensure_demo_data", "planted_errors", "planted_error_recall"]

#: The demo's data: the validation scenes of the demo model's own data recipe (seed 0), with one planted
#: label error in 20% of them. The model never saw these images in training.
DEMO_DATA: dict[str, Any] = {"n_train": 0, "n_val": 100, "size": 128, "seed": 0, "plant_errors": 0.2}


def ensure_demo_data(root: str | Path, **overrides: Any) -> Path:
    """Generate the demo dataset in ``root`` unless the same one is already there; return ``root``."""
    root = Path(root)
    args = {**DEMO_DATA, **overrides}
    stamp = root / "dataset.json"
    if stamp.is_file():
        recorded = json.loads(stamp.read_text()).get("arguments", {})
        if all(recorded.get(k) == v for k, v in args.items()):
            return root
    generate_dataset(root, **args)
    return root


def planted_errors(root: str | Path) -> list[dict[str, Any]]:
    """The ground-truth manifest of the planted label errors (``planted_errors.json``)."""
    return json.loads((Path(root) / "planted_errors.json").read_text())


def planted_error_recall(images: pd.DataFrame, manifest: list[dict[str, Any]]) -> tuple[int, int]:
    """How many images with a planted error rank among the N most suspicious (by review rank), N = their number.

    ``images`` is a run's images table; the images are matched by ``file_name``.
    Returns ``(found, N)``.
    """
    planted = {m["file_name"] for m in manifest}
    worst = images.nsmallest(len(planted), "review_rank")
    return int(worst["file_name"].isin(planted).sum()), len(planted)
