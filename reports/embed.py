"""Embedding data in the report's HTML and in its page scripts, safely.

Every string of a run that reaches the page (class names, file names, reasons, configuration) travels as
JSON and is put into the document by the page's script with ``textContent`` / ``setAttribute``, never as
markup. The JSON itself is made inert where it is embedded: ``<``, ``>`` and ``&`` become ``\\u003c``,
``\\u003e`` and ``\\u0026`` (so no ``</script>`` or ``<!--`` can end or confuse the script element), and
U+2028 / U+2029 are escaped (line terminators in older JavaScript). NaN and infinities become ``null``.

Examples
--------
>>> script_json({"name": "</script><script>alert(1)</script>"})
'{"name":"\\\\u003c/script\\\\u003e\\\\u003cscript\\\\u003ealert(1)\\\\u003c/script\\\\u003e"}'
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["script_json", "page_script", "plain"]

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_TABLE = str.maketrans(_ESCAPES)


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays to Python, NaN / inf to ``None``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def script_json(data: Any) -> str:
    """Compact JSON of ``data`` that is safe inside ``<script>`` (HTML) and in a JavaScript file."""
    text = json.dumps(plain(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_TABLE)


def page_script(page: int, data: Any) -> str:
    """The content of one lazily loaded page file: a call handing ``data`` to the report's script.

    Loaded with ``<script src>``, which browsers allow from ``file://`` (unlike ``fetch``).
    """
    return f"window.segauditPage({int(page)},{script_json(data)});\n"
