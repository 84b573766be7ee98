"""Coercing table values for the report pages: missing, NaN and infinite values become ``None`` or ``""``.

Parquet hands back ``None``, ``NaN``, ``pd.NA`` or ``NaT`` for a missing value depending on the column's
type; the pages show each of them as missing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["as_finite", "as_int", "as_text"]


def as_finite(value: Any) -> float | None:
    """``float(value)`` if it is a finite number, else ``None``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def as_int(value: Any) -> int | None:
    """``int(value)`` (truncated) if it is a finite number, else ``None``."""
    v = as_finite(value)
    return None if v is None else int(v)


def as_text(value: Any) -> str:
    """``str(value)``; ``""`` for ``None``, NaN, ``pd.NA`` and ``NaT``."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)
