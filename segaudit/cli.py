"""The ``segaudit`` command: ``demo``, ``run``, ``report``, ``compare``, ``synth``.

User mistakes (wrong paths, unknown model, layer or method) print one line and exit with status 2; they
are checked before the Prefect flow starts, so no traceback is shown for them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from segaudit.cam import ALL_METHODS, METHODS, SCORE_KINDS, TARGET_KINDS

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the command line; the message is printed as is."""


def _methods(text: str) -> list[str]:
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(ALL_METHODS)}")
    return methods


def _layers(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _roi(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not (0 <= values[0] < values[2] <= 1 and 0 <= values[1] < values[3] <= 1):
        raise argparse.ArgumentTypeError("--roi takes top,left,bottom,right as fractions of the image, e.g. 0.2,0.2,0.8,0.8")
    return values


def _add_audit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=_layers, default=None,
                        help="feature layer(s) for the CAMs, comma-separated; the first is primary, more make a "
                        "layer sweep (default: the model's default layer; `segaudit layers MODEL` lists them)")
    parser.add_argument("--methods", type=_methods, default=list(METHODS),
                        help=f"comma-separated, from {','.join(ALL_METHODS)} (default {','.join(METHODS)})")
    parser.add_argument("--target", choices=TARGET_KINDS, default="pred",
                        help="Seg-Grad-CAM target pixels: predicted, labelled, all, or a box (--roi)")
    parser.add_argument("--score", choices=SCORE_KINDS, default="logits", help="sum logits or softmax scores")
    parser.add_argument("--roi", type=_roi, help="box for --target roi: top,left,bottom,right fractions")
    parser.add_argument("--scorecam-channels", type=int, help="Score-CAM: only the N most active channels")
    parser.add_argument("--amp", action="store_true",
                        help="mixed-precision forward (float16 on CUDA, bfloat16 on CPU); not advised with gradcampp, "
                        "nor on a CPU without native bfloat16 (measured 59x slower than float32 on an AVX2 CPU)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--prompts", choices=("grabcut", "sam"),
                        help="CAM-prompted segmentation of the primary map (prompts table); sam needs --sam-checkpoint")
    parser.add_argument("--sam-checkpoint", help="Segment Anything checkpoint .pth for --prompts sam")
    parser.add_argument("--sam-model-type", default="vit_h", choices=("vit_h", "vit_l", "vit_b"))
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", default="runs", help="folder holding the runs (default runs/)")
    parser.add_argument("--run-id", help="name of the run folder (default: derived from data, model and config)")
    parser.add_argument("--limit", type=int, help="audit only the first N images")
    parser.add_argument("--no-report", action="store_true", help="write the tables only")
    scale = parser.add_argument_group("scale (see README, 'Schedule an audit')")
    scale.add_argument("--shard-size", type=int, default=256, help="images per shard, the unit of work and resumption")
    scale.add_argument("--loader-workers", type=int, default=0, help="processes reading images ahead of the model")
    scale.add_argument("--concurrency", type=int, default=1, help="shards processed at a time in this process")
    scale.add_argument("--fresh", action="store_true", help="start over instead of resuming the run's complete shards")
    scale.add_argument("--deployment", help="fan the shards out to this deployment's work pool, e.g. audit-shards/shard")
    scale.add_argument("--child-runs", type=int, help="with --deployment: flow runs to share the shards (default: one per shard)")


_MODEL_HELP = ("'demo', 'demo-fcn', a segaudit checkpoint .pt, a torchvision model name (its own weights with "
               "--weights FILE --classes FILE), smp:<Arch> (with --model-args), hf:<save_pretrained folder>, "
               "torchscript:<file>, or a model spec .json (segaudit.models.specs)")


def _add_model_options(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    """--model (or MODEL), --weights, --classes, --model-args: how the model is named and loaded."""
    if positional:
        parser.add_argument("model", help=_MODEL_HELP)
    else:
        parser.add_argument("--model", default="demo", help=_MODEL_HELP + " (default demo)")
    parser.add_argument("--weights", default="DEFAULT",
                        help="a weights file (a state dict saved with torch.save(model.state_dict(), FILE)), a "
                        "torchvision weights enum member, or none (random weights" +
                        (", enough to list layers)" if positional else ")") + "; default DEFAULT")
    parser.add_argument("--classes", help="the model's class names: a text file, one name per line, background "
                        "first (torchvision state dicts, smp, TorchScript)")
    parser.add_argument("--model-args", help="constructor keyword arguments of an smp: model, JSON inline or a "
                        "JSON file, e.g. '{\"encoder_name\": \"resnet18\", \"classes\": 6}'")


def _model_spec(args: argparse.Namespace) -> str:
    """--model with --classes and --model-args, as the one string the flow passes to load_model."""
    from segaudit.models.loaded import ModelLoadError
    from segaudit.models.specs import compose_spec

    try:
        return compose_spec(args.model, args.classes, args.model_args)
    except (ModelLoadError, OSError) as exc:
        raise UserError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from segaudit.devtools.synth import add_synth_arguments

    parser = argparse.ArgumentParser(prog="segaudit", description="Audit segmentation datasets and models with CAMs.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate the synthetic demo data (if absent), audit it, write the report")
    demo.add_argument("--data", default="demo_data", help="where the demo dataset lives (default demo_data/)")
    _add_audit_options(demo)
    demo.set_defaults(run_id="demo")

    run = commands.add_parser("run", help="audit a COCO or VOC dataset with a segmentation model")
    run.add_argument("dataset", help="COCO annotation .json, a COCO folder (annotations/), or a VOC root")
    run.add_argument("--split", help="VOC ImageSets split or COCO instances_<split>.json (default val)")
    run.add_argument("--image-root", help="COCO: the folder image file names are relative to")
    _add_model_options(run)
    run.add_argument("--mapping", help="dataset=model class names, comma-separated, or a JSON file")
    _add_audit_options(run)

    report = commands.add_parser("report", help="(re)render the HTML report of a run from its tables")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output HTML path (default RUN_DIR/report.html)")
    report.add_argument("--gallery-size", type=int, default=None,
                        help="cards for only the N most suspicious images (default: every image)")
    report.add_argument("--page-size", type=int, default=12, help="image cards per page (default 12)")

    compare = commands.add_parser("compare", help="compare two runs: per-class deltas, the images that changed most")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--out", help="output HTML path (default RUN_B/compare.html)")
    compare.add_argument("--top", type=int, default=50, help="how many of the most changed images to show (default 50)")

    layers = commands.add_parser("layers", help="list a model's candidate CAM layers and its default layer")
    _add_model_options(layers, positional=True)

    pull = commands.add_parser("pull", help="download and verify COCO 2017 / Pascal VOC 2012 into a data root")
    pull.add_argument("datasets", nargs="+", help="coco2017-val, coco2017-train, voc2012")
    pull.add_argument("--root", default="data", help="the data root (default data/)")

    synth = commands.add_parser("synth", help="generate a synthetic COCO + VOC dataset")
    add_synth_arguments(synth)
    return parser


def _check_inputs(args: argparse.Namespace, model_spec: str, weights: str | None, mapping: dict | None) -> None:
    """Open the dataset and the model once, so that mistakes surface as one clear line before the flow."""
    from segaudit.data.classmap import build_class_map
    from segaudit.data.download import materialize
    from segaudit.data.readers import open_dataset
    from segaudit.models.registry import ModelLoadError, candidate_layers, load_model
    from segaudit.tasks.audit import DATA_CACHE

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.image_root is not None and not Path(args.image_root).is_dir():
        raise UserError(f"image root not found: {args.image_root} (--image-root must be a folder)")
    try:
        # a dataset at an fsspec URL is copied to the cache the flow reads it from (segaudit.data.download.materialize)
        data = open_dataset(materialize(args.dataset, DATA_CACHE), split=args.split,
                            image_root=materialize(args.image_root, DATA_CACHE) if args.image_root else None)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not data.refs():
        raise UserError(f"the dataset {args.dataset} has no images")
    _check_images_found(args, data)
    try:
        model = load_model(model_spec, weights=weights, device=args.device)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None
    except RuntimeError as exc:  # e.g. a CUDA device on a machine without one
        raise UserError(f"cannot use device {args.device!r}: {str(exc).splitlines()[0]}") from None
    layers = candidate_layers(model.module)
    for layer in args.layers or ():
        if layer not in layers:
            raise UserError(f"unknown layer {layer!r} for {model.arch}; valid layers: {', '.join(layers)}")
    if args.target == "roi" and args.roi is None:
        raise UserError("--target roi needs --roi top,left,bottom,right")
    if args.prompts == "sam" and not (args.sam_checkpoint and Path(args.sam_checkpoint).is_file()):
        raise UserError("--prompts sam needs --sam-checkpoint pointing to a Segment Anything .pth file")
    from segaudit.auditors.batch import check_config
    from segaudit.settings import AuditConfig

    try:  # what no data can fix: a method the model cannot run, a target it has no use for
        check_config(model, AuditConfig(
            methods=tuple(args.methods), layers=tuple(args.layers or ()), target=args.target, score=args.score,
            roi=tuple(args.roi) if args.roi else None, batch_size=args.batch_size, prompts=args.prompts,
            sam_checkpoint=args.sam_checkpoint))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        build_class_map(data.category_names, model.class_names, mapping)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _check_output(args, data, model)


def _check_images_found(args: argparse.Namespace, data) -> None:
    """A wrong image root would turn every image into a "not found" row: say so once instead."""
    from segaudit.data.readers import count_image_files

    probe = data.refs()[:20]
    if count_image_files(data, probe) == 0:
        where = getattr(data, "image_root", None) or Path(getattr(data, "root", args.dataset)) / "JPEGImages"
        hint = "; pass --image-root, the folder the file names are relative to" if data.kind == "coco" else ""
        raise UserError(
            f"none of the first {len(probe)} images of {args.dataset} were found (e.g. {probe[0].file_name} "
            f"under {where}){hint}"
        )


def _check_output(args: argparse.Namespace, data, model) -> None:
    """Refuse a run folder that would escape --out or overwrite a run of other data or another model."""
    import re

    from segaudit.runs.tables import load_run

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected the folder that holds runs")
    if (out / "run.parquet").is_file():
        raise UserError(f"--out {out} is a run folder itself; pass the folder that holds runs (e.g. {out.parent})")
    if args.run_id is None:  # the default id hashes data, model and configuration: no clash
        return
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", args.run_id):
        raise UserError(f"--run-id {args.run_id!r} must be a plain folder name (letters, digits, '_', '-', '.')")
    run_dir = out / args.run_id
    try:
        old = load_run(run_dir, tables=()).run
    except (FileNotFoundError, OSError, ValueError):  # not a finished run: maybe a planned, unfinished one
        from segaudit.runs.tables import read_plan

        try:
            old = (read_plan(run_dir) or {}).get("run")
        except (OSError, ValueError):
            old = None
        if not old:
            return
    if (old.get("dataset_fingerprint"), old.get("model_sha256"), old.get("model_name")) != (
        data.fingerprint(), model.sha256, model.name
    ):
        raise UserError(
            f"{run_dir} holds another run (of {old.get('dataset_path')} with model {old.get('model_name')}); "
            "pass another --run-id or --out, or delete that folder"
        )


def _run_flow(args: argparse.Namespace, model: str, weights: str | None, mapping: dict | None) -> str:
    from segaudit.flows.audit import audit

    return audit(
        dataset=str(args.dataset),
        model=model,
        split=args.split,
        image_root=args.image_root,
        weights=weights,
        layers=args.layers,
        methods=args.methods,
        target=args.target,
        score=args.score,
        roi=args.roi,
        score_cam_channels=args.scorecam_channels,
        amp=args.amp,
        batch_size=args.batch_size,
        prompts=args.prompts,
        sam_checkpoint=args.sam_checkpoint,
        sam_model_type=args.sam_model_type,
        mapping=mapping,
        device=args.device,
        out=args.out,
        run_id=args.run_id,
        limit=args.limit,
        report=not args.no_report,
        shard_size=args.shard_size,
        loader_workers=args.loader_workers,
        concurrency=args.concurrency,
        resume=not args.fresh,
        deployment=args.deployment,
        child_runs=args.child_runs,
    )


def _print_outputs(run_dir: str, report: bool, seconds: float) -> None:
    print(f"\naudit finished in {seconds:.0f} s")
    print(f"tables: {run_dir}/  (load with: segaudit.runs.tables.load_run({run_dir!r}))")
    if report:
        print(f"report: {Path(run_dir) / 'report.html'}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from segaudit.devtools.demo import ensure_demo_data, planted_error_recall, planted_errors
    from segaudit.runs.tables import load_run

    start = time.perf_counter()
    root = ensure_demo_data(args.data)
    print(f"demo data: {root}/ (synthetic shapes, COCO and VOC, with planted label errors)")
    args.dataset, args.split, args.image_root = str(root / "annotations" / "instances_val.json"), None, None
    _check_inputs(args, "demo", None, None)
    run_dir = _run_flow(args, "demo", None, None)
    run = load_run(run_dir, tables=("images",))
    found, total = planted_error_recall(run.images, planted_errors(root))
    print(f"\n{found} of the {total} images with a planted label error are among the {total} most suspicious images")
    _print_outputs(run_dir, not args.no_report, time.perf_counter() - start)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from segaudit.data.classmap import parse_mapping

    start = time.perf_counter()
    try:
        mapping = parse_mapping(args.mapping) if args.mapping else None
    except (ValueError, OSError) as exc:
        raise UserError(f"--mapping: {exc}") from None
    weights = None if args.weights.lower() == "none" else args.weights
    model_spec = _model_spec(args)
    _check_inputs(args, model_spec, weights, mapping)
    run_dir = _run_flow(args, model_spec, weights, mapping)
    _print_outputs(run_dir, not args.no_report, time.perf_counter() - start)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from segaudit.reports import render_report

    if not (Path(args.run_dir) / "run.parquet").is_file():
        raise UserError(f"{args.run_dir} is not a segaudit run folder (no run.parquet)")
    print(f"report: {render_report(args.run_dir, args.out, args.gallery_size, args.page_size)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from segaudit.reports import compare_runs

    for run_dir in (args.run_a, args.run_b):
        if not (Path(run_dir) / "run.parquet").is_file():
            raise UserError(f"{run_dir} is not a segaudit run folder (no run.parquet)")
    print(f"comparison: {compare_runs(args.run_a, args.run_b, args.out, args.top)}")
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from segaudit.models.registry import ModelLoadError, candidate_layers, load_model

    try:
        model = load_model(_model_spec(args), weights=None if args.weights.lower() == "none" else args.weights,
                           layers_only=True)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None
    except (RuntimeError, ImportError) as exc:  # never a traceback: one line with the cause
        raise UserError(f"cannot build {args.model}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None
    for name in candidate_layers(model.module):
        print(f"{name}  (default)" if name == model.default_layer else name)
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from segaudit.data.download import DATASETS, DownloadError, dataset_location, ensure_dataset

    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        raise UserError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    shown: dict[str, int] = {}
    for name in args.datasets:

        def progress(file_name: str, done: int, total: int | None) -> None:
            percent = 100 * done // total if total else -1
            if percent != shown.get(file_name):
                shown[file_name] = percent
                text = f"{percent}%" if total else f"{done / 1e6:.0f} MB"
                print(f"\r{file_name}: {text}", end="", file=sys.stderr, flush=True)

        try:
            ensure_dataset(name, args.root, progress=progress)
        except DownloadError as exc:
            raise UserError(str(exc)) from None
        dataset, images = dataset_location(name, args.root)
        print(f"{name}: {dataset}" + (f" (images: {images})" if images else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # task-by-task logs only when asked for
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synth":
            from segaudit.devtools.synth import synth_main

            return synth_main(args)
        return {"demo": _cmd_demo, "run": _cmd_run, "report": _cmd_report, "compare": _cmd_compare,
                "layers": _cmd_layers, "pull": _cmd_pull}[args.command](args)
    except UserError as exc:
        print(f"segaudit: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("segaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
