"""Evidence on data segaudit has never seen (issue 16 acceptance): the causal cue-class rank, the review
ranking against label quality and cleanlab, and the deletion/insertion AUCs per method and layer.

Per validation set of :data:`segaudit.devtools.unseen.DATASETS` (shapes, textures, backgrounds, cue class
and error mix that the development never used): generate the data, train an LR-ASPP MobileNetV3 from
scratch on its clean train split and save it with ``save_checkpoint`` (both cached under ``--data``, so a
rerun skips them), then audit the val split as a user would (``segaudit.audit(root, checkpoint,
evidence="full")``), and score cleanlab's ``segmentation.rank.get_label_quality_scores`` (softmin) on the
same model's softmax outputs (same letterbox and normalisation as the audit).

    PREFECT_HOME=/tmp/prefect-x python bench/evidence.py --data DIR [--quick]

Prints ``key: value`` lines per dataset (``<ds>_...``), ``n/a`` where a table the audit writes is empty
(the faithfulness and context tables are empty until issue 16's checks land), and the headline lines
``cue_class_first_on_all``, ``ranking_ge_label_quality_on_all``, ``ranking_ge_cleanlab_on_all`` at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from segaudit.devtools.unseen import DATASETS, UnseenSpec, generate_unseen
from segaudit.devtools.validation import planted_error_metrics

ARCH = "lraspp_mobilenet_v3_large"
SIZE = 128
RIGHT_IOU = 0.5  # a right prediction (FindingRules.right_iou's default)


def prepare(spec: UnseenSpec, folder: Path, n_train: int, n_val: int, epochs: int, log=print) -> tuple[Path, Path]:
    """The dataset's root and its model checkpoint, generated and trained unless cached under ``folder``."""
    from segaudit.data.readers import open_dataset
    from segaudit.devtools.train import TrainConfig, load_tensors, train_model
    from segaudit.models.registry import save_checkpoint

    root = folder / spec.name / f"data_t{n_train}_v{n_val}"
    if not (root / "dataset.json").exists():
        generate_unseen(spec, root, n_train=n_train, n_val=n_val, size=SIZE)
    config = TrainConfig(arch=ARCH, input_size=SIZE, epochs=epochs, batch_size=16, lr=3e-3, seed=spec.seed)
    checkpoint = folder / spec.name / f"model_t{n_train}_e{epochs}.pt"
    if not checkpoint.exists():
        images, labels = load_tensors(open_dataset(root, split="train"), spec.class_names, SIZE)
        start = time.perf_counter()
        model = train_model(images, labels, len(spec.class_names), config, log=lambda m: log(f"  {spec.name} {m}"))
        save_checkpoint(model, checkpoint, arch=ARCH, class_names=spec.class_names, input_size=SIZE)
        recipe = {"recipe": config.__dict__, "n_train": n_train, "train_s": round(time.perf_counter() - start, 1)}
        checkpoint.with_suffix(".json").write_text(json.dumps(recipe, indent=1))
    return root, checkpoint


@torch.no_grad()
def model_outputs(root: Path, checkpoint: Path) -> tuple[list[str], np.ndarray, np.ndarray, pd.DataFrame]:
    """Image ids, softmax outputs ``(N, K, S, S)`` and labels ``(N, S, S)`` of the val split, prepared as
    the audit prepares them (the model's letterbox and normalisation), and a reference causal context test
    of every labelled (image, class): :func:`segaudit.metrics.context.context_effects` with its default
    context fills and a cheap object fill (unused here; columns ``class_name, iou, context_reliance``), to cross-check the
    audit's ``context`` table and to show whether the model learned the cue at all."""
    from segaudit.cam import model_logits
    from segaudit.data.classmap import build_class_map
    from segaudit.data.preprocess import prepare_batch
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.metrics.context import context_effects
    from segaudit.models.registry import load_model

    data = open_dataset(root, split="val")
    model = load_model(str(checkpoint))
    class_map = build_class_map(data.category_names, model.class_names, None)
    ids, probs, labels, pairs = [], [], [], []
    refs = data.refs()
    for i in range(0, len(refs), 32):
        samples, _ = read_samples(data, refs[i : i + 32])
        batch = prepare_batch(samples, class_map, model.input_size, model.mean, model.std)
        probs.append(model_logits(model.module(batch.images)).softmax(1).numpy())
        labels.append(batch.gt.numpy())
        ids += [s.image_id for s in samples]
        image_of, classes = zip(*[(b, k) for b in range(len(samples)) for k in batch.gt[b].unique().tolist()
                                  if 0 < k < model.num_classes], strict=True)
        image_of, classes = torch.tensor(image_of), torch.tensor(classes)
        effects = context_effects(lambda x: model_logits(model.module(x)), batch.images,
                                  torch.ones_like(batch.gt, dtype=torch.bool), image_of, classes,
                                  batch.gt[image_of] == classes[:, None, None], object_fills=("baseline",))
        pairs.append(pd.DataFrame({"class_name": [model.class_names[k] for k in classes.tolist()],
                                   "iou": effects["iou"].numpy(), "context_reliance": effects["context_reliance"].numpy()}))
    return ids, np.concatenate(probs), np.concatenate(labels), pd.concat(pairs, ignore_index=True)


