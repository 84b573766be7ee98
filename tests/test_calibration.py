"""The run's pre-pass (segaudit.auditors.calibration): sanity rows, the blocks to randomise, the layer choice,
its record in the plan for a resumed run, and a failing pre-pass that costs one error row."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from segaudit.auditors.calibration import (
    Prepass,
    candidate_layers_for,
    choose_layer,
    faithfulness_rows,
    fixed_target_explainer,
    randomization_blocks,
    run_prepass,
    sample_refs,
    sanity_rows,
)
from segaudit.cam.engine import CamSettings, compute_cams_with
from segaudit.data.classmap import build_class_map
from segaudit.data.preprocess import PreparedBatch
from segaudit.data.sample import ImageRef
from segaudit.models.loaded import LoadedModel
from segaudit.models.registry import build_architecture
from segaudit.schema import SCHEMAS
from segaudit.settings import AuditConfig

pytestmark = pytest.mark.evidence  # runs the evidence checks as configured (tests/conftest.py)

DEMO_CLASSES = ("background", "disc", "square", "triangle", "star", "boat")


class _Net(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_blocks_go_from_the_output_side_to_the_input_on_three_families() -> None:
    lraspp = build_architecture("lraspp_mobilenet_v3_large", 6)
    blocks = randomization_blocks(lraspp, "backbone.4")
    assert blocks[:3] == ["classifier", "backbone.16", "backbone.15"] and blocks[-1] == "backbone.0"
    assert len(blocks) == 18 and "backbone.4" in blocks
    deeplab = build_architecture("deeplabv3_mobilenet_v3_large", 6)
    assert randomization_blocks(deeplab, "backbone.16")[:2] == ["classifier", "backbone.16"]
    assert candidate_layers_for(lraspp, "backbone.4") == ["backbone.16", "backbone.10"]
    assert candidate_layers_for(deeplab, "backbone.16") == ["backbone.15", "backbone.14"]
    smp = pytest.importorskip("segmentation_models_pytorch")
    unet = smp.Unet("resnet18", encoder_weights=None, classes=3)
    # parameter-free children (relu, maxpool) are left out; the stem comes last
    assert randomization_blocks(unet, "encoder.layer4") == [
        "segmentation_head", "decoder", "encoder.layer4", "encoder.layer3", "encoder.layer2", "encoder.layer1",
        "encoder.bn1", "encoder.conv1"]
    assert randomization_blocks(unet, "input") == ["segmentation_head", "decoder", "encoder"]


def test_sanity_rows_fall_for_gradcam_and_stay_high_for_an_input_edge_map() -> None:
    """Grad-CAM of fixed targets depends on the weights: its SSIM to the trained maps falls as blocks are
    randomised. A map of the input's gradient magnitude ignores the weights: its SSIM stays 1."""
    model = _Net().eval()
    with torch.no_grad():
        model.head.bias[0] = -10.0  # classes 1 and 2 share the image
    g = torch.Generator().manual_seed(3)
    images = torch.rand((3, 3, 24, 24), generator=g)
    valid = torch.ones((3, 24, 24), dtype=torch.bool)
    settings = CamSettings(("features.2",), ("gradcam", "gradcampp"))
    trained = compute_cams_with(model, images, settings)
    explain_cams, image, _ = fixed_target_explainer(images, valid, trained, settings)
    assert len(image) > 0
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().sum(1)
    edges = nn.functional.pad(dy, (0, 0, 0, 1))[image]  # (N, H, W), one per explained pair

    def explain(module: nn.Module) -> dict[tuple[str, str], torch.Tensor]:
        return {**explain_cams(module), ("input", "edges"): edges}

    blocks = randomization_blocks(model, "features.2")
    assert blocks == ["head", "features.2", "features.0"]
    rows = sanity_rows(model, blocks, explain)
    assert {tuple(r) for r in rows} == {tuple(SCHEMAS["sanity"].names)}
    assert len(rows) == 3 * 3  # steps x (gradcam, gradcampp, edges)
    final = {r["method"]: r for r in rows if r["step"] == 3}
    assert final["edges"]["ssim"] == pytest.approx(1.0) and final["edges"]["spearman"] == pytest.approx(1.0)
    assert final["gradcam"]["ssim"] < 0.8 and final["gradcam"]["spearman"] < 0.9
    assert final["gradcam"]["n_maps"] == len(image)
    assert all(r["block"] == blocks[r["step"] - 1] for r in rows)


