"""The ``segaudit synth`` command: its arguments and what it runs."""

from __future__ import annotations

import argparse
import sys
import time

from segaudit.devtools.synth.generate import generate_dataset

__all__ = ["add_synth_arguments", "synth_main"]


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``segaudit synth`` arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets ``out`` (positional), ``--n-train``, ``--n-val``, ``--size``, ``--seed``, ``--plant-errors``.
    """
    parser.add_argument("out", help="output directory for the dataset")
    parser.add_argument("--n-train", type=int, default=600, help="number of train images (default 600)")
    parser.add_argument("--n-val", type=int, default=100, help="number of val images (default 100)")
    parser.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--plant-errors",
        type=float,
        default=0.0,
        help="fraction of val images with one planted annotation error (default 0)",
    )


def synth_main(args: argparse.Namespace) -> int:
    """Run ``segaudit synth`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        As defined by :func:`add_synth_arguments`.

    Returns
    -------
    int
        0 on success, 2 on invalid arguments.
    """
    start = time.perf_counter()
    try:
        s = generate_dataset(
            args.out,
            n_train=args.n_train,
            n_val=args.n_val,
            size=args.size,
            seed=args.seed,
            plant_errors=args.plant_errors,
        )
    except ValueError as exc:
        print(f"segaudit synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"wrote synthetic dataset to {s.root} in {elapsed:.1f} s")
    print(f"  images: {s.n_train} train, {s.n_val} val ({s.image_dir})")
    print(f"  annotations: {s.n_train_annotations} train, {s.n_val_annotations} val, {s.n_crowd} crowd")
    print(f"  COCO: {s.coco_train}, {s.coco_val}")
    print(f"  VOC: {s.voc_class_dir}, {s.voc_object_dir}, {s.image_sets_dir}")
    print(f"  planted errors: {s.n_planted} ({s.planted_errors_file})")
    return 0
