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