def cleanlab_quality(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's per-image softmin label quality; void pixels get the predicted class (cleanlab has no
    void label: the most favourable label for it, as in ``bench/label_errors.py``)."""
    from cleanlab.segmentation.rank import get_label_quality_scores

    labels = labels.copy()
    void = labels == 255
    labels[void] = probs.argmax(1)[void]
    scores, _ = get_label_quality_scores(labels, probs, verbose=False)
    return scores


def cue_rank(table: pd.DataFrame, value: str, cue: str) -> str:
    """Rank (1 = highest mean ``value``) of class ``cue`` among the classes of ``table``; n/a if absent."""
    if table.empty or cue not in set(table["class_name"]):
        return "n/a"
    means = table.groupby("class_name")[value].mean().sort_values(ascending=False, kind="stable")
    return str(list(means.index).index(cue) + 1)


def causal_cue_rank(context: pd.DataFrame, cue: str) -> str:
    """The cue class's rank by the causal test: mean ``context_reliance`` over right predictions."""
    if context.empty:
        return "n/a"
    right = context[context["iou"].astype(float) >= RIGHT_IOU]
    return cue_rank(right, "context_reliance", cue)


def cam_cue_ranks(run, cue: str) -> dict[str, str]:
    """The cue class's rank by the map-based ``class_reliance`` at the run's primary map (key ``""``) and
    at every (method, layer) of the scores table (key ``_<method>_<layer>``)."""
    from segaudit.findings.rules import class_reliance

    methods = run.run.get("methods") or ()
    layers = [x for x in str(run.run.get("layer") or "").split(",") if x]
    out = {"": _rank_of(class_reliance(run.scores, methods=methods, layers=layers), cue)}
    for (method, layer), _ in run.scores.groupby(["method", "layer"], sort=False):
        out[f"_{method}_{layer}"] = _rank_of(class_reliance(run.scores, methods=(method,), layers=(layer,)), cue)
    return out


def _rank_of(reliance: pd.DataFrame, cue: str) -> str:
    hit = reliance.loc[reliance["class_name"] == cue, "rank"]
    return str(int(hit.iloc[0])) if len(hit) else "n/a"


def faithfulness_lines(faith: pd.DataFrame) -> dict[str, str]:
    """Mean deletion and insertion AUC per (method, layer) of the faithfulness table."""
    out: dict[str, str] = {}
    if faith.empty:
        return {"deletion_auc": "n/a", "insertion_auc": "n/a"}
    for (method, layer), group in faith.groupby(["method", "layer"], sort=False):
        out[f"deletion_auc_{method}_{layer}"] = f"{group['deletion_auc'].mean():.4f}"
        out[f"insertion_auc_{method}_{layer}"] = f"{group['insertion_auc'].mean():.4f}"
    return out


def ranking_metrics(run, manifest: list, ids: list[str], cleanlab: np.ndarray) -> dict[str, float]:
    """AUROC and AP for planted vs clean images of the review order, label quality, cleanlab, CAM consistency,
    and the pre-issue-16 blend ``1 - Q^0.75 C^0.25`` (``old_blend``)."""
    images = run.images.reset_index(drop=True)
    by_id = pd.Series(cleanlab, index=ids)
    candidates = {
        "ranking": -images["review_rank"].to_numpy(dtype=float),
        "label_quality": 1.0 - images["label_quality"].fillna(1.0).to_numpy(dtype=float),
        "cleanlab": 1.0 - by_id.reindex(images["image_id"].astype(str)).to_numpy(dtype=float),
        "consistency": 1.0 - images["consistency"].fillna(1.0).to_numpy(dtype=float),
    }
    # the blend the ranking used before issue 16 (1 - Q^0.75 C^0.25), for comparison
    q = images["label_quality"].fillna(1.0).clip(0, 1).to_numpy(dtype=float)
    candidates["old_blend"] = 1.0 - q**0.75 * images["consistency"].fillna(1.0).clip(0, 1).to_numpy(dtype=float) ** 0.25
    out = {}
    for name, score in candidates.items():
        m = planted_error_metrics(images, score, manifest)
        out[f"auroc_{name}"], out[f"ap_{name}"] = m["auroc"], m["average_precision"]
    return out


