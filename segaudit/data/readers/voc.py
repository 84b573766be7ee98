"""Pascal VOC segmentation reader (``JPEGImages/``, ``SegmentationClass/``, ``SegmentationObject/``).

Layout, relative to ``root``::

    JPEGImages/<stem>.jpg                 the photo (.jpeg / .png / upper-case extensions also found)
    SegmentationClass/<stem>.png          class indices: palette ("P") or greyscale ("L") PNG; RGB PNGs
                                          are mapped back through the VOC colour map; 255 is void
    SegmentationObject/<stem>.png         optional: object indices, 0 background, 255 void
    ImageSets/Segmentation/<split>.txt    optional: one stem per line
    class_names.txt                       optional: one class per line (labelme writes it)

Split
    With ``split=None``, or without an ``ImageSets/Segmentation/`` folder, every label file in
    ``SegmentationClass/`` is used (the latter case adds a note to :attr:`VocDataset.load_errors`).

Instances
    Each object index of ``SegmentationObject`` becomes an :class:`~segaudit.data.sample.Instance` whose class
    is the most frequent non-void, non-background ``SegmentationClass`` value inside it. An object with
    no such pixels is skipped and reported by :meth:`VocDataset.read_with_issues` (reason
    ``"object <n> skipped: ..."``); a ``SegmentationObject`` file that cannot be used (wrong size,
    undecodable) drops the instances (``has_instances=False``) and is reported the same way. Without
    ``SegmentationObject/<stem>.png``, ``has_instances`` is False; when the dataset has a
    ``SegmentationObject/`` folder but not this image's file, that is reported the same way too.

Hostile input
    Split lines that are not plain file stems (``../x``, ``a/b``, absolute paths) are skipped with a
    note, so no path leaves ``root``. Text files and file names that are not UTF-8 are read byte for byte
    (``surrogateescape``); ids and file names are shown through
    :func:`~segaudit.data.readers._text.display_text`. Images larger than
    :data:`~segaudit.data.readers._image.MAX_SIDE` are audited downscaled with their labels (nearest neighbour).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segaudit.data.classmap import is_background_name
from segaudit.data.readers._image import (
    MAX_SIDE,
    load_rgb_capped,
    open_image,
    read_logging_issues,
    resize_issues,
)
from segaudit.data.readers._text import display_text
from segaudit.data.sample import IGNORE, ErrorRow, ImageRef, Instance, Sample, SampleError
from segaudit.schema import voc_colormap

__all__ = ["VocDataset", "VOC_CLASSES", "voc_colormap", "read_label_png"]

log = logging.getLogger("segaudit.data.readers")

#: The 21 Pascal VOC classes, in label order.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".tif", ".tiff", ".webp")


_COLOR_TO_INDEX = {
    (int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in enumerate(voc_colormap(256))
}


def read_label_png(path: Path, name: str) -> np.ndarray:
    """Read a VOC label image as indices.

    Parameters
    ----------
    path : Path
        The label file.
    name : str
        How to name it in error messages.

    Returns
    -------
    np.ndarray
        ``(H, W)`` uint8 label indices.

    Raises
    ------
    SampleError
        Missing or undecodable file, an unsupported mode, values above 255, or RGB colours that are
        not in the VOC colour map.
    """
    if not _is_file(path):
        raise SampleError(f"label file not found: {name}")
    im = open_image(path, name=name)
    mode = im.mode
    if mode in ("P", "L"):
        return np.array(im, dtype=np.uint8)
    if mode in ("PA", "LA"):
        return np.array(im, dtype=np.uint8)[:, :, 0]
    if mode == "1":
        return np.array(im).astype(np.uint8)
    if mode.startswith("I"):  # 16/32-bit greyscale holding small label values
        arr = np.asarray(im)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise SampleError(
                f"label {name} is a {mode} image with values {int(arr.min())}..{int(arr.max())}; "
                "expected label indices in 0..255"
            )
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA", "RGBX"):
        rgb = np.asarray(im.convert("RGB")).astype(np.uint32)
        codes = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
        uniq, inverse = np.unique(codes, return_inverse=True)
        table = np.zeros(len(uniq), dtype=np.uint8)
        unknown = []
        for k, code in enumerate(uniq.tolist()):
            idx = _COLOR_TO_INDEX.get(code)
            if idx is None:
                unknown.append(((code >> 16) & 255, (code >> 8) & 255, code & 255))
            else:
                table[k] = idx
        if unknown:
            shown = ", ".join(str(c) for c in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise SampleError(
                f"label {name} is an RGB image with {len(unknown)} colour(s) not in the VOC colour map: "
                f"{shown}; expected a palette PNG or VOC colours"
            )
        return table[inverse.reshape(codes.shape)]
    raise SampleError(f"label {name} has image mode {mode!r}; expected a palette (P) or greyscale (L) PNG")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False instead of an OSError (e.g. a name too long for the file system)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_text(path: Path) -> str:
    """A text file's content; bytes that are not UTF-8 are kept (``surrogateescape``), a BOM dropped."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")


