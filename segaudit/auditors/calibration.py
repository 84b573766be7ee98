"""The run's pre-pass on a small sample of its images: the sanity check of its maps and, when the user fixed
no layer, the choice of the CAM layer. It runs once per run, before the shards, never per shard.

**Sample.** The first :data:`SAMPLE_SIZE` images that :func:`segaudit.auditors.sampling.evidence_images`
picks (in dataset order), completed with the first other images when it picks fewer. Skipped at
``evidence="none"``.

**Sanity check** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018; the computation is
:func:`segaudit.cam.sanity.cascading_randomization`). The maps of every method at every layer the audit
computes are recomputed while the model's blocks are re-initialised one more at a time, output side first
(:func:`randomization_blocks`). The targets are fixed to the trained model's: each (image, class) the
trained model predicts, explained over its predicted pixels, so that only the weights change between
steps. Each step gives one row per (method, layer) of the run-level ``sanity`` table: the means over the
sampled maps of the Spearman rank correlation (raw and absolute values) and of the SSIM between the
trained and the randomised maps (maps upsampled to the input). A method whose maps keep a high similarity
once every block is random does not explain the model.

**Layer calibration** (only when ``layers`` is empty). Candidates: the model's default layer and up to two
other layers (:func:`candidate_layers_for`). On the sample, every map of every method at every candidate
(the first :data:`CALIBRATION_PAIRS` (image, class) pairs) gets the audit's own deletion/insertion curves
with ROAD imputation (:func:`segaudit.auditors.faithfulness_rows.curve_rows`: the shares
:data:`~segaudit.auditors.faithfulness_rows.AUDIT_FRACTIONS`, the score over the pixels the map explained,
with the default target the pair's predicted mask, or its labelled mask where the model predicts none of the
class; background is not explained). Per layer ``L`` the faithfulness

    F(L) = mean over methods m of mean over pairs p of (insertion_auc - deletion_auc)(p, m, L)

and the best layer ``L*`` replaces the default ``D`` only when it wins beyond the noise of the sample: the
paired differences ``d = f(p, m, L*) - f(p, m, D)`` over the pairs and methods must have
``mean(d) > 2 * std(d) / sqrt(n)`` (two standard errors); otherwise, and on ties, the default layer stays.
The curves become rows of the ``faithfulness`` table.

A failure of the pre-pass (an odd model, an image the model cannot take) never stops the audit: the caller
keeps the default layer and writes an error row of stage ``"calibration"`` (:func:`run_prepass`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from segaudit.auditors.base import cam_settings
from segaudit.auditors.faithfulness_rows import curve_rows
from segaudit.auditors.sampling import evidence_images
from segaudit.cam.engine import CamResult, compute_cams_with
from segaudit.cam.maps import upsample_maps
from segaudit.cam.sanity import cascading_randomization
from segaudit.cam.targets import TARGET_NONE
from segaudit.data.classmap import ClassMap
from segaudit.data.preprocess import PreparedBatch, prepare_batch
from segaudit.data.readers import SegmentationDataset, read_samples
from segaudit.data.sample import ImageRef
from segaudit.models.registry import LoadedModel
from segaudit.schema import INPUT_LAYER, VOID_LABEL
from segaudit.settings import AuditConfig

__all__ = ["SAMPLE_SIZE", "Prepass", "sample_refs", "randomization_blocks", "candidate_layers_for",
           "fixed_target_explainer", "sanity_rows", "faithfulness_rows", "choose_layer", "run_prepass"]

#: Images of the pre-pass sample.
SAMPLE_SIZE = 4
#: Steps of the cascading randomisation that are explained (evenly spaced over the model's blocks, the last
#: always): the demo model has 18 blocks, and each explained step is a CAM pass (18 took 23 s of a 62 s demo).
SANITY_STEPS = 4
#: Stage of the error row a failed pre-pass writes.
STAGE = "calibration"

#: At most this many (image, class) pairs get curves (the first in the sample), bounding the pre-pass's cost:
#: pairs x methods x layers x 2 x 5 imputed images.
CALIBRATION_PAIRS = 4


Explain = Callable[[nn.Module], dict[tuple[str, str], torch.Tensor]]


@dataclass
class Prepass:
    """What the pre-pass found: its rows, the layer the audit uses, and what to log."""

    layer: str | None = None  # the chosen primary layer; None: keep the configuration's layers
    default_layer: str = ""
    layer_scores: dict[str, float] = field(default_factory=dict)  # F(L) per candidate
    sanity: list[dict[str, Any]] = field(default_factory=list)
    faithfulness: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What the run's plan records (``run.json``), so that a resumed run reuses the choice."""
        return {"layer": self.layer, "default_layer": self.default_layer, "layer_scores": self.layer_scores,
                "image_ids": self.image_ids, "lines": self.lines, "n_errors": len(self.errors)}


