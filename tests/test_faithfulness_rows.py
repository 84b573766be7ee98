"""The faithfulness table's rows: which maps are checked, what their columns hold, and that a failure of
the stage becomes an error row without losing the batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import DEMO_NAMES, square_samples
from torch import nn

from segaudit.auditors.faithfulness_rows import FAITHFULNESS_STAGE, faithfulness_rows
from segaudit.auditors.sampling import evidence_images
from segaudit.cam import CamResult
from segaudit.cam.targets import TARGET_PRED
from segaudit.data.preprocess import PreparedBatch
from segaudit.findings.trust import method_trust
from segaudit.models.registry import LoadedModel
from segaudit.schema import SCHEMAS
from segaudit.settings import AuditConfig

pytestmark = pytest.mark.evidence  # runs the evidence checks as configured (tests/conftest.py)

NAMES = DEMO_NAMES


def _demo_batch(n: int, config: AuditConfig):
    from segaudit.auditors.batch import explain_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.models.registry import load_model

    model = load_model("demo")
    samples = square_samples(n)
    explained = explain_batch(samples, model, build_class_map(NAMES, model.class_names), config)
    return model, explained


def test_one_row_per_map_of_every_explained_pair_with_the_target_score_of_its_pixels() -> None:
    config = AuditConfig(methods=("gradcam", "gradcampp"), evidence="full")
    model, explained = _demo_batch(2, config)
    batch, cams = explained.batch, explained.cams
    found = faithfulness_rows(batch, cams, model, config)
    assert found.errors == []
    frame = pd.DataFrame(found.faithfulness)
    assert list(frame.columns) == SCHEMAS["faithfulness"].names
    pairs = torch.nonzero(cams.target_source != 0).tolist()
    assert len(frame) == len(pairs) * len(cams.maps) > 0
    assert set(zip(frame["method"], frame["layer"], strict=True)) == {(m, x) for x, m in cams.maps}
    # target_score: the mean softmax probability of the class over its target pixels (predicted, or the
    # labelled ones where nothing is predicted), recomputed here from the engine's logits
    probs = cams.logits.softmax(1)
    for (b, k) in pairs:
        pixels = (cams.pred[b] == k) if bool((cams.pred[b] == k).any()) else (batch.gt[b] == k)
        pixels &= batch.valid[b]
        mine = frame[(frame["image_id"] == f"img{b}") & (frame["class_id"] == k)]
        assert (mine["pixels"] == int(pixels.sum())).all()
        assert mine["target_score"].to_numpy() == pytest.approx(float(probs[b, k][pixels].mean()), abs=1e-5)
    assert np.allclose(frame["faithfulness"], frame["insertion_auc"] - frame["deletion_auc"])
    assert frame[["deletion_auc", "insertion_auc"]].stack().between(0, 1).all()


def test_only_the_images_the_evidence_setting_picks_are_checked() -> None:
    config = AuditConfig(methods=("gradcam",), evidence="none")
    model, explained = _demo_batch(6, config)
    assert faithfulness_rows(explained.batch, explained.cams, model, config).faithfulness == []
    ids = [s.image_id for s in explained.batch.samples]
    share = 0.5
    picked = {i for i, p in zip(ids, evidence_images(ids, "sampled", share), strict=True) if p}
    assert 0 < len(picked) < len(ids)  # the hash picks some, not all, of these six ids
    sampled = AuditConfig(methods=("gradcam",), evidence="sampled", evidence_share=share)
    rows = faithfulness_rows(explained.batch, explained.cams, model, sampled).faithfulness
    assert {r["image_id"] for r in rows} == picked


def test_a_failing_stage_becomes_error_rows_and_the_batch_keeps_its_other_rows(monkeypatch) -> None:
    import segaudit.auditors.faithfulness_rows as stage
    from segaudit.auditors.batch import score_batch

    def broken(*args, **kwargs):
        raise RuntimeError("imputation diverged\nsecond line")

    monkeypatch.setattr(stage, "deletion_insertion", broken)
    config = AuditConfig(methods=("gradcam",), evidence="full")
    model, explained = _demo_batch(2, config)
    rows = score_batch(explained, model, config)
    assert len(rows.images) == 2 and len(rows.scores) > 0 and rows.faithfulness == []
    assert [(e["image_id"], e["stage"]) for e in rows.errors] == [("img0", FAITHFULNESS_STAGE),
                                                                ("img1", FAITHFULNESS_STAGE)]
    assert rows.errors[0]["reason"] == "deletion/insertion curves failed: RuntimeError: imputation diverged"


class _EvidenceSquare(nn.Module):
    """Class 1's logit at every pixel is 20 x (mean of channel 0 over a fixed square - 0.5): the model uses
    that square and nothing else."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        evidence = x[:, 0, 4:12, 4:12].mean((-1, -2)) - 0.5
        one = (20 * evidence)[:, None, None, None].expand(-1, 1, *x.shape[-2:])
        return {"out": torch.cat([torch.zeros_like(one), one], 1)}


def test_a_map_on_the_pixels_the_model_uses_is_more_faithful_than_one_elsewhere() -> None:
    side, n = 32, 3
    images = torch.zeros((n, 3, side, side))
    images[:, 0, 4:12, 4:12] = 1.0  # the evidence: bright square, dark elsewhere
    good = torch.zeros((n, 2, side, side))
    good[:, 1, 4:12, 4:12] = 1.0
    good[:, 1] += torch.linspace(0, 0.1, side)[None, :]  # a gentle ramp: a strict order elsewhere
    bad = torch.zeros((n, 2, side, side))
    bad[:, 1, 20:28, 20:28] = 1.0
    bad[:, 1] += torch.linspace(0.1, 0, side)[None, :]
    source = torch.zeros((n, 2), dtype=torch.int8)
    source[:, 1] = TARGET_PRED
    cams = CamResult(logits=_EvidenceSquare()(images)["out"], pred=torch.ones((n, side, side), dtype=torch.long),
                     maps={("l", "good"): good, ("l", "bad"): bad}, target_source=source, layers=("l",))
    samples = square_samples(n, side)
    batch = PreparedBatch(images, np.zeros((n, side, side, 3), np.uint8), torch.ones((n, side, side), dtype=torch.long),
                          [[] for _ in range(n)], samples, [])
    model = LoadedModel("square", _EvidenceSquare(), ("background", "thing"), side, (0, 0, 0), (1, 1, 1), "l", "", "test")
    rows = faithfulness_rows(batch, cams, model, AuditConfig(evidence="full")).faithfulness
    frame = pd.DataFrame(rows)
    assert len(frame) == 2 * n and (frame["pixels"] == side * side).all()
    by = frame.groupby("method")[["deletion_auc", "insertion_auc", "faithfulness"]].mean()
    # deleting the square first kills the score at once; deleting elsewhere first leaves it until the end
    assert by.loc["good", "deletion_auc"] < by.loc["bad", "deletion_auc"]
    assert by.loc["good", "insertion_auc"] > by.loc["bad", "insertion_auc"]
    assert by.loc["good", "faithfulness"] > 0.5 > by.loc["bad", "faithfulness"]
    trust = method_trust(frame)
    assert trust.set_index("method").loc["good", "faithfulness"] == pytest.approx(by.loc["good", "faithfulness"])
