import numpy as np
import pandas as pd
import pytest

from segaudit.devtools.validation import average_precision, binary_auroc, planted_error_metrics
from segaudit.findings.ranking import rank_and_find, review_ranks
from segaudit.findings.rules import FindingRules, class_reliance, find, primary_map, suspicion


def _score_rows(image, cls, name, seg_iou, quality, gt_px, pred_px, e_gt, e_pred, rra, method="gradcam",
                layer="L"):
    common = {"image_id": image, "class_id": cls, "class_name": name, "method": method, "layer": layer,
              "target": "pred", "seg_iou": seg_iou, "label_quality": quality}
    return [
        {**common, "mask": "gt", "mask_pixels": gt_px, "energy_in_mask": e_gt, "relevance_rank": rra},
        {**common, "mask": "pred", "mask_pixels": pred_px, "energy_in_mask": e_pred, "relevance_rank": np.nan},
    ]


def _images(ids, unknown=None):
    unknown = unknown or {}
    return pd.DataFrame({
        "image_id": ids, "file_name": [f"{i}.jpg" for i in ids], "width": 100, "height": 100,
        "unknown_classes": [list(unknown.get(i, {})) for i in ids],
        "unknown_pixels": [list(unknown.get(i, {}).values()) for i in ids],
    })


def test_each_kind_is_found_with_its_evidence():
    rows = (
        # a: the model confidently predicts 400 px where the label has 400 elsewhere; CAM on the prediction
        _score_rows("a", 1, "disc", 0.0, 0.02, 400, 400, 0.1, 0.8, 0.1)
        # b: right prediction, but the map's top pixels are mostly outside the object
        + _score_rows("b", 2, "boat", 0.9, 0.95, 500, 480, 0.3, 0.3, 0.3)
        # c: the model predicts 100 of 1000 labelled pixels and is not confident the label is wrong
        + _score_rows("c", 1, "disc", 0.1, 0.7, 1000, 100, 0.6, 0.9, 0.8)
        # d: the model disagrees confidently but its CAM sits on the label: not a label error, a missed object
        + _score_rows("d", 3, "star", 0.1, 0.1, 1000, 100, 0.9, 0.2, 0.9)
        # e: all fine
        + _score_rows("e", 1, "disc", 0.95, 0.99, 500, 500, 0.9, 0.9, 0.95)
    )
    scores = pd.DataFrame(rows)
    instances = pd.DataFrame({
        "image_id": ["e", "e", "e"], "class_id": [1, 1, 1], "class_name": "disc", "method": "gradcam",
        "layer": "L", "target": "pred", "n_instances": 3, "instance_coverage": 1 / 3,
    })
    images = _images(list("abcdef"), unknown={"f": {"zebra": 250}})
    found = find(images, scores, instances, FindingRules(), ("gradcam",), ("L",))
    got = {(r.kind, r.image_id) for r in found.itertuples()}
    assert got == {("label_error", "a"), ("context_reliance", "b"), ("missed_object", "c"),
                   ("missed_object", "d"), ("neglected_instances", "e"), ("out_of_label_space", "f")}
    by_kind = found.set_index("kind")
    assert by_kind.loc["label_error", "score"] == pytest.approx(0.98)
    assert by_kind.loc["context_reliance", "score"] == pytest.approx(0.7)
    assert found.loc[found.image_id == "c", "score"].item() == pytest.approx(0.9)  # recall 0.1
    assert by_kind.loc["neglected_instances", "score"] == pytest.approx(2 / 3)
    assert by_kind.loc["out_of_label_space", "score"] == pytest.approx(0.025)
    assert by_kind.loc["out_of_label_space", "class_name"] == "zebra"
    assert set(found["file_name"]) == {f"{i}.jpg" for i in "abcdef"}


def test_thresholds_are_parameters():
    scores = pd.DataFrame(_score_rows("b", 2, "boat", 0.9, 0.95, 500, 480, 0.3, 0.3, 0.3))
    images = _images(["b"])
    assert len(find(images, scores, None, FindingRules(outside_share=0.5))) == 1
    assert len(find(images, scores, None, FindingRules(outside_share=0.8))) == 0


