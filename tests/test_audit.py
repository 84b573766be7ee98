"""Batch audit helpers: image consistency and ranking."""

from __future__ import annotations

import numpy as np

from segaudit.audit import BatchRows, finish_tables, image_consistency_of


def test_image_consistency_weights_classes_by_extent() -> None:
    # a whole object in good agreement and a few stray predicted pixels of another class
    score, worst = image_consistency_of(np.array([0.9, 0.0]), np.array([990.0, 10.0]), np.array([3, 5]))
    assert score == (0.9 * 990) / 1000 and worst == 3  # 990 * 0.1 = 99 lost > 10 * 1.0
    score, worst = image_consistency_of(np.array([0.9, 0.0]), np.array([500.0, 500.0]), np.array([3, 5]))
    assert score == 0.45 and worst == 5
    assert image_consistency_of(np.array([]), np.array([]), np.array([])) == (1.0, -1)


def test_review_rank_orders_by_consistency_then_dataset_order() -> None:
    rows = BatchRows()
    for image_id, consistency in [("b", 0.5), ("a", 0.2), ("c", 0.5), ("d", 1.0)]:
        rows.images.append({"image_id": image_id, "file_name": f"{image_id}.jpg", "width": 1, "height": 1,
                            "n_instances": 0, "gt_classes": [], "pred_classes": [], "consistency": consistency,
                            "review_rank": 0, "worst_class_id": -1})
    images = finish_tables(rows)["images"]
    assert images["image_id"].tolist() == ["b", "a", "c", "d"]  # dataset order is kept
    assert images["review_rank"].tolist() == [2, 1, 3, 4]


def _samples(n: int, size: int = 64):
    from segaudit.sample import Instance, Sample

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        semantic = np.zeros((size, size), dtype=np.uint8)
        semantic[10:30, 10:30] = 1 + i % 5
        out.append(Sample(f"img{i}", f"img{i}.jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                          semantic, [Instance(1 + i % 5, semantic > 0)], ("background", "disc", "square",
                                                                          "triangle", "star", "boat")))
    return out


def test_a_failing_image_becomes_an_infer_error_row_and_the_rest_is_scored(monkeypatch) -> None:
    import segaudit.audit as audit
    from segaudit.audit import AuditConfig, explain_batch, score_batch
    from segaudit.classmap import build_class_map
    from segaudit.models import load_model

    model = load_model("demo")
    samples = _samples(4)
    samples[2].image[:] = 0  # the poisoned image: the fake model failure below triggers on it
    real = audit.compute_cams

    def fragile(module, images, *args, **kwargs):
        if bool((images.flatten(2).std(-1).amax(-1) == 0).any()):  # a constant image in the batch
            raise RuntimeError("simulated kernel failure\nsecond line")
        return real(module, images, *args, **kwargs)

    monkeypatch.setattr(audit, "compute_cams", fragile)
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

    from segaudit.audit import AuditConfig, explain_batch
    from segaudit.classmap import build_class_map
    from segaudit.models import load_model

    model = load_model("demo")
    samples = _samples(1)
    class_map = build_class_map(samples[0].category_names, model.class_names)
    with pytest.raises(ValueError, match="layer 'nope' not in"):
        explain_batch(samples, model, class_map, AuditConfig(layers=("nope",)))
    with pytest.raises(ValueError, match="unknown CAM methods"):
        explain_batch(samples, model, class_map, AuditConfig(methods=("magic",)))


def test_image_consistency_uses_the_primary_layer_or_every_map() -> None:
    from segaudit.audit import AuditConfig, explain_batch, score_batch
    from segaudit.classmap import build_class_map
    from segaudit.models import load_model

    model = load_model("demo")
    samples = _samples(2)
    class_map = build_class_map(samples[0].category_names, model.class_names)

    def consistency(config: AuditConfig) -> list[float]:
        rows = score_batch(explain_batch(samples, model, class_map, config), model, config)
        return [r["consistency"] for r in rows.images]

    plain = consistency(AuditConfig(methods=("gradcam",)))
    # a second layer and a map at the input do not change the primary layer's consistency
    assert consistency(AuditConfig(methods=("gradcam", "guided_backprop"), layers=("backbone.4", "backbone.16"))) == plain
    only_input = consistency(AuditConfig(methods=("guided_backprop",)))
    assert all(0 <= c <= 1 for c in only_input) and only_input != [0.0, 0.0]
