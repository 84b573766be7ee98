"""The failure policy of an audit, in one place: what is retried, what is halved, what becomes an error row.

A bad image costs one row of the errors table, never the audit. Each kind of failure has one owner:

1. **Transient I/O** (``OSError``, ``TimeoutError``, ``ConnectionError`` of storage, network file systems,
   object stores) -- *retried* by Prefect, a whole shard at a time, in :mod:`segaudit.tasks.audit`
   (``retry_condition_fn``; a shard's parts are rewritten whole, so a retry is safe). Nothing below retries
   I/O; anything else a shard raises (a bug, a configuration error) fails the same way again and is final.
2. **Device out-of-memory** (:func:`is_out_of_memory`) -- *halved* by :class:`MicroBatches` only: the
   micro-batch limit of the shard is halved (and stays halved for the rest of the shard) and the batch
   retried in pieces; an image that runs out of memory alone becomes an error row (stage ``infer``). The
   CAM engine (:func:`segaudit.cam.engine.compute_cams_with`) and :func:`explain_isolating_failures` let
   out-of-memory errors through to it.
3. **An image the model cannot take** (any other exception of explaining a batch) -- *isolated* by
   :func:`explain_isolating_failures`: the batch is retried image by image and each image that fails alone
   becomes an error row (stage ``infer``); the others are explained together.
4. **Scoring failures** (any other exception of scoring a batch) -- *split* by :class:`MicroBatches`: the
   micro-batch is retried in halves until the image at fault is alone, then it becomes an error row
   (stage ``score``).
5. **Unreadable input** (files, annotations) -- error rows of the readers (stage ``read``,
   :func:`segaudit.data.readers.read_samples`), before any of the above.

Configuration mistakes (unknown layer or method, :func:`segaudit.auditors.batch.check_config`) are not
data problems: they raise before anything is read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segaudit.auditors.base import BatchRows, Explained
from segaudit.cam.cam_settings import SettingsError
from segaudit.data.sample import ErrorRow, Sample

__all__ = ["MicroBatches", "explain_isolating_failures", "is_out_of_memory", "reason"]


def reason(exc: BaseException) -> str:
    """An error row's reason: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA's, or a backend's "out of memory")."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def explain_isolating_failures(explain: Callable[[list[Sample]], Explained], samples: list[Sample]) -> Explained:
    """``explain(samples)``; if it fails (but for out-of-memory, which propagates), each image is retried
    alone, those that still fail become error rows (stage ``infer``) and the others are explained together.

    Raises
    ------
    Exception
        An out-of-memory error (:class:`MicroBatches` owns it), a :class:`~segaudit.cam.SettingsError` (a
        setting the engine cannot honour, e.g. an unknown layer: no image would fare better alone), or the
        batch's first error when it failed but no image fails alone.
    """
    if not samples:
        return Explained(None, None)
    try:
        return explain(samples)
    except Exception as exc:  # noqa: BLE001 - retried image by image below
        if is_out_of_memory(exc) or isinstance(exc, SettingsError):
            raise
        first_error: BaseException = exc
    good, errors = [], []
    for sample in samples:
        try:
            explain([sample])
            good.append(sample)
        except Exception as exc:  # noqa: BLE001 - any failure of one image becomes its error row
            if is_out_of_memory(exc):
                raise
            errors.append(ErrorRow(sample.image_id, sample.file_name, "infer", reason(exc)))
    if not good:
        if not errors:
            raise first_error
        return Explained(None, None, errors)
    explained = explain(good)
    explained.errors = errors
    return explained


class MicroBatches:
    """Audit samples at most ``limit`` at a time with ``audit`` (explain, then score). After an
    out-of-memory error the limit is halved (for the rest of the run of this object) and the micro-batch
    retried in pieces of the new limit; a micro-batch failing otherwise is retried in halves, to isolate the
    image at fault. A single image that still fails becomes an error row (stage ``infer`` for out-of-memory,
    ``score`` otherwise): one image never fails its shard.

    Parameters
    ----------
    audit : callable
        ``samples -> BatchRows``.
    limit : int
        The largest micro-batch (the audit's ``batch_size``).
    """

    def __init__(self, audit: Callable[[list[Sample]], BatchRows], limit: int) -> None:
        self.audit, self.limit = audit, limit

    def run(self, samples: list[Sample]) -> BatchRows:
        rows = BatchRows()
        start = 0
        while start < len(samples):
            chunk = samples[start : start + self.limit]
            rows.extend(self._run_or_split(chunk))
            start += len(chunk)
        return rows

    def _run_or_split(self, samples: list[Sample]) -> BatchRows:
        try:
            return self.audit(samples)
        except Exception as exc:  # noqa: BLE001 - split, and at one image make it an error row
            oom = is_out_of_memory(exc)
            if oom and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(samples) == 1:
                sample = samples[0]
                return BatchRows.of_errors([ErrorRow(sample.image_id, sample.file_name, "infer" if oom else "score",
                                                     reason(exc))])
            if oom:
                self.limit = max(1, min(self.limit, len(samples)) // 2)
            size = self.limit if oom else (len(samples) + 1) // 2
        rows = BatchRows()
        for start in range(0, len(samples), size):
            rows.extend(self._run_or_split(samples[start : start + size]))
        return rows
