"""Dataset strings made safe to store and show: every id, file name and reason the readers emit.

A dataset can hold names that are not text: file names with bytes that are not UTF-8 (Linux keeps them as
lone surrogates, Python's ``surrogateescape``), JSON ``"\\ud800"`` escapes, control characters such as a
newline or NUL. Parquet (UTF-8 only) refuses the surrogates, so one such name would fail the write of a
whole run at its very end, and a newline would break an errors-table line in two. :func:`display_text`
turns them into visible escapes; the readers keep the raw name internally to open the file, so an image
whose name is not UTF-8 is still read.
"""

from __future__ import annotations

__all__ = ["display_text"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    o = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte kept by surrogateescape
        return f"\\x{o - 0xDC00:02x}"
    if 0xD800 <= o <= 0xDFFF:  # any other lone surrogate
        return f"\\u{o:04x}"
    return f"\\x{o:02x}"  # C0 controls and DEL


def display_text(value: object) -> str:
    """A printable, UTF-8-encodable, one-line form of a dataset string.

    Valid text without control characters comes back unchanged (HTML included: escaping it is the
    report's job). Lone surrogates become ``\\xNN`` (the original byte) or ``\\uNNNN``; C0 control
    characters and DEL become ``\\n``, ``\\t``, ``\\r`` or ``\\xNN``.

    Parameters
    ----------
    value : object
        Usually a str; anything else is passed through ``str`` first.

    Returns
    -------
    str

    Examples
    --------
    >>> display_text("caf\\udce9.jpg")
    'caf\\\\xe9.jpg'
    >>> display_text("a\\nb")
    'a\\\\nb'
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return "".join(
        _escape(ch) if (ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF) else ch for ch in text
    )
