"""Model specs: how a user names a model with what it needs besides its name (class names, constructor
arguments, weights), in one string that travels through the audit flow unchanged.

``segaudit run --model smp:Unet --model-args '{"encoder_name": "resnet18", "classes": 6}' --weights my.pth
--classes classes.txt`` becomes the spec ``{"model": "smp:Unet", "args": {...}, "classes": "classes.txt"}``
(JSON; ``weights`` travels as itself). The same JSON in a file, with ``"weights"`` too, is a model spec file:
``--model my_model.json``. Fields:

model
    the model's name (``"deeplabv3_resnet50"``, ``"smp:Unet"``, ``"hf:folder"``, ``"torchscript:file"``, ...)
weights
    a weights file (or torchvision enum member); ``--weights`` given on the command line wins
classes
    class names: a list, or a text file with one name per line, background first
args
    keyword arguments of the model's constructor (``smp:`` models), a dict or a ``.json`` file
input_size, mean, std
    the preprocessing the model was trained with, overriding the adapter's default (side of the square in
    pixels; 3 numbers each, RGB in [0, 1])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segaudit.models.loaded import ModelLoadError

__all__ = ["ModelSpec", "compose_spec", "parse_spec", "read_model_args"]

_FIELDS = {"model", "weights", "classes", "args", "input_size", "mean", "std"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec (see the module docstring)."""

    model: str
    weights: str | None = None
    classes: str | tuple[str, ...] | None = None
    args: dict | None = None
    preprocessing: dict | None = None


def read_model_args(text: str | dict | None) -> dict | None:
    """``--model-args``: a JSON object, inline or in a ``.json`` file."""
    if text is None or isinstance(text, dict):
        return text
    source = Path(text).read_text() if text.strip().endswith(".json") and Path(text).is_file() else text
    try:
        args = json.loads(source)
    except ValueError as exc:
        raise ModelLoadError(f"--model-args: not a JSON object ({exc}); e.g. '{{\"encoder_name\": \"resnet18\"}}'") from None
    if not isinstance(args, dict):
        raise ModelLoadError("--model-args: expected a JSON object of keyword arguments")
    return args


def compose_spec(model: str, classes: str | None = None, model_args: str | dict | None = None) -> str:
    """The one-string spec of ``--model`` with ``--classes`` and ``--model-args`` (``model`` itself if neither)."""
    if classes is None and model_args is None:
        return model
    fields: dict = {"model": model}
    if classes is not None:
        fields["classes"] = str(Path(classes).resolve()) if Path(classes).is_file() else classes
    if model_args is not None:
        fields["args"] = read_model_args(model_args)
    return json.dumps(fields, sort_keys=True)


def parse_spec(spec: str) -> ModelSpec:
    """A spec string: inline JSON, a ``.json`` model spec file, or a plain model name."""
    text = spec.strip()
    if text.endswith(".json") and Path(text).is_file() and not text.startswith("{"):
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise ModelLoadError(f"cannot read model spec file {spec}: {exc}") from None
        if not text.lstrip().startswith("{"):
            raise ModelLoadError(f"{spec}: a model spec file is a JSON object with a 'model' field")
    if not text.startswith("{"):
        return ModelSpec(model=spec)
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise ModelLoadError(f"model spec is not valid JSON ({exc})") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("model"), str):
        raise ModelLoadError("a model spec needs a 'model' field naming the model, e.g. {\"model\": \"smp:Unet\"}")
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ModelLoadError(f"model spec: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    classes = fields.get("classes")
    return ModelSpec(model=fields["model"], weights=fields.get("weights"),
                     classes=tuple(classes) if isinstance(classes, list) else classes,
                     args=read_model_args(fields.get("args")),
                     preprocessing={k: fields[k] for k in ("input_size", "mean", "std") if k in fields} or None)
