"""Class entanglement: classes whose pre-softmax representations are alike end up segmented as each other.

Seg-Unravel (the segmentation form of CNN-Fixations) observes that classes whose internal representations
are highly correlated are partly segmented as each other. The pre-softmax *class template* of class ``c`` is
the mean logit vector over the pixels labelled ``c``,

    T_c = (1 / |P_c|) sum_{p in P_c} z_p            (z_p in R^K: the logits at pixel p)

accumulated over a whole run (:func:`template_sums` per batch, summed), and the entanglement of two classes
is the Pearson correlation of their templates,

    rho_ab = corr(T_a, T_b)                          (over the K logit dimensions)

To keep a shared offset from making every pair look alike, each logit dimension is centred over the
classes' templates first (the mean template is subtracted), so ``rho`` compares how the classes *differ*
from the average class. Set beside the pair's confusion (the share of ``a``'s labelled pixels predicted
``b`` and the reverse, from the ``confusion`` table), a pair high on both is a ``class_entanglement``
finding: the model does not keep the two apart, and its errors follow.
"""

from __future__ import annotations

import numpy as np
import torch

from segaudit.schema import VOID_LABEL

__all__ = ["template_sums", "template_correlation", "confusion_shares"]


def template_sums(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore: int = VOID_LABEL,
    compiled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of the logit vectors over labelled pixels, to accumulate over batches.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, H, W)`` pre-softmax scores at label resolution.
    labels : torch.Tensor
        ``(B, H, W)`` long class index per pixel; ``ignore`` (void) and indices ``>= num_classes`` are left
        out.
    num_classes : int
        ``K``.
    compiled : bool or None
        Add the pixels one by one in the compiled loop of :func:`segaudit.metrics.sums_kernel.class_logit_sums`
        (the default for float32 logits on a CPU) or by a float64 matrix product per image (torch: a device's
        path, any dtype); the two differ by float64 rounding at most.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``sums`` ``(K, K)`` float64 (row ``c``: the sum of ``z_p`` over ``P_c``) and ``counts`` ``(K,)`` int64.
    """
    if logits.ndim != 4 or logits.shape[1] != num_classes or logits.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"logits must be (B, {num_classes}, H, W) at the labels' size; got {tuple(logits.shape)}")
    batch = len(logits)
    lab = labels.reshape(batch, -1).long()
    if compiled is None:
        compiled = logits.device.type == "cpu" and logits.dtype == torch.float32
    if compiled:
        from segaudit.metrics import sums_kernel  # numba: compiled (or read from its cache) on first use

        sums = torch.zeros((num_classes, num_classes), dtype=torch.float64)
        counts = torch.zeros(num_classes, dtype=torch.long)
        # labels outside [0, K) (void included) are left out by the loop
        # (B, H, W, K) as a view: in place for a channels-last tensor (deeplabv3's logits), strided otherwise
        sums_kernel.class_logit_sums(logits.detach().permute(0, 2, 3, 1).numpy(),
                                     lab.masked_fill(lab == ignore, -1).view(labels.shape).numpy(), sums.numpy(),
                                     counts.numpy())
        return sums, counts
    lab = torch.where((lab != ignore) & (lab >= 0) & (lab < num_classes), lab, num_classes)  # out: K
    counts = torch.bincount(lab.flatten(), minlength=num_classes + 1)[:num_classes]
    present = torch.nonzero(counts)[:, 0]
    # per image, its logits (K, HW) times the indicator of the classes present (HW, C_present), in float64
    # (equal to adding the pixels one by one up to float64 rounding; bit-equal on the demo's batches and on
    # deeplabv3 at 320 px)
    channels = logits.reshape(batch, num_classes, -1)
    per_class = torch.zeros((num_classes, len(present)), dtype=torch.float64, device=logits.device)
    for b in range(batch):
        per_class += channels[b].double() @ (lab[b, :, None] == present).double()
    sums = torch.zeros((num_classes, num_classes), dtype=torch.float64, device=logits.device)
    sums[present] = per_class.T
    return sums, counts


def template_correlation(sums: np.ndarray | torch.Tensor, counts: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(K, K)`` Pearson correlation of the centred class templates (module docstring); NaN for a class
    without labelled pixels, or a template equal to the mean template."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    templates = np.full_like(sums, np.nan)
    templates[present] = sums[present] / counts[present, None]
    centred = templates - np.nanmean(templates[present], axis=0, keepdims=True) if present.any() else templates
    centred = centred - centred.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (centred @ centred.T) / np.outer(norms, norms)
    rho[~(norms > 0)] = np.nan
    rho[:, ~(norms > 0)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def confusion_shares(confusion: np.ndarray) -> np.ndarray:
    """``(K, K)`` symmetric confusion of each pair: ``(C_ab / n_a + C_ba / n_b) / 2``, with ``C`` the pixel
    confusion matrix (rows: label, columns: prediction) and ``n_a`` the pixels labelled ``a``; NaN where a
    class has no labelled pixel."""
    matrix = np.asarray(confusion, dtype=np.float64)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = matrix / totals[:, None]
    rates[totals == 0] = np.nan
    return (rates + rates.T) / 2
