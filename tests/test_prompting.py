"""CAM-prompted segmentation on hand-built images and maps with known answers; SAM through a stand-in
predictor that records the prompts it is given."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from segaudit.data.preprocess import letterbox_geometry
from segaudit.metrics.prompting import (
    GrabCutSegmenter,
    Prompt,
    SamSegmenter,
    Segmenter,
    inside_from_boxes,
    map_prompts,
    prompt_rows,
    thresholded_region,
)
from segaudit.metrics.scores import iou_at_threshold, segmentation_iou
from segaudit.runs.tables import SCHEMAS, write_table

S = 48
ROWS, COLS = np.mgrid[:S, :S]


def _disc(row: float, col: float, radius: float) -> np.ndarray:
    return (ROWS - row) ** 2 + (COLS - col) ** 2 <= radius**2


def _scene(obj: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dark textured background with a bright textured object: (S, S, 3) uint8."""
    rng = np.random.default_rng(seed)
    image = rng.normal(70, 10, (S, S, 3))
    image[obj] = rng.normal(190, 10, (int(obj.sum()), 3))
    return image.clip(0, 255).astype(np.uint8)


def _blob(row: float, col: float, sigma: float) -> np.ndarray:
    """A coarse CAM-like bump."""
    return np.exp(-((ROWS - row) ** 2 + (COLS - col) ** 2) / (2 * sigma**2))


def _t(array: np.ndarray, dtype=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array)[None], dtype=dtype)


def _rows(image, cam, gt, valid=None, **kw):
    valid = np.ones((S, S), bool) if valid is None else valid
    return prompt_rows(
        image[None], _t(cam, torch.float32), torch.tensor([[0, 3]]), _t(gt, torch.bool), _t(valid, torch.bool),
        image_ids=["img"], method="gradcam", layer="backbone.4", **kw,
    )


def _row(rows, point, prompts):
    (row,) = [r for r in rows.prompts if r["point"] == point and r["prompts"] == prompts]
    return row


# ------------------------------------------------------------------------------------------------ GrabCut


def test_grabcut_from_a_centroid_prompt_recovers_a_disc_the_thresholded_map_misses() -> None:
    obj = _disc(22, 26, 12)
    cam = _blob(24, 24, 6)  # coarse and off-centre, as a stride-8 CAM is
    out = _rows(_scene(obj), cam, obj)
    for prompts in ("fg", "fg+bg"):
        row = _row(out, "centroid", prompts)
        assert row["iou_with_gt"] > 0.9
        assert row["point_hit"] == 1.0 and row["point_distance"] == 0.0
        assert abs(row["mask_pixels"] - obj.sum()) < 0.1 * obj.sum()
    # the segmenter adds something: the map thresholded at 0.5 covers the disc poorly
    baseline = float(iou_at_threshold(_t(cam, torch.float32), _t(obj, torch.bool), _t(np.ones((S, S)), torch.bool)))
    assert baseline < 0.6
    assert out.errors == []


def test_background_prompt_inside_the_object_is_honoured() -> None:
    obj = _disc(24, 24, 14)
    image = _scene(obj)
    region = _disc(24, 24, 10)
    fg, bg = (24.0, 18.0), (24.0, 32.0)
    segmenter = GrabCutSegmenter(point_radius=3)
    with_bg, fg_only = segmenter.segment(
        image, [Prompt(fg, bg, region, None), Prompt(fg, None, region, None)]
    )
    bg_disc = _disc(*bg, 3)
    assert fg_only[bg_disc].all()  # without it the object is whole
    assert not with_bg[bg_disc].any()  # a sure-background click is never foreground
    assert with_bg[_disc(*fg, 3)].all()


