"""Model adapters: a user's own model behind segaudit's one model interface.

Every adapter returns a :class:`~segaudit.models.loaded.LoadedModel` whose ``module(x)`` gives logits
``(B, K, H, W)`` at the input's resolution, with the model's own layer names, a default CAM layer and the
class names, so the whole audit runs unchanged (:mod:`segaudit.models.adapters.wrapper`):

============================  ==========================================================================
``--model`` / call            adapter
============================  ==========================================================================
``<torchvision arch>``        :mod:`.torchvision_state`: ``--weights my.pth --classes classes.txt``
``smp:<Arch>``                :mod:`.smp`: ``--model-args '{...}' --weights my.pth --classes classes.txt``
``hf:<folder>``               :mod:`.huggingface`: a ``save_pretrained`` folder
``torchscript:<file>``        :mod:`.torchscript`: ``torch.jit.save`` files whose layers can be reached
``adapt(module, ...)``        :mod:`.wrapper`: any ``nn.Module`` or callable, from Python
============================  ==========================================================================
"""

from segaudit.models.adapters.huggingface import load_huggingface
from segaudit.models.adapters.smp import load_smp
from segaudit.models.adapters.torchscript import load_torchscript
from segaudit.models.adapters.torchvision_state import load_torchvision_state_dict
from segaudit.models.adapters.wrapper import SegmentationAdapter, adapt

__all__ = ["SegmentationAdapter", "adapt", "load_huggingface", "load_smp", "load_torchscript",
           "load_torchvision_state_dict"]
