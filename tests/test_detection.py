"""Mask R-CNN: per-detection CAMs (segaudit.cam.detection), the registry entries, and the audit's detection rows."""

from __future__ import annotations

import copy
import urllib.error

import numpy as np
import pytest
import torch
from helpers import frozen

from segaudit.auditors.batch import check_config, explain_batch, score_batch
from segaudit.cam import GRADIENT_METHODS, normalize_maps, upsample_maps
from segaudit.cam.detection import (
    DETECTION_METHODS,
    TARGET_DETECTION,
    apply_detection_settings,
    compute_detection_cams,
    configure_detection_transform,
    detection_settings,
    paint_semantic,
)
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset, read_samples
from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
from segaudit.metrics.scores import segmentation_iou
from segaudit.models.registry import (
    DETECTION_LAYERS,
    ModelLoadError,
    build_architecture,
    load_model,
    save_checkpoint,
)
from segaudit.settings import AuditConfig

COMPACT = "maskrcnn_mobilenet_v3_small_fpn"
#: few proposals and detections: fast, and a random model still reports some (score threshold 0)
FAST = {"box_score_thresh": 0.0, "box_detections_per_img": 3, "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 30}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these models run many tiny ops, where two OpenMP threads on a shared, busy
    machine spend far longer synchronising than computing (measured: a 2x96x4x4 1x1 convolution 20-80 ms
    with two threads, 0.1 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _detector(arch: str = COMPACT, size: int = 128, num_classes: int = len(CLASS_NAMES), **settings):
    torch.manual_seed(0)
    model = frozen(build_architecture(arch, num_classes))
    apply_detection_settings(model, {**FAST, **settings})
    return configure_detection_transform(model, size)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("detsynth")
    generate_dataset(root, n_train=0, n_val=4, size=128, seed=3, plant_errors=0.5)
    return root


def _images(n: int = 2, size: int = 128) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size)


def test_transform_is_the_identity_on_configured_squares() -> None:
    model = _detector(size=96)
    images = _images(2, 96)
    batched, _ = model.transform(list(images))
    assert batched.image_sizes == [(96, 96), (96, 96)]
    assert torch.equal(batched.tensors, images)  # no resampling, no normalisation, no padding
    with pytest.raises(ValueError, match="multiple of 32"):
        configure_detection_transform(model, 100)
    raw = frozen(build_architecture(COMPACT, 6))  # torchvision's own transform (800/1333, ImageNet stats)
    with pytest.raises(ValueError, match="configure_detection_transform"):
        compute_detection_cams(raw, images, "backbone.body.12")


def test_every_method_equals_autograd_of_each_detection_score() -> None:
    """Slot batching against one forward per image and one backward per detection, taken directly."""
    model = _detector()
    images = _images(2)
    layers = ("backbone.body.12", "backbone.body.8")
    with torch.no_grad():  # the engine turns gradients on itself
        ours = compute_detection_cams(model, images, layers, DETECTION_METHODS)
    assert len(ours) == 6 and ours.index.tolist() == [0, 1, 2, 0, 1, 2]
    for b in range(2):
        stored = {}
        hooks = [dict(model.named_modules())[name].register_forward_hook(
            lambda _m, _i, out, name=name, stored=stored: stored.__setitem__(name, out)) for name in layers]
        x = images[b : b + 1].clone().requires_grad_(True)  # makes every layer output part of the graph
        out = model(list(x))[0]
        for h in hooks:
            h.remove()
        assert torch.equal(out["labels"], ours.labels[ours.image == b])
        torch.testing.assert_close(out["scores"].detach(), ours.scores[ours.image == b])
        for j in range(len(out["scores"])):
            grads = torch.autograd.grad(out["scores"][j], [stored[name] for name in layers], retain_graph=True)
            n = int(torch.nonzero((ours.image == b) & (ours.index == j)))
            for name, grad in zip(layers, grads, strict=True):
                for method, fn in GRADIENT_METHODS.items():
                    expected = fn(stored[name].detach(), grad)[0]
                    torch.testing.assert_close(ours.map(method, name)[n], expected, atol=1e-6, rtol=1e-4)
                assert grad.abs().sum() > 0  # the score depends on the layer: the comparison is not of zeros


class _ScoreOnlyBoxTarget:
    """pytorch-grad-cam's FasterRCNNBoxScoreTarget without its IoU term: the score of the detection matching
    the reference box (IoU > 0.5) and label. The peer adds that IoU (differentiable through the box
    regression) to the score; segaudit explains the class score alone, so the peer target is cut to it."""

    def __init__(self, label: int, box: torch.Tensor) -> None:
        self.label, self.box = label, box

    def __call__(self, output: dict[str, torch.Tensor]) -> torch.Tensor:
        import torchvision

        ious = torchvision.ops.box_iou(self.box[None], output["boxes"])[0]
        index = int(ious.argmax())
        assert ious[index] > 0.5 and int(output["labels"][index]) == self.label
        return output["scores"][index]


@pytest.mark.parametrize("method, peer_name", [("gradcam", "GradCAM"), ("gradcampp", "GradCAMPlusPlus")])
def test_maps_equal_pytorch_grad_cam(method: str, peer_name: str) -> None:
    import pytorch_grad_cam as grad_cam  # a dev dependency, imported plainly: the check must not skip silently

    model = _detector("maskrcnn_resnet50_fpn", num_classes=4, box_detections_per_img=2)
    # random class logits of the 1024-wide box head saturate the softmax (scores 1.0 or 1e-7, maps ~1e-9,
    # below the normalisation's eps); ten times smaller they give scores 0.1-0.75 and maps ~1e-2
    model.roi_heads.box_predictor.cls_score.weight.mul_(0.1)
    images = _images(1)
    layer = "backbone.body.layer4"
    ours = compute_detection_cams(model, images, layer, (method,))
    assert len(ours) == 2
    peer_model = copy.deepcopy(model)
    for p in peer_model.parameters():  # the peer backpropagates into parameters; ours stays frozen
        p.requires_grad_(True)
    target_layer = dict(peer_model.named_modules())[layer]
    with getattr(grad_cam, peer_name)(model=peer_model, target_layers=[target_layer]) as peer:
        for n in range(len(ours)):
            theirs = peer(input_tensor=images, targets=[_ScoreOnlyBoxTarget(int(ours.labels[n]), ours.boxes[n])])[0]
            # the peer's normalisation: min-max, bilinear resize (cv2 INTER_LINEAR), min-max again
            raw = ours.map(method)[n]
            assert raw.max() > raw.min()  # a map with structure, not a vacuous comparison of constants
            mine = normalize_maps(upsample_maps(normalize_maps(raw), (128, 128)))
            np.testing.assert_allclose(mine.numpy(), theirs, atol=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_paint_semantic_higher_score_wins_and_threshold_applies() -> None:
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # label 1, score 0.6
    masks[1, 1:3] = True  # label 2, score 0.9: wins row 1
    masks[2] = True  # label 3, score 0.3: below the threshold
    pred = paint_semantic(masks, torch.tensor([1, 2, 3]), torch.tensor([0.6, 0.9, 0.3]), torch.tensor([0, 0, 1]), 2)
    assert pred[0].tolist() == [[1] * 4, [2] * 4, [2] * 4, [0] * 4]
    assert not pred[1].any()


def test_no_detections_give_empty_maps_and_defined_rows(synthetic) -> None:
    # scores are softmax probabilities, never above 1: nothing is detected
    model = _detector(box_score_thresh=1.0)
    result = compute_detection_cams(model, _images(2), "backbone.body.12", DETECTION_METHODS)
    assert len(result) == 0 and not result.pred.any()
    assert all(m.shape == (0, 4, 4) for m in result.maps.values())

    loaded = _loaded(model)
    data = open_dataset(synthetic / "annotations" / "instances_val.json")
    samples, _ = read_samples(data, data.refs())
    class_map = build_class_map(data.category_names, loaded.class_names)
    config = AuditConfig(methods=("gradcam",))
    rows = score_batch(explain_batch(samples, loaded, class_map, config), loaded, config)
    assert not rows.scores and not rows.maps and not rows.errors and len(rows.images) == 4
    for image in rows.images:  # every labelled object was missed: consistency 0, a labelled class is the worst
        assert image["consistency"] == 0.0 and image["worst_class_id"] in range(1, 6) and image["pred_classes"] == []


def _loaded(model):
    from segaudit.models.registry import IMAGENET_MEAN, IMAGENET_STD, LoadedModel

    return LoadedModel(name="test", module=model, class_names=CLASS_NAMES, input_size=128, mean=IMAGENET_MEAN,
                       std=IMAGENET_STD, default_layer=DETECTION_LAYERS[COMPACT], sha256="", arch=COMPACT,
                       task="detection")


def test_audit_scores_each_detection_against_gt_and_its_own_mask(synthetic) -> None:
    loaded = _loaded(_detector(box_detections_per_img=2))
    data = open_dataset(synthetic / "annotations" / "instances_val.json")
    samples, _ = read_samples(data, data.refs()[:2])
    class_map = build_class_map(data.category_names, loaded.class_names)
    config = AuditConfig(methods=("gradcam", "eigencam"), layers=("backbone.body.12", "backbone.body.8"))
    explained = explain_batch(samples, loaded, class_map, config)
    det = explained.cams
    rows = score_batch(explained, loaded, config)
    assert len(det) == 4
    assert len(rows.scores) == len(det) * 2 * 2 * 2 and len(rows.maps) == len(det) * 2 * 2
    keys = {(r["image_id"], r["detection"], r["method"], r["layer"], r["mask"]) for r in rows.scores}
    assert len(keys) == len(rows.scores)
    assert {r["target"] for r in rows.scores} == {TARGET_DETECTION} == {r["target"] for r in rows.maps}
    assert {r["detection"] for r in rows.maps} == {0, 1}
    # the "pred" reference is the detection's own instance mask, the "gt" one the labelled class
    batch = explained.batch
    for n in range(len(det)):
        b, k, d = int(det.image[n]), int(det.labels[n]), int(det.index[n])
        mine = [r for r in rows.scores if r["image_id"] == samples[b].image_id and r["detection"] == d
                and r["method"] == "gradcam" and r["layer"] == "backbone.body.12"]
        by_mask = {r["mask"]: r for r in mine}
        valid = batch.valid[b]
        assert by_mask["pred"]["mask_pixels"] == int((det.masks[n] & valid).sum())
        assert by_mask["gt"]["mask_pixels"] == int((batch.gt[b] == k).sum())
        assert by_mask["gt"]["class_id"] == k and by_mask["gt"]["consistency"] == by_mask["pred"]["consistency"]
        instances = [m for c, m in batch.instances[b] if c == k]
        if instances:
            best = max(float(torch.nan_to_num(segmentation_iou(det.masks[n][None], m[None], valid[None]), nan=0.0))
                       for m in instances)
            assert by_mask["gt"]["seg_iou"] == pytest.approx(best)
    assert len(rows.images) == 2 and len(rows.thumbnails) == 2
    assert all(np.isfinite(image["consistency"]) for image in rows.images)


def test_config_refuses_what_a_detector_cannot_explain() -> None:
    loaded = _loaded(_detector())
    check_config(loaded, AuditConfig(methods=DETECTION_METHODS))
    for bad in (AuditConfig(methods=("scorecam",)), AuditConfig(methods=("guided_gradcam",)),
                AuditConfig(target="gt"), AuditConfig(amp=True)):
        with pytest.raises(ValueError, match="detection"):
            check_config(loaded, bad)


def test_checkpoint_keeps_weights_and_detection_settings(tmp_path) -> None:
    model = _detector(box_detections_per_img=2)
    path = tmp_path / "det.pt"
    save_checkpoint(model, path, arch=COMPACT, class_names=CLASS_NAMES, input_size=128)
    loaded = load_model(str(path))
    assert loaded.task == "detection" and loaded.default_layer == "backbone.fpn.layer_blocks.0"
    assert detection_settings(loaded.module) == detection_settings(model)
    images = _images(1)
    mine = compute_detection_cams(model, images, loaded.default_layer)
    theirs = compute_detection_cams(loaded.module, images, loaded.default_layer)
    torch.testing.assert_close(theirs.scores, mine.scores)
    torch.testing.assert_close(theirs.map("gradcam"), mine.map("gradcam"), atol=1e-5, rtol=1e-4)


def test_registry_detector_loads_torchvision_weights_or_says_where_to_put_them(monkeypatch) -> None:
    import torchvision.models._api as api

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(ModelLoadError, match=r"maskrcnn_resnet50_fpn_v2_coco-73cbd019\.pth.*offline, place"):
        load_model("maskrcnn_resnet50_fpn_v2")
    # the weights file's content as torchvision would read it (random here; the real one cannot be fetched)
    torch.manual_seed(0)
    state = build_architecture("maskrcnn_resnet50_fpn", 91)
    torchvision_layout = copy.deepcopy(state.state_dict())
    monkeypatch.setattr(api, "load_state_dict_from_url", lambda url, *a, **k: torchvision_layout)
    loaded = load_model("maskrcnn_resnet50_fpn", weights="COCO_V1")
    assert loaded.task == "detection" and loaded.input_size == 800 and loaded.default_layer == "backbone.body.layer4"
    assert loaded.class_names[:3] == ("background", "person", "bicycle") and len(loaded.class_names) == 91
    assert loaded.module.roi_heads.score_thresh == 0.5
    assert tuple(loaded.module.transform.min_size) == (800,) and loaded.module.transform.image_std == [1.0] * 3


@pytest.mark.slow
def test_cli_run_lands_per_detection_rows(prefect_server, synthetic, tmp_path) -> None:
    from segaudit.cli import main
    from segaudit.runs.tables import load_run

    checkpoint = tmp_path / "detector.pt"
    save_checkpoint(_detector(box_detections_per_img=2), checkpoint, arch=COMPACT, class_names=CLASS_NAMES,
                    input_size=128)
    layers = "backbone.body.12,backbone.body.8"
    argv = ["run", str(synthetic / "annotations" / "instances_val.json"), "--model", str(checkpoint),
            "--methods", "gradcam,hirescam,eigencam", "--layers", layers, "--target", "pred",
            "--out", str(tmp_path / "runs"), "--run-id", "det", "--batch-size", "2"]
    assert main(argv) == 0
    run = load_run(tmp_path / "runs" / "det")
    assert run.errors.empty and len(run.images) == 4
    scores = run.scores
    assert set(scores["method"]) == {"gradcam", "hirescam", "eigencam"} and set(scores["layer"]) == set(layers.split(","))
    assert set(scores["target"]) == {TARGET_DETECTION} and set(scores["mask"]) == {"gt", "pred"}
    assert set(scores["detection"]) == {0, 1} and len(scores) == 4 * 2 * 3 * 2 * 2
    assert len(run.maps) == len(scores) // 2 and set(run.maps["detection"]) == {0, 1}
    assert (run.run_dir / "report.html").is_file()


def _training_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_detector.py"
    spec = importlib.util.spec_from_file_location("train_demo_detector", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_detector_training_is_deterministic(tmp_path) -> None:
    script = _training_script()
    generate_dataset(tmp_path, n_train=4, n_val=0, size=64, seed=5)
    images, targets, _ = script.load_split(str(tmp_path), "train", 64)
    config = script.DetectorConfig(input_size=64, epochs=1, batch_size=2, rpn_train_proposals=50, roi_samples=16)
    first = script.train(images, targets, config, log=lambda _: None).state_dict()
    second = script.train(images, targets, config, log=lambda _: None).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_shipped_detector_matches_its_card_and_its_maps_point_at_its_detections(tmp_path) -> None:
    import pandas as pd

    from segaudit.models.registry import demo_detector_path, sha256_file

    path = demo_detector_path()
    assert path.stat().st_size < 15 * 2**20
    assert sha256_file(path) in path.with_suffix(".md").read_text()
    loaded = load_model("demo-detector")
    assert loaded.task == "detection" and loaded.module.roi_heads.score_thresh == 0.5
    generate_dataset(tmp_path, n_train=0, n_val=8, seed=0)  # the first scenes of the card's val split
    data = open_dataset(tmp_path / "annotations" / "instances_val.json")
    samples, _ = read_samples(data, data.refs())
    config = AuditConfig(methods=("layercam",))
    rows = score_batch(explain_batch(samples, loaded, build_class_map(data.category_names, loaded.class_names),
                                     config), loaded, config)
    own = pd.DataFrame(rows.scores).query("mask == 'pred'")
    # measured: 25 detections, median IoU with the matched labelled instance 0.86, LayerCAM's maximum inside
    # the detection's own mask 88% of the time (objects cover ~10% of an image), AUROC 0.98 median
    assert len(own) >= 16 and own["seg_iou"].median() > 0.7
    assert own["pointing_hit"].mean() > 0.7 and own["auroc"].median() > 0.9
