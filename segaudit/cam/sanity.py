"""Sanity check of a CAM method: do its maps change when the model's parameters are randomised?

Adebayo et al. ("Sanity Checks for Saliency Maps", NeurIPS 2018) randomise a trained model's weights
layer by layer, from the output towards the input (*cascading* randomisation), and compare the maps of the
randomised model with the trained model's. A method whose maps stay the same does not explain the model
(it shows the input's edges, or the architecture's prior), however well its maps fit the labels.

Given the blocks to randomise in order (top first), :func:`cascading_randomization` re-initialises them one
more at a time on a copy of the model and recomputes the maps with the caller's ``explain``; per step and
map it reports

- the Spearman rank correlation ``rho(R(L), R(L'))`` of the trained and the randomised map over the
  pixels (average ranks for ties, as ``scipy.stats.spearmanr``), of the raw values and of their absolute
  values (Adebayo et al. report both);
- the structural similarity ``SSIM(L, L')`` (Wang et al. 2004, Gaussian window sigma 1.5, 11 x 11,
  ``C1 = (0.01)^2``, ``C2 = (0.03)^2``) of the two maps min-max normalised to [0, 1].

A faithful method's similarities fall as more of the model is randomised; one whose maps keep a high
similarity once every listed block is random fails the check.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["average_ranks", "rank_correlation", "ssim", "randomize_module", "cascading_randomization"]


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` -> ``(N, P)`` float64 ranks 1..P of each row, ties given their average rank."""
    n, p = values.shape
    order = torch.argsort(values, dim=1, stable=True)
    sorted_vals = torch.gather(values, 1, order)
    ranks = torch.empty((n, p), dtype=torch.float64, device=values.device)
    for row in range(n):  # ties per row: one unique_consecutive each
        _, counts = torch.unique_consecutive(sorted_vals[row], return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        mean_rank = (ends - (counts.double() - 1) / 2).repeat_interleave(counts)
        ranks[row, order[row]] = mean_rank
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of ``(N, H, W)`` maps pairwise over pixels; NaN where a map is constant."""
    ra, rb = average_ranks(a.flatten(1)), average_ranks(b.flatten(1))
    da, db = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = ((da * da).sum(1) * (db * db).sum(1)).sqrt()
    rho = (da * db).sum(1) / den.clamp(min=1e-300)
    return torch.where(den > 0, rho.clamp(-1, 1), torch.full_like(rho, float("nan")))


def _unit(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1).double()
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp(min=1e-12)).reshape(maps.shape)


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of ``(N, H, W)`` maps pairwise, each min-max normalised to [0, 1]
    (module docstring); the window is cut at the borders (``reflect`` padding)."""
    x, y = _unit(a)[:, None], _unit(b)[:, None]
    half = size // 2
    grid = torch.arange(size, dtype=torch.float64, device=a.device) - half
    g = torch.exp(-(grid**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        pad = min(half, t.shape[-1] - 1, t.shape[-2] - 1)
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), kernel[..., half - pad : half + pad + 1,
                                                                         half - pad : half + pad + 1]
                        / kernel[..., half - pad : half + pad + 1, half - pad : half + pad + 1].sum())

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def randomize_module(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter of ``module`` in place: weights ~ N(0, 1 / fan_in) (He-like scale, so
    activations neither vanish nor explode), biases 0; BatchNorm-style scale 1 and shift 0."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias") or param.ndim < 2:
                is_scale = name.endswith("weight") and param.ndim == 1
                param.copy_(torch.ones_like(param) if is_scale else torch.zeros_like(param))
            else:
                fan_in = param[0].numel()
                noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) / fan_in**0.5
                param.copy_(noise.to(param.dtype).to(param.device))


def cascading_randomization(
    model: nn.Module,
    blocks: Sequence[str],
    explain: Callable[[nn.Module], dict[str, torch.Tensor]],
    seed: int = 0,
    max_steps: int | None = None,
) -> list[dict[str, object]]:
    """Adebayo et al.'s cascading randomisation (module docstring).

    Parameters
    ----------
    model : nn.Module
        The trained model (left unchanged: a deep copy is randomised).
    blocks : sequence of str
        Names of submodules (``model.named_modules()``) in the order to randomise them, output side first.
    explain : callable
        ``explain(module)`` -> ``{method: (N, H, W) maps}`` of the same images and targets for any version
        of the model (e.g. :func:`segaudit.cam.compute_cams` with fixed targets).
    seed : int
        Seeds the random weights.
    max_steps : int, optional
        Explain after at most this many of the cumulative steps, evenly spaced over the blocks and always
        after the last (the blocks are still randomised one more at a time, with the same weights): a deep
        model's 20 blocks then cost ``max_steps`` explanations instead of 20.

    Returns
    -------
    list of dict
        One per explained step: ``block`` (the last block randomised), ``step`` (1-based: the blocks random so
        far) and, per method, ``spearman``, ``spearman_abs`` and ``ssim``: ``(N,)`` float64 tensors.
    """
    modules = dict(model.named_modules())
    unknown = [b for b in blocks if b not in modules]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; see model.named_modules()")
    reference = {m: v.detach().double() for m, v in explain(model).items()}
    randomized = copy.deepcopy(model)
    random_modules = dict(randomized.named_modules())
    generator = torch.Generator().manual_seed(seed)
    steps = []
    explained = _explained_steps(len(blocks), max_steps)
    for step, block in enumerate(blocks, start=1):
        randomize_module(random_modules[block], generator)
        if step not in explained:
            continue
        maps = explain(randomized)
        row: dict[str, object] = {"block": block, "step": step}
        for method, ref in reference.items():
            new = maps[method].detach().double()
            row[method] = {"spearman": rank_correlation(ref, new), "spearman_abs": rank_correlation(ref.abs(), new.abs()),
                           "ssim": ssim(ref, new)}
        steps.append(row)
    return steps


def _explained_steps(n: int, max_steps: int | None) -> set[int]:
    """The 1-based steps explained: all ``n``, or ``max_steps`` of them evenly spaced, ending with ``n``."""
    if max_steps is None or max_steps >= n:
        return set(range(1, n + 1))
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return {round(n * (i + 1) / max_steps) for i in range(max_steps)}
