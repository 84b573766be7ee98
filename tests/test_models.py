"""Model registry: checkpoints (safe loading), torchvision names, clear errors."""

from __future__ import annotations

import os
import pickle
import urllib.error

import pytest
import torch

from segaudit.models.registry import (
    DEFAULT_LAYERS,
    ModelLoadError,
    build_architecture,
    candidate_layers,
    load_model,
    save_checkpoint,
)

ARCH = "lraspp_mobilenet_v3_large"
NAMES = ("background", "a", "b")


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    module = build_architecture(ARCH, len(NAMES))
    path = tmp_path / "m.pt"
    sha = save_checkpoint(module, path, arch=ARCH, class_names=NAMES, input_size=96)
    loaded = load_model(str(path))
    assert loaded.class_names == NAMES and loaded.input_size == 96 and loaded.sha256 == sha
    assert loaded.default_layer == DEFAULT_LAYERS[ARCH] and not loaded.module.training
    assert all(not p.requires_grad for p in loaded.module.parameters())
    x = torch.randn(1, 3, 64, 64)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x)["out"], module(x)["out"])
    assert DEFAULT_LAYERS[ARCH] in candidate_layers(loaded.module)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "segaudit-checkpoint-v1", "payload": _RunsCode()}, fh)
    with pytest.raises(ModelLoadError, match="refusing to load .*weights_only=True"):
        load_model(str(path))


def test_plain_state_dict_is_refused_with_advice(tmp_path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(build_architecture(ARCH, 3).state_dict(), path)
    with pytest.raises(ModelLoadError, match="not a segaudit checkpoint; for a state dict use --model <torchvision arch> .*--weights .* --classes"):
        load_model(str(path))


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ModelLoadError, match="unknown model 'resnet9000'.*deeplabv3_resnet50"):
        load_model("resnet9000")
    with pytest.raises(ModelLoadError, match="checkpoint not found"):
        load_model("missing/model.pt")


def test_torchvision_weights_offline_error_names_url_and_cache(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelLoadError, match=r"cannot download deeplabv3_mobilenet_v3_large weights from https://.*place the file at"):
        load_model("torchvision:deeplabv3_mobilenet_v3_large", weights="DEFAULT")
    with pytest.raises(ModelLoadError, match="unknown weights 'NOPE'.*COCO_WITH_VOC_LABELS_V1"):
        load_model("deeplabv3_mobilenet_v3_large", weights="NOPE")


def test_torchvision_weights_enum_loads_from_local_cache(monkeypatch, tmp_path) -> None:
    """With the weights file in torch's cache (as after a download), the enum path loads offline and
    takes the categories from the enum's metadata."""
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights

    weights = LRASPP_MobileNet_V3_Large_Weights.DEFAULT
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        cache = tmp_path / "hub" / "checkpoints"
        cache.mkdir(parents=True)
        module = build_architecture(ARCH, len(weights.meta["categories"]))
        torch.save(module.state_dict(), cache / os.path.basename(weights.url))
        monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
        loaded = load_model(ARCH, weights="DEFAULT")
    finally:
        torch.hub.set_dir(previous)
    assert loaded.class_names[0] == "background" and "person" in loaded.class_names
    assert loaded.input_size == 520 and len(loaded.sha256) == 64


def _checkpoint_payload(**changes) -> dict:
    module = build_architecture("vgg_fcn", 3)
    payload = {"format": "segaudit-checkpoint-v1", "arch": "vgg_fcn", "class_names": list(NAMES), "input_size": 64,
               "mean": [0.5] * 3, "std": [0.2] * 3, "state_dict": module.state_dict(), "extra": {}}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(("changes", "message"), [
    ({"arch": None}, "field 'arch' is missing"),
    ({"arch": "my_unet"}, "field 'arch' = 'my_unet' is not an architecture"),
    ({"input_size": -5}, "input_size must be a positive integer"),
    ({"mean": ["red", 0.5, 0.5]}, "mean must be 3 numbers"),
    ({"class_names": ["background", "a"]}, r"does not fit vgg_fcn with 2 'class_names': the weights have 3 classes"),
])
def test_malformed_checkpoint_is_refused_naming_the_field(tmp_path, capsys, changes, message) -> None:
    path = tmp_path / "bad.pt"
    torch.save(_checkpoint_payload(**changes), path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(path))
    from segaudit.cli import main

    assert main(["layers", str(path)]) == 2  # one line, exit 2, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segaudit: error:")


def test_save_checkpoint_refuses_what_it_cannot_load_back(tmp_path) -> None:
    module = build_architecture("vgg_fcn", 3)
    with pytest.raises(ModelLoadError, match="arch 'my_unet' cannot be loaded back"):
        save_checkpoint(module, tmp_path / "a.pt", arch="my_unet", class_names=NAMES, input_size=64)
    with pytest.raises(ModelLoadError, match="the weights have 3 classes"):
        save_checkpoint(module, tmp_path / "b.pt", arch="vgg_fcn", class_names=("bg", "a"), input_size=64)
    with pytest.raises(ModelLoadError, match="input_size must be a positive integer"):
        save_checkpoint(module, tmp_path / "c.pt", arch="vgg_fcn", class_names=NAMES, input_size=0)
    assert not any(tmp_path.iterdir())
