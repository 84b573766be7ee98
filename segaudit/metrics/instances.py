"""Instance coverage: does a class's map light every object of the class, or only one of them?

A map can score well against a class's mask (most of its mass inside, its maximum inside) and still
explain only one of two cars. Chattopadhay et al. 2018 ("Grad-CAM++: Generalized Gradient-Based Visual
Explanations for Deep Convolutional Networks", WACV; Fig. 1 and Sec. 1) motivate Grad-CAM++ by exactly this:
with several instances of a class, Grad-CAM tends to light one and Grad-CAM++ all of them. This module
measures it, per instance and per (image, class, map).

Inputs are batched: ``maps`` ``(N, H, W)`` (one map per (image, class) pair, raw and non-negative where
relevant, at the masks' resolution), ``valid`` ``(N, H, W)`` bool (False = void, ignored everywhere), and
the instances of all pairs stacked as ``instance_masks`` ``(M, H, W)`` bool with ``owner`` ``(M,)``, the
row of ``maps`` each instance belongs to (the instances of that pair's class in that image).

Per instance ``I`` of a map ``L`` with valid pixels ``V`` and positive part ``L+ = max(L, 0)``::

    mass_share       = sum_{p in I & V} L+_p / sum_{p in V} L+_p
    class_mass_share = sum_{p in I & V} L+_p / sum_{p in U & V} L+_p,   U = union of the class's instances
    peak_height      = max { L_p / max_V L : p in I & V, p a local maximum of L }   (0 if none)
    has_peak         = peak_height >= PEAK_FRACTION
    covered          = has_peak or class_mass_share >= 1 / (2 n)                     (n = instances of the class)

A *local maximum* is a valid pixel whose value equals the maximum of the valid pixels in the
``PEAK_WINDOW`` x ``PEAK_WINDOW`` window centred on it (max-pooling with stride 1; void and out-of-image
pixels never count), so plateaus count as maxima at every pixel. Per (image, class, map)::

    instance_coverage = mean over the class's instances with a defined ``covered`` of covered

NaN rules (as in :mod:`segaudit.metrics.scores`): an instance with no valid pixel, or a map with no positive valid
value, leaves that instance's shares, peak and ``covered`` undefined (NaN); ``instance_coverage`` is NaN
when no instance has a defined ``covered`` (no instances at all, e.g. a class only the model predicts, or a
dataset without instance labels). With a single instance the coverage is trivially 1 whenever the map has
any positive mass on it (its ``class_mass_share`` is 1), so only classes with 2 or more instances say
anything about multi-instance coverage; filter on ``n_instances``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PEAK_FRACTION", "PEAK_WINDOW", "InstanceScores", "local_peaks", "instance_scores"]

#: A local maximum counts as a peak when its value is at least this share of the map's maximum.
PEAK_FRACTION = 0.5
#: Side (pixels, odd) of the square window in which a peak must be the largest value.
PEAK_WINDOW = 3

_NAN = float("nan")


@dataclass
class InstanceScores:
    """Per-instance and per-map instance-coverage scores.

    Attributes
    ----------
    pixels : torch.Tensor
        ``(M,)`` int64 valid pixels of each instance.
    mass_share, class_mass_share, peak_height, has_peak, covered : torch.Tensor
        ``(M,)`` float64 per instance (``has_peak`` and ``covered`` are 0/1), NaN where undefined.
    n_instances : torch.Tensor
        ``(N,)`` int64 instances per map (all of them, defined or not).
    instance_coverage : torch.Tensor
        ``(N,)`` float64 share of each map's instances covered, NaN when undefined.
    """

    pixels: torch.Tensor
    mass_share: torch.Tensor
    class_mass_share: torch.Tensor
    peak_height: torch.Tensor
    has_peak: torch.Tensor
    covered: torch.Tensor
    n_instances: torch.Tensor
    instance_coverage: torch.Tensor


def local_peaks(maps: torch.Tensor, valid: torch.Tensor, window: int = PEAK_WINDOW) -> torch.Tensor:
    """Heights of the maps' local maxima relative to each map's maximum; 0 elsewhere.

    ``out_p = L_p / max_V L`` where ``p`` is valid, ``L_p > 0`` and ``L_p = max_{q in W(p) & V} L_q`` with
    ``W(p)`` the ``window`` x ``window`` square centred on ``p``; ``out_p = 0`` otherwise.

    Parameters
    ----------
    maps : ``(N, H, W)`` float.  valid : ``(N, H, W)`` bool.
    window : int
        Odd side of the neighbourhood, >= 1 (1: every positive pixel is a local maximum).

    Returns
    -------
    ``(N, H, W)`` float64 in [0, 1].
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 1, got {window}")
    if maps.dim() != 3 or valid.shape != maps.shape or valid.dtype != torch.bool:
        raise ValueError(f"expected maps (N, H, W) and bool valid of that shape, got {tuple(maps.shape)}, "
                         f"{tuple(valid.shape)} {valid.dtype}")
    row, position, height = _peak_points(maps, valid, window)
    peaks = torch.zeros(maps.shape, dtype=torch.float64, device=maps.device)
    peaks.view(len(maps), -1)[row, position] = height
    return peaks