def sample_refs(refs: Sequence[ImageRef], level: str, share: float, size: int = SAMPLE_SIZE) -> list[ImageRef]:
    """The pre-pass sample (module docstring): ``[]`` at level ``"none"``."""
    if level == "none" or not refs:
        return []
    picked = evidence_images([r.image_id for r in refs], level, share)
    chosen = [r for r, p in zip(refs, picked, strict=True) if p][:size]
    others = [r for r, p in zip(refs, picked, strict=True) if not p]
    return chosen + others[: size - len(chosen)]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def randomization_blocks(module: nn.Module, layer: str) -> list[str]:
    """The blocks of ``module`` to randomise, output side first, derived from its module tree.

    Walking from the root down the path of ``layer`` (the audit's primary layer), at each level the
    children registered after the child on the path (the output side: heads, decoders) come first, last
    registered first; then, at the level holding ``layer``, that container's children from the last to the
    first (``layer`` among them); then the children registered before the path at each level, innermost
    level first (stems). Children without parameters are left out. A ``layer`` that is not a dotted
    submodule (``input``) gives the model's top-level children, last first.
    """
    modules = dict(module.named_modules())
    parts = layer.split(".") if layer in modules and layer else []
    after: list[str] = []
    before: list[list[str]] = []
    holder, prefix = module, ""
    for depth, part in enumerate(parts):
        names = [name for name, _ in holder.named_children()]
        full = [f"{prefix}{name}" for name in names]
        k = names.index(part)
        if depth == len(parts) - 1:  # the container holding the layer: all its children
            after.extend(reversed(full))
        else:
            after.extend(reversed(full[k + 1:]))
            before.append(list(reversed(full[:k])))
        holder, prefix = getattr(holder, part), f"{prefix}{part}."
    if not parts:
        after = [name for name, _ in reversed(list(module.named_children()))]
    ordered = after + [name for level in reversed(before) for name in level]
    return [name for name in ordered if _has_parameters(modules[name])]