def test_initial_labels_layers_and_precedence() -> None:
    region = np.zeros((S, S), bool)
    region[10:30, 10:30] = True
    outside = np.zeros((S, S), bool)
    outside[:, 44:] = True
    # the foreground disc overlaps the background disc (fg wins) and the padding (padding wins)
    prompt = Prompt((20.0, 43.0), (20.0, 40.0), region, (10, 10, 29, 29))
    labels = GrabCutSegmenter(point_radius=2, border=1).initial_labels(prompt, (S, S), outside)
    assert labels[0, 20] == 0 and labels[20, 0] == 0  # border band: sure background
    assert labels[15, 15] == 3  # region: probable foreground
    assert labels[40, 5] == 2  # elsewhere: probable background
    assert labels[20, 38] == 0  # background disc
    assert labels[20, 41] == 1 and labels[20, 43] == 1  # foreground disc, over the background disc
    assert labels[20, 44] == 0 and labels[20, 45] == 0  # padding, over the foreground disc
    assert np.array_equal(labels[:, 44:], np.zeros((S, 4), np.uint8))


def test_grabcut_is_seeded_per_prompt_and_never_labels_padding() -> None:
    obj = _disc(20, 20, 10)
    image = _scene(obj, seed=3)
    outside = np.zeros((S, S), bool)
    outside[:, 40:] = True
    p1 = Prompt((20.0, 20.0), None, _disc(20, 20, 14), None)
    p2 = Prompt((22.0, 18.0), (40.0, 5.0), _disc(20, 20, 6) | (COLS >= 36), None)
    both = GrabCutSegmenter().segment(image, [p1, p2], outside)
    alone = GrabCutSegmenter().segment(image, [p2], outside)
    assert np.array_equal(both[1], alone[0])  # the mask does not depend on what was segmented before
    assert not both[:, :, 40:].any()


def test_grabcut_without_background_returns_the_initial_foreground() -> None:
    prompt = Prompt((5.0, 5.0), None, np.ones((S, S), bool), (0, 0, S - 1, S - 1))
    mask = GrabCutSegmenter().segment(_scene(_disc(5, 5, 3)), [prompt])[0]
    assert mask.all()


def test_grabcut_rejects_bad_settings_and_images() -> None:
    with pytest.raises(ValueError, match="iterations"):
        GrabCutSegmenter(iterations=0)
    with pytest.raises(ValueError, match="uint8"):
        GrabCutSegmenter().segment(np.zeros((S, S, 3), np.float32), [])
    assert isinstance(GrabCutSegmenter(), Segmenter)


# ------------------------------------------------------------------------------------------------ prompts


def test_centroid_and_max_point_differ_where_the_map_has_two_peaks() -> None:
    # two equal bumps on either side of a gap: the max is the first peak (inside the object on the left),
    # the weighted centroid falls between the peaks, on the background
    obj = _disc(24, 12, 7)
    cam = _blob(24, 12, 3) + _blob(24, 36, 3)
    out = _rows(_scene(obj), cam, obj)
    assert _row(out, "max", "fg")["point_hit"] == 1.0
    centroid = _row(out, "centroid", "fg")
    assert centroid["point_hit"] == 0.0
    assert centroid["point_distance"] == pytest.approx(24 - 12 - 7, abs=1.0)
    assert len(out.prompts) == 4 and [r["point"] for r in out.prompts] == ["centroid", "centroid", "max", "max"]


def test_region_is_the_scores_tables_thresholded_map_and_boxes_bound_it() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 12, 12, generator=gen)
    maps[2] = 0.5  # constant: no region
    valid = torch.rand(6, 12, 12, generator=gen) > 0.2
    gt = torch.rand(6, 12, 12, generator=gen) > 0.5
    region, varies = thresholded_region(maps, valid)
    assert varies.tolist() == [True, True, False, True, True, True]
    mine = segmentation_iou(region, gt, valid)
    theirs = iou_at_threshold(maps, gt, valid)
    assert torch.allclose(mine[varies], theirs[varies])
    prompts = map_prompts(maps, valid, "max")
    for i in range(6):
        rows, cols = torch.nonzero(prompts.region[i], as_tuple=True)
        expected = [-1] * 4 if len(rows) == 0 else [rows.min(), cols.min(), rows.max(), cols.max()]
        assert prompts.boxes[i].tolist() == [int(v) for v in expected]
    assert prompts.defined.tolist() == varies.tolist()
    assert prompts.prompt(2, True).box is None
    with pytest.raises(ValueError, match="point"):
        map_prompts(maps, valid, "peak")


