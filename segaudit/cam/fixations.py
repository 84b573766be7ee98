"""CNN-Fixations for segmentation (Seg-Unravel): trace a predicted label back to the input pixels that drove it.

Mopuri, Garg and Babu, "CNN Fixations: an unraveling approach to visualize the discriminative image
regions", IEEE TIP 28(5), 2019 (arXiv:1708.06670). No gradient: the forward pass is *unravelled*. Starting
from a set of discriminative neurons at the output, each layer keeps, for every neuron, the neuron of the
layer below that contributed most to it, down to input pixel locations, the *fixations*:

convolution (weights ``W``, neuron ``(c, y, x)``, input activations ``a``)
    the input channel with the largest contribution summed over the receptive field,
    ``c* = argmax_c' sum_{u,v} a[c', y s + u d - p, x s + v d - p] W[c, c', u, v]``, at the receptive
    field's centre ``(y s - p + d (K - 1) / 2, ...)`` (the authors' code keeps the centre too). A
    BatchNorm after a convolution is folded into it (``W[c] * gamma_c / sigma_c``: a negative scale flips
    which input contributes most). Grouped and depthwise convolutions pick within the neuron's group.
max pooling
    the location of the maximum inside the window (the switch), same channel.
ReLU, Dropout, Identity
    the neuron itself.

Seg-Unravel (segmentation): the starting neurons of class ``k`` are the output neurons ``(k, y, x)`` of
the pixels predicted as ``k``. The fixations of all of them, with the weights below, summed per pixel and
blurred with a Gaussian, give a high-resolution, class-discriminative **density map**.

Where this implementation departs from the paper, and why:

* **Upsampling** (not in the paper's classifiers; every FCN ends with one): a neuron goes to the source
  location, among the (up to 4) that bilinear interpolation mixes, with the largest contribution
  ``weight x activation`` (for ``nearest``, the one source).
* **Weights.** The paper keeps sets of locations. We give each starting neuron weight ``1 / |region|`` and
  pass to the chosen neuron the share of the positive contributions it made,
  ``w_child = w_parent * max(0, C[c*]) / sum_c' max(0, C[c'])``; duplicates merge by adding weights. The
  density is then a weighted count; fixation points carry their weight.
* **Bounded cost.** At most ``max_neurons`` neurons per (image, class) are kept per layer (the heaviest;
  default 2048), so the cost per layer is ``O(max_neurons x C_in x K^2)`` per class, vectorised in torch.
* **Supported networks**: an ``nn.Sequential`` (nested ones are flattened) of Conv2d, BatchNorm2d, ReLU,
  MaxPool2d, Upsample, Dropout and Identity: VGG-FCN-style networks. Residual additions and concatenations
  cannot be expressed in such a chain (the authors treat ResNet's skips with a special rule and GoogLeNet's
  branches by hand); a model that is not such a chain is refused with an error naming the first module the
  tracer does not support.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_NEURONS", "DENSITY_SIGMA", "UnsupportedModel", "FixationResult", "sequential_layers",
           "cnn_fixations"]

#: Neurons kept per (image, class) at each layer.
MAX_NEURONS = 2048
#: Gaussian blur of the density map, as a share of the input's longer side.
DENSITY_SIGMA = 0.02

_PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity)
_SUPPORTED = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Upsample, *_PASS_THROUGH)


class UnsupportedModel(ValueError):
    """The model is not a chain of layers the fixation tracer knows."""


@dataclass
class FixationResult:
    """Fixations of every explained (image, class).

    Attributes
    ----------
    points : torch.Tensor
        ``(N, 4)`` int64 ``(image, class, y, x)`` fixation locations at input resolution.
    weights : torch.Tensor
        ``(N,)`` float32, each point's weight (per (image, class) they sum to 1).
    density : torch.Tensor
        ``(B, K, H, W)`` float32 Gaussian-blurred weighted fixations; zero for classes not explained.
    logits : torch.Tensor
        ``(B, K, H, W)`` the model's output.
    """

    points: torch.Tensor
    weights: torch.Tensor
    density: torch.Tensor
    logits: torch.Tensor


def sequential_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, nested ``nn.Sequential`` flattened; raise :class:`UnsupportedModel`
    naming the first module that is not a supported layer."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModel(
            f"fixations need an nn.Sequential of Conv2d/BatchNorm2d/ReLU/MaxPool2d/Upsample layers (VGG-FCN "
            f"style); {type(model).__name__} is not one (residual additions and concatenations cannot be traced)"
        )
    layers: list[nn.Module] = []
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            layers.extend(sequential_layers(module))
        elif isinstance(module, _SUPPORTED):
            layers.append(module)
        else:
            raise UnsupportedModel(
                f"fixations cannot trace module {name!r} ({type(module).__name__}); supported: "
                + ", ".join(t.__name__ for t in _SUPPORTED)
            )
    return layers


@dataclass
class _Conv:
    weight: torch.Tensor  # BatchNorm folded in
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def _conv_op(layer: nn.Conv2d) -> _Conv:
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        raise UnsupportedModel("fixations need convolutions with numeric zero padding")
    return _Conv(layer.weight.detach(), layer.stride, layer.padding, layer.dilation, layer.groups)


def _fold_batchnorm(conv: _Conv, norm: nn.BatchNorm2d) -> _Conv:
    scale = 1.0 / torch.sqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight.detach()
    return _Conv(conv.weight * scale.view(-1, 1, 1, 1), conv.stride, conv.padding, conv.dilation, conv.groups)


def _forward(layers: list[nn.Module], images: torch.Tensor) -> tuple[list[tuple[object, torch.Tensor, tuple]], torch.Tensor]:
    """Run the layers; return the traceable ops, each with its input and output size, and the output.

    A convolution's op carries the weights of a BatchNorm that follows it (folded in); BatchNorm without a
    convolution before it is a per-channel affine map and passes neurons through, like ReLU.
    """
    ops: list[tuple[object, torch.Tensor, tuple[int, int]]] = []
    x, previous = images, None
    for layer in layers:
        y = layer(x)
        if isinstance(layer, nn.Conv2d):
            ops.append((_conv_op(layer), x, tuple(y.shape[-2:])))
        elif isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            conv, conv_input, size = ops[-1]
            ops[-1] = (_fold_batchnorm(conv, layer), conv_input, size)
        elif isinstance(layer, (nn.MaxPool2d, nn.Upsample)):
            ops.append((layer, x, tuple(y.shape[-2:])))
        x, previous = y, layer
    return ops, x


def _merge(key: torch.Tensor, weights: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique neurons (rows of ``key``) with their weights added."""
    flat = torch.zeros(len(key), dtype=torch.int64, device=key.device)
    for j in range(key.shape[1]):
        flat = flat * width[j] + key[:, j]
    unique, inverse = torch.unique(flat, return_inverse=True)
    summed = torch.zeros(len(unique), dtype=weights.dtype, device=weights.device).index_add_(0, inverse, weights)
    first = torch.full((len(unique),), len(key), dtype=torch.int64, device=key.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return key[first], summed


def _cap(key: torch.Tensor, weights: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``limit`` heaviest neurons of each (image, class) pair (column 0 of ``key``)."""
    order = torch.argsort(weights, descending=True, stable=True)
    order = order[torch.argsort(key[order, 0], stable=True)]
    pair = key[order, 0]
    starts = torch.searchsorted(pair, pair, right=False)
    rank = torch.arange(len(pair), device=key.device) - starts
    keep = order[rank < limit]
    return key[keep], weights[keep]


def _through_conv(conv: _Conv, x: torch.Tensor, key: torch.Tensor, weights: torch.Tensor):
    """key columns: pair, image, channel, y, x (at the conv's output) -> the same at its input."""
    (kh, kw), (sh, sw) = conv.weight.shape[-2:], conv.stride
    (ph, pw), (dh, dw) = conv.padding, conv.dilation
    per_group = conv.weight.shape[1]
    out_per_group = conv.weight.shape[0] // conv.groups
    padded = F.pad(x, (pw, pw, ph, ph))
    b, c, y, xx = key[:, 1], key[:, 2], key[:, 3], key[:, 4]
    rows = (y * sh)[:, None] + torch.arange(kh, device=x.device) * dh  # (N, kh) in padded coordinates
    cols = (xx * sw)[:, None] + torch.arange(kw, device=x.device) * dw
    first_channel = (c // out_per_group) * per_group
    channels = first_channel[:, None] + torch.arange(per_group, device=x.device)  # (N, Cg)
    patch = padded[b[:, None, None, None], channels[:, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    contribution = (patch * conv.weight[c].to(patch.dtype)).sum((-1, -2))  # (N, Cg)
    chosen = contribution.argmax(1)
    positive = contribution.clamp(min=0)
    total = positive.sum(1)
    share = torch.where(total > 0, positive.gather(1, chosen[:, None]).squeeze(1) / total.clamp(min=1e-30),
                        torch.zeros_like(total))
    height, width = x.shape[-2:]
    centre_y = (y * sh - ph + dh * (kh - 1) // 2).clamp(0, height - 1)
    centre_x = (xx * sw - pw + dw * (kw - 1) // 2).clamp(0, width - 1)
    new = torch.stack([key[:, 0], b, first_channel + chosen, centre_y, centre_x], 1)
    return new, weights * share.to(weights.dtype)


def _through_pool(pool: nn.MaxPool2d, x: torch.Tensor, key: torch.Tensor, weights: torch.Tensor):
    _, switches = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode,
                               return_indices=True)
    flat = switches[key[:, 1], key[:, 2], key[:, 3], key[:, 4]]
    width = x.shape[-1]
    new = torch.stack([key[:, 0], key[:, 1], key[:, 2], flat // width, flat % width], 1)
    return new, weights


def _through_upsample(up: nn.Upsample, x: torch.Tensor, out_size: tuple[int, int], key: torch.Tensor,
                      weights: torch.Tensor):
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], out_size
    y, xx = key[:, 3].double(), key[:, 4].double()
    if up.mode == "nearest":
        sy = (y * h_in / h_out).floor().long().clamp(0, h_in - 1)
        sx = (xx * w_in / w_out).floor().long().clamp(0, w_in - 1)
        return torch.stack([key[:, 0], key[:, 1], key[:, 2], sy, sx], 1), weights
    if up.mode != "bilinear":
        raise UnsupportedModel(f"fixations trace nearest or bilinear upsampling, not {up.mode!r}")
    if up.align_corners:
        fy = y * (h_in - 1) / max(h_out - 1, 1)
        fx = xx * (w_in - 1) / max(w_out - 1, 1)
    else:
        fy = ((y + 0.5) * h_in / h_out - 0.5).clamp(min=0)
        fx = ((xx + 0.5) * w_in / w_out - 0.5).clamp(min=0)
    y0, x0 = fy.floor().long().clamp(0, h_in - 1), fx.floor().long().clamp(0, w_in - 1)
    y1, x1 = (y0 + 1).clamp(max=h_in - 1), (x0 + 1).clamp(max=w_in - 1)
    ly, lx = fy - y0.double(), fx - x0.double()
    cand_y = torch.stack([y0, y0, y1, y1], 1)
    cand_x = torch.stack([x0, x1, x0, x1], 1)
    mix = torch.stack([(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx], 1)
    values = x[key[:, 1, None], key[:, 2, None], cand_y, cand_x].double()
    best = (mix * values).argmax(1, keepdim=True)
    new = torch.stack([key[:, 0], key[:, 1], key[:, 2], cand_y.gather(1, best)[:, 0], cand_x.gather(1, best)[:, 0]], 1)
    return new, weights


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel / kernel.sum()
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="constant"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="constant"), kernel.view(1, 1, -1, 1))
    return flat.reshape(maps.shape)


@torch.no_grad()
def cnn_fixations(
    model: nn.Module,
    images: torch.Tensor,
    classes: torch.Tensor | None = None,
    *,
    max_neurons: int = MAX_NEURONS,
    sigma: float = DENSITY_SIGMA,
) -> FixationResult:
    """Fixations and their density for every predicted class of every image (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        An ``nn.Sequential`` FCN in eval mode whose output is ``(B, K, H', W')`` logits.
    images : torch.Tensor
        ``(B, C, H, W)`` input.
    classes : torch.Tensor, optional
        ``(B, K)`` bool: trace only these (image, class) pairs (default: every class predicted in the
        image except class 0). A class with no predicted pixel has no fixations (zero density).
    max_neurons : int
        Neurons kept per (image, class) per layer.
    sigma : float
        Gaussian blur of the density, as a share of the input's longer side (0: none).
    """
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1, got {max_neurons}")
    ops, logits = _forward(sequential_layers(model), images)
    if logits.ndim != 4:
        raise UnsupportedModel(f"fixations need (B, K, H, W) logits, the model gives {tuple(logits.shape)}")
    batch, num_classes = logits.shape[:2]
    pred = logits.argmax(1)
    if classes is None:
        classes = torch.zeros(batch, num_classes, dtype=torch.bool, device=logits.device)
        classes.scatter_(1, pred.flatten(1), True)
        classes[:, 0] = False
    pairs = torch.nonzero(classes.to(logits.device))  # (P, 2) image, class
    # starting neurons: the output pixels predicted as the class, weight 1 / |region| each
    region = pred[pairs[:, 0]] == pairs[:, 1, None, None]  # (P, H', W')
    pair, y, x = torch.nonzero(region, as_tuple=True)
    key = torch.stack([pair, pairs[pair, 0], pairs[pair, 1], y, x], 1)
    counts = region.flatten(1).sum(1).clamp(min=1)
    weights = (1.0 / counts[pair]).float()
    key, weights = _cap(key, weights, max_neurons)
    for op, layer_input, out_size in reversed(ops):
        if len(key) == 0:
            break
        if isinstance(op, _Conv):
            key, weights = _through_conv(op, layer_input, key, weights)
        elif isinstance(op, nn.MaxPool2d):
            key, weights = _through_pool(op, layer_input, key, weights)
        else:
            key, weights = _through_upsample(op, layer_input, out_size, key, weights)
        width = torch.tensor([len(pairs), batch, layer_input.shape[1], *layer_input.shape[-2:]], device=key.device)
        key, weights = _merge(key, weights, width)
        key, weights = _cap(key, weights, max_neurons)
    height, width_px = images.shape[-2:]
    # at the input: one point per pixel (the colour channel a trace ended in does not matter)
    pixel_key = torch.stack([key[:, 0], key[:, 3], key[:, 4]], 1)
    pixel_key, weights = _merge(pixel_key, weights, torch.tensor([len(pairs), height, width_px], device=key.device))
    totals = torch.zeros(len(pairs), dtype=weights.dtype, device=weights.device).index_add_(0, pixel_key[:, 0], weights)
    weights = torch.where(totals[pixel_key[:, 0]] > 0, weights / totals[pixel_key[:, 0]].clamp(min=1e-30), weights)
    density = torch.zeros(batch, num_classes, height, width_px, dtype=torch.float32, device=images.device)
    owner = pairs[pixel_key[:, 0]]
    density.index_put_((owner[:, 0], owner[:, 1], pixel_key[:, 1], pixel_key[:, 2]), weights.float(), accumulate=True)
    density = _gaussian_blur(density, sigma * max(height, width_px))
    points = torch.stack([owner[:, 0], owner[:, 1], pixel_key[:, 1], pixel_key[:, 2]], 1)
    return FixationResult(points=points, weights=weights.float(), density=density, logits=logits)
