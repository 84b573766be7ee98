"""Models: the registry that loads a model by name or file into a :class:`~segaudit.models.registry.LoadedModel`
(torchvision builders, segaudit checkpoints, the shipped demo models), and the architectures segaudit
ships (the VGG-style FCN, the demo classifier). May import torch/torchvision and :mod:`segaudit.data`
(class names); nothing of the CAM engine, the metrics or the audit.
"""
