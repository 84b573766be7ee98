"""Shared image decoding for the dataset readers.

Every failure to decode becomes a :class:`~segaudit.data.sample.SampleError` whose message says which file
failed and why (missing, empty, truncated, not an image, too large), so a reader can turn it into one
row of the errors table instead of crashing a whole batch.

Colour conversion (:func:`load_rgb`) follows what training pipelines do with ``Image.convert("RGB")``,
except where that is lossy in a surprising way:

* EXIF orientation is applied (``ImageOps.exif_transpose``); readers may ask for the raw orientation
  when the labels were drawn on it (see ``expected_hw``).
* Alpha is dropped (not composited), as ``convert("RGB")`` does.
* 16-bit greyscale (``I;16*``, and 16-bit PNGs that Pillow opens as ``I``) is scaled with ``v / 257``
  (65535 -> 255) instead of being clipped at 255; 32-bit integer and float images are scaled by their
  value range (floats in ``[0, 1]`` by 255).

Size limits (so that one file can neither exhaust memory nor stall an audit):

* :data:`MAX_PIXELS` (100 MP): a larger image is refused from its header, before any decoding, as a likely
  decompression bomb; it becomes an error row.
* :data:`MAX_SIDE` (4096 px): a larger image is decoded at reduced scale (JPEG DCT scaling where
  possible) and resized (bilinear, antialiased) so its longer side is ``MAX_SIDE``; the readers resize its
  labels to match (nearest neighbour; COCO polygons are scaled before rasterising) and add one row to the
  errors table saying so. The audit letterboxes every image to the model's input size (at most 800 px for
  the shipped models), so this changes the scores only through resampling. A batch of 16 such images
  then holds about 16 x (50 MB RGB + 17 MB labels + 17 MB per instance mask).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segaudit.data.readers._text import display_text
from segaudit.data.sample import ErrorRow, SampleError

__all__ = [
    "MAX_PIXELS", "MAX_SIDE", "open_image", "load_rgb", "load_rgb_capped", "capped_size", "to_rgb_array", "resize_issues",
]

#: Largest image (width * height) the readers decode; bigger files are refused as a likely
#: decompression bomb or a mistake (a 100 MP RGB image is 300 MB decoded).
MAX_PIXELS = 100_000_000

#: Key of ``Image.info`` where :func:`open_image` keeps the file's ``(width, height)`` before any
#: reduced-scale decoding.
FULL_SIZE_KEY = "segaudit_full_size"

#: Longest image side the readers hand to the audit; larger images (up to :data:`MAX_PIXELS`) are
#: downscaled to it at read time, with their labels.
MAX_SIDE = 4096


def capped_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(height, width)`` scaled so the longer side is at most ``max_side`` (unchanged when it already is).

    Parameters
    ----------
    height, width : int
    max_side : int or None
        None: no cap.

    Returns
    -------
    (int, int)
        Each side at least 1.
    """
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, min(max_side, round(height * scale))), max(1, min(max_side, round(width * scale)))


