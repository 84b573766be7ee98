"""Shared fixtures: the real-format samples beside the project, a Prefect test server, the demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_FIXTURES = REPO.parent / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real-format samples not present at {REAL_FIXTURES}")
    return REAL_FIXTURES


@pytest.fixture(autouse=True)
def _evidence_checks_only_where_tested(request, monkeypatch):
    """The evidence checks (the run's pre-pass, the faithfulness curves and context tests of the sampled
    images) cost seconds per audit: tests of other things audit as with ``evidence="none"``. Tests of the
    checks, and one end-to-end flow test, carry the ``evidence`` marker and run them as configured."""
    if request.node.get_closest_marker("evidence"):
        return
    from segaudit.auditors import calibration, context_rows, faithfulness_rows

    def none_picked(image_ids, level, share):
        return [False] * len(image_ids)

    monkeypatch.setattr(calibration, "sample_refs", lambda refs, level, share, size=0: [])
    monkeypatch.setattr(context_rows, "evidence_images", none_picked)
    monkeypatch.setattr(faithfulness_rows, "evidence_images", none_picked)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite in a temp dir) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from segaudit.devtools.demo import ensure_demo_data

    return ensure_demo_data(tmp_path_factory.mktemp("demo") / "data")
