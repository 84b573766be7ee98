"""Determinism: the same inputs and configuration give identical Parquet tables on CPU, and a run records
the seeds and library versions it ran with.

Two audits of the same small dataset (with bad images, so the errors table is not empty) by the Prefect
flow, into two output folders, with torch's default CPU threading: every table loads equal, value for
value, and every Parquet file but ``run.parquet`` (which holds the start time and duration) is byte for
byte the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segaudit.devtools.synth import generate_dataset
from segaudit.runs.tables import load_run

pytestmark = pytest.mark.slow

#: Run-table columns that legitimately differ between two runs of the same audit.
_WHEN = ("created_at", "duration_s")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("determinism")
    generate_dataset(root, n_train=0, n_val=5, size=48, seed=11, plant_errors=0.4)
    ann = root / "annotations" / "instances_val.json"
    data = json.loads(ann.read_text())
    data["images"].append({"id": 99, "file_name": "missing.jpg", "height": 48, "width": 48})
    ann.write_text(json.dumps(data))
    (root / "JPEGImages" / "val_000004.jpg").write_bytes(b"")  # and one that cannot be decoded
    return ann


def _parquet_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*.parquet"))}


def test_same_inputs_give_identical_tables(prefect_server, dataset: Path, tmp_path: Path) -> None:
    from segaudit.flows.audit import audit

    runs = [
        Path(audit(dataset=str(dataset), model="demo", out=str(tmp_path / name), batch_size=3, report=False))
        for name in ("a", "b")
    ]
    a, b = (load_run(r) for r in runs)
    assert len(a.images) == 4 and len(a.errors) == 2  # the audit really ran, bad images included
    for name in ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "findings"):
        left, right = getattr(a, name), getattr(b, name)
        if name == "maps":  # arrays: compare them exactly, then the other columns
            assert all(np.array_equal(x, y) for x, y in zip(left.pop("values"), right.pop("values"), strict=True))
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
    assert {k: v for k, v in a.run.items() if k not in _WHEN} == {k: v for k, v in b.run.items() if k not in _WHEN}

    files_a, files_b = _parquet_files(runs[0]), _parquet_files(runs[1])
    assert files_a.keys() == files_b.keys() and len(files_a) > 1
    different = [name for name in files_a if name != "run.parquet" and files_a[name] != files_b[name]]
    assert different == []

    # the metadata says what the numbers depend on: seeds and library versions
    config, versions = a.config, a.versions
    assert config["seeds"] == {"grabcut": 0}
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    for package in ("python", "segaudit", "torch", "torchvision", "numpy", "pandas", "pyarrow", "pillow"):
        assert versions.get(package) not in (None, "", "not installed"), package
