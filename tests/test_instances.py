"""Instance coverage (segaudit.metrics.instances) on hand-built maps with known answers, plus a cross-check of the
local-maximum test against scipy.ndimage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from segaudit.metrics.instances import PEAK_FRACTION, instance_scores, local_peaks
from segaudit.metrics.scores import energy_in_mask

SIZE = 40
ROWS, COLS = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                            indexing="ij")


def disc(row: float, col: float, radius: float = 6.0) -> torch.Tensor:
    return (ROWS - row) ** 2 + (COLS - col) ** 2 <= radius**2


def bump(row: float, col: float, height: float = 1.0, sigma: float = 3.0) -> torch.Tensor:
    return height * torch.exp(-((ROWS - row) ** 2 + (COLS - col) ** 2) / (2 * sigma**2))


LEFT, RIGHT = (20.0, 10.0), (20.0, 30.0)
TWO_DISCS = torch.stack([disc(*LEFT), disc(*RIGHT)])
EVERYWHERE = torch.ones(1, SIZE, SIZE, dtype=torch.bool)


def score(maps: torch.Tensor, masks: torch.Tensor, owner: list[int], valid: torch.Tensor | None = None, **kw):
    valid = EVERYWHERE.expand(len(maps), -1, -1).clone() if valid is None else valid
    return instance_scores(maps, valid, masks, torch.tensor(owner, dtype=torch.long), **kw)


def test_peak_in_one_of_two_discs_covers_half() -> None:
    out = score(bump(*LEFT)[None], TWO_DISCS, [0, 0])
    assert out.has_peak.tolist() == [1.0, 0.0]
    assert out.covered.tolist() == [1.0, 0.0]
    assert out.instance_coverage.tolist() == [0.5]
    assert out.n_instances.tolist() == [2]
    # the right disc gets a sliver of the mass (the bump's tail), far below its fair half-share 1/4
    assert out.class_mass_share[1] < 1e-3 and out.class_mass_share[0] > 0.999


def test_peaks_in_both_discs_cover_all() -> None:
    out = score((bump(*LEFT) + 0.6 * bump(*RIGHT))[None], TWO_DISCS, [0, 0])
    assert out.has_peak.tolist() == [1.0, 1.0]
    assert out.instance_coverage.tolist() == [1.0]
    assert out.peak_height[1].item() == pytest.approx(0.6, abs=1e-6)


def test_low_secondary_peak_is_not_a_peak_but_enough_mass_covers() -> None:
    # a second bump at 0.4 x max: a local maximum, but below PEAK_FRACTION; yet a wide one holds more than
    # 1/(2n) = 1/4 of the class's mass, so the disc is covered by mass
    assert PEAK_FRACTION == 0.5
    wide = bump(*LEFT, sigma=2.0) + bump(*RIGHT, height=0.4, sigma=4.0)
    out = score(wide[None], TWO_DISCS, [0, 0])
    assert out.has_peak.tolist() == [1.0, 0.0]
    assert out.peak_height[1].item() == pytest.approx(0.4, abs=1e-3)
    assert out.class_mass_share[1] > 0.25 and out.covered.tolist() == [1.0, 1.0]
    narrow = bump(*LEFT, sigma=4.0) + bump(*RIGHT, height=0.4, sigma=1.0)
    out = score(narrow[None], TWO_DISCS, [0, 0])
    assert out.class_mass_share[1] < 0.25 and out.covered.tolist() == [1.0, 0.0]


def test_shares_follow_the_formulas_and_agree_with_energy_in_mask() -> None:
    maps = (bump(*LEFT) + 0.6 * bump(*RIGHT) + 0.2 * bump(5, 20))[None]  # some mass outside both discs
    out = score(maps, TWO_DISCS, [0, 0])
    energy = energy_in_mask(maps.expand(2, -1, -1), TWO_DISCS, EVERYWHERE.expand(2, -1, -1))
    torch.testing.assert_close(out.mass_share, energy)
    inside = torch.stack([(maps[0] * m).sum() for m in TWO_DISCS])
    torch.testing.assert_close(out.class_mass_share, inside / inside.sum())
    assert out.mass_share.sum() < 1 and out.class_mass_share.sum().item() == pytest.approx(1.0)


def test_no_instances_gives_nan_coverage() -> None:
    maps = torch.stack([bump(*LEFT), bump(*RIGHT)])
    out = score(maps, TWO_DISCS[:1], [1])  # map 0 has no instance, map 1 one (its own peak is elsewhere)
    assert math.isnan(out.instance_coverage[0]) and out.instance_coverage[1].item() == 1.0
    assert out.n_instances.tolist() == [0, 1]
    empty = score(maps, torch.zeros(0, SIZE, SIZE, dtype=torch.bool), [])
    assert empty.instance_coverage.isnan().all() and len(empty.covered) == 0


def test_zero_map_and_vanished_instance_are_undefined() -> None:
    out = score(torch.zeros(1, SIZE, SIZE, dtype=torch.float64), TWO_DISCS, [0, 0])
    assert out.covered.isnan().all() and out.mass_share.isnan().all() and out.instance_coverage.isnan().all()
    # an instance with no valid pixel is left out of the coverage; the other one decides it
    valid = (~TWO_DISCS[1])[None].clone()
    out = score(bump(*LEFT)[None], TWO_DISCS, [0, 0], valid=valid)
    assert out.pixels[1] == 0 and math.isnan(out.covered[1]) and out.instance_coverage.tolist() == [1.0]


def test_void_is_ignored() -> None:
    # the only peak inside the right disc lies in a void hole: it counts neither as a peak nor as mass
    maps = (bump(*LEFT) + bump(*RIGHT, sigma=1.0))[None]
    valid = EVERYWHERE.clone()
    valid[0, 17:24, 27:34] = False
    out = score(maps, TWO_DISCS, [0, 0], valid=valid)
    assert out.has_peak.tolist() == [1.0, 0.0] and out.instance_coverage.tolist() == [0.5]
    assert out.pixels[1] == TWO_DISCS[1].sum() - (TWO_DISCS[1] & ~valid[0]).sum()
    assert out.class_mass_share[1] < 0.01
    # without the hole, the same map lights both
    assert score(maps, TWO_DISCS, [0, 0]).instance_coverage.tolist() == [1.0]


def test_single_instance_coverage_is_trivial() -> None:
    out = score(bump(*LEFT)[None], TWO_DISCS[1:], [0])  # evidence far away, but a sliver of mass on the disc
    assert out.class_mass_share.tolist() == [1.0] and out.instance_coverage.tolist() == [1.0]


def test_batched_rows_and_chunking_do_not_change_results() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(5, SIZE, SIZE, generator=generator, dtype=torch.float64) - 0.3
    valid = torch.rand(5, SIZE, SIZE, generator=generator) > 0.1
    masks = torch.stack([disc(r, c, 5) for r, c in [(10, 10), (30, 30), (8, 30), (20, 20), (30, 8), (12, 22)]])
    owner = [0, 0, 2, 2, 2, 4]
    whole = score(maps, masks, owner, valid=valid)
    for chunk in (1, 4):
        part = score(maps, masks, owner, valid=valid, chunk=chunk)
        for name in ("pixels", "mass_share", "class_mass_share", "peak_height", "covered", "instance_coverage"):
            torch.testing.assert_close(getattr(part, name), getattr(whole, name), equal_nan=True)
    # each map alone gives the same answers as in the batch
    for row in range(5):
        mine = [i for i, o in enumerate(owner) if o == row]
        alone = score(maps[row : row + 1], masks[mine], [0] * len(mine), valid=valid[row : row + 1])
        torch.testing.assert_close(alone.covered, whole.covered[mine], equal_nan=True)
        torch.testing.assert_close(alone.instance_coverage, whole.instance_coverage[row : row + 1], equal_nan=True)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_local_peaks_agree_with_scipy_maximum_filter(window: int) -> None:
    generator = torch.Generator().manual_seed(1)
    maps = torch.nn.functional.avg_pool2d(torch.rand(3, 1, 30, 30, generator=generator), 3, 1, 1)[:, 0] - 0.2
    maps[0, :5, :5] = 0.8  # a plateau: every pixel of it is a local maximum
    valid = torch.rand(3, 30, 30, generator=generator) > 0.2
    ours = local_peaks(maps, valid, window)
    for m, v, o in zip(maps.numpy().astype(np.float64), valid.numpy(), ours.numpy(), strict=True):
        values = np.where(v, m, -np.inf)
        pooled = ndimage.maximum_filter(values, size=window, mode="constant", cval=-np.inf)
        expected = np.where(v & (values >= pooled) & (values > 0), values / values.max(), 0.0)
        np.testing.assert_allclose(o, expected, rtol=1e-12)
    assert (ours[0, :5, :5][valid[0, :5, :5]] > 0).all()


def test_bad_input_raises() -> None:
    maps = bump(*LEFT)[None]
    with pytest.raises(ValueError, match="odd"):
        local_peaks(maps, EVERYWHERE, 2)
    with pytest.raises(ValueError, match="owner"):
        score(maps, TWO_DISCS, [0, 1])
    with pytest.raises(ValueError, match="instance_masks"):
        score(maps, TWO_DISCS.float(), [0, 0])


# --- The instances table of a run (audit core + run writer, without Prefect) ---------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from segaudit.devtools.synth import generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, n_train=0, n_val=6, seed=4)
    return root


@pytest.fixture(scope="module")
def demo_model():
    from segaudit.models.registry import load_model

    return load_model("demo")


def _audit(path, out, model, methods=("gradcam",), mapping=None, split=None):
    from segaudit.auditors.batch import BatchRows, explain_batch, score_batch
    from segaudit.data.classmap import build_class_map
    from segaudit.data.readers import open_dataset, read_samples
    from segaudit.runs.run import plan_batches, run_metadata, write_run_rows
    from segaudit.runs.tables import load_run
    from segaudit.settings import AuditConfig

    data = open_dataset(path, split=split)
    class_map = build_class_map(data.category_names, model.class_names, mapping)
    config = AuditConfig(methods=methods, batch_size=6)
    rows = BatchRows()
    for refs in plan_batches(data.refs(), config.batch_size):
        samples, errors = read_samples(data, refs)
        rows.extend(score_batch(explain_batch(samples, model, class_map, config, errors), model, config))
    meta = run_metadata(data, model, config, dataset_path=str(path), split=split)
    counts = write_run_rows(rows, out, meta)
    assert counts["instances"] > 0
    return load_run(out)


def _coco_instances(path, ignore=()):
    import json

    coco = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return {(str(a["image_id"]), str(a["id"]), names[a["category_id"]]) for a in coco["annotations"]
            if not a["iscrowd"] and names[a["category_id"]] not in ignore}


def test_run_has_an_instances_table_matching_the_annotations(scenes, demo_model, tmp_path) -> None:
    from segaudit.runs.tables import SCHEMAS

    ann = scenes / "annotations" / "instances_val.json"
    run = _audit(ann, tmp_path / "coco", demo_model, methods=("gradcam", "gradcampp"))
    table = run.instances
    assert list(table.columns) == SCHEMAS["instances"].names
    assert set(table["method"]) == {"gradcam", "gradcampp"} and set(table["target"]) <= {"pred", "gt"}
    for method, part in table.groupby("method"):
        # every non-crowd annotation is one row per method, under its COCO id and class
        got = set(zip(part["image_id"], part["annotation_id"], part["class_name"], strict=True))
        assert got == _coco_instances(ann), method
        assert part["pixels"].gt(0).all()
    groups = table.groupby(["image_id", "class_id", "method", "layer", "target"])
    assert (groups.size() == groups["n_instances"].first()).all()
    # the repeated per-map coverage is the mean of its instances' covered
    torch.testing.assert_close(torch.tensor(groups["covered"].mean().to_numpy()),
                               torch.tensor(groups["instance_coverage"].first().to_numpy()), equal_nan=True)
    # mass shares: each instance's share of the map is at most its share among the class's instances
    shares = table.dropna(subset=["mass_share"])
    assert (shares["mass_share"] <= shares["class_mass_share"] + 1e-12).all()
    # the scores table's maps are the ones scored here: one instance alone with no void in its class is
    # the class's GT mask, so its mass share equals the scores table's energy in the GT mask
    scores = run.scores[run.scores["mask"] == "gt"].set_index(["image_id", "class_id", "method"])
    alone = table[table["n_instances"] == 1].set_index(["image_id", "class_id", "method"])
    joined = alone.join(scores[["energy_in_mask", "mask_pixels"]], how="inner")
    joined = joined[joined["pixels"] == joined["mask_pixels"]]
    assert len(joined) >= 4
    # (energy_in_mask sums in the maps' float32, we in float64)
    np.testing.assert_allclose(joined["mass_share"], joined["energy_in_mask"], rtol=1e-5)


def test_annotation_ids_survive_unmapped_classes_and_voc_instances(scenes, demo_model, tmp_path) -> None:
    ann = scenes / "annotations" / "instances_val.json"
    assert _coco_instances(ann, ignore={"square"}) < _coco_instances(ann)  # some instances are dropped
    table = _audit(ann, tmp_path / "coco", demo_model, mapping={"square": "__ignore__"}).instances
    got = set(zip(table["image_id"], table["annotation_id"], table["class_name"], strict=True))
    assert got == _coco_instances(ann, ignore={"square"})
    voc = _audit(scenes, tmp_path / "voc", demo_model, split="val").instances
    # VOC SegmentationObject: the same objects, numbered 1..n per image
    assert len(voc) == len(_coco_instances(ann)) and voc["annotation_id"].str.fullmatch(r"\d+").all()