def test_empty_map_and_empty_label_give_nan_not_crashes() -> None:
    obj = _disc(24, 24, 8)
    image = _scene(obj)
    empty_map = _rows(image, np.zeros((S, S)), obj)
    for row in empty_map.prompts:
        assert math.isnan(row["point_hit"]) and math.isnan(row["iou_with_gt"]) and math.isnan(row["dice_with_gt"])
        assert row["mask_pixels"] is None
    constant = _rows(image, np.full((S, S), 2.0), obj)  # points to something, but prompts nothing
    assert all(math.isnan(r["iou_with_gt"]) and r["mask_pixels"] is None for r in constant.prompts)
    no_label = _rows(image, _blob(24, 24, 5), np.zeros((S, S), bool))
    for row in no_label.prompts:
        assert math.isnan(row["point_hit"]) and math.isnan(row["iou_with_gt"])
        assert row["mask_pixels"] > 0  # the segment is made, there is nothing to score it against
    assert not (empty_map.errors or constant.errors or no_label.errors)


class _FixedSegmenter:
    """Returns one given mask for every prompt; records the prompts and the padding it is given."""

    name = "fixed"

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.calls: list[tuple[list[Prompt], np.ndarray | None]] = []

    def segment(self, image, prompts, outside=None):
        self.calls.append((list(prompts), outside))
        return np.stack([self.mask] * len(prompts))


def test_void_pixels_are_left_out_of_iou_and_mask_pixels() -> None:
    gt = np.zeros((S, S), bool)
    gt[10:20, 10:20] = True
    void = np.zeros((S, S), bool)
    void[10:20, 20:25] = True  # the segment spills onto void only
    out = _rows(_scene(gt), _blob(15, 15, 4), gt, valid=~void, segmenter=_FixedSegmenter(gt | void))
    for row in out.prompts:
        assert row["iou_with_gt"] == 1.0 and row["dice_with_gt"] == 1.0 and row["mask_pixels"] == 100
        assert row["segmenter"] == "fixed"


