"""Which images get the causal checks (faithfulness curves, context tests): the ``evidence`` setting.

At level ``"sampled"`` an image is checked when a hash of its id falls below the share,

    checked(i) = int(sha1(image_id)[:8], 16) / 16^8 < evidence_share

so that the same images are checked in every run, shard layout and batch size, and the sample is spread
over the dataset rather than its first images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["evidence_images"]


def evidence_images(image_ids: Sequence[str], level: str, share: float) -> list[bool]:
    """Whether each image gets the causal checks at ``level`` (``"none"``, ``"sampled"``, ``"full"``)."""
    if level == "none":
        return [False] * len(image_ids)
    if level == "full":
        return [True] * len(image_ids)
    if level != "sampled":
        raise ValueError(f"evidence must be none, sampled or full, got {level!r}")
    return [int(hashlib.sha1(str(i).encode()).hexdigest()[:8], 16) / 16**8 < share for i in image_ids]
