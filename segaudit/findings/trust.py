"""Which CAM method and layer to trust for this model: the ``method_trust`` table and the primary map.

Where a map's mass lies says nothing about whether the model *uses* those pixels; which method and layer
give faithful maps depends on the model. Per (method, layer), over the pairs of the ``faithfulness`` table
(:mod:`segaudit.auditors.faithfulness_rows`: deletion/insertion curves with ROAD imputation, Petsiuk et
al. 2018, Rong et al. 2022), :func:`method_trust` reports

    deletion_auc, insertion_auc, faithfulness = means over the n_pairs checked maps
    faithfulness_se = sd(faithfulness) / sqrt(n_pairs)        (standard error of the mean)

and, from the cascading model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018; the ``sanity`` table, :mod:`segaudit.cam.sanity`), the similarity of the maps of the
trained model and the model with every block randomised (the last cascading step): ``sanity_ssim`` and
``sanity_spearman`` (the absolute rank correlation, ``spearman_abs``, when recorded). A method whose maps
barely change when the weights they explain are destroyed does not explain the model:

    passes_sanity = sanity_ssim < SANITY_SSIM_MAX (0.5)       (NA when the check did not run)

:func:`choose_primary` picks the map the findings are decided on. With setting ``primary="faithful"``
(default) it is the most faithful (method, layer) that does not fail the sanity check among those the audit
computed for every image; a candidate replaces the user's first method and layer only when it is more
faithful *beyond noise*,

    f_best - f_first > 2 * sqrt(se_best^2 + se_first^2)

(an unpaired two-standard-error test; conservative, since the pairs are shared), so two methods within
noise are not called different and the user's order stands. With ``primary="first"`` the user's first
method and layer are used, as before. :func:`primary_order` puts the choice first in the run's methods and
layers, which is how the findings (:func:`segaudit.findings.rules.primary_map`), the run's ``layer`` and
``methods`` columns and the report learn it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from segaudit.schema import PRIMARY_CHOICES

__all__ = ["SANITY_SSIM_MAX", "PRIMARY_CHOICES", "TRUST_COLUMNS", "method_trust", "choose_primary", "primary_order",
           "trusted_primary"]

#: A method passes the sanity check when the SSIM between its maps on the trained and on the fully
#: randomised model is below this (Adebayo et al. 2018 read SSIM near 1 as "the map ignores the model").
SANITY_SSIM_MAX = 0.5


#: The ``method_trust`` table's columns, in order.
TRUST_COLUMNS = ("method", "layer", "n_pairs", "deletion_auc", "insertion_auc", "faithfulness", "faithfulness_se",
                 "sanity_ssim", "sanity_spearman", "passes_sanity", "chosen")


def _last_sanity_step(sanity: pd.DataFrame | None) -> pd.DataFrame:
    """Per (method, layer), the SSIM and rank correlation after the last cascading step (mean over its rows)."""
    columns = ["method", "layer", "sanity_ssim", "sanity_spearman"]
    if sanity is None or sanity.empty:
        return pd.DataFrame(columns=columns)
    rank = "spearman_abs" if "spearman_abs" in sanity else "spearman"
    last = sanity[sanity["step"] == sanity.groupby(["method", "layer"])["step"].transform("max")]
    out = last.groupby(["method", "layer"], as_index=False, sort=False).agg(
        sanity_ssim=("ssim", "mean"), sanity_spearman=(rank, "mean"))
    return out[columns]


def method_trust(faithfulness: pd.DataFrame, sanity: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``method_trust`` table: one row per (method, layer) of ``faithfulness`` (module docstring).

    Parameters
    ----------
    faithfulness : pd.DataFrame
        The ``faithfulness`` table (columns ``method, layer, deletion_auc, insertion_auc, faithfulness``);
        rows with an undefined faithfulness (no target pixels) are left out.
    sanity : pd.DataFrame, optional
        The ``sanity`` table (``method, layer, step, ssim, spearman`` and optionally ``spearman_abs``);
        absent or without a (method, layer): ``sanity_*`` NaN and ``passes_sanity`` NA.

    Returns
    -------
    pd.DataFrame
        Columns :data:`TRUST_COLUMNS`, in the order the (method, layer) first appear; ``chosen`` False
        (:func:`choose_primary` decides).
    """
    if faithfulness.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("method", "layer") else float) for c in TRUST_COLUMNS})
    rows = faithfulness[np.isfinite(pd.to_numeric(faithfulness["faithfulness"], errors="coerce"))]
    # a pair of the run's pre-pass sample that the evidence level also picks has two rows (the pre-pass's and
    # the shard's, computed alike): count it once
    keys = [c for c in ("image_id", "class_id", "method", "layer", "target") if c in rows]
    rows = rows.drop_duplicates(keys) if "image_id" in keys else rows
    grouped = rows.groupby(["method", "layer"], as_index=False, sort=False)
    table = grouped.agg(n_pairs=("faithfulness", "size"), deletion_auc=("deletion_auc", "mean"),
                        insertion_auc=("insertion_auc", "mean"), faithfulness=("faithfulness", "mean"),
                        faithfulness_sd=("faithfulness", "std"))
    table["n_pairs"] = table["n_pairs"].astype("int64")
    table["faithfulness_se"] = table.pop("faithfulness_sd") / np.sqrt(table["n_pairs"].clip(lower=1))
    table = table.merge(_last_sanity_step(sanity), on=["method", "layer"], how="left")
    ssim = pd.to_numeric(table["sanity_ssim"], errors="coerce")
    table["passes_sanity"] = pd.array([pd.NA if math.isnan(s) else bool(s < SANITY_SSIM_MAX) for s in ssim],
                                      dtype="boolean")
    table["chosen"] = False
    return table[list(TRUST_COLUMNS)].astype({"sanity_ssim": float, "sanity_spearman": float})


