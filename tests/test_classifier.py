"""Classifiers in the CAM engine and the audit: ImageNet registry and class mapping, targets, agreement with
pytorch-grad-cam and captum, the shipped demo classifier, and a classifier audit through the CLI."""

from __future__ import annotations

import copy
import json
import urllib.error

import numpy as np
import pytest
import torch
from helpers import frozen
from torch import nn

from segaudit.cam import (
    GRADIENT_FREE_METHODS,
    GRADIENT_METHODS,
    GUIDED_METHODS,
    TARGET_ALL,
    TARGET_GT,
    TARGET_NONE,
    TARGET_PRED,
    compute_cams,
)
from segaudit.cam.maps import normalize_maps, upsample_maps
from segaudit.cam.targets import classifier_presence, classifier_targets
from segaudit.models.classifier import (
    IMAGENET_CLASSIFIERS,
    ImageNetClassifier,
    SmallGmpCNN,
    build_imagenet_backbone,
    imagenet_categories,
    load_imagenet_mapping,
)
from segaudit.models.registry import (
    ModelLoadError,
    candidate_layers,
    demo_classifier_path,
    load_model,
    sha256_file,
)

SHAPES = ("background", "disc", "square", "triangle", "star", "boat")


def _small_classifier(num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return frozen(SmallGmpCNN(num_classes))


# ----------------------------------------------------------------------------------- mapping, registry


def test_shipped_voc_mapping_resolves_names_to_imagenet_indices() -> None:
    mapping = load_imagenet_mapping()
    assert len(mapping) == 20 and "background" not in mapping
    assert mapping["cat"] == [281, 282, 283, 284, 285]
    assert mapping["dog"] == list(range(151, 269))
    assert 134 in mapping["bird"] and imagenet_categories()[134] == "crane bird"  # not the machine (517)
    assert mapping["tvmonitor"] == sorted([851, 664, 782])


def test_user_mapping_accepts_indices_and_names_and_rejects_mistakes(tmp_path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"kitty": ["tabby", 282], "car": [817]}))
    assert load_imagenet_mapping(path) == {"kitty": [281, 282], "car": [817]}
    for bad, message in [
        ({"kitty": ["tabbby"]}, "unknown ImageNet class name 'tabbby'"),
        ({"kitty": [1000]}, "out of range"),
        ({"kitty": []}, "non-empty list"),
        ({"background": [1]}, "background is not mapped"),
        ({"everything": list(range(1000))}, "leaves background empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_imagenet_mapping(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_imagenet_mapping(tmp_path / "missing.json")


def test_class_score_is_the_log_odds_of_the_mapped_imagenet_mass() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 1000)).double()  # any x -> 1000 logits will do
    mapping = {"cat": [281, 282, 283, 284, 285], "car": [817, 511], "bird": [7]}
    model = ImageNetClassifier(backbone, mapping).eval()
    assert model.class_names == ("background", "cat", "car", "bird")
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64) * 4
    with torch.no_grad():
        scores, probabilities = model(x), backbone(x).softmax(1)
    mass = torch.stack([probabilities[:, [i for i in range(1000) if i not in {281, 282, 283, 284, 285, 817, 511, 7}]]
                        .sum(1), probabilities[:, 281:286].sum(1), probabilities[:, [817, 511]].sum(1),
                        probabilities[:, 7]], 1)
    torch.testing.assert_close(scores.sigmoid(), mass, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(scores, torch.log(mass) - torch.log1p(-mass), atol=1e-6, rtol=1e-6)
    # where the naive formula gives log(1) - log(0) = inf, the logsumexp form stays finite and exact
    with torch.no_grad():
        backbone[1].bias[281] = 100.0
        extreme = model(torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    assert torch.isfinite(extreme).all() and 90 < extreme[0, 1] < 110 and extreme[0, 0] < -90


def test_default_layers_exist_and_are_offered() -> None:
    for arch, layer in IMAGENET_CLASSIFIERS.items():
        with torch.device("meta"):  # structure only: no memory, no initialisation cost
            backbone = build_imagenet_backbone(arch)
        wrapped = ImageNetClassifier(backbone, {"cat": [281]})
        layers = candidate_layers(wrapped)
        assert layer in layers, arch
        assert ("backbone.features.28" if arch.startswith("vgg") else "backbone.layer3") in layers


def test_registry_loads_torchvision_weights_and_names_the_url_offline(monkeypatch, tmp_path) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelLoadError, match=r"cannot download resnet50 weights from https://.*place the file at"):
        load_model("torchvision:resnet50", weights="DEFAULT")
    with pytest.raises(ModelLoadError, match="unknown weights 'NOPE'.*IMAGENET1K_V2"):
        load_model("resnet101", weights="NOPE")
    with pytest.raises(ModelLoadError, match="needs torchvision ImageNet weights"):
        load_model("vgg16", weights=None)
    with pytest.raises(ModelLoadError, match="unknown ImageNet class name"):
        load_model("resnet50", class_mapping={"cat": ["no such class"]})

    # the enum path, offline: the weights file in torch's cache (as after a download; random weights)
    from torchvision.models import ResNet50_Weights

    torch.manual_seed(0)
    state = build_imagenet_backbone("resnet50").state_dict()
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        cached = tmp_path / "hub" / "checkpoints" / ResNet50_Weights.DEFAULT.url.rsplit("/", 1)[1]
        cached.parent.mkdir(parents=True)
        torch.save(state, cached)
        user = tmp_path / "shapes_to_imagenet.json"
        user.write_text(json.dumps({"classes": {"disc": ["ping-pong ball"], "boat": ["canoe", "speedboat"]}}))
        loaded = load_model(f"resnet50:{user}")
        voc = load_model("torchvision:resnet50", weights="IMAGENET1K_V2")
    finally:
        torch.hub.set_dir(previous)
    assert loaded.task == "classification" and loaded.class_names == ("background", "disc", "boat")
    assert loaded.default_layer == "backbone.layer4" and loaded.input_size == 224
    assert loaded.name == "torchvision:resnet50:shapes_to_imagenet" and loaded.sha256 == sha256_file(cached)
    assert voc.class_names[:3] == ("background", "aeroplane", "bicycle") and len(voc.class_names) == 21
    torch.testing.assert_close(voc.module.backbone.fc.weight, state["fc.weight"])


# ------------------------------------------------------------------------------------------------ engine


def test_classifier_targets_pick_predicted_and_labelled_classes() -> None:
    present = torch.tensor([[True, True, False, False, False]])
    gt = torch.tensor([[[0, 2], [255, 0]]])
    assert classifier_targets(present, gt, "pred").tolist() == [[TARGET_NONE, TARGET_PRED, TARGET_GT, 0, 0]]
    assert classifier_targets(present, gt, "gt").tolist() == [[TARGET_NONE, TARGET_PRED, TARGET_GT, 0, 0]]
    both = torch.tensor([[True, False, True, False, False]])
    assert classifier_targets(both, gt, "pred")[0, 2] == TARGET_PRED
    assert classifier_targets(both, gt, "gt")[0, 2] == TARGET_GT
    assert classifier_targets(present, gt, "all").tolist() == [[TARGET_NONE, TARGET_ALL, TARGET_ALL, 0, 0]]
    assert classifier_targets(present, None, "pred").tolist() == [[TARGET_NONE, TARGET_PRED, 0, 0, 0]]
    with pytest.raises(ValueError, match="roi.*whole images"):
        classifier_targets(present, gt, "roi")
    assert classifier_presence(torch.tensor([[-1.0, 0.0, 2.0]])).tolist() == [[False, False, True]]


class _Logit:
    """A pytorch-grad-cam target: one class score of a (K,) output, or its sigmoid."""

    def __init__(self, category: int, sigmoid: bool = False) -> None:
        self.category, self.sigmoid = category, sigmoid

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        value = output[..., self.category]
        return value.sigmoid() if self.sigmoid else value


@pytest.mark.parametrize(("method", "peer_name", "score"), [
    ("gradcam", "GradCAM", "logits"), ("gradcampp", "GradCAMPlusPlus", "logits"),
    ("gradcam", "GradCAM", "softmax"), ("scorecam", "ScoreCAM", "logits"),
])
def test_maps_equal_pytorch_grad_cam_on_a_classifier(method: str, peer_name: str, score: str) -> None:
    import pytorch_grad_cam as grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _small_classifier()
    torch.manual_seed(1)
    # Score-CAM: one forward per channel (128) and target on both sides, so one small image
    n, side = (1, 32) if method == "scorecam" else (3, 64)
    images = torch.randn(n, 3, side, side)
    gt = torch.zeros(n, side, side, dtype=torch.long)
    gt[:, 4:20, 4:20] = torch.tensor([1, 2, 3])[:n, None, None]  # one labelled class per image
    result = compute_cams(model, images, "features.6", gt, (method,), target="gt", score=score)
    pairs = torch.nonzero(result.target_source != TARGET_NONE).tolist()
    assert len(pairs) >= n and result.pred.shape == (n, 4) and result.pred.dtype == torch.bool

    peer_model = copy.deepcopy(model)
    for p in peer_model.parameters():  # the peer backpropagates into parameters; ours stays frozen
        p.requires_grad_(True)
    layer = dict(peer_model.named_modules())["features.6"]
    with getattr(grad_cam, peer_name)(model=peer_model, target_layers=[layer]) as peer:
        for b, k in pairs:
            target = ClassifierOutputTarget(k) if score == "logits" else _Logit(k, sigmoid=True)
            theirs = peer(input_tensor=images[b : b + 1], targets=[target])[0]
            ours = normalize_maps(upsample_maps(normalize_maps(result.map(method)[b, k]), (side, side)))
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)