def test_findings_use_the_primary_map_only():
    scores = pd.DataFrame(
        _score_rows("a", 1, "disc", 0.0, 0.02, 400, 400, 0.1, 0.8, 0.1, method="gradcampp")
        + _score_rows("a", 1, "disc", 0.0, 0.02, 400, 400, 0.9, 0.1, 0.1, method="gradcam")
    )
    assert primary_map(scores, ("gradcam", "gradcampp"), ("L",)) == ("gradcam", "L")
    # Grad-CAM sits on the label: no label error; with Grad-CAM++ first it is one
    assert "label_error" not in set(find(_images(["a"]), scores, None, methods=("gradcam",))["kind"])
    assert "label_error" in set(find(_images(["a"]), scores, None, methods=("gradcampp",))["kind"])


def test_suspicion_is_label_quality_alone_and_undefined_inputs_count_as_agreement():
    q = np.array([0.9, 0.2, np.nan, 1.2])
    np.testing.assert_allclose(suspicion(q), [0.1, 0.8, 0.0, 0.0])


def test_consistency_never_reorders_images_of_different_label_quality():
    # the least consistent image has the best label quality: a blend would move it up, the tie-break must not
    q = np.array([0.95, 0.30, 0.60, 0.90])
    c = np.array([0.01, 0.99, 0.90, 0.02])
    ranks = review_ranks(suspicion(q), c)
    assert ranks.tolist() == [4, 1, 2, 3]  # exactly label quality's order
    images = pd.DataFrame({"image_id": list("abcd"), "file_name": [f"{i}.jpg" for i in "abcd"],
                           "label_quality": q, "consistency": c})
    ranked, _ = rank_and_find(images, pd.DataFrame(), None)
    assert ranked["review_rank"].tolist() == [4, 1, 2, 3]


def test_consistency_breaks_exact_ties_of_label_quality_only_when_enabled():
    q = np.array([0.5, 0.5, 0.5, 0.2, np.nan])  # the NaN ties with Q = 1 nowhere else: last
    c = np.array([0.9, 0.1, 0.5, 0.9, 0.0])
    assert review_ranks(suspicion(q), c).tolist() == [4, 2, 3, 1, 5]
    assert review_ranks(suspicion(q), c, tie_break=False).tolist() == [2, 3, 4, 1, 5]  # dataset order
    images = pd.DataFrame({"image_id": list("abcde"), "file_name": [f"{i}.jpg" for i in "abcde"],
                           "label_quality": q, "consistency": c})
    off, _ = rank_and_find(images, pd.DataFrame(), None, FindingRules(consistency_weight=0.0))
    assert off["review_rank"].tolist() == [2, 3, 4, 1, 5]
    with pytest.raises(ValueError):
        rank_and_find(images, pd.DataFrame(), None, FindingRules(consistency_weight=1.5))


def test_review_order_is_never_worse_than_label_quality_when_consistency_is_noise():
    rng = np.random.default_rng(7)
    planted = rng.random(400) < 0.2
    q = np.where(planted, rng.uniform(0.0, 0.7, 400), rng.uniform(0.4, 1.0, 400)).round(2)  # coarse: many ties
    noise = rng.random(400)  # an uninformative consistency
    order_score = -review_ranks(suspicion(q), noise).astype(float)
    # with an informative tie-break the order is at least label quality's (ties scored at their mean)
    informative = np.where(planted, 0.0, 1.0)
    better = -review_ranks(suspicion(q), informative).astype(float)
    assert binary_auroc(planted, better) >= binary_auroc(planted, 1 - q)
    assert average_precision(planted, better) >= average_precision(planted, 1 - q)
    # noise only reorders inside ties: the AUROC moves by at most the tied pairs' share
    tied_pairs = sum(int((planted & (q == v)).sum()) * int((~planted & (q == v)).sum()) for v in np.unique(q))
    bound = 0.5 * tied_pairs / (planted.sum() * (~planted).sum())
    assert abs(binary_auroc(planted, order_score) - binary_auroc(planted, 1 - q)) <= bound + 1e-12


