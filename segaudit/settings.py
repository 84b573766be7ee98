"""The settings of an audit, each declared once: name, type, default, help text, command-line flag, check.

Two frozen dataclasses hold them:

- :class:`AuditConfig`, the settings that change an audit's numbers (recorded in the run's metadata);
- :class:`RunSettings`, what to audit and how to run it (data, model, output, scale), with its ``config``.

Every field is declared with :func:`setting`, whose metadata says how the field appears elsewhere, so that
nothing is declared twice:

- the ``segaudit run`` / ``segaudit demo`` options are generated from it (:func:`add_cli_options`);
- the ``audit`` flow's parameters (names, JSON-able defaults, annotations) are generated from it
  (:func:`flow_signature`), and a flow's or a command line's values become settings with
  :meth:`RunSettings.from_params`;
- :func:`validate` checks them once per audit, against the model.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segaudit.findings.thresholds import FindingRules
from segaudit.schema import (
    ALL_METHODS,
    CENTROID_CUTOFF,
    EVIDENCE_LEVELS,
    METHODS,
    PRIMARY_CHOICES,
    SCORE_KINDS,
    TARGET_KINDS,
)

if TYPE_CHECKING:
    from segaudit.models.registry import LoadedModel

__all__ = ["AuditConfig", "RunSettings", "setting", "add_cli_options", "flow_signature", "validate"]

_SAME = object()  # a flow parameter's default is the field's default (tuples as lists)


def setting(
    default: Any = MISSING,
    help: str | None = None,  # noqa: A002 - the word argparse uses
    *,
    cli: str | None = None,
    parse: Callable[[str], Any] | None = None,
    check: Callable[[Any], None] | None = None,
    choices: Sequence[str] | None = None,
    switch: bool = False,
    group: str | None = None,
    run_only: bool = False,
    param: str | None = None,
    param_type: Any = None,
    param_default: Any = _SAME,
    to_value: Callable[[Any], Any] | None = None,
    flow: bool = True,
) -> Any:
    """A dataclass field declaring one setting and how it appears on the command line and in the flow.

    Parameters
    ----------
    default
        The setting's default (``MISSING``: required).
    help : str or None
        Help text, shown by ``--help`` and in the flow's docstring.
    cli : str or None
        Command-line flag (``"--batch-size"``), a positional name, or None (not on the command line).
    parse : callable, optional
        ``str -> value`` for the command line (argparse ``type``); raises ValueError with the message shown.
    check : callable, optional
        ``value -> None``; raises ValueError with the reason (run by :func:`validate`, and on the command line):
        a whole sentence, or one starting with "must", which gets the setting's name in front.
    choices : sequence of str, optional
        The allowed values (command-line ``choices`` and checked by :func:`validate`).
    switch : bool
        A flag without value: ``--amp`` sets True; a flag naming the opposite (``--no-report``, ``--fresh``)
        sets False.
    group : str, optional
        Title of the ``--help`` section the flag is listed in.
    run_only : bool
        Only ``segaudit run`` takes it (``segaudit demo`` audits its own data with its own model).
    param : str, optional
        The flow parameter's name when it is not the field's (``findings`` for ``rules``).
    param_type : optional
        The flow parameter's annotation when it is not the field's (JSON: lists, not tuples).
    param_default : optional
        The flow's (and command line's) default when it is not the field's.
    to_value : callable, optional
        Flow or JSON value -> field value (lists -> tuples...).
    flow : bool
        Whether the ``audit`` flow has a parameter for it.
    """
    meta = {"help": help, "cli": cli, "parse": parse, "check": check, "choices": tuple(choices) if choices else None,
            "switch": switch, "group": group, "run_only": run_only, "param": param, "param_type": param_type,
            "param_default": param_default, "to_value": to_value, "flow": flow}
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------ parsing and checks


def _names(text: str) -> list[str]:
    """Comma-separated names, stripped, empty ones dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _lower_names(text: str) -> list[str]:
    return [name.lower() for name in _names(text)]


