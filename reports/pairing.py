"""How two runs line up before they are compared: which images they share, what differs between them,
and which findings are new or resolved.

* **Images** are matched by ``image_id`` or by file name, whichever pairs more images. The file-name key
  is the base name without its extension (``JPEGImages/2007_000032.jpg`` and ``2007_000032.png`` match), so
  the same images read as COCO (numeric ids) and as VOC (file stems as ids) pair up.
* **Warnings** (:func:`run_warnings`) name every difference that makes a delta mean something else than
  "the same images, audited two ways": another dataset format, dataset, split, class list, method list or
  primary layer, and images that did not pair.
* **Findings** (:func:`finding_changes`) are keyed by (matched image, class name, kind): in B only =
  new, in A only = resolved.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pandas as pd
from segaudit.reports.values import as_text

__all__ = ["image_key", "match_images", "run_warnings", "finding_changes"]


def image_key(file_name: Any) -> str:
    """The file-name key of an image: its base name without the extension."""
    base = posixpath.basename(as_text(file_name).replace("\\", "/"))
    return base.rsplit(".", 1)[0] if "." in base else base


def match_images(a: pd.DataFrame, b: pd.DataFrame) -> tuple[str, pd.Series, pd.Series]:
    """How the images of two ``images`` tables pair: ``("id" | "file name", key of A's rows, key of B's)``,
    by whichever pairs more images (ids on a tie)."""
    ids_a, ids_b = a["image_id"].astype(str), b["image_id"].astype(str)
    names_a, names_b = a["file_name"].map(image_key), b["file_name"].map(image_key)
    by_id = len(set(ids_a) & set(ids_b))
    by_name = len(set(names_a) & set(names_b))
    if by_name > by_id:
        return "file name", names_a, names_b
    return "id", ids_a, ids_b


def run_warnings(a: dict[str, Any], b: dict[str, Any], methods_a: list[str], methods_b: list[str],
                 layers: tuple[str, str], pairing: tuple[str, int, int, int]) -> list[str]:
    """Sentences naming what differs between run rows ``a`` and ``b`` beyond the model.

    ``pairing`` is ``(how, shared, images in A, images in B)`` from :func:`match_images`.
    """
    out = []
    kind_a, kind_b = as_text(a.get("dataset_kind")), as_text(b.get("dataset_kind"))
    if kind_a != kind_b:
        out.append(f"Dataset formats differ: A reads {kind_a or '?'}, B reads {kind_b or '?'}; labels may be "
                   "drawn differently (e.g. VOC's void borders), so label quality and suspicion may differ "
                   "for that reason alone.")
    if as_text(a.get("dataset_fingerprint")) != as_text(b.get("dataset_fingerprint")):
        out.append(f"Datasets differ: A {as_text(a.get('dataset_path'))}, B {as_text(b.get('dataset_path'))} "
                   "(other fingerprints).")
    if as_text(a.get("split")) != as_text(b.get("split")):
        out.append(f"Splits differ: A {as_text(a.get('split')) or '(none)'}, B {as_text(b.get('split')) or '(none)'}.")
    names_a = [as_text(n).lower() for n in (a.get("class_names") or [])]
    names_b = [as_text(n).lower() for n in (b.get("class_names") or [])]
    if names_a != names_b:
        out.append("Class lists differ: classes are matched by name; a class in one run only has no delta.")
    if methods_a != methods_b:
        common = [m for m in methods_a if m in methods_b]
        out.append(f"Method lists differ: A {', '.join(methods_a) or '(none)'}, B {', '.join(methods_b) or '(none)'}; "
                   f"compared on {', '.join(common) or 'no method'}. The first method decides findings and "
                   "suspicion, so those differ when the first methods do.")
    if layers[0] != layers[1]:
        out.append(f"Primary layers differ: A {layers[0] or '?'}, B {layers[1] or '?'}.")
    how, shared, n_a, n_b = pairing
    if shared == 0:
        out.append("The runs share no image (neither by id nor by file name): per-class deltas compare "
                   "different images and are not coloured.")
    elif shared < max(n_a, n_b):
        out.append(f"{shared} images are in both runs (matched by {how}); {n_a - shared} only in A, "
                   f"{n_b - shared} only in B.")
    elif how == "file name":
        out.append(f"Image ids differ: the {shared} images were matched by file name.")
    return out


def finding_changes(a: pd.DataFrame, b: pd.DataFrame, key_a: dict[str, str], key_b: dict[str, str]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(new, resolved)``: B's findings absent from A, and A's absent from B, keyed by (matched image,
    class name, kind); ``key_a`` / ``key_b`` map each run's image ids to the matched key."""
    def keyed(frame: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
        if frame.empty:
            return frame.assign(_key=pd.Series(dtype=str))
        k = frame["image_id"].astype(str).map(keys).fillna("id:" + frame["image_id"].astype(str))
        return frame.assign(_key=k + "|" + frame["class_name"].astype(str).str.lower() + "|" + frame["kind"].astype(str))

    ka, kb = keyed(a, key_a), keyed(b, key_b)
    new = kb[~kb["_key"].isin(set(ka["_key"]))]
    resolved = ka[~ka["_key"].isin(set(kb["_key"]))]
    return new.drop(columns="_key"), resolved.drop(columns="_key")