def open_image(
    path: str | Path,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    draft_side: int | None = None,
) -> Image.Image:
    """Open and fully decode an image file, turning every failure into a :class:`SampleError`.

    Parameters
    ----------
    path : str or Path
        The file to read.
    name : str, optional
        How to name the file in error messages (e.g. the dataset-relative path); default ``str(path)``.
    max_pixels : int
        Refuse images with more than this many pixels (checked from the header, before decoding).
    draft_side : int, optional
        Let the decoder reduce the image while decoding, as long as its longer side stays at least this
        long (JPEG only, by a power of two; other formats decode at full size). For label images: never.

    Returns
    -------
    PIL.Image.Image
        The decoded image, in its file's mode and orientation (no EXIF transpose, no conversion).

    Raises
    ------
    SampleError
        File missing, empty, not an image, truncated/corrupt, or larger than ``max_pixels``.
    """
    path = Path(path)
    shown = display_text(name if name is not None else str(path))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SampleError(f"image file not found: {shown}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise SampleError(f"cannot read image file {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    if path.is_dir():
        raise SampleError(f"expected an image file but found a folder: {shown}")
    if size == 0:
        raise SampleError(f"cannot decode image {shown}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's global warning / limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
            w, h = im.size
            if w * h > max_pixels:
                im.close()
                raise SampleError(
                    f"image {shown} is {w}x{h} = {w * h / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP "
                    "limit (refused as a possible decompression bomb)"
                )
            im.info[FULL_SIZE_KEY] = (w, h)
            if draft_side is not None and max(w, h) > draft_side and im.format == "JPEG":
                scale = draft_side / max(w, h)
                im.draft(None, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
                w, h = im.size
            im.load()
    except SampleError:
        raise
    except Image.DecompressionBombError as exc:
        raise SampleError(f"image {shown} refused as a possible decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise SampleError(f"cannot decode image {shown}: not a recognised image format") from None
    except MemoryError:
        raise SampleError(f"cannot decode image {shown}: not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files make decoders raise almost anything
        msg = display_text(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if "truncated" in msg.lower():
            raise SampleError(f"cannot decode image {shown}: file is truncated ({msg})") from None
        raise SampleError(f"cannot decode image {shown}: corrupt or unsupported data ({msg})") from None
    if w == 0 or h == 0:
        raise SampleError(f"cannot decode image {shown}: it has zero size ({w}x{h})")
    return im


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a single-channel integer or float array to uint8 (see the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(a * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.unsignedinteger) and arr.dtype.itemsize == 2:
        return np.rint(a / 257.0).astype(np.uint8)
    else:  # 32-bit integers ("I"), which Pillow also uses for 16-bit PNGs
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 65535.0:
            return np.rint(a / 257.0).astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an RGB array.

    Parameters
    ----------
    im : PIL.Image.Image

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8, C-contiguous.
    """
    mode = im.mode
    if mode == "RGB":
        arr = np.asarray(im)
    elif mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(im))
        arr = np.repeat(grey[:, :, None], 3, axis=2)
    elif mode in ("L", "P", "PA", "LA", "1", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(im.convert("RGB"))
    else:  # rarer modes (La, I;16N on some platforms, ...): go through a mode Pillow converts from
        try:
            arr = np.asarray(im.convert("RGB"))
        except (ValueError, OSError):
            try:
                arr = np.asarray(im.convert("RGBA").convert("RGB"))
            except (ValueError, OSError) as exc:
                raise SampleError(f"cannot convert image mode {mode!r} to RGB: {exc}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise SampleError(f"cannot convert image mode {mode!r} to RGB (got {arr.shape} {arr.dtype})")
    return np.ascontiguousarray(arr)


def load_rgb(
    path: str | Path,
    *,
    name: str | None = None,
    expected_hw: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image file as RGB at full size, applying its EXIF orientation.

    Parameters
    ----------
    path : str or Path
        The image file.
    name : str, optional
        How to name the file in error messages; default ``str(path)``.
    expected_hw : (int, int), optional
        ``(height, width)`` the labels were drawn at. When the EXIF-transposed image does not have this
        size but the raw (untransposed) pixels do, the raw orientation is returned: the labels were drawn
        on the raw pixels, as COCO's own tools do. Otherwise this argument changes nothing; the caller
        checks the size.
    max_pixels : int
        Refuse images with more than this many pixels.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    SampleError
        The file is missing, empty, truncated, not an image, or too large.
    """
    rgb, _ = load_rgb_capped(path, name=name, expected_hw=expected_hw, max_pixels=max_pixels, max_side=None)
    return rgb


def load_rgb_capped(
    path: str | Path,
    *,
    name: str | None = None,
    expected_hw: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = MAX_SIDE,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Read an image file as RGB, oriented as :func:`load_rgb` does, its longer side capped at ``max_side``.

    Parameters
    ----------
    path, name, expected_hw, max_pixels
        As in :func:`load_rgb`.
    max_side : int or None
        Downscale (bilinear, antialiased) so that the longer side is at most this (:func:`capped_size`);
        JPEGs are decoded at reduced scale when that suffices. None: full size.

    Returns
    -------
    rgb : np.ndarray
        ``(h, w, 3)`` uint8 RGB, ``(h, w) = capped_size(H, W, max_side)``.
    full_hw : (int, int)
        ``(H, W)``: the oriented image's size in the file, before any downscaling (compare it with the
        size the labels were drawn at).

    Raises
    ------
    SampleError
        The file is missing, empty, truncated, not an image, or too large.
    """
    im = open_image(path, name=name, max_pixels=max_pixels, draft_side=max_side)
    raw_w, raw_h = im.info.get(FULL_SIZE_KEY, im.size)  # before any reduced-scale decoding
    try:
        oriented = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not lose the image: keep the raw orientation
        oriented = None
    if oriented is None:  # very old Pillow with in_place semantics, or unreadable EXIF
        oriented, turned = im, False
    else:
        turned = _orientation(im) in (5, 6, 7, 8)
    full_hw = (raw_w, raw_h) if turned else (raw_h, raw_w)
    if expected_hw is not None and full_hw != tuple(expected_hw) and (raw_h, raw_w) == tuple(expected_hw):
        oriented, full_hw = im, (raw_h, raw_w)  # labels drawn on the raw pixels
    rgb = to_rgb_array(oriented)
    target = capped_size(*full_hw, max_side)
    if rgb.shape[:2] != target:
        rgb = np.asarray(Image.fromarray(rgb).resize((target[1], target[0]), Image.BILINEAR))
    return np.ascontiguousarray(rgb), full_hw


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation of ``im`` (1 when absent or unreadable); 5 to 8 swap the axes."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # noqa: BLE001 - unreadable EXIF: treated as absent, as exif_transpose does
        return 1


def resize_issues(image_id: str, file_name: str, full_hw: tuple[int, int], hw: tuple[int, int],
                  max_side: int | None, labels: str) -> list[ErrorRow]:
    """The ``"image resized: ..."`` row of an image read downscaled (``hw`` differs from ``full_hw``), else none.

    ``labels`` names what was resized with it (``"masks"``, ``"labels"``).
    """
    if tuple(hw) == tuple(full_hw):
        return []
    return [ErrorRow(image_id, file_name, "read", (
        f"image resized: {full_hw[1]}x{full_hw[0]} is over the {max_side} px side limit; audited at "
        f"{hw[1]}x{hw[0]} with its {labels} resized to match"))]


def read_logging_issues(dataset, ref):
    """``dataset.read_with_issues(ref)``'s sample, its skipped annotations logged as warnings (the
    ``read`` of every reader)."""
    sample, issues = dataset.read_with_issues(ref)
    for row in issues:
        logging.getLogger(type(dataset).__module__).warning("%s (%s): %s", row.image_id, row.file_name, row.reason)
    return sample