def test_class_reliance_ranks_the_context_class_first():
    rows = []
    for i in range(5):
        rows += _score_rows(f"b{i}", 5, "boat", 0.8, 0.9, 500, 500, 0.4, 0.4, 0.6)
        rows += _score_rows(f"d{i}", 1, "disc", 0.8, 0.9, 500, 500, 0.8, 0.8, 0.95)
        rows += _score_rows(f"x{i}", 2, "square", 0.2, 0.9, 500, 500, 0.1, 0.1, 0.1)  # wrong: not counted
    table = class_reliance(pd.DataFrame(rows), methods=("gradcam",))
    assert list(table["class_name"]) == ["boat", "disc"]
    assert table["reliance"].tolist() == pytest.approx([0.4, 0.05])
    assert table["rank"].tolist() == [1, 2]


def test_empty_tables_give_empty_findings():
    empty_scores = pd.DataFrame(columns=["image_id", "class_id", "class_name", "method", "layer", "target",
                                         "mask", "mask_pixels", "energy_in_mask", "relevance_rank", "seg_iou",
                                         "label_quality"])
    found = find(_images(["a"]), empty_scores, None)
    assert found.empty and "kind" in found.columns


def test_validation_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200) + 0.5 * y, 1)  # ties on purpose
    assert binary_auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s))


def test_planted_error_metrics_by_kind():
    images = pd.DataFrame({"file_name": ["JPEGImages/a.jpg", "JPEGImages/b.jpg", "JPEGImages/c.jpg",
                                         "JPEGImages/d.jpg"]})
    manifest = [{"file_name": "a.jpg", "kind": "shift"}, {"file_name": "b.jpg", "kind": "delete"}]
    m = planted_error_metrics(images, np.array([0.9, 0.1, 0.8, 0.0]), manifest)
    assert m["auroc"] == pytest.approx(0.75)  # pairs (pos, neg): 0.9>0.8, 0.9>0, 0.1<0.8, 0.1>0
    assert m["found_in_top_n"] == 1
    assert m["recall_by_kind"] == {"delete": 0.0, "shift": 1.0}


def _context(rows):
    """Context-table rows ``(image, class, name, context_reliance, hallucination)``."""
    return pd.DataFrame([{"image_id": i, "class_id": k, "class_name": n, "context_reliance": drop,
                          "hallucination": h, "iou": 0.9} for i, k, n, drop, h in rows])


def test_context_reliance_is_decided_by_the_causal_drop_where_the_test_ran():
    scores = pd.DataFrame(
        # b: the map lies mostly outside (1 - RRA 0.7) but the model keeps the boat without context
        _score_rows("b", 5, "boat", 0.9, 0.95, 500, 480, 0.3, 0.3, 0.3)
        # c: the map sits on the object (1 - RRA 0.05) but the model loses the boat without its water
        + _score_rows("c", 5, "boat", 0.9, 0.95, 500, 480, 0.9, 0.9, 0.95)
        # u: not tested: the map rule decides, marked by a NaN context_reliance
        + _score_rows("u", 5, "boat", 0.9, 0.95, 500, 480, 0.3, 0.3, 0.4)
        # w: a wrong prediction loses its score too, but is no context reliance
        + _score_rows("w", 5, "boat", 0.2, 0.95, 500, 480, 0.3, 0.3, 0.9)
    )
    context = _context([("b", 5, "boat", 0.02, 0.0), ("c", 5, "boat", 0.6, 0.1), ("w", 5, "boat", 0.5, 0.0)])
    found = find(_images(list("bcuw")), scores, None, FindingRules(), ("gradcam",), ("L",), context=context)
    mine = found[found.kind == "context_reliance"].set_index("image_id")
    assert list(mine.index) == ["c", "u"]  # strongest first: the drop 0.6, then the map's 0.6
    assert mine.loc["c", "score"] == pytest.approx(0.6) and mine.loc["c", "context_reliance"] == pytest.approx(0.6)
    assert mine.loc["c", "outside_share"] == pytest.approx(0.05)  # the map's view kept beside it
    assert mine.loc["u", "score"] == pytest.approx(0.6) and np.isnan(mine.loc["u", "context_reliance"])
    assert len(find(_images(list("bcuw")), scores, None, FindingRules(context_drop=0.7), ("gradcam",), ("L",),
                    context=context).query("kind == 'context_reliance'")) == 1  # u only: a threshold


