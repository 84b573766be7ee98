"""Batch audit helpers: image consistency and ranking."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import square_samples

from segaudit.auditors.batch import BatchRows, finish_tables, image_consistency_of


def test_image_consistency_weights_classes_by_extent() -> None:
    # a whole object in good agreement and a few stray predicted pixels of another class
    score, worst = image_consistency_of(np.array([0.9, 0.0]), np.array([990.0, 10.0]), np.array([3, 5]))
    assert score == (0.9 * 990) / 1000 and worst == 3  # 990 * 0.1 = 99 lost > 10 * 1.0
    score, worst = image_consistency_of(np.array([0.9, 0.0]), np.array([500.0, 500.0]), np.array([3, 5]))
    assert score == 0.45 and worst == 5
    assert image_consistency_of(np.array([]), np.array([]), np.array([])) == (1.0, -1)


def test_review_rank_orders_by_suspicion_then_consistency_then_dataset_order() -> None:
    rows = BatchRows()
    cases = [("b", 0.5, 0.8), ("a", 0.2, 0.8), ("c", 1.0, 0.5), ("d", 1.0, 1.0), ("e", 0.5, 0.8)]
    for image_id, consistency, quality in cases:
        rows.images.append({"image_id": image_id, "file_name": f"{image_id}.jpg", "width": 1, "height": 1,
                            "n_instances": 0, "gt_classes": [], "pred_classes": [], "consistency": consistency,
                            "label_quality": quality, "review_rank": 0, "worst_class_id": -1,
                            "unknown_classes": [], "unknown_pixels": []})
    images = finish_tables(rows)["images"]
    assert images["image_id"].tolist() == ["b", "a", "c", "d", "e"]  # dataset order is kept
    # suspicion 1 - Q: c (0.5) > a = b = e (0.2; tie broken by consistency: a (0.2) first, then b = e by
    # dataset order) > d (0)
    assert images["suspicion"].tolist() == pytest.approx([0.2, 0.2, 0.5, 0.0, 0.2])
    assert images["review_rank"].tolist() == [3, 2, 1, 5, 4]


def test_a_failing_image_becomes_an_infer_error_row_and_the_rest_is_scored(monkeypatch) -> None:
    import segaudit.auditors.base as audit  # where the segmentation auditor calls the CAM engine
    from segaudit.auditors.batch import explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.models.registry import load_model
    from segaudit.settings import AuditConfig

    model = load_model("demo")
    samples = square_samples(4)
    samples[2].image[:] = 0  # the poisoned image: the fake model failure below triggers on it
    real = audit.compute_cams_with

    def fragile(module, images, *args, **kwargs):
        if bool((images.flatten(2).std(-1).amax(-1) == 0).any()):  # a constant image in the batch
            raise RuntimeError("simulated kernel failure\nsecond line")
        return real(module, images, *args, **kwargs)

    monkeypatch.setattr(audit, "compute_cams_with", fragile)
    class_map = build_class_map(samples[0].category_names, model.class_names)
    config = AuditConfig()
    explained = explain_batch(samples, model, class_map, config)
    assert [(e.image_id, e.stage, e.reason) for e in explained.errors] == [
        ("img2", "infer", "RuntimeError: simulated kernel failure")
    ]
    rows = score_batch(explained, model, config)
    assert [r["image_id"] for r in rows.images] == ["img0", "img1", "img3"]
    assert rows.errors[0]["image_id"] == "img2"


def test_configuration_mistakes_raise_instead_of_becoming_rows() -> None:
    import pytest

    from segaudit.auditors.batch import explain_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.models.registry import load_model
    from segaudit.settings import AuditConfig

    model = load_model("demo")
    samples = square_samples(1)
    class_map = build_class_map(samples[0].category_names, model.class_names)
    with pytest.raises(ValueError, match="layer 'nope' not in"):
        explain_batch(samples, model, class_map, AuditConfig(layers=("nope",)))
    with pytest.raises(ValueError, match="unknown CAM methods"):
        explain_batch(samples, model, class_map, AuditConfig(methods=("magic",)))


def test_image_consistency_uses_the_primary_layer_or_every_map() -> None:
    from segaudit.auditors.batch import explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.models.registry import load_model
    from segaudit.settings import AuditConfig

    model = load_model("demo")
    samples = square_samples(2)
    class_map = build_class_map(samples[0].category_names, model.class_names)

    def consistency(config: AuditConfig) -> list[float]:
        rows = score_batch(explain_batch(samples, model, class_map, config), model, config)
        return [r["consistency"] for r in rows.images]

    plain = consistency(AuditConfig(methods=("gradcam",)))
    # a second layer and a map at the input do not change the primary layer's consistency
    assert consistency(AuditConfig(methods=("gradcam", "guided_backprop"), layers=("backbone.4", "backbone.16"))) == plain
    only_input = consistency(AuditConfig(methods=("guided_backprop",)))
    assert all(0 <= c <= 1 for c in only_input) and only_input != [0.0, 0.0]


def test_out_of_label_space_class_and_prompts_land_in_the_tables() -> None:
    from segaudit.auditors.batch import explain_batch, finish_tables, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.sample import Sample
    from segaudit.models.registry import load_model
    from segaudit.settings import AuditConfig

    model = load_model("demo")
    names = ("background", "disc", "zebra")  # the demo model knows no zebra
    semantic = np.zeros((64, 64), dtype=np.uint8)
    semantic[5:25, 5:25] = 1
    semantic[40:50, 40:60] = 2
    rng = np.random.default_rng(1)
    sample = Sample("z", "z.jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), semantic, [], names)
    class_map = build_class_map(names, model.class_names)
    config = AuditConfig(methods=("gradcam",), prompts="grabcut")
    rows = score_batch(explain_batch([sample], model, class_map, config), model, config)
    assert rows.images[0]["unknown_classes"] == ["zebra"] and rows.images[0]["unknown_pixels"] == [200]
    frames = finish_tables(rows, config.rules, config.methods)
    found = frames["findings"]
    zebra = found[found["kind"] == "out_of_label_space"]
    assert zebra["class_name"].tolist() == ["zebra"] and zebra["score"].item() == pytest.approx(200 / 64**2)
    # one prompts row per scored map x point kind x prompt kind, for the primary method only
    maps = {(r["image_id"], r["class_id"]) for r in rows.scores}
    assert len(frames["prompts"]) == 4 * len(maps) and set(frames["prompts"]["method"]) == {"gradcam"}
    assert 0.0 <= frames["images"]["label_quality"].item() <= 1.0


def test_one_auditor_per_model_family() -> None:
    from segaudit.auditors.base import auditor_class
    from segaudit.auditors.classification import ClassificationAuditor
    from segaudit.auditors.detection import DetectionAuditor
    from segaudit.auditors.segmentation import SegmentationAuditor

    assert auditor_class("segmentation") is SegmentationAuditor
    assert auditor_class("detection") is DetectionAuditor
    assert auditor_class("classification") is ClassificationAuditor
    with pytest.raises(ValueError, match="no auditor for models of task 'adapter'"):
        auditor_class("adapter")
    with pytest.raises(ValueError, match="has no AUDITOR"):
        auditor_class("rows")  # a module of the package that is not an auditor
    with pytest.raises(ValueError, match="no auditor"):
        auditor_class("..data")  # only modules of segaudit.auditors