def test_imagenet_classifier_maps_equal_pytorch_grad_cam() -> None:
    """The wrapped ResNet's Grad-CAM of a class score against the peer given the same module and score."""
    import pytorch_grad_cam as grad_cam

    torch.manual_seed(0)
    model = ImageNetClassifier(frozen(build_imagenet_backbone("resnet50")), load_imagenet_mapping()).eval()
    torch.manual_seed(2)
    images = torch.randn(1, 3, 96, 96)
    classes = torch.zeros(1, 21, dtype=torch.bool)
    classes[0, [8, 12]] = True  # cat (labelled) and dog (if predicted)
    result = compute_cams(model, images, "backbone.layer4", methods=("gradcam",), target="all",
                          classes=classes, gt=torch.full((1, 96, 96), 8))
    assert result.target_source[0, 8] == TARGET_ALL and result.map("gradcam").shape[-2:] == (3, 3)
    peer_model = copy.deepcopy(model)
    for p in peer_model.parameters():
        p.requires_grad_(True)
    with grad_cam.GradCAM(model=peer_model, target_layers=[peer_model.backbone.layer4]) as peer:
        for b, k in torch.nonzero(result.target_source != TARGET_NONE).tolist():
            theirs = peer(input_tensor=images[b : b + 1], targets=[_Logit(k)])[0]
            ours = normalize_maps(upsample_maps(normalize_maps(result.map("gradcam")[b, k]), (96, 96)))
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)


