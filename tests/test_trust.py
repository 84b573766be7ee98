"""The method trust summary and the choice of the primary map the findings are decided on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from segaudit.auditors.batch import BatchRows, finish_tables
from segaudit.findings.trust import (
    SANITY_SSIM_MAX,
    choose_primary,
    method_trust,
    primary_order,
    trusted_primary,
)
from segaudit.schema import SCHEMAS

pytestmark = pytest.mark.evidence  # runs the evidence checks as configured (tests/conftest.py)


def _faithfulness(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (method, layer), faithful in values.items():
        for i, f in enumerate(faithful):
            rows.append({"image_id": f"img{i}", "class_id": 1, "method": method, "layer": layer,
                         "deletion_auc": 0.5 - f / 2, "insertion_auc": 0.5 + f / 2, "faithfulness": f})
    return pd.DataFrame(rows)


def test_method_trust_means_standard_errors_and_leaves_out_undefined_maps() -> None:
    frame = _faithfulness({("gradcam", "b4"): [0.1, 0.3, math.nan], ("gradcampp", "b4"): [0.5, 0.5]})
    trust = method_trust(frame).set_index(["method", "layer"])
    assert list(method_trust(frame).columns)[:3] == ["method", "layer", "n_pairs"]
    row = trust.loc[("gradcam", "b4")]
    assert row["n_pairs"] == 2 and row["faithfulness"] == pytest.approx(0.2)
    assert row["faithfulness_se"] == pytest.approx(np.std([0.1, 0.3], ddof=1) / math.sqrt(2))
    assert row["deletion_auc"] == pytest.approx(0.4) and row["insertion_auc"] == pytest.approx(0.6)
    assert trust.loc[("gradcampp", "b4"), "faithfulness_se"] == 0.0
    assert trust["sanity_ssim"].isna().all() and trust["passes_sanity"].isna().all()
    assert not trust["chosen"].any()


def test_sanity_is_read_at_the_last_cascading_step() -> None:
    frame = _faithfulness({("gradcam", "b4"): [0.2, 0.2], ("eigencam", "b4"): [0.4, 0.4]})
    sanity = pd.DataFrame([
        {"method": m, "layer": "b4", "step": step, "block": f"blk{step}", "spearman": -s, "spearman_abs": s,
         "ssim": s, "n_maps": 4}
        for m, steps in (("gradcam", [0.9, 0.6, 0.1]), ("eigencam", [0.99, 0.95, 0.9])) for step, s in enumerate(steps)
    ])
    trust = method_trust(frame, sanity).set_index("method")
    assert trust.loc["gradcam", "sanity_ssim"] == pytest.approx(0.1)
    assert trust.loc["gradcam", "sanity_spearman"] == pytest.approx(0.1)  # the absolute rank correlation
    assert bool(trust.loc["gradcam", "passes_sanity"]) and not bool(trust.loc["eigencam", "passes_sanity"])
    assert SANITY_SSIM_MAX == 0.5
    # the more faithful method fails the sanity check: the other one is chosen
    assert choose_primary(method_trust(frame, sanity), ["eigencam", "gradcam"], ["b4"], fixed=False) == ("gradcam", "b4")


def test_the_most_faithful_map_replaces_the_first_only_beyond_noise() -> None:
    clear = method_trust(_faithfulness({("gradcam", "b4"): [0.10, 0.12, 0.11, 0.09],
                                        ("gradcampp", "b4"): [0.30, 0.32, 0.31, 0.29]}))
    assert choose_primary(clear, ["gradcam", "gradcampp"], ["b4"], fixed=False) == ("gradcampp", "b4")
    assert choose_primary(clear, ["gradcam", "gradcampp"], ["b4"], fixed=True) == ("gradcam", "b4")
    noisy = method_trust(_faithfulness({("gradcam", "b4"): [0.0, 0.4, -0.2, 0.3],
                                        ("gradcampp", "b4"): [0.1, 0.5, -0.1, 0.4]}))
    assert choose_primary(noisy, ["gradcam", "gradcampp"], ["b4"], fixed=False) == ("gradcam", "b4")
    single = method_trust(_faithfulness({("gradcam", "b4"): [0.1], ("gradcampp", "b4"): [0.9]}))  # no error bar
    assert choose_primary(single, ["gradcam", "gradcampp"], ["b4"], fixed=False) == ("gradcam", "b4")
    assert choose_primary(method_trust(_faithfulness({})), ["gradcam"], ["b4"], fixed=False) == ("gradcam", "b4")


def test_only_maps_computed_for_every_image_are_chosen() -> None:
    # a calibration pass measured a deeper layer on a sample; the audit computed b4 only
    trust = method_trust(_faithfulness({("gradcam", "b4"): [0.1, 0.1, 0.12], ("gradcam", "b16"): [0.6, 0.62, 0.6]}))
    assert choose_primary(trust, ["gradcam"], ["b4"], fixed=False, computed=[("gradcam", "b4")]) == ("gradcam", "b4")
    assert choose_primary(trust, ["gradcam"], ["b4", "b16"], fixed=False) == ("gradcam", "b16")


def test_primary_order_puts_the_choice_first() -> None:
    assert primary_order(["a", "b", "c"], ["x", "y"], ("c", "y")) == (["c", "a", "b"], ["y", "x"])
    assert primary_order(["a", "g"], ["x"], ("g", "input")) == (["g", "a"], ["x"])  # a map at the input


def _scores(image_id: str, method: str, relevance_rank: float) -> list[dict]:
    base = {"image_id": image_id, "class_id": 1, "class_name": "disc", "method": method, "layer": "b4",
            "target": "pred", "mask_pixels": 400, "seg_iou": 0.9, "label_quality": 0.9, "energy_in_mask": 0.5,
            "relevance_rank": relevance_rank}
    return [{**base, "mask": "gt"}, {**base, "mask": "pred"}]


def test_findings_are_decided_on_the_chosen_map_and_the_choice_is_recorded() -> None:
    rows = BatchRows()
    rows.images.append({"image_id": "img0", "file_name": "img0.jpg", "width": 8, "height": 8, "n_instances": 1,
                        "gt_classes": ["disc"], "pred_classes": ["disc"], "consistency": 0.9, "label_quality": 0.9,
                        "review_rank": 0, "worst_class_id": -1, "unknown_classes": [], "unknown_pixels": []})
    rows.scores += _scores("img0", "gradcam", 0.9) + _scores("img0", "gradcampp", 0.1)  # pp: mass outside
    rows.faithfulness += _faithfulness({("gradcam", "b4"): [0.1, 0.11, 0.09],
                                        ("gradcampp", "b4"): [0.4, 0.41, 0.39]}).to_dict("records")
    faithful = finish_tables(rows, None, ["gradcam", "gradcampp"], ["b4"])
    trust = faithful["method_trust"]
    assert list(trust.columns) == SCHEMAS["method_trust"].names
    assert trust.loc[trust["chosen"], "method"].tolist() == ["gradcampp"]
    assert faithful["findings"][["kind", "method"]].values.tolist() == [["context_reliance", "gradcampp"]]
    first = finish_tables(rows, None, ["gradcam", "gradcampp"], ["b4"], primary="first")
    assert first["findings"].empty and first["method_trust"].loc[first["method_trust"]["chosen"], "method"].tolist() == [
        "gradcam"]


def test_trusted_primary_rejects_an_unknown_setting() -> None:
    with pytest.raises(ValueError, match="primary must be one of"):
        trusted_primary(_faithfulness({}), None, pd.DataFrame(columns=["method", "layer"]), ["a"], ["x"], "best")


def test_method_trust_counts_a_pair_in_the_pre_pass_and_a_shard_once() -> None:
    from segaudit.findings.trust import method_trust

    row = {"image_id": "a", "class_id": 1, "class_name": "x", "method": "gradcam", "layer": "l", "target": "pred",
           "pixels": 10, "target_score": 0.9, "deletion_auc": 0.1, "insertion_auc": 0.7, "faithfulness": 0.6}
    other = {**row, "image_id": "b", "deletion_auc": 0.3, "insertion_auc": 0.5, "faithfulness": 0.2}
    table = method_trust(pd.DataFrame([row, row, other]))
    assert int(table["n_pairs"].iloc[0]) == 2
    assert float(table["faithfulness"].iloc[0]) == pytest.approx(0.4)
