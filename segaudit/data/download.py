"""Getting the data: the public datasets from their official locations, and dataset roots on object stores.

:func:`ensure_dataset` downloads a dataset's archives into a data root when it is absent (resuming a
partial download with an HTTP range request), verifies each archive's MD5 checksum and unpacks it;
offline, the error names the URL and where to put the file by hand. :func:`materialize` copies a dataset
root given as an fsspec URL (``s3://``, ``gs://``, ...) to a local cache, file by file, skipping files
already there, so the readers can open it like a local one.

Layout under the data root (what the shipped ``prefect.yaml`` expects)::

    coco/annotations/instances_{val,train}2017.json   coco/val2017/   coco/train2017/
    VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,ImageSets}
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Archive", "DATASETS", "DATA_CACHE", "DownloadError", "fetch", "ensure_dataset", "dataset_location",
           "materialize"]

#: Where datasets given as fsspec URLs are copied to (relative to the worker's folder; :func:`materialize`).
DATA_CACHE = "data/cache"


@dataclass(frozen=True)
class Archive:
    """One downloadable archive of a dataset.

    Parameters
    ----------
    url : str
        Where it is published.
    md5 : str
        Its published MD5 checksum (hex).
    extract_to : str
        Folder under the data root it unpacks into.
    marker : str
        A path under the data root that exists once it is unpacked (its presence skips the download).
    size : int, optional
        Its size in bytes, when known (progress before the server says).
    """

    url: str
    md5: str
    extract_to: str
    marker: str
    size: int | None = None

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_COCO_ANNOTATIONS = Archive("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                            "f4bbac642086de4f52a3fdda2de5fa2c", "coco", "coco/annotations/instances_val2017.json",
                            252_907_541)

#: The datasets :func:`ensure_dataset` knows, with their official URLs and MD5 checksums (those published
#: with the datasets and used by torchvision's and other loaders).
DATASETS: dict[str, tuple[Archive, ...]] = {
    "coco2017-val": (
        Archive("http://images.cocodataset.org/zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", "coco",
                "coco/val2017", 815_585_330),
        _COCO_ANNOTATIONS,
    ),
    "coco2017-train": (
        Archive("http://images.cocodataset.org/zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", "coco",
                "coco/train2017"),
        _COCO_ANNOTATIONS,
    ),
    "voc2012": (
        Archive("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                "6cd6e144f989b92b3379bac3b3de84fd", ".", "VOCdevkit/VOC2012/SegmentationClass"),
    ),
}

#: Where each dataset is under the data root: (the ``dataset`` to audit, its ``image_root``).
_LOCATIONS = {
    "coco2017-val": ("coco/annotations/instances_val2017.json", "coco/val2017"),
    "coco2017-train": ("coco/annotations/instances_train2017.json", "coco/train2017"),
    "voc2012": ("VOCdevkit/VOC2012", None),
}


class DownloadError(RuntimeError):
    """A download that cannot be done or verified; the message says what to do."""


Progress = Callable[[int, "int | None"], None]


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(url: str, dest: Path) -> str:
    return f"download {url} yourself and put it at {dest} (it is verified and unpacked from there)"


def fetch(url: str, dest: str | Path, md5: str, *, size: int | None = None, progress: Progress | None = None,
          timeout: float = 60.0, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest`` and verify its MD5, resuming an interrupted download.

    Bytes arrive in ``<dest>.part``; a rerun asks the server for the rest (``Range: bytes=<have>-``) and
    starts over if the server ignores the range. The file is renamed to ``dest`` only once its checksum
    matches. A ``dest`` already there with the right checksum is not downloaded again.

    Parameters
    ----------
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.

    Raises
    ------
    DownloadError
        The server cannot be reached (offline: the message names the URL and where to put the file by
        hand), answers with an error, or the checksum does not match (the bad file is removed).
    """
    dest = Path(dest)
    if dest.is_file():
        if _md5(dest) == md5:
            return dest
        raise DownloadError(f"{dest} exists but its MD5 is not {md5}: remove it, or {_by_hand(url, dest)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs of our table
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the range starts at the end, the part is whole
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; {_by_hand(url, dest)}") from None
        response = None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason}); offline? {_by_hand(url, dest)}") from None
    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server sends the whole file again
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else size
            with open(part, "ab" if have else "wb") as handle:
                done = have
                while block := response.read(chunk):
                    handle.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
    digest = _md5(part)
    if digest != md5:
        part.unlink()
        raise DownloadError(f"{url}: MD5 {digest} is not the published {md5}; the download was removed, try again "
                            f"or {_by_hand(url, dest)}")
    os.replace(part, dest)
    return dest


