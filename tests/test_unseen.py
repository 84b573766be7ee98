"""The unseen validation data of bench/evidence.py (segaudit.devtools.unseen)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from segaudit.devtools.synth import BACKGROUND_KINDS, CLASS_NAMES
from segaudit.devtools.unseen import DATASETS, ERROR_KINDS, generate_unseen, planted_kinds, shape_mask


def test_the_datasets_share_no_setting_with_the_development_data():
    assert len(DATASETS) >= 3
    for spec in DATASETS:
        assert not set(spec.classes) & set(CLASS_NAMES)
        assert not set(spec.backgrounds) & set(BACKGROUND_KINDS)
        assert spec.cue_background not in BACKGROUND_KINDS and spec.cue_class in spec.classes
        assert 4 <= len(spec.classes) <= 6 and len(spec.textures) == len(spec.classes)
        assert {k for k, _ in spec.error_mix} == set(ERROR_KINDS)
        assert sum(w for _, w in spec.error_mix) == pytest.approx(1.0)
    for field in ("seed", "cue_class", "error_mix", "classes"):
        assert len({getattr(s, field) for s in DATASETS}) == len(DATASETS), field


@pytest.mark.parametrize("shape", ["ring", "cross", "crescent", "hexagon", "arrow", "heart", "diamond", "pill",
                                   "chevron"])
def test_every_shape_is_a_compact_blob_of_about_its_radius(shape):
    mask = shape_mask(shape, 64, (32.0, 32.0), 20.0, 0.3)
    ys, xs = np.nonzero(mask)
    assert 0.1 * 40 * 40 < mask.sum() < 40 * 40
    reach = np.hypot(xs + 0.5 - 32, ys + 0.5 - 32).max()
    assert 0.8 * 20 <= reach <= 1.45 * 20


def test_planted_kinds_follow_each_dataset_mix():
    for spec in DATASETS:
        plan = planted_kinds(spec, 200)
        assert len(plan) == 40 and max(plan) < 200
        counts = Counter(plan.values())
        for kind, share in spec.error_mix:
            assert abs(counts[kind] - share * 40) < 1.0  # largest remainders: within one image
    assert planted_kinds(DATASETS[0], 200) == planted_kinds(DATASETS[0], 200)


def test_a_generated_dataset_reads_as_coco_with_its_manifest(tmp_path):
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.devtools.validation import planted_error_metrics

    spec = DATASETS[1]
    root = generate_unseen(spec, tmp_path / "ds", n_train=3, n_val=10, size=64)
    data = open_dataset(root, split="val")
    assert tuple(data.category_names) == spec.class_names
    samples, errors = read_samples(data, data.refs())
    assert not errors and len(samples) == 10
    assert all(s.image.shape == (64, 64, 3) for s in samples)
    assert any((s.semantic > 0).any() for s in samples)
    manifest = json.loads((root / "planted_errors.json").read_text())
    assert len(manifest) == 2 and {m["kind"] for m in manifest} <= set(ERROR_KINDS)
    images = pd.DataFrame({"file_name": [s.file_name for s in samples]})
    planted = images["file_name"].isin({m["file_name"] for m in manifest}).to_numpy()
    assert planted_error_metrics(images, planted.astype(float), manifest)["auroc"] == 1.0
    train = open_dataset(root, split="train")
    assert len(train.refs()) == 3
    # the same spec writes the same labels
    again = generate_unseen(spec, tmp_path / "again", n_train=3, n_val=10, size=64)
    assert (again / "annotations" / "instances_val.json").read_bytes() == (
        root / "annotations" / "instances_val.json").read_bytes()