def test_context_hallucination_from_the_context_table():
    scores = pd.DataFrame(_score_rows("h", 5, "boat", 0.9, 0.95, 500, 480, 0.9, 0.9, 0.95))
    context = _context([("h", 5, "boat", 0.1, 0.8), ("k", 2, "square", 0.0, 0.3)])
    found = find(_images(["h", "k"]), scores, None, FindingRules(), ("gradcam",), ("L",), context=context)
    mine = found[found.kind == "context_hallucination"]
    assert mine[["image_id", "class_name"]].values.tolist() == [["h", "boat"]]
    assert mine["score"].item() == pytest.approx(0.8) and mine["hallucination"].item() == pytest.approx(0.8)
    assert mine["seg_iou"].item() == pytest.approx(0.9) and mine["target"].item() == "pred"
    assert found[found.kind == "context_hallucination"].shape[0] == 1
    assert "context_hallucination" not in set(find(_images(["h"]), scores, None, FindingRules(hallucination=0.9),
                                                   context=context)["kind"])


def _templates(vectors):
    """class_templates rows: one per class, its template vector x 10 pixels."""
    return pd.DataFrame([{"class_id": k, "pixels": 10, "logit_sums": list(np.asarray(v, float) * 10)}
                         for k, v in enumerate(vectors)])


def test_class_entanglement_needs_correlated_templates_and_confusion():
    # classes 1 and 2 share a template direction; 3 is apart; 1 <-> 2 and 1 <-> 3 are confused alike
    templates = _templates([[5, 0, 0, 0], [0, 5, 4, 0], [0, 4, 5, 0], [0, 0, 0, 5]])
    confusion = pd.DataFrame({"gt_class_id": [1, 1, 2, 1, 3], "pred_class_id": [1, 2, 2, 3, 3],
                              "pixels": [900, 100, 1000, 100, 1000]})
    scores = pd.DataFrame(_score_rows("a", 1, "disc", 0.9, 0.9, 500, 500, 0.9, 0.9, 0.95)
                          + _score_rows("a", 2, "square", 0.9, 0.9, 500, 500, 0.9, 0.9, 0.95))
    found = find(_images(["a"]), scores, None, FindingRules(), ("gradcam",), ("L",),
                 class_templates=templates, confusion=confusion)
    mine = found[found.kind == "class_entanglement"]
    assert mine[["image_id", "class_id", "class_name", "file_name"]].values.tolist() == [["", 1, "disc ~ square", ""]]
    from segaudit.metrics.entanglement import confusion_shares, template_correlation

    rho = template_correlation(templates["logit_sums"].tolist(), [10] * 4)[1, 2]
    assert rho > 0.5 and mine["template_correlation"].item() == pytest.approx(rho)
    share = (100 / 1100 + 0 / 1000) / 2  # 1 -> 2 and 2 -> 1 (1 <-> 3 the same, but their templates differ)
    assert mine["confusion_share"].item() == pytest.approx(share)
    assert mine["score"].item() == pytest.approx(np.sqrt(rho * share))
    assert confusion_shares(np.diag([1.0, 1.0]))[0, 1] == 0.0
    none = find(_images(["a"]), scores, None, FindingRules(entanglement_confusion=0.2), class_templates=templates,
                confusion=confusion)
    assert "class_entanglement" not in set(none["kind"])


def test_class_reliance_ranks_by_the_causal_drop_with_the_map_beside_it():
    rows, tested = [], []
    for i in range(4):
        rows += _score_rows(f"b{i}", 5, "boat", 0.8, 0.9, 500, 500, 0.8, 0.8, 0.9)  # map on the boat (0.1 outside)
        rows += _score_rows(f"d{i}", 1, "disc", 0.8, 0.9, 500, 500, 0.4, 0.4, 0.5)  # map outside the disc (0.5)
        tested += [(f"b{i}", 5, "boat", 0.4 + 0.1 * i, 0.0), (f"d{i}", 1, "disc", 0.01, 0.0)]
    scores = pd.DataFrame(rows)
    causal = class_reliance(scores, methods=("gradcam",), context=_context(tested[:-1]))  # d3 untested
    assert list(causal["class_name"]) == ["boat", "disc"]
    assert causal["reliance"].tolist() == pytest.approx([0.55, 0.01]) and causal["n"].tolist() == [4, 3]
    assert causal["cam_reliance"].tolist() == pytest.approx([0.1, 0.5]) and causal["cam_n"].tolist() == [4, 4]
    assert list(class_reliance(scores, methods=("gradcam",))["class_name"]) == ["disc", "boat"]  # the map's order
