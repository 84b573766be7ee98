"""Wall time of `segaudit demo` from a clean folder (data generation, Prefect start, audit, report).

    python bench/demo_time.py

Ends with `demo_seconds: X` and `planted_errors_found: K/N`. Issue: the demo must produce its report in
< 5 min on 2 CPU cores, install excluded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "segaudit.cli", "demo", "--data", f"{tmp}/data", "--out", f"{tmp}/runs"],
            capture_output=True, text=True, check=True,
        )
        seconds = time.perf_counter() - start
    found = re.search(r"(\d+) of the (\d+) images with a planted label error", done.stdout)
    print(done.stdout.strip())
    print(f"demo_seconds: {seconds:.1f}")
    print(f"planted_errors_found: {found.group(1)}/{found.group(2)}" if found else "planted_errors_found: n/a")


if __name__ == "__main__":
    main()
