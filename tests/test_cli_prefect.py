"""The `segaudit` command as a user meets it on a fresh machine, through a subprocess: quiet (no traceback,
no ERROR line), two audits at once on one PREFECT_HOME, and each failure the user can cause as one line
with status 2. Each test has its own PREFECT_HOME and stops the local Prefect server it started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from segaudit.console import EXIT_USER_ERROR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    from segaudit.devtools.synth import generate_dataset

    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, n_train=0, n_val=4, seed=3, plant_errors=0.5)
    return str(root / "annotations" / "instances_val.json")


@pytest.fixture
def home(tmp_path):
    """A fresh PREFECT_HOME; the local server the CLI starts there is stopped afterwards."""
    from segaudit.flows.server import stop_local_server

    path = tmp_path / "prefect-home"
    yield path
    stop_local_server({"PREFECT_HOME": str(path)})


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The user's environment without Prefect settings of the test runner, on a fresh PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SEGAUDIT_")) and k != "DO_NOT_TRACK"}
    return {**env, "PREFECT_HOME": str(home), **extra}


def _segaudit(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segaudit.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == EXIT_USER_ERROR, output
    assert "\n" not in output and "Traceback" not in output, output
    assert output.startswith("segaudit: error: "), output
    return output


def _quiet(done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not [line for line in output.splitlines() if "ERROR" in line or "| INFO" in line], output[-3000:]
    assert "database is locked" not in output


def test_importing_the_cli_imports_neither_torch_nor_prefect() -> None:
    code = "import sys, segaudit.cli; print(sorted({'torch', 'prefect', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_imports_no_torch() -> None:
    code = ("import sys\nfrom segaudit.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules, file=sys.stderr)")
    wide = {**os.environ, "COLUMNS": "400"}  # argparse wraps help at hyphens otherwise
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=wide)
    assert "--model" in done.stdout and "demo-detector" in done.stdout and "maskrcnn" in done.stdout
    assert done.stderr.strip() == "False"


def test_demo_prints_no_traceback_and_no_error_line(home, tmp_path) -> None:
    done = _segaudit(["demo", "--data", str(tmp_path / "demo_data"), "--out", str(tmp_path / "runs")], _env(home))
    _quiet(done)
    assert "planted label error" in done.stdout and (tmp_path / "runs" / "demo" / "report.html").is_file()


def test_two_audits_at_once_on_one_prefect_home(home, tmp_path, dataset) -> None:
    env = _env(home)
    # the evidence checks are off: this test is about two processes sharing one Prefect home (the checks are
    # tested in their own modules and in test_flow)
    runs = [subprocess.Popen([sys.executable, "-m", "segaudit.cli", "run", dataset, "--no-report", "--methods",
                              "gradcam", "--evidence", "none", "--out", str(tmp_path / f"runs{k}")], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for proc in runs:
        out, err = proc.communicate(timeout=600)
        _quiet(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert len(list(tmp_path.glob("runs*/*/run.parquet"))) == 2
    # both used the one server the first of them started
    assert (home / "segaudit-server.json").is_file()


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: a read-only folder, or for root (whom permissions do not stop)
    a sysfs path, which refuses new files."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        Path("/sys/segaudit-probe").mkdir()
    except OSError:
        return Path("/sys/segaudit-runs")
    Path("/sys/segaudit-probe").rmdir()
    pytest.skip("running as root, and /sys takes new folders: no unwritable folder to test with")


def test_read_only_out_is_one_line(home, tmp_path, dataset) -> None:
    out = _read_only_folder(tmp_path)
    line = _one_line_error(_segaudit(["run", dataset, "--out", str(out / "runs")], _env(home)))
    assert "cannot write to the output folder" in line
    assert not (home / "segaudit-server.json").exists()  # said before anything started


def test_api_url_at_a_closed_port_is_one_line(home, dataset) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(home, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    line = _one_line_error(_segaudit(["run", dataset, "--out", str(home.parent / "runs")], env))
    assert f"127.0.0.1:{port}" in line and "does not answer" in line


def test_debug_adds_the_traceback(home, dataset) -> None:
    env = _env(home, PREFECT_API_URL="http://127.0.0.1:9/api")
    done = _segaudit(["run", dataset, "--debug", "--out", str(home.parent / "runs")], env)
    assert done.returncode == EXIT_USER_ERROR and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("segaudit: error: the Prefect API")