def test_guided_backprop_of_a_classifier_equals_captum() -> None:
    from captum.attr import GuidedBackprop

    model = _small_classifier()
    torch.manual_seed(3)
    images = torch.randn(2, 3, 48, 48)
    gt = torch.zeros(2, 48, 48, dtype=torch.long)
    gt[0, :10, :10], gt[1, :10, :10] = 1, 3
    result = compute_cams(model, images, "features.6", gt, ("guided_backprop",), target="gt")
    peer_model = copy.deepcopy(model)
    for b, k in torch.nonzero(result.target_source != TARGET_NONE).tolist():
        theirs = GuidedBackprop(peer_model).attribute(images[b : b + 1].clone().requires_grad_(True), target=k)
        torch.testing.assert_close(result.map("guided_backprop", "input")[b, k], theirs[0].abs().sum(0),
                                   atol=1e-6, rtol=1e-4)


def test_every_method_runs_on_a_classifier_and_only_targeted_classes_get_maps() -> None:
    model = _small_classifier()
    images = torch.randn(2, 3, 64, 64)
    gt = torch.zeros(2, 64, 64, dtype=torch.long)
    gt[0, 5:20, 5:20] = 2
    methods = (*GRADIENT_METHODS, *GRADIENT_FREE_METHODS, *GUIDED_METHODS)  # CNN-Fixations: segmentation only
    result = compute_cams(model, images, ["features.5", "features.6"], gt, methods, target="pred",
                          score="softmax", score_cam_channels=8)
    targeted = result.target_source != TARGET_NONE
    assert result.target_source[0, 2] in (TARGET_PRED, TARGET_GT) and not targeted[:, 0].any()
    for (layer, method), maps in result.maps.items():
        assert maps.shape[:2] == (2, 4), (layer, method)
        assert (maps[~targeted] == 0).all() and torch.isfinite(maps).all()
    assert result.map("gradcam", "features.6").shape[-2:] == (8, 8)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="roi"):
        compute_cams(model, images, "features.6", gt, target="roi", roi=(0.0, 0.0, 0.5, 0.5))


# ------------------------------------------------------------------------------- the shipped classifier


def _card() -> dict:
    return json.loads(demo_classifier_path().with_name("demo_classifier.json").read_text())


