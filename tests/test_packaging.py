"""The wheel built from the project (issue 13): ``segaudit`` is its only top-level import name, it holds
every package and module of the source tree (``flows/``, ``tasks/``, ``reports/`` as ``segaudit.flows``,
``segaudit.tasks``, ``segaudit.reports``), the report templates and the shipped model weights.

The wheel is built once per module with setuptools' PEP 517 backend (what ``pip wheel --no-deps
--no-build-isolation`` calls), in a subprocess, from a copy of the project in a temporary folder, so that
neither a stale ``build/`` folder nor the working tree's ``*.egg-info`` can hide or add a file (about 5 s
on 2 cores).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> the import path it installs as (pyproject's [tool.setuptools.package-dir]).
SOURCE_PACKAGES = {"segaudit": "segaudit", "flows": "segaudit/flows", "tasks": "segaudit/tasks",
                   "reports": "segaudit/reports"}
_ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")
_AT_ROOT = {".git", "build", "dist", "runs", "demo_data", ".whl", ".gl"}


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """What the copy of the project leaves out: caches and metadata anywhere, outputs at its root."""
    skipped = set(_ANYWHERE(folder, names))
    return skipped | (_AT_ROOT & set(names)) if Path(folder) == ROOT else skipped


def _can_build_wheels() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before, it needs the ``wheel`` package."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names in a wheel built from a copy of the project."""
    if not _can_build_wheels():
        pytest.skip("building a wheel needs setuptools >= 70.1 or the wheel package (pip install -U setuptools)")
    tmp = tmp_path_factory.mktemp("packaging")
    source, out = tmp / "project", tmp / "wheel"
    shutil.copytree(ROOT, source, ignore=_not_copied)
    out.mkdir()
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(out)], cwd=source, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"the wheel build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        record = {line.split(",")[0] for line in zf.read(record_name).decode().splitlines() if line}
    assert set(names) == record, "the wheel's files and its RECORD differ"
    return names


def _installed(names: list[str]) -> list[PurePosixPath]:
    """The files that land in site-packages, without the ``*.dist-info`` / ``*.data`` metadata."""
    paths = [PurePosixPath(n) for n in names]
    return [p for p in paths if not p.parts[0].endswith((".dist-info", ".data"))]


def test_the_only_top_level_import_name_is_segaudit(wheel_names: list[str]) -> None:
    top = {p.parts[0] if len(p.parts) > 1 else p.name.split(".")[0] for p in _installed(wheel_names)}
    assert top == {"segaudit"}


def test_flows_tasks_reports_are_packages_of_segaudit(wheel_names: list[str]) -> None:
    for package in ("flows", "tasks", "reports"):
        assert f"segaudit/{package}/__init__.py" in wheel_names, package
    assert not any(n.startswith(("flows/", "tasks/", "reports/")) for n in wheel_names)


def test_every_source_module_is_in_the_wheel(wheel_names: list[str]) -> None:
    """A sub-package missing from pyproject's package list (its modules silently left out) fails here."""
    expected = set()
    for folder, target in SOURCE_PACKAGES.items():
        for py in (ROOT / folder).rglob("*.py"):
            rel = py.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                expected.add(str(PurePosixPath(target, *rel.parts)))
    assert len(expected) > 50
    missing = sorted(expected - set(wheel_names))
    assert not missing, f"modules of the source tree not in the wheel: {missing}"


def test_report_templates_and_model_weights_are_in_the_wheel(wheel_names: list[str]) -> None:
    templates = sorted(p.name for p in (ROOT / "reports" / "templates").glob("*.j2"))
    weights = sorted(p.name for p in (ROOT / "segaudit" / "assets").glob("*.pt"))
    assert templates and weights
    for name in templates:
        assert f"segaudit/reports/templates/{name}" in wheel_names, name
    for name in weights:
        assert f"segaudit/assets/{name}" in wheel_names, name
