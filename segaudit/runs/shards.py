"""Shards: a run's images cut into consecutive slices, and the audit of one slice.

A shard is the unit of work, of resumption and of distribution: it is processed by one task (on one
worker), its rows are written as one part of each table (:func:`segaudit.runs.tables.write_shard`), and a rerun
skips the shards whose parts are complete. Inside a shard a :class:`torch.utils.data.DataLoader` reads and
decodes images in worker processes while the model, the CAMs and the scores run micro-batch by micro-batch
on the device, with the failure policy of :mod:`segaudit.auditors.failures` (out-of-memory halves the
micro-batches, a failing image becomes an error row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

from torch.utils.data import DataLoader, Dataset

from segaudit.auditors.batch import BatchRows, check_config, explain_batch, score_batch
from segaudit.auditors.failures import MicroBatches, is_out_of_memory
from segaudit.data.classmap import ClassMap
from segaudit.data.readers import SegmentationDataset, read_samples
from segaudit.data.sample import ErrorRow, ImageRef, Sample
from segaudit.models.registry import LoadedModel
from segaudit.settings import AuditConfig

__all__ = ["Shard", "plan_shards", "shard_refs", "is_out_of_memory", "process_shard"]


@dataclass(frozen=True)
class Shard:
    """One slice of a run: its name (``part-00003``, the file name of its parts) and its images."""

    name: str
    image_ids: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "image_ids": list(self.image_ids)}

    @classmethod
    def from_json(cls, data: dict) -> Shard:
        return cls(str(data["name"]), tuple(str(i) for i in data["image_ids"]))


def plan_shards(refs: Sequence[ImageRef], shard_size: int) -> list[Shard]:
    """Consecutive slices of at most ``shard_size`` images, in dataset order, named ``part-00000``, ...

    Raises
    ------
    ValueError
        ``shard_size < 1``, or two refs share an image id (a shard's rows are keyed by it).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ids = [ref.image_id for ref in refs]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids are not unique; shards need one id per image")
    width = max(5, len(str(max(0, len(ids) - 1) // shard_size)))
    return [Shard(f"part-{k // shard_size:0{width}d}", tuple(ids[k : k + shard_size]))
            for k in range(0, len(ids), shard_size)]


def shard_refs(refs_by_id: Mapping[str, ImageRef], shard: Shard) -> list[ImageRef]:
    """The refs of ``shard``'s images, in its order, from the dataset's refs keyed by image id.

    Raises
    ------
    KeyError
        An image of the shard is not in the dataset (it changed since the run was planned).
    """
    missing = [i for i in shard.image_ids if i not in refs_by_id]
    if missing:
        raise KeyError(f"shard {shard.name}: {len(missing)} image ids not in the dataset (first: {missing[0]!r})")
    return [refs_by_id[i] for i in shard.image_ids]


class _ShardImages(Dataset):
    """The images of a shard for a DataLoader: item ``i`` is ``read_samples(dataset, [refs[i]])``, so a bad
    image is an error row, never an exception in a loader worker."""

    def __init__(self, dataset: SegmentationDataset, refs: Sequence[ImageRef]) -> None:
        self.dataset, self.refs = dataset, list(refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[list[Sample], list[ErrorRow]]:
        return read_samples(self.dataset, [self.refs[index]])


def _collate(items: list[tuple[list[Sample], list[ErrorRow]]]) -> tuple[list[Sample], list[ErrorRow]]:
    samples = [s for batch, _ in items for s in batch]
    errors = [e for _, batch in items for e in batch]
    return samples, errors


def _micro_batches(model: LoadedModel, class_map: ClassMap, config: AuditConfig) -> MicroBatches:
    """The shard's micro-batches: explain then score, under the audit's failure policy
    (:mod:`segaudit.auditors.failures`)."""

    def audit(samples: list[Sample]) -> BatchRows:
        return score_batch(explain_batch(samples, model, class_map, config), model, config)

    return MicroBatches(audit, config.batch_size)


def process_shard(
    dataset: SegmentationDataset,
    refs: Sequence[ImageRef],
    model: LoadedModel,
    class_map: ClassMap,
    config: AuditConfig,
    *,
    loader_workers: int = 0,
    extra_errors: Sequence[ErrorRow] = (),
    on_batch: Callable[[int], None] | None = None,
) -> BatchRows:
    """Audit one shard: read its images with a DataLoader, explain and score them in micro-batches.

    Parameters
    ----------
    dataset : SegmentationDataset
    refs : sequence of ImageRef
        The shard's images (:func:`shard_refs`).
    model, class_map, config
        As for :func:`segaudit.auditors.batch.explain_batch`; ``config.batch_size`` images per loader batch and
        per micro-batch (halved on out-of-memory).
    loader_workers : int
        Processes reading and decoding images ahead of the model (0: read in this process).
    extra_errors : sequence of ErrorRow
        Rows put first in the shard's errors (the dataset's indexing problems, given to the first shard).
    on_batch : callable, optional
        Called with the number of images of each loader batch once it is scored (progress).

    Returns
    -------
    BatchRows
        The shard's rows of every table but ``findings``, in ``refs`` order; images are not ranked yet.

    Raises
    ------
    ValueError
        For settings no data can fix (:func:`segaudit.auditors.batch.check_config`), before reading anything.
    """
    check_config(model, config)
    rows = BatchRows(errors=[asdict(e) for e in extra_errors])
    if not refs:
        return rows
    loader = DataLoader(
        _ShardImages(dataset, refs), batch_size=config.batch_size, shuffle=False, num_workers=loader_workers,
        collate_fn=_collate, prefetch_factor=2 if loader_workers else None,
        # not fork: a child forked from a process running Prefect (its server client, log and event threads)
        # dies at start (measured: exit code 1 after a flow ran in the same process); forkserver children
        # start from a clean process
        multiprocessing_context="forkserver" if loader_workers else None,
    )
    micro = _micro_batches(model, class_map, config)
    done = 0
    for samples, read_errors in loader:
        batch = micro.run(samples)
        rows.errors.extend(asdict(e) for e in read_errors)
        rows.extend(batch)
        size = min(config.batch_size, len(refs) - done)  # refs in this loader batch, read or not
        done += size
        if on_batch is not None:
            on_batch(size)
    return rows
