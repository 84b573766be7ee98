"""Are two runs' tables equal, table by table and row by row?

    python scripts/tables_equal.py RUN_A RUN_B [--tolerance 0]

Compares every table of the run layout except the run's metadata
(timings, versions, paths), after sorting each by all its sortable columns, so that the order shards were
written in does not matter. ``--tolerance`` allows a relative difference on float columns (0: exact).
Prints one line per table and ``tables_equal: true|false``; exits 1 when any table differs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from segaudit.runs.tables import load_run
from segaudit.schema import DATA_TABLES


def _sortable(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (str, int, float, bool, np.number))
                                                     or v is None).all()]


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    keys = _sortable(frame)
    out = frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame.reset_index(drop=True)
    return out.map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)


def compare_tables(run_a: str, run_b: str, tolerance: float = 0.0) -> dict[str, str]:
    """Per table, ``"equal"`` or the first difference found."""
    a, b = load_run(run_a), load_run(run_b)
    out = {}
    for name in DATA_TABLES:
        left, right = _normalised(getattr(a, name)), _normalised(getattr(b, name))
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=tolerance == 0, rtol=tolerance or 1e-5,
                                          check_dtype=True)
            out[name] = f"equal ({len(left)} rows)"
        except AssertionError as exc:
            out[name] = "DIFFERENT: " + " ".join(str(exc).split())[:300]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--tolerance", type=float, default=0.0)
    args = parser.parse_args(argv)
    result = compare_tables(args.run_a, args.run_b, args.tolerance)
    for name, verdict in result.items():
        print(f"{name}: {verdict}")
    same = all(v.startswith("equal") for v in result.values())
    print(f"tables_equal: {str(same).lower()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