def run_dataset(spec: UnseenSpec, folder: Path, args, log=print) -> dict[str, str]:
    """Prepare, audit and measure one validation set; its ``key: value`` pairs (keys without the prefix)."""
    import segaudit

    root, checkpoint = prepare(spec, folder, args.n_train, args.n_val, args.epochs, log=log)
    start = time.perf_counter()
    settings = {"layers": args.layers.split(",")} if args.layers else {}
    run = segaudit.audit(str(root), str(checkpoint), split="val", evidence="full", out=str(folder / "runs"),
                         run_id=f"{spec.name}_v{args.n_val}", report=False, resume=False, **settings)
    audit_s = time.perf_counter() - start
    ids, probs, labels, reference = model_outputs(root, checkpoint)
    manifest = json.loads((root / "planted_errors.json").read_text())
    values: dict[str, str] = {"n_val": str(len(run.images)), "n_planted": str(len(manifest)),
                              "audit_s": f"{audit_s:.1f}",
                              "val_miou": f"{_miou(run):.4f}",
                              "cue_class": spec.cue_class,
                              "cue_class_rank_causal": causal_cue_rank(run.context, spec.cue_class),
                              "cue_class_rank_causal_reference": causal_cue_rank(reference, spec.cue_class)}
    for key, rank in cam_cue_ranks(run, spec.cue_class).items():
        values[f"cue_class_rank_cam{key}"] = rank
    for key, value in ranking_metrics(run, manifest, ids, cleanlab_quality(probs, labels)).items():
        values[key] = f"{value:.4f}"
    values.update(faithfulness_lines(run.faithfulness))
    trust = getattr(run, "method_trust", None)
    if isinstance(trust, pd.DataFrame) and not trust.empty and "chosen" in trust:
        chosen = trust[trust["chosen"].astype(bool)]
        values["trusted_map"] = ",".join(f"{r.method}/{r.layer}" for r in chosen.itertuples()) or "n/a"
    else:
        values["trusted_map"] = "n/a"
    return values


def _miou(run) -> float:
    from segaudit.metrics.scores import mean_iou

    return float(mean_iou(run.confusion_matrix())[0])


def headline(results: dict[str, dict[str, str]]) -> dict[str, str]:
    """The acceptance lines over all datasets: true / false, or n/a where a number is missing."""

    def all_of(test) -> str:
        answers = [test(v) for v in results.values()]
        return "n/a" if None in answers else str(all(answers)).lower()

    def ge(v: dict[str, str], other: str):
        keys = ("auroc_ranking", "ap_ranking", f"auroc_{other}", f"ap_{other}")
        if any(v.get(k, "n/a") in ("n/a", "nan") for k in keys):
            return None
        return float(v["auroc_ranking"]) >= float(v[f"auroc_{other}"]) and float(v["ap_ranking"]) >= float(
            v[f"ap_{other}"])

    def cue_first(v: dict[str, str]):
        ranks = [v["cue_class_rank_causal"]]
        return None if "n/a" in ranks else all(r == "1" for r in ranks)

    return {"cue_class_first_on_all": all_of(cue_first),
            "ranking_ge_label_quality_on_all": all_of(lambda v: ge(v, "label_quality")),
            "ranking_ge_cleanlab_on_all": all_of(lambda v: ge(v, "cleanlab"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder caching the data, models and runs")
    parser.add_argument("--quick", action="store_true", help="fewer val images (60 instead of 150)")
    parser.add_argument("--n-train", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least contention on a shared machine)")
    parser.add_argument("--layers", default="", help="CAM layers (comma separated; default: the model's)")
    parser.add_argument("--datasets", default="", help="comma separated names (default: all)")
    args = parser.parse_args()
    args.n_val = 60 if args.quick else 150
    folder = Path(args.data)
    wanted = [s for s in DATASETS if not args.datasets or s.name in args.datasets.split(",")]
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {}
    for spec in wanted:
        results[spec.name] = run_dataset(spec, folder, args)
        for key, value in results[spec.name].items():
            print(f"{spec.name}_{key}: {value}", flush=True)
    for key, value in headline(results).items():
        print(f"{key}: {value}")
    print(f"total_s: {time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