def _peak_points(maps: torch.Tensor, valid: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The local maxima of :func:`local_peaks` as a sparse list: map row, flat pixel position and height."""
    # pooled in the maps' own dtype (a maximum is exact in any dtype), divided in float64
    values = torch.where(valid, maps, -torch.inf)
    pooled = _window_max(values, window)
    top = values.flatten(1).max(1).values.double().clamp(min=1e-300)
    row, position = torch.nonzero((valid & (values >= pooled) & (values > 0)).flatten(1), as_tuple=True)
    return row, position, values.flatten(1)[row, position].double() / top[row]


def _window_max(values: torch.Tensor, window: int) -> torch.Tensor:
    """``(N, H, W)``: the maximum over the ``window`` x ``window`` square centred on each pixel (out-of-image
    pixels -inf), as ``max_pool2d(stride=1, padding=window // 2)`` but separable (rows, then columns) and by
    shifted elementwise maxima, which is exact and on a CPU ~30x faster than stride-1 max-pooling."""
    half = window // 2
    if half == 0:
        return values
    padded = F.pad(values, (half, half, half, half), value=-torch.inf)
    height, width = values.shape[-2:]
    across = padded[..., 0:width]
    for shift in range(1, window):
        across = torch.maximum(across, padded[..., shift : shift + width])
    pooled = across[..., 0:height, :]
    for shift in range(1, window):
        pooled = torch.maximum(pooled, across[..., shift : shift + height, :])
    return pooled


def instance_scores(
    maps: torch.Tensor,
    valid: torch.Tensor,
    instance_masks: torch.Tensor,
    owner: torch.Tensor,
    *,
    peak_fraction: float = PEAK_FRACTION,
    window: int = PEAK_WINDOW,
    chunk: int = 64,
    compiled: bool | None = None,
) -> InstanceScores:
    """Mass share, peak and coverage of every instance, and each map's instance coverage (see the module
    docstring for the formulas).

    Parameters
    ----------
    maps : ``(N, H, W)`` float
        One map per (image, class) pair.
    valid : ``(N, H, W)`` bool
        False = void.
    instance_masks : ``(M, H, W)`` bool
        The instances of every pair, stacked.
    owner : ``(M,)`` int64
        Row of ``maps`` each instance belongs to.
    peak_fraction : float
        :data:`PEAK_FRACTION`.
    window : int
        :data:`PEAK_WINDOW`.
    chunk : int
        Instances per step of the torch sums (bounds memory at ``chunk * H * W``; results do not depend on it).
    compiled : bool or None
        Sum in the compiled loops of :mod:`segaudit.metrics.sums_kernel` (the default for float32 maps on a
        CPU) or with torch (a device's path; any dtype); the two differ by float64 rounding at most.

    Returns
    -------
    InstanceScores
    """
    _check_inputs(maps, valid, instance_masks, owner, peak_fraction, window)
    n = len(maps)
    owner, instance_masks = owner.long().to(maps.device), instance_masks.to(maps.device)
    # only the maps that own an instance are read (most pairs of a batch have none)
    used, mine = torch.unique(owner, return_inverse=True)
    maps, valid = maps[used], valid[used]
    if compiled is None:
        compiled = maps.device.type == "cpu" and maps.dtype == torch.float32
    if compiled:
        total, pixels, inside, class_total, peak_height = _compiled_instance_sums(maps, valid, instance_masks, mine,
                                                                                  window)
    else:
        positive = torch.where(valid, maps.clamp(min=0), 0.0)  # summed in float64 (the maps' values are exact there)
        total = positive.flatten(1).sum(1, dtype=torch.float64)
        pixels, inside, class_total, peak_height = _instance_sums(positive, valid, _peak_points(maps, valid, window),
                                                                  instance_masks, mine, chunk)
    n_instances = torch.bincount(owner, minlength=n)
    undefined = (pixels == 0) | (total[mine] <= 0)
    mass_share = _nan_where(inside / total[mine].clamp(min=1e-300), undefined)
    class_mass_share = _nan_where(inside / class_total[mine].clamp(min=1e-300), undefined)
    fair = 1.0 / (2.0 * n_instances[owner].clamp(min=1).double())
    covered = ((peak_height >= peak_fraction) | (class_mass_share >= fair)).double()
    defined = ~undefined
    covered_sum = torch.zeros(n, dtype=torch.float64, device=maps.device).index_add_(
        0, owner, torch.where(defined, covered, 0.0)
    )
    counted = torch.bincount(owner[defined], minlength=n)
    coverage = _nan_where(covered_sum / counted.clamp(min=1).double(), counted == 0)
    return InstanceScores(
        pixels=pixels,
        mass_share=mass_share,
        class_mass_share=class_mass_share,
        peak_height=_nan_where(peak_height, undefined),
        has_peak=_nan_where((peak_height >= peak_fraction).double(), undefined),
        covered=_nan_where(covered, undefined),
        n_instances=n_instances,
        instance_coverage=coverage,
    )


def _nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    return torch.where(undefined, _NAN, values)


def _check_inputs(
    maps: torch.Tensor, valid: torch.Tensor, instance_masks: torch.Tensor, owner: torch.Tensor, peak_fraction: float,
    window: int,
) -> None:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 1, got {window}")
    n, height, width = maps.shape
    if valid.shape != maps.shape or valid.dtype != torch.bool:
        raise ValueError(f"expected bool valid of shape {tuple(maps.shape)}, got {tuple(valid.shape)} {valid.dtype}")
    if instance_masks.dim() != 3 or instance_masks.shape[1:] != (height, width) or instance_masks.dtype != torch.bool:
        raise ValueError(f"expected bool instance_masks (M, {height}, {width}), got "
                         f"{tuple(instance_masks.shape)} {instance_masks.dtype}")
    if owner.shape != (len(instance_masks),) or (len(owner) and (owner.min() < 0 or owner.max() >= n)):
        raise ValueError(f"owner must be ({len(instance_masks)},) indices into the {n} maps")
    if not 0 < peak_fraction <= 1:
        raise ValueError(f"peak_fraction must be in (0, 1], got {peak_fraction}")


def _compiled_instance_sums(
    maps: torch.Tensor, valid: torch.Tensor, instance_masks: torch.Tensor, owner: torch.Tensor, window: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each map's positive mass, then :func:`_instance_sums`' four, in the compiled loops of
    :func:`segaudit.metrics.sums_kernel.instance_sums` (float32 maps on a CPU); the peaks' window maxima
    (:func:`_window_max`) by torch."""
    from segaudit.metrics import sums_kernel  # numba: compiled (or read from its cache) on first use

    n, m = len(maps), len(instance_masks)
    pooled = _window_max(torch.where(valid, maps, -torch.inf), window)
    total, class_total = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    pixels = torch.zeros(m, dtype=torch.long)
    inside, peak_height = torch.zeros(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    flat = [t.detach().flatten(1).contiguous().numpy() for t in (maps, valid, pooled, instance_masks)]
    sums_kernel.instance_sums(*flat, owner.numpy(), pixels.numpy(), inside.numpy(), peak_height.numpy(),
                              class_total.numpy(), total.numpy())
    return total, pixels, inside, class_total, peak_height


def _instance_sums(
    positive: torch.Tensor, valid: torch.Tensor, peaks: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    instance_masks: torch.Tensor, owner: torch.Tensor, chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per instance: valid pixels, positive mass inside, its class's positive mass (over the union of the
    class's instances) and the highest of its map's peaks (:func:`_peak_points`) inside, 0 if none;
    ``chunk`` instances at a time."""
    peak_row, peak_position, peak_value = peaks  # sorted by row
    count = torch.bincount(peak_row, minlength=len(positive))
    first = count.cumsum(0) - count
    m = len(instance_masks)
    pixels = torch.zeros(m, dtype=torch.long, device=positive.device)
    inside = torch.zeros(m, dtype=torch.float64, device=positive.device)
    peak_height = torch.zeros(m, dtype=torch.float64, device=positive.device)
    owned = torch.bincount(owner, minlength=len(positive))
    shared = torch.nonzero(owned > 1)[:, 0]  # maps with several instances: their union is needed
    slot = torch.full((len(positive),), -1, dtype=torch.long, device=positive.device)
    slot[shared] = torch.arange(len(shared), device=positive.device)
    union = torch.zeros((len(shared), *positive.shape[1:]), dtype=torch.int32, device=positive.device)
    for start in range(0, m, chunk):
        part = slice(start, start + chunk)
        rows = owner[part]
        mine = instance_masks[part] & valid[rows]
        several = slot[rows] >= 0
        union.index_add_(0, slot[rows][several], mine[several].int())
        pixels[part] = mine.flatten(1).sum(1)
        inside[part] = torch.where(mine, positive[rows], 0.0).flatten(1).sum(1, dtype=torch.float64)
        # (instance, peak of its map) pairs: at most as many as the chunk's pixels
        per = count[rows]
        pair = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), per)
        peak = first[rows][pair] + torch.arange(len(pair), device=rows.device) - (per.cumsum(0) - per)[pair]
        inside_peak = torch.where(mine.flatten(1)[pair, peak_position[peak]], peak_value[peak], 0.0)
        peak_height[part] = torch.zeros(len(rows), dtype=torch.float64, device=rows.device).scatter_reduce_(
            0, pair, inside_peak, "amax")
    # a class's mass over the union of its instances: the instance's own mass when it is the only one
    class_total = torch.zeros(len(positive), dtype=torch.float64, device=positive.device)
    class_total[owner] = inside
    class_total[shared] = torch.where(union > 0, positive[shared], 0.0).flatten(1).sum(1, dtype=torch.float64)
    return pixels, inside, class_total, peak_height
