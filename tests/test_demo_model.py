"""The shipped demo model: it is what its card says, and the training recipe is deterministic."""

from __future__ import annotations

import json

import pytest
import torch

from segaudit.data.readers import VocDataset
from segaudit.devtools.synth import CLASS_NAMES, generate_dataset
from segaudit.devtools.train import TrainConfig, confusion_matrix, load_tensors, train_model
from segaudit.metrics.scores import mean_iou
from segaudit.models.registry import demo_checkpoint_path, load_model, sha256_file

CARD = demo_checkpoint_path().with_name("demo_model.json")


def test_checkpoint_matches_card_and_size_limit() -> None:
    card = json.loads(CARD.read_text())
    assert sha256_file(demo_checkpoint_path()) == card["sha256"]
    assert demo_checkpoint_path().stat().st_size <= 20 * 2**20
    assert card["sha256"] in demo_checkpoint_path().with_name("MODEL_CARD.md").read_text()


def test_validation_miou_reproduces_the_card(tmp_path) -> None:
    """Recompute the card's number on the clean synthetic val split (seed 0), through the readers."""
    card = json.loads(CARD.read_text())
    generate_dataset(tmp_path, n_train=0, n_val=100, seed=0)
    model = load_model("demo")
    x, y = load_tensors(VocDataset(tmp_path, split="val"), model.class_names, model.input_size)
    miou, _ = mean_iou(confusion_matrix(model.module, x, y, model.num_classes))
    assert miou >= 0.85
    assert miou == pytest.approx(card["val_miou"], abs=2e-3)


def test_training_is_deterministic(tmp_path) -> None:
    generate_dataset(tmp_path, n_train=8, n_val=0, size=64, seed=3)
    x, y = load_tensors(VocDataset(tmp_path, split="train"), CLASS_NAMES, 64)
    config = TrainConfig(epochs=1, batch_size=4, input_size=64, seed=1)
    first = train_model(x, y, len(CLASS_NAMES), config, log=lambda _: None).state_dict()
    second = train_model(x, y, len(CLASS_NAMES), config, log=lambda _: None).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_vgg_fcn_matches_its_card(tmp_path) -> None:
    """The shipped VGG-FCN (the model CNN-Fixations traces): hash and validation mIoU as on its card."""
    from segaudit.models.registry import demo_fcn_checkpoint_path

    card = json.loads(demo_fcn_checkpoint_path().with_name("demo_vgg_fcn.json").read_text())
    assert sha256_file(demo_fcn_checkpoint_path()) == card["sha256"]
    assert card["sha256"] in demo_fcn_checkpoint_path().with_name("MODEL_CARD_vgg_fcn.md").read_text()
    generate_dataset(tmp_path, n_train=0, n_val=100, seed=0)
    model = load_model("demo-fcn")
    assert model.arch == "vgg_fcn" and model.default_layer == "features.22"
    x, y = load_tensors(VocDataset(tmp_path, split="val"), model.class_names, model.input_size)
    miou, _ = mean_iou(confusion_matrix(model.module, x, y, model.num_classes))
    assert miou >= 0.85
    assert miou == pytest.approx(card["val_miou"], abs=2e-3)


def test_retraining_the_demo_model_keeps_the_classifier_section_of_its_card(tmp_path) -> None:
    """``scripts/train_demo_model.py`` rewrites MODEL_CARD.md; the demo classifier's marked section stays."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = demo_checkpoint_path().with_name("MODEL_CARD.md").read_text()
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# an older demo model card\n\n" + shipped[shipped.index("<!-- demo-classifier: begin -->"):])
    kept = module._appended_sections(card)
    assert kept.startswith("\n<!-- demo-classifier: begin -->\n## Demo classifier")
    assert kept.rstrip("\n").endswith("<!-- demo-classifier: end -->") and "older" not in kept
    main = shipped[: shipped.index("<!-- demo-classifier: begin -->")].rstrip("\n") + "\n"
    assert main + module._appended_sections(demo_checkpoint_path().with_name("MODEL_CARD.md")) == shipped
