"""The ``segaudit`` command: ``demo``, ``run``, ``report``, ``compare``, ``synth``.

User mistakes (wrong paths, unknown model, layer or method) print one line and exit with status 2; they
are checked before the Prefect flow starts, so no traceback is shown for them. Any other failure (the
Prefect API does not answer, the output cannot be written, the disk is full, Ctrl-C) is one line too, with
the cause and the status of :mod:`segaudit.console`; ``--debug`` adds the traceback.

Importing this module imports neither torch nor Prefect: the commands import what they need, and
:mod:`segaudit.flows.server` sets Prefect's environment before Prefect is imported. The options come from
:mod:`segaudit.settings`, whose names (methods, targets) come from the torch-free :mod:`segaudit.schema`, so
``--help`` loads neither torch, Prefect nor pandas.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from segaudit.console import EXIT_USER_ERROR, apply_prefect_defaults, check_writable_folder, report_failure
from segaudit.settings import MODEL_HELP, WEIGHTS_HELP, RunSettings, add_cli_options


class UserError(Exception):
    """A mistake in the command line; the message is printed as is."""


def _add_layers_model_options(parser: argparse.ArgumentParser) -> None:
    """MODEL and --weights of ``segaudit layers`` (``run`` and ``demo`` get theirs from segaudit.settings)."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--weights", default="DEFAULT", help=WEIGHTS_HELP + " (none is enough to list layers)")
    _add_model_extras(parser)


def _add_model_extras(parser: argparse.ArgumentParser) -> None:
    """--classes and --model-args: folded into the model's spec string (segaudit.models.specs)."""
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
    add_cli_options(demo, run=False)
    demo.set_defaults(run_id="demo")

    run = commands.add_parser("run", help="audit a COCO or VOC dataset with a segmentation model")
    add_cli_options(run, run=True)
    _add_model_extras(run)

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
    _add_layers_model_options(layers)

    pull = commands.add_parser("pull", help="download and verify COCO 2017 / Pascal VOC 2012 into a data root")
    pull.add_argument("datasets", nargs="+", help="coco2017-val, coco2017-train, voc2012")
    pull.add_argument("--root", default="data", help="the data root (default data/)")

    _add_review_parser(commands)

    synth = commands.add_parser("synth", help="generate a synthetic COCO + VOC dataset")
    add_synth_arguments(synth)
    return parser


def _check_inputs(settings: RunSettings) -> None:
    """Open the dataset and the model once, so that mistakes surface as one clear line before the flow."""
    from segaudit.data.classmap import build_class_map
    from segaudit.data.download import DATA_CACHE, materialize
    from segaudit.data.readers import open_dataset
    from segaudit.models.registry import ModelLoadError, load_model
    from segaudit.settings import validate

    if settings.image_root is not None and not Path(settings.image_root).is_dir():
        raise UserError(f"image root not found: {settings.image_root} (--image-root must be a folder)")
    try:
        # a dataset at an fsspec URL is copied to the cache the flow reads it from (segaudit.data.download.materialize)
        data = open_dataset(materialize(settings.dataset, DATA_CACHE), split=settings.split,
                            image_root=materialize(settings.image_root, DATA_CACHE) if settings.image_root else None)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not data.refs():
        raise UserError(f"the dataset {settings.dataset} has no images")
    _check_images_found(settings, data)
    try:
        model = load_model(settings.model, weights=settings.weights, device=settings.device)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None
    except RuntimeError as exc:  # e.g. a CUDA device on a machine without one
        raise UserError(f"cannot use device {settings.device!r}: {str(exc).splitlines()[0]}") from None
    try:  # what no data can fix: an unknown layer, a method the model cannot run, a target it has no use for
        validate(settings, model)
        build_class_map(data.category_names, model.class_names, settings.mapping)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _check_output(settings, data, model)


def _check_images_found(settings: RunSettings, data) -> None:
    """A wrong image root would turn every image into a "not found" row: say so once instead."""
    from segaudit.data.readers import count_image_files

    probe = data.refs()[:20]
    if count_image_files(data, probe) == 0:
        where = getattr(data, "image_root", None) or Path(getattr(data, "root", settings.dataset)) / "JPEGImages"
        hint = "; pass --image-root, the folder the file names are relative to" if data.kind == "coco" else ""
        raise UserError(
            f"none of the first {len(probe)} images of {settings.dataset} were found (e.g. {probe[0].file_name} "
            f"under {where}){hint}"
        )


