"""Class entanglement (segaudit.metrics.entanglement): class templates at the pre-softmax layer."""

from __future__ import annotations

import numpy as np
import torch

from segaudit.metrics.entanglement import confusion_shares, template_correlation, template_sums


def test_template_sums_are_the_per_class_sums_of_the_logit_vectors() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((2, 4, 5, 6), generator=g)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[0, 0, :3] = 255
    sums, counts = template_sums(logits, labels, 4)
    for c in range(4):
        where = labels == c
        expected = logits.permute(0, 2, 3, 1)[where].double().sum(0)
        assert torch.allclose(sums[c], expected)
        assert counts[c] == int(where.sum())
    assert counts.sum() == 2 * 5 * 6 - 3


def test_two_classes_the_model_scores_alike_are_the_entangled_pair() -> None:
    """Classes 1 and 2 get the same logit pattern (with a little noise), class 3 its own: rho_12 is the
    highest off-diagonal value, and the sums of several batches give the same correlation as one."""
    g = torch.Generator().manual_seed(1)
    k = 5
    pattern = torch.randn(k, generator=g)
    own = {0: torch.randn(k, generator=g), 1: pattern, 2: pattern + 0.05 * torch.randn(k, generator=g),
           3: torch.randn(k, generator=g), 4: torch.randn(k, generator=g)}
    labels = torch.randint(0, k, (4, 8, 8), generator=g)
    logits = torch.stack([own[int(c)] for c in labels.flatten()]).reshape(4, 8, 8, k).permute(0, 3, 1, 2)
    logits = logits + 0.01 * torch.randn(logits.shape, generator=g)
    sums, counts = template_sums(logits, labels, k)
    rho = template_correlation(sums, counts)
    off = rho.copy()
    np.fill_diagonal(off, -np.inf)
    assert np.unravel_index(np.argmax(off), off.shape) in ((1, 2), (2, 1))
    assert rho[1, 2] > 0.95
    parts = [template_sums(logits[i : i + 1], labels[i : i + 1], k) for i in range(4)]
    rho_parts = template_correlation(sum(p[0] for p in parts), sum(p[1] for p in parts))
    np.testing.assert_allclose(rho_parts, rho, atol=1e-12)


def test_a_class_without_pixels_has_no_correlation() -> None:
    sums = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, 0.0]])
    rho = template_correlation(sums, np.array([1, 0, 1]))
    assert np.isnan(rho[1]).all() and np.isnan(rho[:, 1]).all()


def test_confusion_shares_average_both_directions() -> None:
    confusion = np.array([[90, 10, 0], [30, 70, 0], [0, 0, 0]])
    shares = confusion_shares(confusion)
    assert shares[0, 1] == shares[1, 0] == (10 / 100 + 30 / 100) / 2
    assert np.isnan(shares[2, 0])
