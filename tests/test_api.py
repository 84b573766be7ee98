"""segaudit.audit: the whole audit in one Python call, for a plain nn.Module returning a tensor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import segaudit


class _TinySegmenter(nn.Module):
    """A user's own module: returns bare logits at half resolution (no {"out": ...}, no upsampling)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.classifier = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.mark.slow
def test_a_plain_module_is_audited_in_one_call_and_queried_with_pandas(prefect_server, demo_data, tmp_path) -> None:
    names = [n.strip() for n in (demo_data / "class_names.txt").read_text().splitlines() if n.strip()]
    model = _TinySegmenter(len(names))
    run = segaudit.audit(str(demo_data / "annotations" / "instances_val.json"), model, class_names=names,
                         input_size=64, layers=["features.2"], methods=["gradcam"], out=str(tmp_path),
                         limit=4, report=False)
    assert len(run.images) == 4 and run.errors.empty
    assert set(run.scores["layer"]) == {"features.2"} and set(run.scores["method"]) == {"gradcam"}
    assert run.run["model_name"].startswith("python:_TinySegmenter")
    worst = run.images.sort_values("review_rank").head(2)  # the README's query
    assert list(worst["review_rank"]) == [1, 2]
    # another module (other weights) is another model: another run folder, not the first one resumed
    other = _TinySegmenter(len(names))
    with torch.no_grad():
        other.classifier.weight.add_(1.0)
    again = segaudit.audit(str(demo_data / "annotations" / "instances_val.json"), other, class_names=names,
                           input_size=64, layers=["features.2"], methods=["gradcam"], out=str(tmp_path),
                           limit=4, report=False)
    assert again.run_dir != run.run_dir


def test_a_python_model_needs_its_class_names_and_input_size(tmp_path) -> None:
    with pytest.raises(ValueError, match="class_names"):
        segaudit.audit("unused.json", _TinySegmenter(3), out=str(tmp_path))
    with pytest.raises(ValueError, match="deployment"):
        segaudit.audit("unused.json", _TinySegmenter(3), class_names=["a", "b", "c"], input_size=32,
                       deployment="audit-shards/shard", out=str(tmp_path))