def test_shipped_classifier_beats_a_lower_bound_and_reproduces_its_card(tmp_path) -> None:
    from segaudit.data.readers import VocDataset
    from segaudit.devtools.classifier_train import average_precision, predict_scores, presence_labels
    from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
    from segaudit.devtools.train import load_tensors

    model = load_model("demo-classifier")
    assert model.task == "classification" and model.class_names == SHAPES
    assert model.default_layer in candidate_layers(model.module)
    assert demo_classifier_path().stat().st_size < 6 * 2**20 and model.sha256 == _card()["sha256"]
    generate_dataset(tmp_path, n_train=0, n_val=100, seed=0)  # the card's validation split
    images, labels = load_tensors(VocDataset(tmp_path, split="val"), CLASS_NAMES, model.input_size)
    truth = presence_labels(labels, len(CLASS_NAMES)).numpy() > 0
    logits = predict_scores(model.module, images).numpy()
    ap = {n: average_precision(logits[:, c], truth[:, c]) for c, n in enumerate(CLASS_NAMES) if c > 0}
    chance = truth[:, 1:].mean(0)  # the AP of a random ranking is the positive rate, about 0.4 here
    assert min(ap.values()) > 0.8 and min(ap.values()) > chance.max() + 0.3, ap
    assert abs(np.mean(list(ap.values())) - _card()["val_map"]) < 1e-3  # the card's number, re-measured
    accuracy = ((logits[:, 1:] > 0) == truth[:, 1:]).mean()
    assert accuracy > 0.85


def test_average_precision_equals_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    from segaudit.devtools.classifier_train import average_precision

    rng = np.random.default_rng(0)
    for _ in range(50):
        positive = rng.random(30) < 0.3
        positive[0] = True
        scores = rng.integers(0, 6, 30).astype(float)  # with ties
        assert average_precision(scores, positive) == pytest.approx(average_precision_score(positive, scores))
    assert np.isnan(average_precision(np.ones(3), np.zeros(3, dtype=bool)))


# -------------------------------------------------------------------------------------------------- audit


def test_audit_scores_a_classifier_against_the_gt_mask_only(demo_data) -> None:
    from segaudit.auditors.batch import check_config, explain_batch, finish_tables, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.settings import AuditConfig

    model = load_model("demo-classifier")
    data = open_dataset(str(demo_data / "annotations" / "instances_val.json"))
    samples, _ = read_samples(data, data.refs()[:6])
    config = AuditConfig(methods=("gradcam", "gradcampp"), target="pred")
    explained = explain_batch(samples, model, build_class_map(data.category_names, model.class_names), config)
    frames = finish_tables(score_batch(explained, model, config))
    scores, images = frames["scores"], frames["images"]
    assert set(scores["mask"]) == {"gt"} and scores["seg_iou"].isna().all()
    assert set(scores["layer"]) == {"features.6"} and set(scores["method"]) == {"gradcam", "gradcampp"}
    assert len(frames["maps"]) == len(scores) and len(frames["thumbnails"]) == 6 and frames["confusion"].empty

    logits = explained.cams.logits
    for row in scores.itertuples():
        b = [s.image_id for s in samples].index(row.image_id)
        p = float(logits[b, row.class_id].sigmoid())
        expected = p * np.nan_to_num(row.energy_in_mask) if row.mask_pixels > 0 else 1 - p
        assert row.consistency == pytest.approx(expected)
        assert row.target == ("pred" if p > 0.5 else "gt")
    for image in images.itertuples():
        b = [s.image_id for s in samples].index(image.image_id)
        assert set(image.pred_classes) == {SHAPES[c] for c in range(1, 6) if logits[b, c] > 0}
        mine = scores[scores["image_id"] == image.image_id].groupby("class_id")["consistency"].mean()
        assert image.consistency == pytest.approx(mine.mean() if len(mine) else 1.0)
    with pytest.raises(ValueError, match="whole images"):
        check_config(model, AuditConfig(target="roi", roi=(0.0, 0.0, 0.5, 0.5)))


@pytest.mark.slow
def test_cli_audits_with_the_demo_classifier(prefect_server, demo_data, tmp_path, capsys) -> None:
    from segaudit.cli import main
    from segaudit.runs.tables import load_run

    ann = str(demo_data / "annotations" / "instances_val.json")
    out = tmp_path / "runs"
    code = main(["run", ann, "--model", "demo-classifier", "--methods", "gradcam,gradcampp", "--target", "gt",
                 "--layers", "features.6,features.5", "--limit", "6", "--batch-size", "3", "--out", str(out),
                 "--run-id", "clf"])
    assert code == 0, capsys.readouterr().err
    run = load_run(out / "clf")
    assert run.errors.empty and len(run.images) == 6
    assert set(zip(run.scores["method"], run.scores["layer"], strict=True)) == {
        (m, layer) for m in ("gradcam", "gradcampp") for layer in ("features.6", "features.5")}
    assert set(run.scores["target"]) <= {"gt", "pred"} and "gt" in set(run.scores["target"])
    assert run.run["model_name"] == "demo-classifier" and run.run["layer"] == "features.6,features.5"
    report = (out / "clf" / "report.html").read_text()
    assert run.images.sort_values("review_rank")["file_name"].iloc[0] in report