class _AddPattern(nn.Module):
    """Adds a fixed spatial pattern to every channel (a parameter, so that it is a candidate layer)."""

    def __init__(self, pattern: torch.Tensor) -> None:
        super().__init__()
        self.pattern = nn.Parameter(pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pattern


class _Toy(nn.Module):
    """Class 1's logit is ``4 * (red - 0.5)``; class 0's is 0. ``clean`` carries the red channel;
    ``noisy`` adds a large fixed pattern that ``head`` subtracts again: the prediction never depends on it,
    but Grad-CAM at ``noisy`` (weights x activations) follows the pattern, so its maps are by construction
    less faithful than those at ``clean``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        pattern = torch.zeros((1, 1, size, size))
        pattern[..., size // 2:, : size // 2] = 5.0  # the lower left quarter, where no object is
        self.clean = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.clean.weight.zero_()
            self.clean.weight[0, 0] = 1.0
            self.clean.bias.zero_()
        self.noisy = _AddPattern(pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = self.noisy(self.clean(x)) - self.noisy.pattern
        return torch.cat([torch.zeros_like(red), 4 * (red - 0.5)], 1)


def _toy_batch(size: int = 24) -> PreparedBatch:
    g = torch.Generator().manual_seed(4)
    images = torch.rand((4, 3, size, size), generator=g) * 0.3
    gt = torch.zeros((4, size, size), dtype=torch.long)
    for b, (y, x) in enumerate([(1, 4), (3, 12), (2, 14), (12, 14)]):
        images[b, 0, y:y + 8, x:x + 8] = 0.7 + 0.3 * torch.rand((8, 8), generator=g)
        gt[b, y:y + 8, x:x + 8] = 1
    samples = [SimpleNamespace(image_id=f"img{b}") for b in range(4)]  # only the ids are read
    return PreparedBatch(images=images, views=None, gt=gt, instances=[[]] * 4, samples=samples,  # type: ignore[arg-type]
                         boxes=[], unknown_classes=[{}] * 4)


def test_the_layer_whose_maps_are_faithful_by_construction_is_chosen() -> None:
    model = _Toy(24).eval()
    batch = _toy_batch(24)
    cams = compute_cams_with(model, batch.images, CamSettings(("noisy", "clean"), ("gradcam", "hirescam")), batch.gt)
    loaded = SimpleNamespace(module=model, class_names=("background", "red"), task="segmentation")
    rows = faithfulness_rows(loaded, batch, cams, AuditConfig())  # type: ignore[arg-type]
    assert {tuple(r) for r in rows} == {tuple(SCHEMAS["faithfulness"].names)}
    assert {r["class_id"] for r in rows} == {1} and len(rows) == 4 * 2 * 2  # images x methods x layers
    layer, scores = choose_layer(rows, default="noisy")
    assert layer == "clean" and scores["clean"] > scores["noisy"] + 0.1, scores
    assert choose_layer(rows, default="clean")[0] == "clean"


def test_choose_layer_keeps_the_default_within_noise() -> None:
    def rows(layer: str, values: list[float]) -> list[dict]:
        return [{"layer": layer, "method": "gradcam", "image_id": str(i), "class_id": 1, "faithfulness": v}
                for i, v in enumerate(values)]

    noisy = rows("a", [0.5, 0.1, 0.4, 0.2]) + rows("b", [0.1, 0.6, 0.2, 0.5])  # b ahead by 0.05, sd 0.4
    assert choose_layer(noisy, "a")[0] == "a"
    clear = rows("a", [0.5, 0.1, 0.4, 0.2]) + rows("b", [0.6, 0.25, 0.5, 0.35])
    assert choose_layer(clear, "a")[0] == "b"
    assert choose_layer(rows("a", [math.nan] * 2) + rows("b", [0.3, 0.3]), "a")[0] == "a"


def _toy_loaded(module: nn.Module, layer: str = "features.2") -> LoadedModel:
    return LoadedModel(name="toy", module=module.eval(), class_names=DEMO_CLASSES, input_size=32,
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), default_layer=layer, sha256="", arch="toy")


def test_prepass_on_data_and_a_failing_model_costs_one_error_row(demo_data) -> None:
    from segaudit.data.readers import open_dataset

    data = open_dataset(demo_data / "annotations" / "instances_val.json")
    loaded = _toy_loaded(_Net(len(DEMO_CLASSES)))
    class_map = build_class_map(data.category_names, loaded.class_names, None)
    refs = data.refs()
    sample = sample_refs(refs, "sampled", 0.1)
    assert len(sample) == 4 and sample == sample_refs(refs, "sampled", 0.1)
    assert sample_refs(refs, "none", 0.1) == []
    prepass = run_prepass(data, refs, loaded, class_map, AuditConfig(methods=("gradcam",)))
    assert not prepass.errors and prepass.layer in ("features.2", "features.0")
    assert prepass.image_ids == [r.image_id for r in sample]
    assert {r["layer"] for r in prepass.faithfulness} == {"features.2", "features.0"}
    assert {r["layer"] for r in prepass.sanity} == {prepass.layer}
    assert prepass.lines[0].startswith(f"layer {prepass.layer} chosen: faithfulness ")
    fixed = run_prepass(data, refs, loaded, class_map, AuditConfig(methods=("gradcam",), layers=("features.0",)))
    assert fixed.layer is None and not fixed.faithfulness and {r["layer"] for r in fixed.sanity} == {"features.0"}

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 6, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("odd model")

    broken = run_prepass(data, refs, _toy_loaded(Broken(), "features"), class_map, AuditConfig())
    assert broken.layer is None and not broken.sanity and not broken.faithfulness
    assert [e["stage"] for e in broken.errors] == ["calibration"] and "odd model" in broken.errors[0]["reason"]
    assert broken.lines == [broken.errors[0]["reason"]]


def test_a_resumed_run_reuses_the_recorded_choice(tmp_path) -> None:
    from segaudit.tasks.audit import prepass_task

    from segaudit.runs.run import planned_config, record_prepass, start_run
    from segaudit.runs.tables import read_table

    meta = {"run_id": "r", "model_name": "toy", "config_json": "{}", "layer": "features.2"}
    refs = [ImageRef("a", "a.png"), ImageRef("b", "b.png")]
    plan = start_run(str(tmp_path), meta, refs, 1, {})
    prepass = Prepass(layer="features.0", default_layer="features.2", layer_scores={"features.0": 0.4},
                      sanity=[{"method": "gradcam", "layer": "features.0", "step": 1, "block": "head",
                               "spearman": 0.2, "spearman_abs": 0.3, "ssim": 0.1, "n_maps": 2}],
                      errors=[{"image_id": "", "file_name": "", "stage": "calibration", "reason": "x"}])
    record_prepass(str(tmp_path), plan, prepass)
    again = start_run(str(tmp_path), dict(meta), refs, 1, {})  # the same run, resumed
    assert again["prepass"]["layer"] == "features.0" and again["run"]["layer"] == "features.0"
    assert planned_config(AuditConfig(), again).layers == ("features.0",)
    assert planned_config(AuditConfig(layers=("x",)), again).layers == ("x",)  # the user's layers win
    # the task does not redo a recorded pre-pass (nothing else is needed to skip it)
    assert prepass_task.fn(str(tmp_path), again, None, refs, None, None, AuditConfig()) is again
    assert read_table(str(tmp_path), "sanity")["block"].tolist() == ["head"]
    assert read_table(str(tmp_path), "errors")["stage"].tolist() == ["calibration"]
