"""Shards, the sharded table layout, resumption bookkeeping, aggregation and the out-of-memory split,
without Prefect (the flows are tested in test_orchestration_flow.py)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch

from segaudit.auditors.batch import BatchRows, finish_tables
from segaudit.data.classmap import build_class_map
from segaudit.data.readers import open_dataset
from segaudit.data.sample import ImageRef
from segaudit.runs.run import (
    Progress,
    aggregate_run,
    pending_shards,
    run_metadata,
    start_run,
    write_run_rows,
    write_shard_rows,
)
from segaudit.runs.shards import plan_shards, process_shard, shard_refs
from segaudit.runs.tables import (
    SCHEMAS,
    SHARD_TABLES,
    load_run,
    part_path,
    read_plan,
    read_table,
    write_table,
)
from segaudit.settings import AuditConfig

TABLES = ("images", "scores", "maps", "thumbnails", "confusion", "errors", "instances", "findings")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Five synthetic images (one unreadable), the demo model, and their rows processed in one go."""
    from segaudit.devtools.synth import generate_dataset
    from segaudit.models.registry import load_model

    root = tmp_path_factory.mktemp("shards") / "data"
    generate_dataset(root, n_train=0, n_val=5, seed=3, plant_errors=0.5)
    (root / "JPEGImages" / "val_000002.jpg").write_bytes(b"not a jpeg")
    data = open_dataset(root / "annotations" / "instances_val.json")
    model = load_model("demo")
    class_map = build_class_map(data.category_names, model.class_names)
    config = AuditConfig(methods=("gradcam",), batch_size=3)
    rows = process_shard(data, data.refs(), model, class_map, config)
    meta = run_metadata(data, model, config, dataset_path=str(root), split=None)
    return data, model, class_map, config, rows, meta