def _read_class_names(path: Path) -> list[str]:
    lines = [ln.strip() for ln in _read_text(path).splitlines()]
    return [ln for ln in lines if ln and ln != "__ignore__"]


def _resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 label indices resized to ``(h, w)`` with nearest neighbour (no new values appear)."""
    if labels.shape == hw:
        return labels
    return np.asarray(Image.fromarray(labels).resize((hw[1], hw[0]), Image.NEAREST))


def _check_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    names = [display_text(n).strip() for n in names]
    if not names:
        raise ValueError(f"{source} lists no classes; expected 'background' followed by the class names")
    if not is_background_name(names[0]):
        raise ValueError(
            f"{source} must start with the background class (VOC label 0), got {names[0]!r}; "
            "expected e.g. ['background', 'aeroplane', ...]"
        )
    if len(names) > 255:
        raise ValueError(
            f"{source} lists {len(names)} classes; at most 255 fit in uint8 labels (255 is void)"
        )
    return ("background", *names[1:])


class VocDataset:
    """A Pascal VOC style segmentation folder.

    Parameters
    ----------
    root : str or Path
        The folder holding ``JPEGImages/`` and ``SegmentationClass/`` (e.g. ``VOCdevkit/VOC2012``).
    split : str or None
        ``ImageSets/Segmentation/<split>.txt`` to read; ``None`` for every label file.
    class_names : sequence of str, optional
        Class names in label order, starting with background. Default: ``root/class_names.txt`` if
        present (``__ignore__`` lines dropped, ``_background_`` read as ``background``), else the 21
        VOC classes (:data:`VOC_CLASSES`).
    max_side : int or None
        Images whose longer side exceeds this are read downscaled to it, with their labels
        (:data:`~segaudit.data.readers._image.MAX_SIDE` by default; None: never).

    Attributes
    ----------
    kind : str
        ``"voc"``.
    category_names : tuple of str
    load_errors : list of ErrorRow
        Notes from indexing (stage ``"read"``), e.g. split lines that are not file stems.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    ValueError
        No ``SegmentationClass/`` or ``JPEGImages/`` folder, unknown split (the message lists the
        available ones), an empty split, or bad class names.
    """

    kind: str = "voc"

    def __init__(
        self,
        root: str | Path,
        split: str | None = "val",
        class_names: Sequence[str] | None = None,
        *,
        max_side: int | None = MAX_SIDE,
    ) -> None:
        self.max_side = max_side
        self.root = Path(root)
        root = self.root
        if not root.exists():
            raise FileNotFoundError(f"VOC dataset folder not found: {root}")
        if not root.is_dir():
            raise ValueError(f"expected a VOC dataset folder, got a file: {root}")
        self.load_errors: list[ErrorRow] = []
        self.split = split
        cls_dir, img_dir = root / "SegmentationClass", root / "JPEGImages"
        if not cls_dir.is_dir():
            inner = sorted(p.name for p in root.iterdir() if (p / "SegmentationClass").is_dir())
            hint = f"; did you mean {root / inner[0]}?" if inner else ""
            raise ValueError(f"not a VOC segmentation folder: {root} has no SegmentationClass/ folder{hint}")
        if not img_dir.is_dir():
            raise ValueError(f"not a VOC segmentation folder: {root} has no JPEGImages/ folder")

        # --- class names ---------------------------------------------------------------------------
        if class_names is not None:
            names = _check_names(list(class_names), "class_names")
        elif (root / "class_names.txt").is_file():
            names = _check_names(_read_class_names(root / "class_names.txt"), str(root / "class_names.txt"))
        else:
            names = VOC_CLASSES
        self.category_names: tuple[str, ...] = names
        self._split_file: Path | None = None
        stems = self._split_stems(root / "ImageSets" / "Segmentation", cls_dir, split)
        # image ids are the stems as shown (display_text); the raw stems open the files
        self._raw_stem: dict[str, str] = {}
        for stem in sorted(set(stems)):
            shown = display_text(stem)
            if shown in self._raw_stem:
                self._note(f"two file stems are both shown as {shown!r}; kept the first", image_id=shown)
                continue
            self._raw_stem[shown] = stem
        self._stems = sorted(self._raw_stem)
        if not self._stems:
            where = self._split_file if self._split_file is not None else cls_dir
            raise ValueError(f"no images in the split: {where} lists no images")
        self._has_object_dir = (root / "SegmentationObject").is_dir()
        self._image_names = self._find_image_files(img_dir)
        self._fingerprint: str | None = None

    def _split_stems(self, sets_dir: Path, cls_dir: Path, split: str | None) -> list[str]:
        """The file stems of ``split`` (every label file when None, or when there is no ImageSets folder)."""
        if split is None:
            return self._all_label_stems(cls_dir)
        if not sets_dir.is_dir():
            stems = self._all_label_stems(cls_dir)
            self._note(
                f"no ImageSets/Segmentation/ folder; split {split!r} ignored, using all {len(stems)} "
                "label files in SegmentationClass/"
            )
            return stems
        split_file = sets_dir / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in sets_dir.glob("*.txt"))
            raise ValueError(
                f"unknown split {split!r}: {split_file} does not exist; available splits: "
                f"{', '.join(available) if available else '(none)'}"
            )
        self._split_file = split_file
        stems = []
        for n, line in enumerate(_read_text(split_file).splitlines(), 1):
            token = line.split("#", 1)[0].strip().split()
            if not token:
                continue
            stem = token[0]
            if "/" in stem or "\\" in stem or stem in (".", "..") or "\x00" in stem:
                self._note(f"{split_file.name} line {n}: {display_text(stem)!r} is not a file stem; skipped")
                continue
            stems.append(stem)
        return stems

    def _find_image_files(self, img_dir: Path) -> dict[str, str]:
        """Image file name per image id, from one directory listing (so any extension is found; ``.jpg``
        preferred)."""
        by_stem: dict[str, str] = {}
        with os.scandir(img_dir) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name)
                if ext in _IMAGE_EXTS and (stem not in by_stem or ext == ".jpg"):
                    by_stem[stem] = entry.name
        return {s: by_stem.get(raw, f"{raw}.jpg") for s, raw in self._raw_stem.items()}

    @staticmethod
    def _all_label_stems(cls_dir: Path) -> list[str]:
        return sorted(p.stem for p in cls_dir.glob("*.png"))

    def _note(self, reason: str, image_id: str | None = None) -> None:
        self.load_errors.append(ErrorRow(image_id=image_id, file_name=None, stage="read", reason=reason))

    def __len__(self) -> int:
        return len(self._stems)

    def __repr__(self) -> str:
        return f"VocDataset({str(self.root)!r}, split={self.split!r}: {len(self._stems)} images)"

    def refs(self) -> list[ImageRef]:
        """Every image of the split, sorted by stem.

        Returns
        -------
        list of ImageRef
            ``image_id`` the stem, ``file_name`` ``"JPEGImages/<file>"``.
        """
        return [
            ImageRef(image_id=s, file_name=f"JPEGImages/{display_text(self._image_names[s])}") for s in self._stems
        ]

    def fingerprint(self) -> str:
        """sha256 hex digest of the split file, the class names and every label file of the split.

        Computed on first call (it reads every label file) and cached. Missing label files count as
        absent, so the fingerprint changes when one appears.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(b"split\0")
            h.update(self._split_file.read_bytes() if self._split_file is not None else b"<all>")
            h.update(b"\0names\0" + "\n".join(self.category_names).encode("utf-8"))
            for stem in self._stems:
                for sub in ("SegmentationClass", "SegmentationObject"):
                    p = self.root / sub / f"{self._raw_stem[stem]}.png"
                    h.update(f"\0{sub}/{stem}.png\0".encode())
                    try:
                        h.update(hashlib.sha256(p.read_bytes()).digest())
                    except OSError:
                        h.update(b"<absent>")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def image_path(self, ref: ImageRef) -> Path:
        """Where the image of ``ref`` should be (``root/JPEGImages/<file>``; it may not exist)."""
        if ref.image_id not in self._image_names:
            raise SampleError(f"image {display_text(ref.image_id)!r} is not in this VOC split")
        return self.root / "JPEGImages" / self._image_names[ref.image_id]

    def read(self, ref: ImageRef) -> Sample:
        """Read one image with its labels; problems with single objects are logged.

        Raises
        ------
        SampleError
            See :meth:`read_with_issues`.
        """
        return read_logging_issues(self, ref)

    def read_with_issues(self, ref: ImageRef) -> tuple[Sample, list[ErrorRow]]:
        """Read one image, its class labels and (when present) its object labels.

        Parameters
        ----------
        ref : ImageRef
            One of :meth:`refs`.

        Returns
        -------
        sample : Sample
            ``image`` ``(H, W, 3)`` uint8; ``semantic`` ``(H, W)`` uint8, the class PNG's values.
        issues : list of ErrorRow
            Objects (or a whole ``SegmentationObject`` file) that could not be used.

        Raises
        ------
        SampleError
            Missing/undecodable image or class label, sizes that differ, or label values outside
            ``0..K-1`` other than 255.
        """
        stem = ref.image_id
        img_path = self.image_path(ref)
        raw = self._raw_stem[stem]
        file_name = f"JPEGImages/{display_text(self._image_names[stem])}"
        label_name = f"SegmentationClass/{stem}.png"
        if not _is_file(img_path):
            raise SampleError(f"image file not found: {file_name}")
        semantic = read_label_png(self.root / "SegmentationClass" / f"{raw}.png", label_name)
        image, full_hw = load_rgb_capped(img_path, name=file_name, expected_hw=semantic.shape, max_side=self.max_side)
        if semantic.shape != full_hw:
            raise SampleError(
                f"label {label_name} is {semantic.shape[1]}x{semantic.shape[0]} but image is {full_hw[1]}x{full_hw[0]}"
            )
        k = len(self.category_names)
        present = np.flatnonzero(np.bincount(semantic.ravel(), minlength=256))
        bad = [int(v) for v in present if v >= k and v != IGNORE]
        if bad:
            raise SampleError(
                f"label {label_name} has values {bad} outside 0..{k - 1} (and 255 void) for {k} classes; "
                "pass class_names or add class_names.txt if the dataset has more classes"
            )

        h, w = image.shape[:2]
        issues = resize_issues(stem, file_name, full_hw, (h, w), self.max_side, "labels")
        semantic = _resize_labels(semantic, (h, w))
        instances, has_instances = self._object_instances(stem, file_name, full_hw, semantic, issues)
        sample = Sample(
            image_id=stem,
            file_name=file_name,
            image=image,
            semantic=semantic,
            instances=instances,
            category_names=self.category_names,
            has_instances=has_instances,
        )
        return sample, issues

    def _object_instances(self, stem: str, file_name: str, full_hw: tuple[int, int], semantic: np.ndarray,
                          issues: list[ErrorRow]) -> tuple[list[Instance], bool]:
        """The instances of ``SegmentationObject/<stem>.png`` at the (audited) size of ``semantic`` and whether
        the image has instance labels; problems append rows to ``issues`` (the image is kept)."""
        obj_name = f"SegmentationObject/{stem}.png"
        obj_path = self.root / "SegmentationObject" / f"{self._raw_stem[stem]}.png"
        if _is_file(obj_path):
            try:
                objects = read_label_png(obj_path, obj_name)
                if objects.shape != full_hw:
                    raise SampleError(
                        f"object label {obj_name} is {objects.shape[1]}x{objects.shape[0]} but image is "
                        f"{full_hw[1]}x{full_hw[0]}"
                    )
            except SampleError as exc:
                issues.append(ErrorRow(stem, file_name, "read", f"instances skipped: {exc}"))
                return [], False
            instances, bad_objects = self._instances(_resize_labels(objects, semantic.shape), semantic)
            issues += [ErrorRow(stem, file_name, "read", reason) for reason in bad_objects]
            return instances, True
        if self._has_object_dir:
            issues.append(ErrorRow(stem, file_name, "read", (
                f"instances skipped: object label {obj_name} not found (the dataset has SegmentationObject/ "
                "but not this image's file); audited without instance labels")))
        return [], False

    def _instances(self, objects: np.ndarray, semantic: np.ndarray) -> tuple[list[Instance], list[str]]:
        """Object masks and their classes.

        Parameters
        ----------
        objects, semantic : np.ndarray
            ``(H, W)`` uint8 object indices and class indices.

        Returns
        -------
        instances : list of Instance
        problems : list of str
        """
        k = len(self.category_names)
        joint = np.bincount(objects.ravel().astype(np.int64) * 256 + semantic.ravel(), minlength=256 * 256)
        joint = joint.reshape(256, 256)  # [object id, class value] -> pixel count
        instances: list[Instance] = []
        problems: list[str] = []
        for obj in np.flatnonzero(joint.sum(axis=1)):
            obj = int(obj)
            if obj in (0, IGNORE):
                continue
            votes = joint[obj, 1:k]
            if votes.sum() == 0:
                problems.append(
                    f"object {obj} skipped: its {int(joint[obj].sum())} pixels are all background or void "
                    "in SegmentationClass"
                )
                continue
            cls = int(np.argmax(votes)) + 1
            instances.append(
                Instance(category=cls, mask=objects == obj, iscrowd=False, annotation_id=str(obj))
            )
        return instances, problems