def _extract(archive: Path, into: Path) -> None:
    """Unpack a .zip or .tar(.gz) into ``into``, refusing members that would land outside it."""
    into.mkdir(parents=True, exist_ok=True)
    root = into.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for name in handle.namelist():
                if not (root / name).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive}: member {name!r} would unpack outside {into}")
            handle.extractall(into)
        return
    with tarfile.open(archive) as handle:
        for member in handle.getmembers():
            if not (root / member.name).resolve().is_relative_to(root) or member.issym() or member.islnk():
                raise DownloadError(f"{archive}: member {member.name!r} would unpack outside {into}")
        handle.extractall(into)


def ensure_dataset(
    name: str | Sequence[Archive],
    root: str | Path,
    *,
    progress: Callable[[str, int, int | None], None] | None = None,
    keep_archives: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Make sure a dataset is under ``root``: download (resumably), verify and unpack each archive whose
    ``marker`` is absent; return ``root``.

    Parameters
    ----------
    name : str or sequence of Archive
        A key of :data:`DATASETS` (``coco2017-val``, ``coco2017-train``, ``voc2012``), or archives.
    root : path
        The data root.
    progress : callable, optional
        ``progress(file_name, bytes_done, bytes_total_or_None)``.
    keep_archives : bool
        Keep the downloaded archives (in ``root/downloads/``) after unpacking.

    Raises
    ------
    KeyError
        Unknown dataset name (the message lists the known ones).
    DownloadError
        See :func:`fetch`; or an archive unpacked without its marker.
    """
    if isinstance(name, str):
        if name not in DATASETS:
            raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        archives = DATASETS[name]
    else:
        archives = tuple(name)
    root = Path(root)
    for archive in archives:
        if (root / archive.marker).exists():
            continue
        report = (lambda done, total, a=archive: progress(a.file_name, done, total)) if progress else None
        path = fetch(archive.url, root / "downloads" / archive.file_name, archive.md5, size=archive.size,
                     progress=report, timeout=timeout)
        _extract(path, root / archive.extract_to)
        if not (root / archive.marker).exists():
            raise DownloadError(f"{path} unpacked into {root / archive.extract_to} without {archive.marker}")
        if not keep_archives:
            path.unlink()
    return root


def dataset_location(name: str, root: str | Path) -> tuple[Path, Path | None]:
    """``(dataset, image_root)`` of a downloaded dataset, as the audit takes them."""
    dataset, images = _LOCATIONS[name]
    return Path(root) / dataset, (Path(root) / images if images else None)


def materialize(path: str, cache: str | Path) -> str:
    """A local path for a dataset file or folder given as an fsspec URL (``s3://``, ``gs://``, ...): its
    copy under ``cache`` (``<cache>/<sha of the URL>/<name>``), made file by file and skipping files
    already copied with the same size (so an interrupted copy resumes). A local path comes back as is.
    """
    from segaudit.runs.tables import filesystem, is_url

    if not is_url(path):
        return path
    fs, remote = filesystem(path)
    local = Path(cache) / hashlib.sha256(path.encode()).hexdigest()[:16] / remote.rstrip("/").rsplit("/", 1)[-1]
    if fs.isfile(remote):
        files = {remote: local}
    else:
        files = {f: local / f[len(remote.rstrip("/")) + 1 :] for f in fs.find(remote)}
    for source, target in files.items():
        size = fs.size(source)
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        with fs.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    return str(local)
