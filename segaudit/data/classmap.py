"""Map a dataset's category indices to a model's class indices.

Readers return labels in *dataset space* (indices into the dataset's ``category_names``); a model
predicts in *model space*. :func:`build_class_map` matches the two name lists and returns a
:class:`ClassMap` whose look-up table converts a semantic mask in one call.

Name matching is case-insensitive, after normalising:

1. ``strip``, lower case, and ``_``, ``-`` and whitespace runs treated as the same separator
   (``"Potted_Plant"`` == ``"potted plant"`` == ``"potted-plant"``); ``"_background_"``,
   ``"__background__"`` and ``"background"`` are all the background class;
2. if no model name matches that way, the names are compared with *every* non-alphanumeric character
   removed (``"tv/monitor"`` == ``"tvmonitor"``, ``"pottedplant"`` == ``"potted plant"``), provided
   exactly one model class matches.

An ``explicit`` mapping (dataset name -> model name) overrides the automatic match; the target
``"__ignore__"`` makes a dataset class void. Background always maps to model index 0, and void (255)
stays void. Dataset classes the model does not know map to :data:`~segaudit.data.sample.IGNORE`, so their
pixels are excluded from scoring rather than counted as background.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segaudit.data.sample import IGNORE

__all__ = [
    "ClassMap",
    "build_class_map",
    "parse_mapping",
    "normalize_name",
    "is_background_name",
    "IGNORE_TARGET",
]

#: Explicit-mapping target that makes a dataset class void (:data:`IGNORE`).
IGNORE_TARGET = "__ignore__"

_SEP = re.compile(r"[\s_\-]+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_BACKGROUND = "background"


def normalize_name(name: str) -> str:
    """Normalise a class name for matching.

    Parameters
    ----------
    name : str

    Returns
    -------
    str
        Lower case, ``_``/``-``/whitespace runs replaced by one space, stripped; any background alias
        (``_background_``, ``__background__``, ``Background``) becomes ``"background"``.
    """
    norm = _SEP.sub(" ", str(name).strip().lower()).strip()
    return norm


def _compact(name: str) -> str:
    return _NON_ALNUM.sub("", normalize_name(name))


def is_background_name(name: str) -> bool:
    """Whether ``name`` denotes the background class (``background``, ``_background_``, ...)."""
    return normalize_name(name) == _BACKGROUND


@dataclass(frozen=True)
class ClassMap:
    """Dataset-space to model-space conversion.

    Parameters
    ----------
    dataset_names : tuple of str
        The dataset's categories; index 0 is background.
    model_names : tuple of str
        The model's classes, in output-channel order.
    lut : np.ndarray
        ``(256,)`` uint8, read-only: ``lut[k]`` is the model index of dataset index ``k``;
        :data:`IGNORE` (255) for classes the model does not know, for indices past the dataset's
        classes, and for 255 itself.
    unmapped : tuple of str
        Dataset classes (not background) whose pixels become void: unknown to the model, or explicitly
        mapped to ``"__ignore__"``.
    """

    dataset_names: tuple[str, ...]
    model_names: tuple[str, ...]
    lut: np.ndarray
    unmapped: tuple[str, ...]

    def __post_init__(self) -> None:
        lut = np.asarray(self.lut)
        if lut.shape != (256,) or lut.dtype != np.uint8:
            raise ValueError(f"lut must be a (256,) uint8 array, got {lut.shape} {lut.dtype}")
        lut = lut.copy()
        lut.setflags(write=False)
        object.__setattr__(self, "lut", lut)
        object.__setattr__(self, "dataset_names", tuple(self.dataset_names))
        object.__setattr__(self, "model_names", tuple(self.model_names))
        object.__setattr__(self, "unmapped", tuple(self.unmapped))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassMap):
            return NotImplemented
        return (
            self.dataset_names == other.dataset_names
            and self.model_names == other.model_names
            and self.unmapped == other.unmapped
            and bool(np.array_equal(self.lut, other.lut))
        )

    def __hash__(self) -> int:
        return hash((self.dataset_names, self.model_names, self.unmapped, self.lut.tobytes()))

    def apply(self, semantic: np.ndarray) -> np.ndarray:
        """Convert a dataset-space label map to model space.

        Parameters
        ----------
        semantic : np.ndarray
            ``(H, W)`` (any shape, in fact) uint8 labels in dataset space; other integer dtypes are
            accepted when every value is in ``0..255``.

        Returns
        -------
        np.ndarray
            Same shape, uint8, model-space labels; 255 is void.
        """
        arr = np.asarray(semantic)
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"semantic labels must be an integer array, got dtype {arr.dtype}")
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(
                    f"semantic labels must be in 0..255, got values {int(arr.min())}..{int(arr.max())}"
                )
            arr = arr.astype(np.uint8)
        return self.lut[arr]

    def model_index(self, dataset_name: str) -> int | None:
        """Model index for a dataset class name, or ``None`` if it is void/unknown."""
        try:
            k = self.dataset_names.index(dataset_name)
        except ValueError:
            raise KeyError(
                f"{dataset_name!r} is not a dataset class; classes: {list(self.dataset_names)}"
            ) from None
        v = int(self.lut[k])
        return None if v == IGNORE else v

    def pairs(self) -> list[tuple[str, str | None]]:
        """``(dataset name, model name or None)`` for every dataset class, for reports."""
        out: list[tuple[str, str | None]] = []
        for k, name in enumerate(self.dataset_names):
            v = int(self.lut[k])
            out.append(
                (name, None if v == IGNORE else self.model_names[v] if v < len(self.model_names) else None)
            )
        return out


def _find_model_index(name: str, model_names: Sequence[str]) -> int | None:
    """Index of the model class matching ``name`` (normalised, then compact), or None."""
    norm = normalize_name(name)
    for i, m in enumerate(model_names):
        if normalize_name(m) == norm:
            return i
    comp = _compact(name)
    if not comp:
        return None
    hits = [i for i, m in enumerate(model_names) if _compact(m) == comp]
    return hits[0] if len(hits) == 1 else None


def _explicit_overrides(
    dataset_names: tuple[str, ...], model_names: tuple[str, ...], explicit: Mapping[str, str]
) -> dict[int, int]:
    """Dataset index -> model index (or IGNORE) for the explicit pairs; ValueError for a pair that names
    no dataset or model class, or that remaps background (see :func:`build_class_map`)."""
    overrides: dict[int, int] = {}
    for key, target in explicit.items():
        hits = [k for k, n in enumerate(dataset_names) if normalize_name(n) == normalize_name(key)]
        if not hits:
            raise ValueError(
                f"explicit mapping names dataset class {key!r}, which is not in the dataset; "
                f"dataset classes are: {', '.join(dataset_names)}"
            )
        if normalize_name(target) == normalize_name(IGNORE_TARGET):
            m_idx = IGNORE
        else:
            norm_t = normalize_name(target)
            m_hits = [i for i, m in enumerate(model_names) if normalize_name(m) == norm_t]
            if not m_hits:
                raise ValueError(
                    f"explicit mapping {key!r} -> {target!r}: {target!r} is not a model class; "
                    f"valid names are: {', '.join(model_names)} (or {IGNORE_TARGET!r} to ignore the class)"
                )
            m_idx = m_hits[0]
        for k in hits:
            if k == 0 or is_background_name(dataset_names[k]):
                if m_idx != 0:
                    raise ValueError(
                        f"explicit mapping {key!r} -> {target!r}: background always maps to model index 0"
                    )
            overrides[k] = m_idx
    return overrides


def build_class_map(
    dataset_names: Sequence[str],
    model_names: Sequence[str],
    explicit: Mapping[str, str] | None = None,
) -> ClassMap:
    """Match dataset classes to model classes by name.

    Parameters
    ----------
    dataset_names : sequence of str
        The dataset's categories; index 0 is background (whatever it is called).
    model_names : sequence of str
        The model's classes in output order; index 0 is expected to be background.
    explicit : mapping of str to str, optional
        Dataset name -> model name, overriding the automatic match (both matched after
        normalisation). The target ``"__ignore__"`` makes the dataset class void.

    Returns
    -------
    ClassMap

    Raises
    ------
    ValueError
        An explicit key that is not a dataset class, an explicit target that is not a model class
        (the message lists the valid names), an attempt to remap background, more than 256 dataset
        classes, or a mapped model index that does not fit in uint8 (>= 255).
    """
    dataset_names = tuple(str(n) for n in dataset_names)
    model_names = tuple(str(n) for n in model_names)
    if not dataset_names:
        raise ValueError("dataset_names is empty; expected at least the background class")
    if len(dataset_names) > 255:
        raise ValueError(
            f"at most 255 dataset classes fit in uint8 labels (255 is void), got {len(dataset_names)}"
        )

    overrides = _explicit_overrides(dataset_names, model_names, explicit or {})
    lut = np.full(256, IGNORE, dtype=np.uint8)
    unmapped: list[str] = []
    for k, name in enumerate(dataset_names):
        if k == 0 or is_background_name(name):
            lut[k] = 0
            continue
        m_idx = overrides[k] if k in overrides else _find_model_index(name, model_names)
        if m_idx is None or m_idx == IGNORE:
            unmapped.append(name)
            continue
        if m_idx > 254:
            raise ValueError(
                f"dataset class {name!r} matches model class {model_names[m_idx]!r} at index {m_idx}, "
                "which does not fit in uint8 labels (at most 254)"
            )
        lut[k] = m_idx
    lut[IGNORE] = IGNORE
    return ClassMap(dataset_names=dataset_names, model_names=model_names, lut=lut, unmapped=tuple(unmapped))


def parse_mapping(text: str) -> dict[str, str]:
    """Parse an explicit class mapping given on the command line.

    Parameters
    ----------
    text : str
        Either ``"dataset_a=model_x,dataset_b=model_y"`` (commas, semicolons or newlines separate
        pairs; whitespace around names is ignored), or the path of a JSON file holding an object
        ``{"dataset_a": "model_x", ...}``. Names containing ``,`` or ``=`` need the JSON form.

    Returns
    -------
    dict of str to str
        Dataset name -> model name (or ``"__ignore__"``).

    Raises
    ------
    ValueError
        Malformed pairs, empty names, a dataset name given two different targets, or a JSON file that
        is not an object of strings.
    FileNotFoundError
        ``text`` ends with ``.json`` but the file does not exist.
    """
    text = text.strip()
    if not text:
        return {}
    path = Path(text).expanduser()
    looks_like_file = text.lower().endswith(".json") and "=" not in text
    if looks_like_file or (("=" not in text) and path.is_file()):
        if not path.is_file():
            raise FileNotFoundError(f"class mapping file not found: {text}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"class mapping file {text} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ValueError(
                f'class mapping file {text} must hold a JSON object of strings, {{"dataset name": "model name"}}'
            )
        out = {k.strip(): v.strip() for k, v in data.items()}
        if any(not k or not v for k, v in out.items()):
            raise ValueError(f"class mapping file {text} has an empty class name")
        return out

    out: dict[str, str] = {}
    for item in re.split(r"[,;\n]", text):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"class mapping item {item!r} is not of the form dataset_name=model_name")
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not value:
            raise ValueError(
                f"class mapping item {item!r} has an empty name; expected dataset_name=model_name "
                f"(use {IGNORE_TARGET!r} as the model name to ignore a class)"
            )
        if key in out and out[key] != value:
            raise ValueError(f"class mapping gives {key!r} two targets: {out[key]!r} and {value!r}")
        out[key] = value
    return out
