"""The context and class_templates rows of a batch (segaudit.auditors.context_rows)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segaudit.auditors.context_rows import class_template_rows, context_rows
from segaudit.data.preprocess import prepare_batch
from segaudit.data.sample import Instance, Sample
from segaudit.models.loaded import LoadedModel
from segaudit.schema import SCHEMAS
from segaudit.settings import AuditConfig

pytestmark = pytest.mark.evidence  # runs the evidence checks as configured (tests/conftest.py)

NAMES = ("background", "red", "green")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class ColourModel(nn.Module):
    """Per-pixel logits from the pixel's own colour (pure red -> class 1, pure green -> class 2, else background):
    it ignores context."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r, g = x[:, 0], x[:, 1]
        return {"out": self.scale * torch.stack([torch.full_like(r, 3.0), r - g, g - r], 1)}


class ContextModel(ColourModel):
    """Class 1 wherever the image's mean red is high: it finds "red" from the whole scene (a context cue)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cue = x[:, 0].mean((1, 2), keepdim=True).expand_as(x[:, 0])
        zero = torch.zeros_like(cue)
        return {"out": torch.stack([zero, 2 * self.scale * (cue - 0.8), zero - 1], 1)}


def _model(module: nn.Module) -> LoadedModel:
    return LoadedModel(name="test", module=module.eval(), class_names=NAMES, input_size=32, mean=MEAN, std=STD,
                       default_layer="", sha256="", arch="test")


def _batch(n: int = 2):
    """Red squares on a red-ish background (the context cue) and, in odd images, a green square."""
    samples = []
    for i in range(n):
        image = np.full((32, 32, 3), (200, 60, 60), dtype=np.uint8)
        semantic = np.zeros((32, 32), dtype=np.uint8)
        image[4:14, 4:14] = (255, 0, 0)
        semantic[4:14, 4:14] = 1
        instances = [Instance(1, semantic == 1)]
        if i % 2:
            image[18:28, 18:28] = (0, 255, 0)
            semantic[18:28, 18:28] = 2
            instances.append(Instance(2, semantic == 2))
        samples.append(Sample(f"img{i}", f"img{i}.png", image, semantic, instances, NAMES))
    from segaudit.data.classmap import build_class_map

    return prepare_batch(samples, build_class_map(NAMES, NAMES), 32, MEAN, STD)


def test_one_row_per_labelled_pair_of_the_picked_images_with_the_schema_columns() -> None:
    batch = _batch(3)
    rows = context_rows(_model(ColourModel()), batch, AuditConfig(evidence="full"), {(0, 1): 0.25})
    assert [(r["image_id"], r["class_id"]) for r in rows] == [("img0", 1), ("img1", 1), ("img1", 2), ("img2", 1)]
    assert list(rows[0]) == SCHEMAS["context"].names
    assert rows[0]["outside_share"] == 0.25 and np.isnan(rows[1]["outside_share"])
    assert rows[0]["object_pixels"] == 100
    view = np.asarray(Image.open(io.BytesIO(rows[0]["object_only_jpeg"])))
    assert view.shape == (32, 32, 3)
    # normalisation undone: the kept red object is red, the baseline fill the normalisation mean (grey)
    assert view[8, 8, 0] > 200 and view[8, 8, 1] < 60 and abs(int(view[28, 28, 0]) - 128) < 20
    hidden = np.asarray(Image.open(io.BytesIO(rows[0]["context_only_jpeg"])))
    assert abs(int(hidden[8, 8, 0]) - 128) < 20 and hidden[28, 28, 0] > 150  # object greyed, context kept
    assert context_rows(_model(ColourModel()), batch, AuditConfig(evidence="none")) == []


def test_a_model_that_ignores_context_does_not_rely_on_it_and_one_that_uses_it_does() -> None:
    batch = _batch(2)
    local = context_rows(_model(ColourModel()), batch, AuditConfig(evidence="full"))
    assert all(r["score"] > 0.9 and r["iou"] == 1.0 for r in local)
    assert all(abs(r["context_reliance"]) < 1e-6 and r["context_iou_drop"] == 0.0 for r in local)
    assert all(r["hallucination"] == 0.0 for r in local)  # the object gone, nothing of its colour is left
    cue = context_rows(_model(ContextModel()), batch, AuditConfig(evidence="full"))
    red = [r for r in cue if r["class_id"] == 1]
    assert all(r["context_reliance"] > 0.1 for r in red)
    assert all(r["hallucination"] > 0.5 for r in red)  # red predicted on the object's place from the scene alone


def test_the_sampled_level_tests_the_images_evidence_images_picks() -> None:
    from segaudit.auditors.sampling import evidence_images

    batch = _batch(12)
    config = AuditConfig(evidence="sampled", evidence_share=0.4)
    picked = evidence_images([s.image_id for s in batch.samples], "sampled", 0.4)
    rows = context_rows(_model(ColourModel()), batch, config)
    assert list(dict.fromkeys(r["image_id"] for r in rows)) == [s.image_id for s, p in zip(batch.samples, picked, strict=True) if p]
    assert 0 < sum(picked) < 12


def test_class_templates_sum_the_logits_over_each_labelled_class() -> None:
    logits = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    gt = torch.zeros((2, 4, 4), dtype=torch.long)
    gt[0, 0, 0], gt[1, 3, 3], gt[1, 0, 1] = 2, 2, 255
    rows = class_template_rows(logits, gt, 3)
    assert [(r["class_id"], r["pixels"]) for r in rows] == [(0, 29), (2, 2)]
    assert rows[1]["logit_sums"] == pytest.approx((logits[0, :, 0, 0] + logits[1, :, 3, 3]).tolist())


def test_a_failing_context_stage_becomes_error_rows_and_the_batch_keeps_its_other_rows(monkeypatch) -> None:
    import segaudit.auditors.context_rows as stage
    from segaudit.auditors.batch import explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.models.registry import load_model

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure\nmore")

    monkeypatch.setattr(stage, "context_effects", broken)
    model = load_model("demo")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        semantic = np.zeros((64, 64), dtype=np.uint8)
        semantic[10:30, 10:30] = 1
        samples.append(Sample(f"img{i}", f"img{i}.jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                              semantic, [Instance(1, semantic > 0)], model.class_names))
    config = AuditConfig(evidence="full", methods=("gradcam",))
    class_map = build_class_map(model.class_names, model.class_names)
    rows = score_batch(explain_batch(samples, model, class_map, config), model, config)
    assert [(e["image_id"], e["stage"], e["reason"]) for e in rows.errors] == [
        ("img0", "context", "context test failed: RuntimeError: simulated failure"),
        ("img1", "context", "context test failed: RuntimeError: simulated failure")]
    assert [r["image_id"] for r in rows.images] == ["img0", "img1"] and rows.scores and not rows.context
    assert rows.class_templates  # computed on every image, whatever the context stage did
    monkeypatch.undo()
    rows = score_batch(explain_batch(samples, model, class_map, config), model, config)
    assert not rows.errors and [(r["image_id"], r["class_id"]) for r in rows.context] == [("img0", 1), ("img1", 1)]
    assert all(0.0 <= r["outside_share"] <= 1.0 for r in rows.context)  # the primary map's CAM evidence


def test_a_void_ring_around_the_object_is_replaced_with_it() -> None:
    # VOC-style labels: a void border around the object, the object's own edge pixels. Left in place, they keep
    # its outline and the imputation spreads its colour back over the object: a false hallucination.
    batch = _batch(2)
    for b in range(2):
        ring = torch.zeros_like(batch.gt[b], dtype=torch.bool)
        ring[2:16, 2:16] = True
        ring[4:14, 4:14] = False
        batch.gt[b][ring] = 255
        batch.images[b][:, ring] = batch.images[b][:, 8, 8][:, None]  # the ring has the object's colour
    rows = context_rows(_model(ColourModel()), batch, AuditConfig(evidence="full"))
    red = [r for r in rows if r["class_id"] == 1]
    assert all(r["object_pixels"] == 100 and r["hallucination"] == 0.0 for r in red)
    assert all(r["iou"] == 1.0 for r in red)  # the red ring is void: it counts in no measure, as in seg_iou
