"""The fixed cost of a one-image audit, and of ``segaudit --help``: Prefect's temporary server vs a reused one.

A one-image ``segaudit run`` (demo model, Grad-CAM, no report) is timed end to end, each in a fresh process
and on one ``PREFECT_HOME`` (its database already made, so no run pays the first migration):

* ``ephemeral``: ``SEGAUDIT_PREFECT_SERVER=ephemeral``, Prefect's temporary server started by every process
  (the behaviour before ``segaudit.flows.server``);
* ``reuse_first``: the default, the first audit of a ``PREFECT_HOME``, which starts the local server;
* ``reuse_warm``: the default, the next audits, which find that server running.

It also times ``python -m segaudit.cli --help`` and ``import segaudit.cli`` in fresh processes. Ends with
``key: value`` lines (medians over ``--repeats``; seconds). Usage: ``python bench/prefect_start.py``
(about 5 minutes on 2 loaded CPU cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from segaudit.flows.server import stop_local_server

    from segaudit.devtools.synth import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix="segaudit-prefect-start-"))
    generate_dataset(tmp / "data", n_train=0, n_val=1, seed=1, plant_errors=0.0)
    dataset = str(tmp / "data" / "annotations" / "instances_val.json")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SEGAUDIT_"))}
    env = {**base, "PREFECT_HOME": str(tmp / "home")}
    cli = [sys.executable, "-m", "segaudit.cli"]

    def audit(k: int, **extra: str) -> float:
        return _timed([*cli, "run", dataset, "--methods", "gradcam", "--no-report", "--fresh",
                       "--out", str(tmp / f"runs{k}")], {**env, **extra})

    results: dict[str, float] = {}
    results["help_s"] = statistics.median(_timed([*cli, "--help"], env) for _ in range(args.repeats))
    results["import_cli_s"] = statistics.median(
        _timed([sys.executable, "-c", "import segaudit.cli"], env) for _ in range(args.repeats))
    audit(0, SEGAUDIT_PREFECT_SERVER="ephemeral")  # makes the database: no timed run pays the migration
    results["ephemeral_audit_s"] = statistics.median(
        audit(k, SEGAUDIT_PREFECT_SERVER="ephemeral") for k in range(args.repeats))
    try:
        results["reuse_first_audit_s"] = audit(100)
        results["reuse_warm_audit_s"] = statistics.median(audit(101 + k) for k in range(args.repeats))
    finally:
        stop_local_server(env)
    results["fixed_cost_cut_s"] = results["ephemeral_audit_s"] - results["reuse_warm_audit_s"]
    results["loadavg_1min"] = os.getloadavg()[0]
    for key, value in results.items():
        print(f"{key}: {value:.2f}")


if __name__ == "__main__":
    main()
