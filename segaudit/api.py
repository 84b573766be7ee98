"""One Python call for a whole audit: :func:`audit`, the same Prefect flow as ``segaudit run``.

>>> import segaudit
>>> run = segaudit.audit("data/annotations/instances_val.json", my_model,            # doctest: +SKIP
...                      class_names=["background", "cat", "dog"], input_size=320)
>>> run.images.sort_values("review_rank").head()                                    # doctest: +SKIP

``model`` is what ``--model`` takes (a name, a checkpoint, ``smp:``/``hf:``/``torchscript:`` specs, a spec
.json) or a Python object: any ``nn.Module`` or callable (wrapped by
:func:`segaudit.models.adapters.adapt`, which reads the logits out of a tensor, ``{"out": ...}``,
``.logits`` or a tuple and upsamples them bilinearly to the input), or a ready
:class:`~segaudit.models.loaded.LoadedModel`. A Python model lives in this process only: it is registered
under a name that carries the hash of its parameters (so two models never share a run folder), and an audit
of it cannot be fanned out to a deployment's workers.

The preprocessing of a Python model is explicit: every image is letterboxed (scaled to fit, aspect kept,
padded) to a square of ``input_size`` pixels, then normalised with ``mean`` and ``std`` (defaults: ImageNet's,
on RGB in [0, 1]); the padding is void and scores nothing. For named models these come from the model (its
checkpoint, its torchvision weights, or the spec's ``input_size``/``mean``/``std``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from segaudit.models.loaded import LoadedModel
    from segaudit.runs.tables import RunTables

__all__ = ["audit"]


def _parameter_hash(module: Any) -> str:
    """sha256 over the names, shapes and bytes of a module's parameters and buffers ("" for a callable)."""
    state = getattr(module, "state_dict", None)
    if state is None:
        return ""
    digest = hashlib.sha256()
    for key, tensor in sorted(state().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _python_model(model: Any, class_names: Sequence[str] | None, input_size: int | None, mean: Sequence[float] | None,
                  std: Sequence[float] | None, layer: str | None, device: str) -> str:
    """Register a Python model for this process's audits; return the name the flow loads it by."""
    from segaudit.models.adapters import adapt
    from segaudit.models.loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel
    from segaudit.models.registry import register_model

    if isinstance(model, LoadedModel):
        loaded = model
    else:
        if not class_names or input_size is None:
            raise ValueError("a Python model needs class_names (background first) and input_size")
        sha = _parameter_hash(model)
        loaded = adapt(model, class_names=tuple(class_names), input_size=int(input_size),
                       mean=tuple(mean or IMAGENET_MEAN), std=tuple(std or IMAGENET_STD), default_layer=layer,
                       name=f"python:{type(model).__name__}", arch=type(model).__name__, sha256=sha,
                       device=device)
    return register_model(loaded)


def audit(
    dataset: str,
    model: str | nn.Module | Callable | LoadedModel = "demo",
    *,
    class_names: Sequence[str] | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    out: str = "runs",
    **settings: Any,
) -> RunTables:
    """Audit ``dataset`` with ``model`` and return the run's tables (as :func:`segaudit.load_run` does).

    Parameters
    ----------
    dataset : str
        A COCO annotation .json, a COCO folder or a VOC root (as ``segaudit run``).
    model : str, nn.Module, callable or LoadedModel
        See the module docstring.
    class_names : sequence of str, optional
        A Python model's classes in output order, background first (required for one).
    input_size : int, optional
        A Python model's square input side (required for one); ``mean``/``std`` its normalisation.
    layers, methods : sequence of str, optional
        CAM layers (default: the model's default layer) and methods (default Grad-CAM and Grad-CAM++).
    out : str
        The folder holding the runs.
    **settings
        Any other setting of ``segaudit run`` by its flow parameter name (:mod:`segaudit.settings`:
        ``target``, ``score``, ``batch_size``, ``device``, ``weights``, ``mapping``, ``limit``, ``run_id``,
        ``report``, ...).

    Raises
    ------
    ValueError
        Settings no data can fix (unknown method, layer, target...) or a Python model without
        ``class_names``/``input_size``; :class:`segaudit.models.loaded.ModelLoadError` for a model that
        cannot be loaded.
    """
    from segaudit.console import apply_prefect_defaults

    apply_prefect_defaults()  # before Prefect is first imported: quiet, no telemetry
    from segaudit.runs.tables import load_run
    from segaudit.settings import RunSettings

    params: dict[str, Any] = {**settings, "dataset": str(dataset), "out": str(out)}
    if layers is not None:
        params["layers"] = list(layers)
    if methods is not None:
        params["methods"] = list(methods)
    if isinstance(model, str):
        params["model"] = model
    else:
        if params.get("deployment"):
            raise ValueError("a Python model lives in this process: it cannot be fanned out to a deployment")
        layer = params["layers"][0] if params.get("layers") else None
        params["model"] = _python_model(model, class_names, input_size, mean, std, layer,
                                        params.get("device", "cpu"))
        params["weights"] = None
    run_settings = RunSettings.from_params(params)
    from segaudit.flows.server import prepare_api, quiet_prefect_console

    prepare_api()
    quiet_prefect_console(False)
    from segaudit.flows.audit import audit as audit_flow

    return load_run(audit_flow(**run_settings.params()))