def _check_output(settings: RunSettings, data, model) -> None:
    """Refuse a run folder that would escape --out or overwrite a run of other data or another model."""
    import re

    from segaudit.runs.tables import load_run

    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected the folder that holds runs")
    if (out / "run.parquet").is_file():
        raise UserError(f"--out {out} is a run folder itself; pass the folder that holds runs (e.g. {out.parent})")
    if settings.run_id is None:  # the default id hashes data, model and configuration: no clash
        return
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", settings.run_id):
        raise UserError(f"--run-id {settings.run_id!r} must be a plain folder name (letters, digits, '_', '-', '.')")
    run_dir = out / settings.run_id
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


def _run_flow(settings: RunSettings, debug: bool = False) -> str:
    _connect_prefect(debug)  # after the inputs' checks (a user error starts no server), before the import
    from segaudit.flows.audit import audit

    return audit(**settings.params())


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
    settings = RunSettings.from_params({**vars(args), "dataset": str(root / "annotations" / "instances_val.json"),
                                        "model": "demo", "weights": None})
    _check_inputs(settings)
    run_dir = _run_flow(settings, args.debug)
    run = load_run(run_dir, tables=("images",))
    found, total = planted_error_recall(run.images, planted_errors(root))
    print(f"\n{found} of the {total} images with a planted label error are among the {total} most suspicious images")
    _print_outputs(run_dir, settings.report, time.perf_counter() - start)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from segaudit.data.classmap import parse_mapping

    start = time.perf_counter()
    try:
        mapping = parse_mapping(args.mapping) if args.mapping else None
    except (ValueError, OSError) as exc:
        raise UserError(f"--mapping: {exc}") from None
    settings = RunSettings.from_params({**vars(args), "mapping": mapping, "model": _model_spec(args)})
    _check_inputs(settings)
    run_dir = _run_flow(settings, args.debug)
    _print_outputs(run_dir, settings.report, time.perf_counter() - start)
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


def _add_review_parser(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser("review", help="read a report's exported review decisions into the run's reviews table")
    review.add_argument("run_dir")
    review.add_argument("--decisions", required=True, help="the JSON or CSV the report exported")


def _cmd_review(args: argparse.Namespace) -> int:
    from segaudit.runs.reviews import ReviewFileError, read_decisions, write_reviews
    from segaudit.runs.tables import read_run_row

    if not (Path(args.run_dir) / "run.parquet").is_file():
        raise UserError(f"{args.run_dir} is not a segaudit run folder (no run.parquet)")
    if not Path(args.decisions).is_file():
        raise UserError(f"{args.decisions}: no such file")
    try:
        run_id, frame = read_decisions(args.decisions)
    except (ReviewFileError, UnicodeDecodeError) as exc:
        raise UserError(str(exc)) from None
    own = str(read_run_row(args.run_dir).get("run_id") or "")
    if run_id and own and run_id != own:
        raise UserError(f"{args.decisions} holds decisions of run {run_id!r}, not of {own!r}")
    frame["run_id"] = own
    counts = frame["decision"].value_counts()
    print(f"reviews: {write_reviews(args.run_dir, frame)} ({len(frame)} decisions: "
          + ", ".join(f"{d} {int(counts.get(d, 0))}" for d in ("fix", "ok", "unsure")) + ")")
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


def _connect_prefect(debug: bool) -> None:
    """The Prefect API for the flow (the configured one, checked, or this PREFECT_HOME's local server), set
    before Prefect is imported; Prefect's console without tracebacks unless ``debug``."""
    from segaudit.flows.server import prepare_api, quiet_prefect_console

    prepare_api()
    quiet_prefect_console(debug)


def main(argv: list[str] | None = None) -> int:
    # Prefect reads its environment when first imported: quiet defaults now, before any command imports it
    apply_prefect_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SEGAUDIT_DEBUG", "") not in ("", "0")
    parser = build_parser()
    parser.add_argument("--debug", action="store_true",
                        help="on a failure, print the full traceback (also SEGAUDIT_DEBUG=1; allowed anywhere)")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    try:
        if args.command in ("demo", "run") and "://" not in args.out:
            check_writable_folder(args.out)  # a read-only or full output folder, said before the model loads
        if args.command == "synth":
            from segaudit.devtools.synth import synth_main

            return synth_main(args)
        return {"demo": _cmd_demo, "run": _cmd_run, "report": _cmd_report, "compare": _cmd_compare,
                "layers": _cmd_layers, "pull": _cmd_pull, "review": _cmd_review}[args.command](args)
    except UserError as exc:
        print(f"segaudit: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is one line (--debug: traceback)
        return report_failure(exc, debug)


if __name__ == "__main__":
    sys.exit(main())