def _check_methods(methods: Sequence[str]) -> None:
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(ALL_METHODS)}")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        return []


def _check_roi(roi: Sequence[float] | None) -> None:
    if roi is None:
        return
    v = list(roi)
    if len(v) != 4 or not (0 <= v[0] < v[2] <= 1 and 0 <= v[1] < v[3] <= 1):
        raise ValueError("--roi takes top,left,bottom,right as fractions of the image, e.g. 0.2,0.2,0.8,0.8")


def _at_least(low: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and value < low:
            raise ValueError(f"must be >= {low}, got {value}")

    return check


def _share(value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"must be in (0, 1], got {value}")


def _weights(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _tuple(value: Any) -> tuple:
    return tuple(value or ())


def _tuple_or_none(value: Any) -> tuple | None:
    return tuple(value) if value else None


def _rules(value: Any) -> FindingRules:
    return value if isinstance(value, FindingRules) else FindingRules(**(value or {}))


# ------------------------------------------------------------------------------------- the settings


# every kind of model load_model takes (segaudit.models.registry; its name lists import torch, so the help
# names the families, and `segaudit layers MODEL` checks one)
MODEL_HELP = (
    "the shipped 'demo' (default), 'demo-fcn', 'demo-detector' or 'demo-classifier'; a torchvision "
    "segmentation model (fcn_resnet50/101, deeplabv3_resnet50/101, deeplabv3_mobilenet_v3_large, "
    "lraspp_mobilenet_v3_large; your own weights with --weights FILE --classes FILE), Mask R-CNN "
    "(maskrcnn_resnet50_fpn[_v2]) or ImageNet classifier (vgg16/19, resnet50/101/152, optionally "
    "NAME:classes.json); smp:<Arch> (with --model-args), hf:<save_pretrained folder>, torchscript:<file>, a "
    "segaudit checkpoint .pt, or a model spec .json (segaudit.models.specs)"
)
WEIGHTS_HELP = ("a weights file (a state dict saved with torch.save(model.state_dict(), FILE)), a torchvision "
                "weights enum member, or none (random weights); default DEFAULT")


@dataclass(frozen=True)
class AuditConfig:
    """Settings of an audit that change its numbers (all recorded in the run's metadata).

    Parameters
    ----------
    methods : tuple of str
        CAM methods, from :data:`segaudit.cam.ALL_METHODS`.
    layers : tuple of str
        Feature layers; empty = the model's default. The first is the primary layer: image consistency
        and review ranks use its maps; the others are a layer sweep (rows in the scores table).
    target : str
        Seg-Grad-CAM target kind (:data:`segaudit.cam.TARGET_KINDS`).
    score : str
        ``"logits"`` or ``"softmax"``.
    roi : tuple of float or None
        ``(top, left, bottom, right)`` fractions of the input, for ``target="roi"``.
    score_cam_channels : int or None
        Score-CAM channel budget (None: every channel).
    amp : bool
        Mixed-precision forward (see :func:`segaudit.cam.compute_cams`; not advised with Grad-CAM++).
    batch_size : int
        Images per batch (one forward pass).
    iou_threshold : float
        Threshold of the normalised map for ``iou_at_0_5``.
    centroid_cutoff : float
        Weighted-centroid cutoff (share of the map's max).
    thumbnail_size : int
        Longest side of the pictures stored for the report.
    rules : FindingRules
        Thresholds of the findings and whether CAM consistency breaks the review order's ties
        (:mod:`segaudit.findings.rules`).
    prompts : str or None
        CAM-prompted segmentation of the primary map (first method, first layer) into the ``prompts`` table:
        ``"grabcut"`` (OpenCV, offline) or ``"sam"`` (needs ``sam_checkpoint``); None = off (it costs about
        0.1 s per map and prompt kind with GrabCut on a CPU). See :mod:`segaudit.metrics.prompting`.
    sam_checkpoint, sam_model_type : str
        Segment Anything checkpoint file and its model type (``vit_h``, ``vit_l``, ``vit_b``).
    evidence : str
        Level of the causal checks (:data:`segaudit.schema.EVIDENCE_LEVELS`): ``"none"``, ``"sampled"``
        (the images :func:`segaudit.auditors.sampling.evidence_images` picks with ``evidence_share``) or
        ``"full"``.
    evidence_share : float
        Share of the images checked at level ``"sampled"``.
    primary : str
        The map the findings are decided on (:data:`segaudit.schema.PRIMARY_CHOICES`): ``"faithful"`` the
        most faithful method and layer that passes the sanity check, when it beats the first beyond noise
        (:func:`segaudit.findings.trust.choose_primary`), or ``"first"`` the first method and layer.
    """

    methods: tuple[str, ...] = setting(
        METHODS, f"comma-separated, from {','.join(ALL_METHODS)} (default {','.join(METHODS)})",
        cli="--methods", parse=_lower_names, check=_check_methods, param_type=list[str], to_value=_tuple)
    layers: tuple[str, ...] = setting(
        (), "feature layer(s) for the CAMs, comma-separated; the first is primary, more make a layer sweep "
        "(default: the model's default layer; `segaudit layers MODEL` lists them)",
        cli="--layers", parse=_names, param_type=list[str] | None, param_default=None, to_value=_tuple)
    target: str = setting("pred", "Seg-Grad-CAM target pixels: predicted, labelled, all, or a box (--roi)",
                          cli="--target", choices=TARGET_KINDS)
    score: str = setting("logits", "sum logits or softmax scores", cli="--score", choices=SCORE_KINDS)
    roi: tuple[float, float, float, float] | None = setting(
        None, "box for --target roi: top,left,bottom,right fractions", cli="--roi", parse=_floats, check=_check_roi,
        param_type=list[float] | None, to_value=_tuple_or_none)
    score_cam_channels: int | None = setting(None, "Score-CAM: only the N most active channels",
                                             cli="--scorecam-channels", parse=int, check=_at_least(1))
    amp: bool = setting(False, "mixed-precision forward (float16 on CUDA, bfloat16 on CPU); not advised with "
                        "gradcampp, nor on a CPU without native bfloat16 (measured 59x slower than float32 on an "
                        "AVX2 CPU)", cli="--amp", switch=True)
    batch_size: int = setting(16, "images per forward pass (default 16)", cli="--batch-size", parse=int,
                              check=_at_least(1))
    iou_threshold: float = setting(0.5, "threshold of the normalised map for iou_at_0_5", flow=False)
    centroid_cutoff: float = setting(CENTROID_CUTOFF, "weighted-centroid cutoff (share of the map's max)",
                                     flow=False)
    thumbnail_size: int = setting(256, "longest side of the pictures stored for the report", flow=False)
    rules: FindingRules = setting(
        FindingRules(), "thresholds of segaudit.findings.rules.FindingRules to override by name, e.g. "
        '{"label_quality": 0.3}', param="findings", param_type=dict[str, float] | None, param_default=None,
        to_value=_rules)
    prompts: str | None = setting(
        None, "CAM-prompted segmentation of the primary map (prompts table); sam needs --sam-checkpoint",
        cli="--prompts", choices=("grabcut", "sam"))
    sam_checkpoint: str | None = setting(None, "Segment Anything checkpoint .pth for --prompts sam",
                                         cli="--sam-checkpoint")
    sam_model_type: str = setting("vit_h", None, cli="--sam-model-type", choices=("vit_h", "vit_l", "vit_b"))
    evidence: str = setting(
        "sampled", "causal checks of the maps and the model (faithfulness curves, context tests): none, sampled "
        "(the images --evidence-share picks, default) or full (every image; costs tens of forwards per map)",
        cli="--evidence", choices=EVIDENCE_LEVELS)
    evidence_share: float = setting(
        0.1, "with --evidence sampled: the share of images checked, picked by a hash of the image id (the same "
        "images in every run and shard)", cli="--evidence-share", parse=float, check=_share)
    primary: str = setting(
        "faithful", "the map findings are decided on: faithful (the most faithful method and layer by the "
        "deletion/insertion curves, when it beats the first beyond noise; default) or first (the first method "
        "and layer)", cli="--primary", choices=PRIMARY_CHOICES)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditConfig:
        """The config from its :meth:`to_json` (other keys are ignored)."""
        return cls(**_field_values(cls, data, by_param=False))

    def layers_of(self, model: LoadedModel) -> tuple[str, ...]:
        """The layers to use with ``model``."""
        return self.layers or (model.default_layer,)


_SCALE = "scale (see README, 'Schedule an audit')"


@dataclass(frozen=True)
class RunSettings:
    """What to audit, where to write it and how to run it; ``config`` holds the settings that change the numbers.

    Each field is a parameter of the ``audit`` flow of the same name (:mod:`segaudit.flows.audit`), where
    its help text is repeated.
    """

    dataset: str = setting(help="COCO annotation .json, a COCO folder (annotations/), or a VOC root", cli="dataset",
                           run_only=True)
    model: str = setting("demo", MODEL_HELP, cli="--model", run_only=True)
    split: str | None = setting(None, "VOC ImageSets split or COCO instances_<split>.json (default val)",
                                cli="--split", run_only=True)
    image_root: str | None = setting(None, "COCO: the folder image file names are relative to", cli="--image-root",
                                     run_only=True)
    weights: str | None = setting("DEFAULT", WEIGHTS_HELP, cli="--weights",
                                  parse=_weights, run_only=True)
    # the command line takes text or a JSON file (segaudit.data.classmap.parse_mapping, in segaudit.cli)
    mapping: dict[str, str] | None = setting(None, "dataset=model class names, comma-separated, or a JSON file",
                                             cli="--mapping", run_only=True)
    device: str = setting("cpu", "torch device, e.g. cpu or cuda (default cpu)", cli="--device")
    out: str = setting("runs", "folder holding the runs (default runs/)", cli="--out")
    run_id: str | None = setting(None, "name of the run folder (default: derived from data, model and config)",
                                 cli="--run-id")
    limit: int | None = setting(None, "audit only the first N images", cli="--limit", parse=int)
    report: bool = setting(True, "write the tables only", cli="--no-report", switch=True)
    shard_size: int = setting(256, "images per shard, the unit of work and resumption", cli="--shard-size",
                              parse=int, check=_at_least(1), group=_SCALE)
    loader_workers: int = setting(0, "processes reading images ahead of the model", cli="--loader-workers",
                                  parse=int, check=_at_least(0), group=_SCALE)
    concurrency: int = setting(1, "shards processed at a time in this process", cli="--concurrency", parse=int,
                               group=_SCALE)
    resume: bool = setting(True, "start over instead of resuming the run's complete shards", cli="--fresh",
                           switch=True, group=_SCALE)
    deployment: str | None = setting(None, "fan the shards out to this deployment's work pool, e.g. "
                                     "audit-shards/shard", cli="--deployment", group=_SCALE)
    child_runs: int | None = setting(None, "with --deployment: flow runs to share the shards (default: one per "
                                     "shard)", cli="--child-runs", parse=int, group=_SCALE)
    poll_seconds: float = setting(5.0, "with deployment: seconds between looks at the shard runs")
    config: AuditConfig = field(default_factory=AuditConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RunSettings:
        """Settings from the ``audit`` flow's parameters or the command line's values (absent: defaults)."""
        return cls(**_field_values(cls, params, by_param=True),
                   config=AuditConfig(**_field_values(AuditConfig, params, by_param=True)))

    def params(self) -> dict[str, Any]:
        """The ``audit`` flow's parameters (JSON-able) that give these settings."""
        out = {}
        for owner, f in _flow_fields():
            value = getattr(self.config if owner is AuditConfig else self, f.name)
            out[f.metadata["param"] or f.name] = _jsonable(value)
        return out


# ------------------------------------------------------------------------- the declarations, as a table


def _settings(cls: type) -> list[Field]:
    return [f for f in fields(cls) if "cli" in f.metadata]


def _field_values(cls: type, data: dict[str, Any], *, by_param: bool) -> dict[str, Any]:
    """The fields of ``cls`` found in ``data`` (keyed by field or flow parameter name), converted."""
    values = {}
    for f in _settings(cls):
        key = (f.metadata["param"] or f.name) if by_param else f.name
        if key in data:
            convert = f.metadata["to_value"]
            values[f.name] = convert(data[key]) if convert else data[key]
    return values


def _jsonable(value: Any) -> Any:
    if isinstance(value, FindingRules):
        return asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _flow_fields() -> Iterator[tuple[type, Field]]:
    """The flow's parameters, in order: what to audit, the numbers-changing settings, how to run it."""
    run = [f for f in _settings(RunSettings) if f.metadata["flow"]]
    first = [f for f in run if f.metadata["run_only"] and f.name != "mapping"]
    yield from ((RunSettings, f) for f in first)
    yield from ((AuditConfig, f) for f in _settings(AuditConfig) if f.metadata["flow"])
    yield from ((RunSettings, f) for f in run if f not in first)


def _param_default(f: Field) -> Any:
    default = f.metadata["param_default"]
    if default is _SAME:
        default = f.default
    return inspect.Parameter.empty if default is MISSING else _jsonable(default)


def flow_signature() -> inspect.Signature:
    """The ``audit`` flow's signature: one keyword parameter per setting, JSON-able defaults, annotations.

    Keyword-only, because the flow function takes them as ``**params`` (Prefect passes what has no default
    positionally otherwise).
    """
    hints = {cls: typing.get_type_hints(cls) for cls in (RunSettings, AuditConfig)}
    parameters = [
        inspect.Parameter(f.metadata["param"] or f.name, inspect.Parameter.KEYWORD_ONLY,
                          default=_param_default(f), annotation=f.metadata["param_type"] or hints[owner][f.name])
        for owner, f in _flow_fields()
    ]
    return inspect.Signature(parameters, return_annotation=str)


def flow_parameter_docs() -> str:
    """The flow parameters' help texts, as a docstring's ``Args:`` section (Prefect shows them)."""
    lines = ["Args:"]
    for _, f in _flow_fields():
        lines.append(f"    {f.metadata['param'] or f.name}: {f.metadata['help'] or f.name.replace('_', ' ')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- command line


#: The options in the order ``--help`` lists them.
_CLI_ORDER = ("dataset", "split", "image_root", "model", "weights", "mapping", "layers", "methods", "target",
              "score", "roi", "score_cam_channels", "amp", "batch_size", "prompts", "sam_checkpoint",
              "sam_model_type", "evidence", "evidence_share", "primary", "device", "out", "run_id", "limit", "report", "shard_size", "loader_workers",
              "concurrency", "resume", "deployment", "child_runs")


def _cli_type(f: Field) -> Callable[[str], Any] | None:
    parse, check = f.metadata["parse"], f.metadata["check"]
    if parse is None:
        return None

    def typed(text: str) -> Any:
        try:
            value = parse(text)
            if check is not None:
                check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    typed.__name__ = f.name  # argparse names it in "invalid <name> value"
    return typed


def _cli_arguments(f: Field) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``add_argument``'s arguments for a setting."""
    flag, meta = f.metadata["cli"], f.metadata
    kwargs: dict[str, Any] = {"help": meta["help"]}
    if not flag.startswith("-"):
        return (flag,), kwargs
    kwargs["dest"] = f.name
    if meta["switch"]:
        kwargs["action"] = "store_false" if f.default else "store_true"
        return (flag,), kwargs
    default = _param_default(f)
    if default is not None:
        kwargs["default"] = default
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    else:
        kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
    kwargs["type"] = _cli_type(f)
    return (flag,), kwargs


def add_cli_options(parser: argparse.ArgumentParser, *, run: bool) -> None:
    """Add the settings' options to ``segaudit run`` (``run=True``) or ``segaudit demo``."""
    declared = {f.name: f for f in _settings(RunSettings) + _settings(AuditConfig) if f.metadata["cli"]}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in _CLI_ORDER:
        f = declared[name]
        if f.metadata["run_only"] and not run:
            continue
        title = f.metadata["group"]
        target = parser if title is None else groups.setdefault(title, parser.add_argument_group(title))
        flags, kwargs = _cli_arguments(f)
        target.add_argument(*flags, **kwargs)


# ------------------------------------------------------------------------------------------ validation


def _check_fields(obj: Any) -> None:
    for f in _settings(type(obj)):
        value, meta = getattr(obj, f.name), f.metadata
        try:
            if meta["choices"] and value is not None and value not in meta["choices"]:
                raise ValueError(f"must be one of {', '.join(meta['choices'])}, got {value!r}")
            if meta["check"] is not None:
                meta["check"](value)
        except ValueError as exc:  # "must be ..." reasons get the setting's name in front
            text = str(exc)
            raise ValueError(f"{f.name} {text}" if text.startswith("must") else text) from None


def validate(settings: RunSettings | AuditConfig, model: LoadedModel) -> None:
    """Raise ValueError for settings no data can fix; run once per audit, before any image is read.

    Checks every setting's own rule (:func:`setting`'s ``check`` and ``choices``), then what depends on
    the other settings or on ``model``: the layers exist in it, ``target="roi"`` has a box, ``prompts="sam"``
    has a checkpoint file, and the model's kind supports the methods and target (fixations trace
    sequential segmentation models only; detectors explain their detections' class scores; a classifier has
    no use for a box).
    """
    config = settings.config if isinstance(settings, RunSettings) else settings
    if isinstance(settings, RunSettings):
        _check_fields(settings)
    _check_fields(config)
    modules = dict(model.module.named_modules())
    for layer in config.layers_of(model):
        if layer not in modules:
            from segaudit.models.registry import candidate_layers

            valid = ", ".join(candidate_layers(model.module))
            raise ValueError(f"unknown layer {layer!r} for {model.arch}; valid layers: {valid}")
    if config.target == "roi" and config.roi is None:
        raise ValueError("target 'roi' needs roi (--roi top,left,bottom,right)")
    if config.prompts == "sam" and not (config.sam_checkpoint and Path(config.sam_checkpoint).is_file()):
        raise ValueError("prompts 'sam' needs sam_checkpoint (--sam-checkpoint) pointing to a Segment Anything "
                         ".pth file")
    _check_model_kind(config, model)


def _check_model_kind(config: AuditConfig, model: LoadedModel) -> None:
    """What the model's family cannot do with these settings: fixations trace plain chains of layers of
    segmentation models only; the rest is the family's auditor's own ``check_config``
    (:mod:`segaudit.auditors`, one module per family)."""
    from segaudit.auditors.base import auditor_class

    auditor = auditor_class(model.task)
    if "fixations" in config.methods:
        from segaudit.cam.fixations import UnsupportedModel, sequential_layers

        if not auditor.traces_fixations:
            raise ValueError("method fixations traces segmentation models only")
        try:
            sequential_layers(model.module)
        except UnsupportedModel as exc:
            raise ValueError(f"method fixations cannot run on {model.arch}: {exc} (try --model demo-fcn)") from None
    auditor.check_config(config)
