"""The parameter-randomisation sanity check (segaudit.cam.sanity, Adebayo et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segaudit.cam import compute_cams
from segaudit.cam.sanity import average_ranks, cascading_randomization, rank_correlation, ssim

stats = pytest.importorskip("scipy.stats", reason="scipy (a cleanlab dependency) is the rank oracle")


def test_average_ranks_and_rank_correlation_match_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 4, 6), generator=g).float()  # many ties
    b = torch.rand((3, 4, 6), generator=g)
    for row in range(3):
        np.testing.assert_allclose(average_ranks(a.flatten(1))[row].numpy(), stats.rankdata(a[row].flatten().numpy()))
    rho = rank_correlation(a, b)
    for row in range(3):
        expected = stats.spearmanr(a[row].flatten().numpy(), b[row].flatten().numpy()).statistic
        assert rho[row].item() == pytest.approx(expected, abs=1e-12)
    assert torch.isnan(rank_correlation(torch.ones((1, 3, 3)), b[:1, :3, :3]))[0]


def test_ssim_is_one_for_equal_maps_and_falls_with_noise() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.rand((1, 24, 24), generator=g)
    assert ssim(base, base * 3 + 1).item() == pytest.approx(1.0)  # min-max normalised first
    small = ssim(base, base + 0.1 * torch.rand((1, 24, 24), generator=g)).item()
    large = ssim(base, base + 2.0 * torch.rand((1, 24, 24), generator=g)).item()
    assert 1.0 > small > large


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_a_model_based_method_changes_and_an_input_edge_map_does_not() -> None:
    """Grad-CAM of a fixed target depends on the weights: its similarity to the trained model's maps falls
    once the model is randomised. An 'explanation' that is the input's edge strength does not change:
    the check must tell the two apart."""
    model = _Net().eval()
    g = torch.Generator().manual_seed(2)
    images = torch.rand((2, 3, 16, 16), generator=g)
    gt = torch.randint(0, 3, (2, 16, 16), generator=g)
    edges = (images[..., 1:, :] - images[..., :-1, :]).abs().sum(1)
    edges = torch.nn.functional.pad(edges, (0, 0, 0, 1))

    def explain(module: nn.Module) -> dict[str, torch.Tensor]:
        cams = compute_cams(module, images, ("features.2",), gt, ("gradcam",), target="gt")
        maps = cams.maps[("features.2", "gradcam")]  # (B, K, h, w): class 1 of each image
        return {"gradcam": maps[:, 1].detach(), "edges": edges}

    steps = cascading_randomization(model, ["head", "features.2", "features.0"], explain, seed=0)
    assert [s["block"] for s in steps] == ["head", "features.2", "features.0"]
    final = steps[-1]
    assert torch.all(final["edges"]["spearman"] > 0.999) and torch.all(final["edges"]["ssim"] > 0.999)
    assert torch.all(final["gradcam"]["spearman"] < 0.9)
    assert torch.all(final["gradcam"]["ssim"] < final["edges"]["ssim"])
    # the trained model was not touched
    assert torch.equal(explain(model)["gradcam"], explain(model)["gradcam"])
    assert model.head.weight.abs().sum() > 0 and torch.equal(_Net().head.weight, model.head.weight)


def test_max_steps_explains_evenly_spaced_steps_with_the_same_weights() -> None:
    torch.manual_seed(0)
    model = _Net()
    images = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    blocks = ["head", "features.2", "features.0"]

    def explain(module: nn.Module) -> dict[str, torch.Tensor]:
        return {"out": module(images)[:, 0].detach()}

    every = cascading_randomization(model, blocks, explain, seed=3)
    some = cascading_randomization(model, blocks, explain, seed=3, max_steps=2)
    assert [s["step"] for s in some] == [2, 3] and [s["block"] for s in some] == ["features.2", "features.0"]
    for kept in some:  # the randomised weights do not depend on which steps are explained
        same = every[kept["step"] - 1]
        assert torch.equal(kept["out"]["ssim"], same["out"]["ssim"])
