"""Work spread over a few short-lived threads, for C code that releases the GIL while it runs (numpy's sort,
PIL's image encoders): the audit's other core is otherwise idle there, as torch's own threads are not
running at that moment.

The threads live for one call only (a pool opened and joined inside it), so nothing is left running in a
process that later forks (a worker pool), and the number of threads follows ``torch.get_num_threads()``:
a worker that limits torch to one thread gets no extra threads here either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["thread_map", "worker_threads"]

T = TypeVar("T")
R = TypeVar("R")


def worker_threads() -> int:
    """Threads to use: torch's intra-op thread count (at least 1)."""
    return max(1, torch.get_num_threads())


def thread_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, run on up to ``workers`` (default :func:`worker_threads`) threads; in
    order; an exception of ``fn`` propagates. One item or one worker: no thread at all."""
    workers = min(len(items), workers or worker_threads())
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segaudit") as pool:
        return list(pool.map(fn, items))
