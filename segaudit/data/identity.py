"""The identity of a dataset's image files, read cheaply, for a run's key.

A run's labels are identified by the reader's ``fingerprint()`` (the annotation bytes); the images it reads
are identified here: the image root, and for every image its path, size and modification time (one
``stat`` each), plus a content hash for files of at most :data:`CONTENT_HASH_BYTES`, until
:data:`CONTENT_HASH_BUDGET` bytes have been hashed (cheap to read: COCO val2017 images average 160 KB and
are not hashed, the demo's 5 KB images are). An image
that cannot be located counts with its reason, so an image that disappears or appears changes the identity.

Formula: ``sha256`` over the lines ``image_id \\0 path \\0 size \\0 mtime_ns [\\0 sha256(content)]`` (or
``image_id \\0 missing \\0 reason``), in the dataset's order, after the resolved image root.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segaudit.data.sample import ImageRef, SampleError

__all__ = ["CONTENT_HASH_BYTES", "CONTENT_HASH_BUDGET", "image_root_of", "images_fingerprint"]

#: Image files up to this size are also hashed by content (a corrupted file of unchanged size and time).
CONTENT_HASH_BYTES = 64 << 10

#: At most this many bytes are hashed by content per fingerprint (the first small files in dataset order).
CONTENT_HASH_BUDGET = 64 << 20


def image_root_of(dataset: Any) -> str:
    """The folder the dataset's images are read from, resolved (COCO: ``image_root``; VOC: ``JPEGImages``)."""
    root = getattr(dataset, "image_root", None)
    if root is None and getattr(dataset, "root", None) is not None:
        root = Path(dataset.root) / "JPEGImages"
    return str(Path(root).resolve()) if root is not None else ""


def _file_line(path: Path, budget: list[int]) -> bytes:
    """``path \0 size \0 mtime_ns [\0 sha256]``; ``budget[0]`` (bytes left to hash) is spent on the content."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"unreadable\0{exc.strerror or exc}".encode("utf-8", "surrogateescape")
    line = f"{os.fsdecode(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
    if st.st_size <= min(CONTENT_HASH_BYTES, budget[0]) and os.path.isfile(path):
        budget[0] -= st.st_size
        try:
            line += b"\0" + hashlib.sha256(Path(path).read_bytes()).digest()
        except OSError as exc:
            line += f"\0unreadable {exc.strerror}".encode()
    return line


def images_fingerprint(dataset: Any, refs: Sequence[ImageRef] | None = None) -> str:
    """sha256 hex digest of the image root and each image file's identity (see the module docstring).

    Parameters
    ----------
    dataset : SegmentationDataset
        A reader with ``image_path(ref)`` (both readers have it); without it only the root counts.
    refs : sequence of ImageRef, optional
        The images (default ``dataset.refs()``).

    Returns
    -------
    str
    """
    h = hashlib.sha256(b"image_root\0" + image_root_of(dataset).encode("utf-8", "surrogateescape"))
    locate = getattr(dataset, "image_path", None)
    if locate is None:
        return h.hexdigest()
    budget = [CONTENT_HASH_BUDGET]
    for ref in dataset.refs() if refs is None else refs:
        h.update(b"\n" + ref.image_id.encode("utf-8", "surrogateescape") + b"\0")
        try:
            h.update(_file_line(locate(ref), budget))
        except (SampleError, OSError, ValueError) as exc:
            h.update(b"missing\0" + str(exc).encode("utf-8", "surrogateescape"))
    return h.hexdigest()
