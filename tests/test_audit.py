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