def assert_runs_equal(a, b) -> None:
    """Every table equal; floats to 1e-6, the raw maps (magnitudes ~100) to 1e-4: images batched
    differently go through the model in different batch shapes, which changes float rounding."""
    for table in TABLES:
        left, right = getattr(a, table), getattr(b, table)
        if table == "maps":
            assert len(left) == len(right)
            for x, y in zip(left.pop("values"), right.pop("values"), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        pd.testing.assert_frame_equal(left, right, check_exact=False, atol=1e-6)


def test_plan_shards_are_consecutive_named_slices() -> None:
    refs = [ImageRef(str(i), f"{i}.jpg") for i in range(7)]
    shards = plan_shards(refs, 3)
    assert [s.name for s in shards] == ["part-00000", "part-00001", "part-00002"]
    assert [s.image_ids for s in shards] == [("0", "1", "2"), ("3", "4", "5"), ("6",)]
    assert shard_refs({r.image_id: r for r in refs}, shards[1]) == refs[3:6]
    with pytest.raises(ValueError, match="not unique"):
        plan_shards([*refs, refs[0]], 3)
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(refs, 0)
    with pytest.raises(KeyError, match="not in the dataset"):
        shard_refs({}, shards[0])


def test_sharded_run_equals_one_shot_run(setup, tmp_path) -> None:
    """Three shards written separately and aggregated give the tables of the rows processed in one go:
    findings and review ranks are computed over the whole run, not per shard."""
    data, model, class_map, config, rows, meta = setup
    write_run_rows(rows, tmp_path / "one", dict(meta))
    one = load_run(tmp_path / "one")

    run_dir = str(tmp_path / "sharded")
    plan = start_run(run_dir, dict(meta), data.refs(), 2, {})
    shards = pending_shards(run_dir, plan)
    assert len(shards) == 3 and read_plan(run_dir)["schema_version"] == 2
    by_id = {r.image_id: r for r in data.refs()}
    for k, shard in enumerate(shards):
        part = process_shard(data, shard_refs(by_id, shard), model, class_map, config,
                             extra_errors=data.load_errors if k == 0 else ())
        write_shard_rows(run_dir, shard, part, plan["run_key"])
    assert pending_shards(run_dir, plan) == []
    counts = aggregate_run(run_dir)
    sharded = load_run(run_dir)
    assert_runs_equal(one, sharded)
    assert counts["images"] == 4 and sharded.run["n_images"] == 4 and sharded.run["n_errors"] == 1
    assert sorted(sharded.images["review_rank"]) == [1, 2, 3, 4]
    assert sharded.errors["file_name"].tolist() == ["val_000002.jpg"]
    # and equal to the frames segaudit.auditors.batch.finish_tables makes from the same rows
    frames = finish_tables(rows, config.rules, config.methods, [model.default_layer])
    pd.testing.assert_frame_equal(frames["images"], sharded.images, check_exact=False, atol=1e-6)
    pd.testing.assert_frame_equal(frames["findings"], sharded.findings, check_exact=False, atol=1e-6)
    # the layout: one part per table and shard, plus run.json and run.parquet
    for table in (*SHARD_TABLES, "findings"):
        assert (tmp_path / "sharded" / table / "part-00002.parquet").is_file(), table
    # the images of one image set, read back from the shard parts with a pushed-down filter
    ids = sharded.images["image_id"].iloc[[0, 3]].tolist()
    subset = read_table(run_dir, "maps", image_ids=ids)
    assert set(subset["image_id"]) == set(ids) and len(subset) == (sharded.maps["image_id"].isin(ids)).sum()
    # a table the run has no folder for (written by an older version) reads as empty
    shutil.rmtree(tmp_path / "sharded" / "prompts")
    assert list(read_table(run_dir, "prompts").columns) == SCHEMAS["prompts"].names
    assert load_run(run_dir).prompts.empty


def test_resume_skips_complete_shards_and_ignores_torn_parts(setup, tmp_path) -> None:
    data, model, class_map, config, rows, meta = setup
    run_dir = str(tmp_path / "run")
    plan = start_run(run_dir, dict(meta), data.refs(), 2, {})
    first, second, third = pending_shards(run_dir, plan)
    write_shard_rows(run_dir, first, BatchRows(), plan["run_key"])
    # a process killed while writing shard 2: a part without its marker
    write_table([], part_path(run_dir, "images", second.name), "images")
    again = start_run(run_dir, dict(meta, created_at="2030-01-01T00:00:00+00:00"), data.refs(), 5, {})
    assert again == plan  # same key: the plan (shards, created_at) is taken up as it was
    assert pending_shards(run_dir, again) == [second, third]
    with pytest.raises(RuntimeError, match="2 of 3 shards"):
        aggregate_run(run_dir)
    with pytest.raises(FileNotFoundError, match="1 of 3 shards complete"):
        load_run(run_dir)
    # a different configuration is a different run: the folder is planned afresh
    other = dict(meta, config_json=meta["config_json"].replace('"gradcam"', '"gradcampp"'))
    fresh = start_run(run_dir, other, data.refs(), 2, {})
    assert fresh["run_key"] != plan["run_key"] and len(pending_shards(run_dir, fresh)) == 3
    assert not (tmp_path / "run" / "images" / f"{second.name}.parquet").exists()
    # resume=False plans afresh even with the same key
    write_shard_rows(run_dir, first, BatchRows(), fresh["run_key"])
    start_run(run_dir, other, data.refs(), 2, {}, resume=False)
    assert len(pending_shards(run_dir, read_plan(run_dir))) == 3


def test_out_of_memory_halves_the_micro_batch(setup, monkeypatch) -> None:
    """Simulated CUDA out-of-memory on micro-batches of more than one image: the shard halves its batch
    (down to 1) and gets the same rows; an image that runs out of memory alone becomes an error row."""
    import segaudit.runs.shards as shards

    data, model, class_map, config, rows, _ = setup
    real_score = shards.score_batch
    sizes = []

    def score_needing_memory(explained, model_, config_):
        n = len(explained.batch.samples) if explained.batch is not None else 0
        sizes.append(n)
        if n > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_score(explained, model_, config_)

    monkeypatch.setattr(shards, "score_batch", score_needing_memory)
    refs = data.refs()
    split = process_shard(data, refs, model, class_map, config)
    # loader batches of 2 readable images (of 3) and 2: the first runs out of memory, the limit drops from 3
    # to 1, and it stays there for the second
    assert sizes == [2, 1, 1, 1, 1]
    for table in ("images", "scores", "errors", "confusion"):
        pd.testing.assert_frame_equal(pd.DataFrame(getattr(split, table)), pd.DataFrame(getattr(rows, table)),
                                      check_exact=False, atol=1e-6)

    victim = refs[3].image_id

    def one_image_never_fits(explained, model_, config_):
        if any(s.image_id == victim for s in explained.batch.samples):
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return real_score(explained, model_, config_)

    monkeypatch.setattr(shards, "score_batch", one_image_never_fits)
    isolated = process_shard(data, refs[3:], model, class_map, config)
    assert [(e["image_id"], e["stage"]) for e in isolated.errors] == [(victim, "infer")]
    assert "out of memory" in isolated.errors[0]["reason"]
    assert [r["image_id"] for r in isolated.images] == [refs[4].image_id]


def test_out_of_memory_in_the_cam_engine_halves_the_micro_batch_once(setup, monkeypatch) -> None:
    """Out-of-memory raised by the CAM engine is neither retried by the engine nor isolated image by image
    by explain_batch: it reaches the shard's micro-batches, which halve them (the one owner of that policy)."""
    import segaudit.auditors.base as base

    data, model, class_map, config, rows, _ = setup
    real = base.compute_cams_with
    sizes = []

    def engine_needing_memory(module, images, *args, **kwargs):
        sizes.append(len(images))
        if len(images) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(module, images, *args, **kwargs)

    monkeypatch.setattr(base, "compute_cams_with", engine_needing_memory)
    split = process_shard(data, data.refs(), model, class_map, config)
    assert sizes == [2, 1, 1, 1, 1]  # one try at 2, then the limit is 1 for the rest of the shard
    for table in ("images", "scores", "errors", "confusion"):
        pd.testing.assert_frame_equal(pd.DataFrame(getattr(split, table)), pd.DataFrame(getattr(rows, table)),
                                      check_exact=False, atol=1e-6)


def test_dataloader_workers_give_the_same_rows(setup) -> None:
    data, model, class_map, config, rows, _ = setup
    done = []
    refs = data.refs()[:4]
    loaded = process_shard(data, refs, model, class_map, config, loader_workers=2, on_batch=done.append)
    assert done == [3, 1]
    ids = {r.image_id for r in refs}
    for table in ("images", "scores", "errors"):
        whole = pd.DataFrame(getattr(rows, table))
        pd.testing.assert_frame_equal(pd.DataFrame(getattr(loaded, table)),
                                      whole[whole["image_id"].isin(ids)].reset_index(drop=True),
                                      check_exact=False, atol=1e-6)


def test_run_at_an_fsspec_url_equals_a_local_run(setup, tmp_path) -> None:
    *_, rows, meta = setup
    write_run_rows(rows, tmp_path / "local", dict(meta))
    url = f"memory://segaudit-test-{time.time_ns()}/runs/x"
    write_run_rows(rows, url, dict(meta))
    remote = load_run(url)
    assert remote.run_dir == url
    assert_runs_equal(load_run(tmp_path / "local"), remote)


def test_old_single_file_runs_still_load(setup, tmp_path) -> None:
    *_, rows, meta = setup
    frames = finish_tables(rows)
    for name, frame in frames.items():
        write_table(frame, tmp_path / f"{name}.parquet", name)
    write_table([{**meta, "schema_version": 1, "run_id": "old"}], tmp_path / "run.parquet", "run")
    old = load_run(tmp_path)
    assert old.run["schema_version"] == 1 and len(old.images) == 4
    pd.testing.assert_frame_equal(old.scores, frames["scores"], check_exact=False)
    assert read_table(tmp_path, "maps", image_ids=[old.images["image_id"].iloc[0]])["image_id"].nunique() == 1


def test_progress_rate_and_eta() -> None:
    progress = Progress(total=100, done=20, skipped=20, started=time.perf_counter() - 10.0)
    progress.add(30)  # 30 images processed in ~10 s; the 20 skipped ones do not count into the rate
    assert progress.rate == pytest.approx(3.0, rel=0.05)
    assert progress.eta_seconds == pytest.approx(50 / 3.0, rel=0.05)
    line = progress.line()
    assert line.startswith("50/100 images (50.0%), 3.0 images/s, ETA 1") and line.endswith("s")
    assert Progress(total=0).fraction == 1.0 and Progress(total=5, started=time.perf_counter()).eta_seconds is None
