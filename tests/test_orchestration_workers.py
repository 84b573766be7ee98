"""Many workers: a real local `prefect server`, the shipped prefect.yaml deployed with `prefect deploy`, two
`process` workers on loopback; the audit fans its shards out to them with run_deployment, and the merged
tables equal a single-process run of the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_orchestration import assert_runs_equal

from segaudit.runs.tables import load_run, shard_markers

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path):
    """`prefect server start` on a free loopback port, its database in tmp_path; its environment."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_LOGGING_LEVEL": "INFO", "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not _wait_healthy(api, proc, 150):
            pytest.skip(f"a local prefect server did not start in 150 s: {(tmp_path / 'server.log').read_text()[-500:]}")
        yield env
    finally:
        _stop(proc)
        log.close()


def _run(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_two_workers_share_the_shards_and_the_merge_equals_one_process(server, tmp_path) -> None:
    from segaudit.devtools.synth import generate_dataset

    env = server
    generate_dataset(tmp_path / "data", n_train=0, n_val=8, seed=7, plant_errors=0.4)
    dataset = str(tmp_path / "data" / "annotations" / "instances_val.json")
    # the shipped prefect.yaml, deployed as a user would (README, "Schedule an audit")
    for pool in ("gpu", "local"):
        _run([*PREFECT, "work-pool", "create", pool, "--type", "process"], env)
    # the README's command, as from a shell in the project root
    deployed = _run([*PREFECT, "--no-prompt", "deploy", "--all"], {**env, "PWD": str(REPO)})
    for name in ("audit/demo", "audit/voc-val", "audit/coco-val", "audit-shards/shard", "pull-data/data"):
        assert name in deployed, deployed
    workers = []
    try:
        for name in ("w1", "w2"):
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            workers.append((subprocess.Popen(
                [*PREFECT, "worker", "start", "--pool", "gpu", "--name", name, "--limit", "1"], cwd=REPO,
                env={**env, "SEGAUDIT_WORKER": name}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
                log))
        # evidence checks off: the shards' fan-out is tested here, the checks in their own modules
        settings = ("model='demo', methods=['gradcam'], shard_size=2, batch_size=2, report=False, evidence='none', "
                    f"dataset={dataset!r}, out={str(tmp_path / 'runs')!r}")
        script = (f"from segaudit.flows.audit import audit\n"
                  f"audit(run_id='fanned', deployment='audit-shards/shard', child_runs=2, poll_seconds=1, {settings})\n"
                  f"audit(run_id='single', {settings})\n")
        _run([sys.executable, "-c", script], env, timeout=420)
    finally:
        for proc, log in workers:
            _stop(proc)
            log.close()
    fanned, single = tmp_path / "runs" / "fanned", tmp_path / "runs" / "single"
    markers = shard_markers(fanned)
    assert len(markers) == 4
    by_worker = {m["worker"] for m in markers.values()}
    assert by_worker == {"w1", "w2"}, (by_worker, (tmp_path / "w1.log").read_text()[-2000:])
    assert_runs_equal(load_run(single), load_run(fanned))



def _schedule_commands() -> list[str]:
    """The first bash block of the README's "Schedule an audit" section, one command a line (comments off)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Schedule an audit"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("```")]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _fresh_clone(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new files, not ignored ones: no
    demo_data/, no runs/), at ``dest``."""
    import shutil

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_readme_schedule_commands_end_with_a_completed_demo_run(server, tmp_path) -> None:
    """The README's commands, in order, on a fresh clone: the server lines are the fixture's server (the
    same settings on a free port), the `&` lines are the two workers, the last line is COMPLETED."""
    env = server
    clone = _fresh_clone(tmp_path / "clone")
    assert not (clone / "demo_data").exists()
    commands = _schedule_commands()
    assert commands[0].startswith("prefect server start") and commands[1].startswith("prefect config set PREFECT_API_URL")
    assert commands[-1] == "prefect deployment run audit/demo --watch", commands
    workers = []
    try:
        for command in commands[2:]:
            args = [*PREFECT, *command.rstrip("&").split()[1:]]
            if command.endswith("&"):
                log = open(tmp_path / f"worker{len(workers)}.log", "wb")  # noqa: SIM115 - closed with the process
                workers.append((subprocess.Popen(args, cwd=clone, env={**env, "PWD": str(clone)}, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True), log))
                continue
            done = subprocess.run(args, cwd=clone, env={**env, "PWD": str(clone)}, capture_output=True, text=True,
                                  timeout=900)
            assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        watched = done.stdout
    finally:
        for proc, log in workers:
            _stop(proc)
            log.close()
    assert len(workers) == 2
    assert "finished successfully in 'Completed'" in watched, watched[-2000:]
    assert (clone / "demo_data" / "annotations" / "instances_val.json").is_file()
    run = load_run(clone / "runs" / "demo-scheduled", tables=("images",))
    assert len(run.images) == 100
    worker_logs = "".join((tmp_path / f"worker{k}.log").read_text(errors="replace") for k in range(2))
    assert "Traceback" not in worker_logs, worker_logs[-3000:]