def test_rows_of_a_batch_follow_pairs_and_padding_becomes_outside() -> None:
    obj = _disc(20, 20, 8)
    views = np.stack([_scene(obj, 0), _scene(obj, 1)])
    maps = torch.stack([torch.tensor(_blob(20, 20, 4)), torch.zeros(S, S), torch.tensor(_blob(20, 20, 4))]).float()
    pairs = torch.tensor([[1, 2], [0, 5], [0, 1]])
    gt = torch.tensor(obj).expand(3, S, S)
    valid = torch.ones(3, S, S, dtype=torch.bool)
    box = letterbox_geometry(S // 2, S, S)  # a wide image: padding above and below
    inside = inside_from_boxes([box, box])
    fixed = _FixedSegmenter(obj)
    out = prompt_rows(views, maps, pairs, gt, valid, image_ids=["a", "b"], method="m", layer="l",
                      segmenter=fixed, inside=inside, points=("max",), prompts=("fg+bg",))
    assert [(r["image_id"], r["class_id"]) for r in out.prompts] == [("b", 2), ("a", 5), ("a", 1)]
    assert [r["point"] + r["prompts"] for r in out.prompts] == ["maxfg+bg"] * 3
    assert math.isnan(out.prompts[1]["iou_with_gt"]) and out.prompts[2]["iou_with_gt"] == 1.0
    # one call per image, with only the maps that can prompt; padding passed as outside
    assert [len(prompts) for prompts, _ in fixed.calls] == [1, 1]
    _, outside = fixed.calls[0]
    assert np.array_equal(outside, ~inside[0].numpy()) and outside[0].all() and not outside[S // 2].any()
    assert all(p.background is not None for prompts, _ in fixed.calls for p in prompts)


class _FlakySegmenter:
    """Fails on every prompt whose foreground point is right of the middle."""

    name = "flaky"

    def segment(self, image, prompts, outside=None):
        if any(p.foreground[1] > S / 2 for p in prompts):
            raise RuntimeError("cannot segment there\nsecond line")
        return np.stack([p.region for p in prompts])


def test_a_failing_segmenter_becomes_an_error_row_and_nan() -> None:
    maps = torch.stack([torch.tensor(_blob(20, 10, 4)), torch.tensor(_blob(20, 38, 4))]).float()
    gt = torch.ones(2, S, S, dtype=torch.bool)
    out = prompt_rows(np.stack([_scene(_disc(20, 10, 4))]), maps, torch.tensor([[0, 1], [0, 2]]), gt,
                      torch.ones(2, S, S, dtype=torch.bool), image_ids=["x"], method="m", layer="l",
                      segmenter=_FlakySegmenter(), file_names=["x.jpg"])
    assert out.errors == [{"image_id": "x", "file_name": "x.jpg", "stage": "prompt",
                           "reason": "flaky failed on 4 of 8 prompts: RuntimeError: cannot segment there"}]
    ok = [r["iou_with_gt"] for r in out.prompts if r["class_id"] == 1]
    failed = [r for r in out.prompts if r["class_id"] == 2]
    assert all(v > 0 for v in ok)
    assert all(math.isnan(r["iou_with_gt"]) and r["mask_pixels"] is None for r in failed)
    assert all(r["point_hit"] == 1.0 for r in failed)  # the point is still scored


def test_bad_inputs_raise_clear_errors() -> None:
    image = _scene(_disc(5, 5, 2))[None]
    maps = torch.zeros(1, S, S)
    ok = torch.ones(1, S, S, dtype=torch.bool)
    pairs = torch.tensor([[0, 1]])
    common = {"image_ids": ["a"], "method": "m", "layer": "l"}
    with pytest.raises(ValueError, match="match the views"):
        prompt_rows(image, torch.zeros(1, S, S + 1), pairs, ok, ok, **common)
    with pytest.raises(ValueError, match="bool"):
        prompt_rows(image, maps, pairs, ok.float(), ok, **common)
    with pytest.raises(ValueError, match="points must be"):
        prompt_rows(image, maps, pairs, ok, ok, points=("mean",), **common)
    with pytest.raises(ValueError, match="uint8"):
        prompt_rows(image.astype(np.float32), maps, pairs, ok, ok, **common)


def test_rows_land_in_a_parquet_table_pandas_reads(tmp_path) -> None:
    obj = _disc(24, 24, 8)
    rows = _rows(_scene(obj), _blob(24, 24, 5), obj).prompts + _rows(_scene(obj), np.zeros((S, S)), obj).prompts
    path = write_table(rows, tmp_path / "prompts.parquet", "prompts")
    table = pd.read_parquet(path)
    assert list(table.columns) == SCHEMAS["prompts"].names and len(table) == 8
    assert table["mask_pixels"].isna().sum() == 4
    hit_rate = table[table["prompts"] == "fg"].groupby("point")["point_hit"].mean()
    assert hit_rate.to_dict() == {"centroid": 1.0, "max": 1.0}


# ------------------------------------------------------------------------------------------------ SAM


class _FakePredictor:
    """The two methods of ``segment_anything.SamPredictor`` the segmenter uses; records every call."""

    def __init__(self) -> None:
        self.images: list[tuple[np.ndarray, str]] = []
        self.calls: list[dict] = []

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.images.append((image.copy(), image_format))

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True):
        self.calls.append({"point_coords": point_coords, "point_labels": point_labels, "box": box,
                           "multimask_output": multimask_output})
        masks = np.zeros((3 if multimask_output else 1, S, S), bool)
        masks[:, :4, :4] = True
        masks[-1] = _disc(point_coords[0, 1], point_coords[0, 0], 5)  # the last mask is the best
        scores = np.array([0.1, 0.2, 0.9] if multimask_output else [0.5], np.float32)
        return masks, scores, np.zeros((len(masks), 256, 256), np.float32)


def test_sam_gets_points_in_xy_order_labels_and_the_box() -> None:
    fake = _FakePredictor()
    image = _scene(_disc(10, 30, 6))
    region = np.zeros((S, S), bool)
    region[5:15, 25:36] = True
    fg_only = Prompt((10.5, 30.25), None, region, (5, 25, 14, 35))
    fg_bg = Prompt((10.0, 30.0), (40.0, 2.0), region, (5, 25, 14, 35))
    outside = np.zeros((S, S), bool)
    outside[:, 33:] = True
    masks = SamSegmenter(predictor=fake).segment(image, [fg_only, fg_bg], outside)
    first, second = fake.calls
    np.testing.assert_array_equal(first["point_coords"], np.array([[30.25, 10.5]], np.float32))
    assert first["point_coords"].dtype == np.float32
    np.testing.assert_array_equal(first["point_labels"], [1])
    assert first["box"] is None and first["multimask_output"] is True
    np.testing.assert_array_equal(second["point_coords"], np.array([[30.0, 10.0], [2.0, 40.0]], np.float32))
    np.testing.assert_array_equal(second["point_labels"], [1, 0])
    assert second["multimask_output"] is False
    # the best-scored of the three masks, cleared on the padding
    assert np.array_equal(masks[0], _disc(10.5, 30.25, 5) & ~outside)
    assert len(fake.images) == 1 and fake.images[0][1] == "RGB" and np.array_equal(fake.images[0][0], image)

    boxed = SamSegmenter(predictor=fake, use_box=True)
    boxed.segment(image, [fg_only])
    np.testing.assert_array_equal(fake.calls[-1]["box"], np.array([25, 5, 35, 14], np.float32))
    assert fake.calls[-1]["multimask_output"] is False


def test_sam_embeds_each_image_once_across_calls() -> None:
    fake = _FakePredictor()
    sam = SamSegmenter(predictor=fake)
    a, b = _scene(_disc(10, 10, 5), 0), _scene(_disc(10, 10, 5), 1)
    prompt = Prompt((10.0, 10.0), None, _disc(10, 10, 5), (5, 5, 15, 15))
    for image in (a, a, b, b, a):
        sam.segment(image, [prompt])
    assert len(fake.images) == 3 and len(fake.calls) == 5
    assert sam.segment(a, []).shape == (0, S, S) and len(fake.calls) == 5


def test_sam_through_prompt_rows() -> None:
    obj = _disc(20, 20, 5)
    fake = _FakePredictor()
    out = _rows(_scene(obj), _blob(20, 20, 3), obj, segmenter=SamSegmenter(predictor=fake))
    assert {r["segmenter"] for r in out.prompts} == {"sam"}
    assert all(r["iou_with_gt"] == 1.0 for r in out.prompts)  # the fake's disc of radius 5 at the point
    assert len(fake.images) == 1 and len(fake.calls) == 4


def test_sam_needs_a_checkpoint_and_the_package(monkeypatch, tmp_path) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        SamSegmenter()
    with pytest.raises(ValueError, match="model_type"):
        SamSegmenter(tmp_path / "x.pth", model_type="vit_x")
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install"):
        SamSegmenter(tmp_path / "x.pth")


def test_real_sam_segments_a_scene() -> None:
    """Runs when ``segment-anything`` is installed and SEGAUDIT_SAM_CHECKPOINT names a checkpoint
    (SEGAUDIT_SAM_MODEL its type, default vit_b)."""
    pytest.importorskip("segment_anything")
    checkpoint = os.environ.get("SEGAUDIT_SAM_CHECKPOINT")
    if not checkpoint or not os.path.isfile(checkpoint):
        pytest.skip("no SAM checkpoint (set SEGAUDIT_SAM_CHECKPOINT)")
    obj = _disc(24, 24, 12)
    sam = SamSegmenter(checkpoint, os.environ.get("SEGAUDIT_SAM_MODEL", "vit_b"))
    out = _rows(_scene(obj), _blob(24, 24, 6), obj, segmenter=sam)
    assert not out.errors
    assert all(r["mask_pixels"] is not None and 0 <= r["iou_with_gt"] <= 1 for r in out.prompts)