def _user_first(candidates: Sequence[tuple[str, str]], methods: Sequence[str],
                layers: Sequence[str]) -> tuple[str, str]:
    """The user's first (method, layer) among ``candidates``: the first method, at the first layer it has."""
    present = [m for m in methods if any(c[0] == m for c in candidates)] or [candidates[0][0]]
    mine = [c[1] for c in candidates if c[0] == present[0]]
    return present[0], next((layer for layer in layers if layer in mine), mine[0])


def _fails_sanity(passes: object) -> bool:
    """The sanity check ran and failed (NA: not checked, no objection)."""
    return bool(pd.notna(passes)) and not bool(passes)


def choose_primary(
    trust: pd.DataFrame, methods: Sequence[str], layers: Sequence[str], fixed: bool,
    computed: Iterable[tuple[str, str]] | None = None,
) -> tuple[str, str]:
    """The (method, layer) the findings are decided on (module docstring).

    Parameters
    ----------
    trust : pd.DataFrame
        :func:`method_trust`'s table.
    methods, layers : sequence of str
        The run's methods and layers, in the user's order.
    fixed : bool
        The user fixed the primary map (setting ``primary="first"``): their first method and layer.
    computed : iterable of (str, str), optional
        The (method, layer) the audit computed for every image (default: every method at every layer);
        maps of other layers (e.g. a calibration pre-pass on a sample) are never chosen.

    Returns
    -------
    (str, str)
        The chosen method and layer; the user's first where nothing better is known.
    """
    candidates = list(dict.fromkeys(computed if computed is not None else
                                    ((m, layer) for m in methods for layer in layers)))
    if not candidates:
        return (methods[0] if methods else "", layers[0] if layers else "")
    first = _user_first(candidates, methods, layers)
    if fixed or trust.empty:
        return first
    stats = trust.set_index(["method", "layer"])
    eligible = [c for c in candidates if c in stats.index and not _fails_sanity(stats.loc[c, "passes_sanity"])
                and np.isfinite(stats.loc[c, "faithfulness"])]
    if not eligible:
        return first
    best = max(eligible, key=lambda c: (stats.loc[c, "faithfulness"], -candidates.index(c)))
    if best == first or first not in eligible:
        return best
    gap = stats.loc[best, "faithfulness"] - stats.loc[first, "faithfulness"]
    noise = 2.0 * math.hypot(stats.loc[best, "faithfulness_se"], stats.loc[first, "faithfulness_se"])
    return best if gap > noise else first  # NaN noise (a single pair): not different


def primary_order(methods: Sequence[str], layers: Sequence[str], chosen: tuple[str, str]) -> tuple[list[str], list[str]]:
    """``methods`` and ``layers`` with the chosen method and layer moved first (a layer that is not among
    ``layers``, e.g. the input of guided backprop, leaves ``layers`` as they are)."""
    method, layer = chosen
    ordered_methods = [method, *(m for m in methods if m != method)] if method in methods else list(methods)
    ordered_layers = [layer, *(x for x in layers if x != layer)] if layer in layers else list(layers)
    return ordered_methods, ordered_layers


def trusted_primary(
    faithfulness: pd.DataFrame, sanity: pd.DataFrame | None, scores: pd.DataFrame, methods: Sequence[str],
    layers: Sequence[str], primary: str = "faithful",
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The run's ``method_trust`` table (``chosen`` set) and its methods and layers in primary order.

    Candidates are the (method, layer) of ``scores`` (every image's maps); ``primary`` is the setting
    (:data:`PRIMARY_CHOICES`).
    """
    if primary not in PRIMARY_CHOICES:
        raise ValueError(f"primary must be one of {', '.join(PRIMARY_CHOICES)}, got {primary!r}")
    trust = method_trust(faithfulness, sanity)
    computed = list(dict.fromkeys(zip(scores["method"], scores["layer"], strict=True))) if len(scores) else None
    methods = list(methods) or list(dict.fromkeys(m for m, _ in computed or ()))
    layers = list(layers) or list(dict.fromkeys(x for _, x in computed or ()))
    chosen = choose_primary(trust, methods, layers, primary == "first", computed)
    trust["chosen"] = [(m, x) == chosen for m, x in zip(trust["method"], trust["layer"], strict=True)]
    return trust, *primary_order(methods, layers, chosen)
