"""The command line: user mistakes give one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from segaudit.cli import main


def _error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("segaudit: error: "), captured.err
    return lines[0]


def test_missing_dataset(capsys, tmp_path) -> None:
    line = _error_of(capsys, ["run", str(tmp_path / "nope.json")])
    assert "dataset path not found" in line


def test_unknown_model(capsys, demo_data) -> None:
    line = _error_of(capsys, ["run", str(demo_data), "--split", "val", "--model", "resnet9000"])
    assert "unknown model 'resnet9000'" in line and "deeplabv3_resnet50" in line


def test_unknown_layer_lists_valid_layers(capsys, demo_data) -> None:
    line = _error_of(capsys, ["run", str(demo_data), "--split", "val", "--layers", "backbone.4,backbone.99"])
    assert "unknown layer 'backbone.99'" in line and "backbone.16" in line


def test_unknown_split_lists_available(capsys, demo_data) -> None:
    line = _error_of(capsys, ["run", str(demo_data / "annotations" / ".."), "--split", "test"])
    assert "unknown split 'test'" in line and "val" in line


def test_report_of_a_folder_that_is_not_a_run(capsys, tmp_path) -> None:
    line = _error_of(capsys, ["report", str(tmp_path)])
    assert "not a segaudit run folder" in line


def test_bad_mapping_target(capsys, demo_data) -> None:
    line = _error_of(capsys, ["run", str(demo_data), "--split", "val", "--mapping", "disc=spaceship"])
    assert "spaceship" in line


def test_unknown_method_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "x", "--methods", "gradcam,magic"])
    assert exit_info.value.code == 2
    assert "unknown method(s) magic" in capsys.readouterr().err


def test_fixations_on_a_model_they_cannot_trace(capsys, demo_data) -> None:
    line = _error_of(capsys, ["run", str(demo_data), "--split", "val", "--methods", "fixations,gradcam"])
    assert "method fixations cannot run on lraspp_mobilenet_v3_large" in line and "demo-fcn" in line
