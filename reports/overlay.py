"""Picture helpers for the report: colour maps, blending, resampling and data URIs (numpy + Pillow only).

Everything here is pure: arrays in, arrays (or strings) out, no file access. Images are ``(H, W, 3)``
``uint8`` RGB arrays; maps are ``(H, W)`` floats.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from segaudit.schema import VOID_LABEL, voc_colormap

__all__ = [
    "VOID_LABEL",
    "colorize_cam",
    "blend",
    "label_colors",
    "colorize_labels",
    "upsample_map",
    "normalize_map",
    "to_data_uri",
    "decode_image",
    "decode_labels",
    "resize_rgb",
    "resize_labels",
]


def colorize_cam(cam: np.ndarray) -> np.ndarray:
    """Colour a map in ``[0, 1]`` with a jet-like colour map.

    Piecewise-linear "jet": dark blue ``(0, 0, 128)`` at 0, blue, cyan, green (at 0.5), yellow, red,
    dark red ``(128, 0, 0)`` at 1. Values are clipped to ``[0, 1]``; NaN is drawn as 0.

    Parameters
    ----------
    cam : np.ndarray
        ``(H, W)`` float map, expected in ``[0, 1]``.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    x = np.nan_to_num(np.asarray(cam, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    x = np.clip(x, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return np.rint(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Alpha-blend ``overlay`` over ``image``: ``(1 - alpha) * image + alpha * overlay``.

    Parameters
    ----------
    image, overlay : np.ndarray
        ``(H, W, 3)`` uint8 RGB of the same shape (a ``(H, W)`` grey image is broadcast to RGB).
    alpha : float
        Opacity of the overlay, in ``[0, 1]``.
    mask : np.ndarray, optional
        ``(H, W)`` bool; where False the image is kept unchanged (e.g. background of a label map).

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = _as_rgb(image).astype(np.float32)
    ovl = _as_rgb(overlay).astype(np.float32)
    if img.shape != ovl.shape:
        raise ValueError(f"image {img.shape} and overlay {ovl.shape} differ in shape")
    out = (1.0 - alpha) * img + alpha * ovl
    if mask is not None:
        out = np.where(np.asarray(mask, dtype=bool)[..., None], out, img)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def label_colors(n: int) -> np.ndarray:
    """The standard Pascal VOC colour map.

    Class ``k``'s colour spreads the bits of ``k`` over the high bits of R, G and B; index 0 is black
    and index 255 (void) is the light grey ``(224, 224, 192)``, as in VOC's own PNG labels.

    Parameters
    ----------
    n : int
        Number of colours (use 256 to cover the void label).

    Returns
    -------
    np.ndarray
        ``(n, 3)`` uint8.
    """
    return voc_colormap(max(int(n), 0))


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """Colour a label map with :func:`label_colors` (void 255 in light grey).

    Parameters
    ----------
    labels : np.ndarray
        ``(H, W)`` integer class ids in ``[0, 255]``.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    lut = label_colors(256)
    return lut[np.clip(np.asarray(labels, dtype=np.int64), 0, 255)]


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbours and weights of bilinear resampling along one axis, half-pixel centres."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def upsample_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a map bilinearly to ``size``, with half-pixel centres.

    Matches ``torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)``
    (no antialiasing), so it also works for shrinking.

    Parameters
    ----------
    values : np.ndarray
        ``(h, w)`` float map.
    size : tuple of int
        ``(height, width)`` of the output, in torch's order (not PIL's).

    Returns
    -------
    np.ndarray
        ``(height, width)`` float32.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D map, got shape {arr.shape}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {size}")
    y0, y1, wy = _source_index(out_h, arr.shape[0])
    x0, x1, wx = _source_index(out_w, arr.shape[1])
    rows = arr[y0] * (1.0 - wy)[:, None] + arr[y1] * wy[:, None]
    out = rows[:, x0] * (1.0 - wx)[None, :] + rows[:, x1] * wx[None, :]
    return out.astype(np.float32)


def normalize_map(values: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to ``[0, 1]`` (a constant or all-NaN map gives zeros; NaN becomes 0)."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.float32)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    out = (np.where(finite, arr, lo) - lo) / (hi - lo)
    return out.astype(np.float32)


def to_data_uri(rgb: np.ndarray, fmt: str = "PNG", quality: int = 85) -> str:
    """Encode an image as a ``data:`` URI, to embed it in a self-contained HTML page.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` or ``(H, W)`` uint8.
    fmt : {"PNG", "JPEG"}
        Encoding; JPEG is much smaller for photographs and blended overlays.
    quality : int
        JPEG quality.

    Returns
    -------
    str
        ``data:image/png;base64,...`` or ``data:image/jpeg;base64,...``.
    """
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in ("PNG", "JPEG"):
        raise ValueError(f"fmt must be 'PNG' or 'JPEG', got {fmt!r}")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=int(quality), optimize=True)
    else:
        img.save(buf, format="PNG", optimize=True)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes (JPEG, PNG...) to ``(H, W, 3)`` uint8 RGB."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_labels(data: bytes) -> np.ndarray:
    """Decode a label PNG (palette ``P`` or grey ``L``: pixel values are class ids) to ``(H, W)`` uint8.

    A palette image's indices are the ids (its colours are ignored); an RGB image is read as grey.
    """
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("P", "L"):
            return np.asarray(img, dtype=np.uint8)
        if img.mode in ("I", "I;16", "F"):
            return np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return np.asarray(img.convert("L"), dtype=np.uint8)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to ``(height, width)`` with Pillow's antialiased bilinear filter."""
    h, w = int(size[0]), int(size[1])
    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map to ``(height, width)`` with nearest-neighbour sampling (ids are kept)."""
    h, w = int(size[0]), int(size[1])
    if labels.shape[:2] == (h, w):
        return labels
    return np.asarray(Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {arr.shape}")
    return arr
