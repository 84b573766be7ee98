"""The settings' one declaration: the command line, the ``audit`` flow and the run metadata agree with it."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pytest

from segaudit.cli import build_parser, main
from segaudit.findings.rules import FindingRules
from segaudit.settings import AuditConfig, RunSettings, flow_signature


def _parsed(argv: list[str]) -> RunSettings:
    return RunSettings.from_params(vars(build_parser().parse_args(argv)))


def test_command_line_defaults_are_the_flows() -> None:
    from segaudit.flows.audit import audit

    defaults = {name: p.default for name, p in inspect.signature(audit.fn).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert _parsed(["run", "data"]) == RunSettings.from_params({"dataset": "data", **defaults}) == RunSettings("data")
    assert inspect.signature(audit.fn) == flow_signature()


def test_every_option_reaches_its_setting() -> None:
    settings = _parsed([
        "run", "d", "--split", "train", "--image-root", "imgs", "--model", "m.pt", "--weights", "none",
        "--layers", "a, b", "--methods", "GradCAM,scorecam", "--target", "roi", "--score", "softmax",
        "--roi", "0.1,0.2,0.6,0.7", "--scorecam-channels", "8", "--amp", "--batch-size", "3", "--prompts", "sam",
        "--sam-checkpoint", "s.pth", "--sam-model-type", "vit_b", "--device", "cuda", "--out", "o", "--run-id", "r",
        "--limit", "5", "--no-report", "--shard-size", "7", "--loader-workers", "2", "--concurrency", "2", "--fresh",
        "--deployment", "a/b", "--child-runs", "3",
    ])
    config = AuditConfig(methods=("gradcam", "scorecam"), layers=("a", "b"), target="roi", score="softmax",
                         roi=(0.1, 0.2, 0.6, 0.7), score_cam_channels=8, amp=True, batch_size=3, prompts="sam",
                         sam_checkpoint="s.pth", sam_model_type="vit_b")
    assert settings == RunSettings(
        "d", model="m.pt", split="train", image_root="imgs", weights=None, device="cuda", out="o", run_id="r",
        limit=5, report=False, shard_size=7, loader_workers=2, concurrency=2, resume=False, deployment="a/b",
        child_runs=3, config=config)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--roi", "0.5,0,0.2,1"], "--roi takes top,left,bottom,right"),
    (["--methods", "gradcam,magic"], "unknown method(s) magic"),
    (["--target", "box"], "invalid choice: 'box'"),
])
def test_bad_values_are_argparse_errors(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "x", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_flow_parameters_round_trip() -> None:
    config = AuditConfig(methods=("hirescam",), layers=("x",), roi=(0.0, 0.0, 0.5, 0.5), target="roi",
                         rules=replace(FindingRules(), label_quality=0.2))
    settings = RunSettings("d", mapping={"a": "b"}, resume=False, poll_seconds=1.0, config=config)
    params = settings.params()
    assert params["findings"]["label_quality"] == 0.2 and params["roi"] == [0.0, 0.0, 0.5, 0.5]
    assert set(params) == set(flow_signature().parameters)
    assert RunSettings.from_params(params) == settings


def test_config_json_round_trip() -> None:
    config = AuditConfig(methods=("gradcam",), layers=("a", "b"), roi=(0.1, 0.1, 0.9, 0.9), thumbnail_size=64,
                         rules=FindingRules(min_pixels=3))
    assert AuditConfig.from_json({**config.to_json(), "model_arch": "ignored"}) == config


def test_target_roi_without_a_box_is_one_line(capsys, demo_data) -> None:
    assert main(["run", str(demo_data), "--split", "val", "--target", "roi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "target 'roi' needs roi (--roi top,left,bottom,right)" in err


def _fake_model(task: str = "segmentation"):
    from types import SimpleNamespace

    import torch

    return SimpleNamespace(module=torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), default_layer="0", arch="fake",
                           task=task)


@pytest.mark.parametrize("settings, task, message", [
    (RunSettings("d", shard_size=0), "segmentation", "shard_size must be >= 1, got 0"),
    (AuditConfig(batch_size=0), "segmentation", "batch_size must be >= 1, got 0"),
    (AuditConfig(methods=("magic",)), "segmentation", "unknown method(s) magic"),
    (AuditConfig(target="box"), "segmentation", "target must be one of pred, gt, all, roi, got 'box'"),
    (AuditConfig(layers=("9",)), "segmentation", "unknown layer '9' for fake; valid layers: 0"),
    (AuditConfig(target="roi"), "segmentation", "target 'roi' needs roi"),
    (AuditConfig(prompts="sam", sam_checkpoint="/nonexistent.pth"), "segmentation", "prompts 'sam' needs"),
    (AuditConfig(methods=("scorecam",)), "detection", "not available for detection models"),
    (AuditConfig(target="roi", roi=(0.0, 0.0, 0.5, 0.5)), "classification", "target 'roi' does not apply"),
])
def test_validate_names_what_no_data_can_fix(settings, task: str, message: str) -> None:
    from segaudit.settings import validate

    with pytest.raises(ValueError) as info:
        validate(settings, _fake_model(task))
    assert message in str(info.value)
    validate(RunSettings("d"), _fake_model())  # the defaults pass
