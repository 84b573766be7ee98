"""Models: the registry that loads a model by name or file into a :class:`~segaudit.models.loaded.LoadedModel`
(torchvision builders, segaudit checkpoints, the shipped demo models), the adapters that put a user's own
model behind the same interface (:mod:`segaudit.models.adapters`: torchvision state dicts, smp, Hugging
Face, TorchScript, any ``nn.Module`` through :func:`adapt`), and the architectures segaudit ships (the
VGG-style FCN, the demo classifier). May import torch/torchvision and :mod:`segaudit.data` (class names);
nothing of the CAM engine, the metrics or the audit.
"""

from segaudit.models.adapters.wrapper import adapt
from segaudit.models.loaded import LoadedModel, ModelLoadError
from segaudit.models.registry import load_model, save_checkpoint

__all__ = ["LoadedModel", "ModelLoadError", "adapt", "load_model", "save_checkpoint"]