def candidate_layers_for(module: nn.Module, default: str, count: int = 2) -> list[str]:
    """Up to ``count`` other layers to calibrate against ``default``: among the siblings of ``default``
    (children with parameters of the module holding it), the deepest one and the one halfway between
    ``default`` and it (deeper layers see more of the prediction); when ``default`` is the deepest, the
    nearest shallower siblings instead."""
    parent, _, _ = default.rpartition(".")
    holder = dict(module.named_modules()).get(parent)
    if holder is None or not default:
        return []
    prefix = f"{parent}." if parent else ""
    siblings = [f"{prefix}{name}" for name, child in holder.named_children() if _has_parameters(child)]
    if default not in siblings:
        return []
    k = siblings.index(default)
    deeper, shallower = siblings[k + 1:], siblings[:k]
    if deeper:
        picks = [deeper[-1], deeper[(len(deeper) - 1) // 2]]
    else:
        picks = list(reversed(shallower[-2:]))
    return list(dict.fromkeys(p for p in picks if p != default))[:count]


def _pairs(cams: CamResult) -> tuple[torch.Tensor, torch.Tensor]:
    image, cls = torch.nonzero(cams.target_source != TARGET_NONE, as_tuple=True)
    return image, cls


def fixed_target_explainer(images: torch.Tensor, valid: torch.Tensor, trained: CamResult,
                           settings: Any) -> tuple[Explain, torch.Tensor, torch.Tensor]:
    """``explain(module) -> {(layer, method): (N, S, S) maps}`` of the pairs the trained model predicts, each
    explained over its predicted pixels whatever version of the model runs (targets ``"gt"`` on the trained
    prediction), upsampled to the input; with the pairs' image and class indices."""
    valid = valid.to(trained.pred.device)
    fixed = torch.where(valid, trained.pred, torch.full_like(trained.pred, VOID_LABEL))
    predicted = torch.stack([(fixed == k).flatten(1).any(1) for k in range(trained.target_source.shape[1])], 1)
    classes = (trained.target_source != TARGET_NONE) & predicted
    image, cls = torch.nonzero(classes, as_tuple=True)
    fixed_settings = replace(settings, target="gt", roi=None)
    size = tuple(images.shape[-2:])

    def explain(module: nn.Module) -> dict[tuple[str, str], torch.Tensor]:
        cams = compute_cams_with(module, images, fixed_settings, fixed, classes)
        return {key: upsample_maps(value[image, cls].float(), size) for key, value in cams.maps.items()}

    return explain, image, cls


def sanity_rows(module: nn.Module, blocks: Sequence[str], explain: Explain, seed: int = 0,
                max_steps: int | None = SANITY_STEPS) -> list[dict[str, Any]]:
    """Rows of the ``sanity`` table: :func:`~segaudit.cam.sanity.cascading_randomization` of ``module``
    over ``blocks`` (explained after at most ``max_steps`` of its steps, the last always), per step and
    (layer, method) the means over the maps (NaN left out; ``n_maps`` counts the maps with a finite
    Spearman correlation)."""
    rows = []
    for step in cascading_randomization(module, blocks, explain, seed=seed, max_steps=max_steps):
        for key, values in step.items():
            if not isinstance(key, tuple):
                continue
            layer, method = key
            rho, rho_abs, sim = (values[name] for name in ("spearman", "spearman_abs", "ssim"))
            rows.append({"method": method, "layer": layer, "step": int(step["step"]), "block": str(step["block"]),
                         "spearman": _nanmean(rho), "spearman_abs": _nanmean(rho_abs), "ssim": _nanmean(sim),
                         "n_maps": int(torch.isfinite(rho).sum())})
    return rows


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def faithfulness_rows(model: LoadedModel, batch: PreparedBatch, cams: CamResult, config: AuditConfig,
                      max_pairs: int | None = None) -> list[dict[str, Any]]:
    """Rows of the ``faithfulness`` table for every map of ``cams`` (layer ``input`` maps left out): the
    audit's deletion/insertion curves (:func:`segaudit.auditors.faithfulness_rows.curve_rows`, over the
    pixels each map explained) of each (image, class, method, layer); the first ``max_pairs`` pairs only,
    if given."""
    image, cls = _pairs(cams)
    checked = torch.stack([image, cls], dim=1)[:max_pairs].cpu()
    keys = [key for key in cams.maps if key[0] != INPUT_LAYER]
    if not len(checked) or not keys:
        return []
    with torch.no_grad():
        return curve_rows(batch, cams, model, config, checked, keys)


def choose_layer(rows: Sequence[dict[str, Any]], default: str) -> tuple[str, dict[str, float]]:
    """The calibrated layer from faithfulness rows (module docstring): ``(layer, F(L) per layer)``."""
    by_key: dict[tuple[str, str, str, int], float] = {}
    for r in rows:
        if math.isfinite(r["faithfulness"]):
            by_key[(r["layer"], r["method"], r["image_id"], r["class_id"])] = r["faithfulness"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    scores = {}
    for layer in layers:
        methods = {m for (lay, m, _, _) in by_key if lay == layer}
        per_method = [_mean([v for (lay, m, _, _), v in by_key.items() if lay == layer and m == method])
                      for method in sorted(methods)]
        scores[layer] = _mean(per_method)
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if default not in finite or not finite:
        return default, scores
    best = max(finite, key=lambda k: (finite[k], k == default))
    diffs = [v - by_key[(default, *rest)] for (lay, *rest), v in by_key.items()
             if lay == best and (default, *rest) in by_key]
    if best == default or len(diffs) < 2:
        return default, scores
    mean = sum(diffs) / len(diffs)
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return (best if mean > 2 * std / math.sqrt(len(diffs)) else default), scores


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def layer_line(prepass: Prepass) -> str:
    """``layer X chosen: faithfulness a vs b at Y, c at Z (n images)``."""
    scores = prepass.layer_scores
    others = ", ".join(f"{scores[k]:.3f} at {k}" for k in scores if k != prepass.layer)
    why = "" if prepass.layer != prepass.default_layer else " (the default layer; no candidate wins beyond noise)"
    return (f"layer {prepass.layer} chosen: faithfulness {scores.get(prepass.layer, math.nan):.3f} vs {others} "
            f"({len(prepass.image_ids)} images){why}")


def _calibrate(model: LoadedModel, batch: PreparedBatch, config: AuditConfig, prepass: Prepass) -> None:
    """Layer calibration on the prepared sample (module docstring); sets ``prepass.layer``."""
    default = model.default_layer
    layers = (default, *candidate_layers_for(model.module, default))
    settings = replace(cam_settings(model, config), layers=layers)
    cams = compute_cams_with(model.module, batch.images.to(model.device), settings, batch.gt.to(model.device))
    prepass.faithfulness = faithfulness_rows(model, batch, cams, config, max_pairs=CALIBRATION_PAIRS)
    prepass.layer, prepass.layer_scores = choose_layer(prepass.faithfulness, default)
    prepass.lines.append(layer_line(prepass))


def _sanity(model: LoadedModel, batch: PreparedBatch, config: AuditConfig, prepass: Prepass) -> None:
    """The sanity check at the audit's layers (the calibrated one, if any) on the prepared sample."""
    layers = (prepass.layer,) if prepass.layer else config.layers_of(model)
    settings = replace(cam_settings(model, config), layers=layers)
    images, valid = batch.images.to(model.device), batch.valid.to(model.device)
    trained = compute_cams_with(model.module, images, settings, batch.gt.to(model.device))
    explain, image, _ = fixed_target_explainer(images, valid, trained, settings)
    if not len(image):
        prepass.lines.append("sanity check skipped: the model predicts no class on the sample")
        return
    blocks = randomization_blocks(model.module, layers[0])
    prepass.sanity = sanity_rows(model.module, blocks, explain)
    last = [r for r in prepass.sanity if r["step"] == len(blocks)]
    prepass.lines.append("sanity check (all blocks random): " + ", ".join(
        f"{r['method']}@{r['layer']} ssim {r['ssim']:.2f} spearman {r['spearman']:.2f}" for r in last))


def run_prepass(dataset: SegmentationDataset, refs: Sequence[ImageRef], model: LoadedModel, class_map: ClassMap,
                config: AuditConfig) -> Prepass:
    """The run's pre-pass (module docstring) on its sample of ``refs``; never raises for a failure of the
    model or the data: that becomes one error row (stage ``"calibration"``) and the default layers stay."""
    prepass = Prepass(default_layer=config.layers_of(model)[0])
    sample = sample_refs(refs, config.evidence, config.evidence_share)
    if not sample or model.task != "segmentation":
        return prepass
    try:
        samples, _ = read_samples(dataset, sample)  # read errors are the shards' to report
        if not samples:
            return prepass
        prepass.image_ids = [s.image_id for s in samples]
        batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
        if not config.layers:
            _calibrate(model, batch, config, prepass)
        _sanity(model, batch, config, prepass)
    except Exception as exc:  # noqa: BLE001 - the audit goes on with its default layer (module docstring)
        reason = f"pre-pass failed, default layer kept: {type(exc).__name__}: {exc}".replace("\n", " ")[:500]
        prepass.layer, prepass.sanity, prepass.faithfulness = None, [], []
        prepass.errors = [{"image_id": "", "file_name": "", "stage": STAGE, "reason": reason}]
        prepass.lines = [reason]
    return prepass
