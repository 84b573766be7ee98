"""Tests of dataset-to-model class mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segaudit.data.classmap import (
    IGNORE_TARGET,
    ClassMap,
    build_class_map,
    is_background_name,
    normalize_name,
    parse_mapping,
)
from segaudit.data.readers.voc import VOC_CLASSES
from segaudit.data.sample import IGNORE

# torchvision's VOC model categories
TV_VOC = ("__background__",) + VOC_CLASSES[1:]
# labelme's class_names.txt spelling (real fixture voc-labelme)
LABELME_VOC = ("background",) + VOC_CLASSES[1:16] + ("potted plant", "sheep", "sofa", "train", "tv/monitor")
COCO_SOME = ("background", "person", "bicycle", "car", "airplane", "traffic light", "dining table", "zebra")


def test_normalize_and_background_aliases() -> None:
    assert normalize_name("  Potted_Plant ") == "potted plant"
    assert normalize_name("potted--plant") == normalize_name("potted plant")
    assert all(is_background_name(n) for n in ("background", "_background_", "__background__", "Background "))
    assert not is_background_name("backgrounds")


def test_voc_spellings_map_to_identity() -> None:
    cm = build_class_map(LABELME_VOC, TV_VOC)
    assert cm.unmapped == ()
    np.testing.assert_array_equal(cm.lut[:21], np.arange(21))
    assert (cm.lut[21:255] == IGNORE).all() and cm.lut[255] == IGNORE
    assert cm.lut.shape == (256,) and cm.lut.dtype == np.uint8
    assert cm.model_index("tv/monitor") == 20 and cm.model_index("potted plant") == 16


def test_coco_to_voc_unmapped_and_explicit() -> None:
    cm = build_class_map(COCO_SOME, TV_VOC)
    assert cm.unmapped == ("airplane", "traffic light", "zebra")
    assert cm.lut[1] == 15 and cm.lut[2] == 2 and cm.lut[3] == 7 and cm.lut[4] == IGNORE
    assert cm.lut[6] == 11  # "dining table" == "diningtable" after removing the space
    cm2 = build_class_map(COCO_SOME, TV_VOC, {"Airplane": "AEROPLANE", "car": IGNORE_TARGET})
    assert cm2.lut[4] == 1 and cm2.lut[3] == IGNORE
    assert cm2.unmapped == ("car", "traffic light", "zebra")
    assert cm2.pairs()[4] == ("airplane", "aeroplane") and cm2.pairs()[3] == ("car", None)


def test_explicit_errors() -> None:
    with pytest.raises(
        ValueError, match=r"'plane' is not a model class; valid names are: __background__, aeroplane"
    ):
        build_class_map(COCO_SOME, TV_VOC, {"airplane": "plane"})
    with pytest.raises(
        ValueError, match="'zebraa'.* not in the dataset; dataset classes are: background, person"
    ):
        build_class_map(COCO_SOME, TV_VOC, {"zebraa": "horse"})
    with pytest.raises(ValueError, match="background always maps to model index 0"):
        build_class_map(COCO_SOME, TV_VOC, {"background": "person"})


def test_apply() -> None:
    cm = build_class_map(("background", "dog", "cat", "unicorn"), ("bg", "cat", "dog"))
    assert cm.unmapped == ("unicorn",)
    sem = np.array([[0, 1, 2], [3, 255, 7]], np.uint8)
    out = cm.apply(sem)
    assert out.dtype == np.uint8 and out.shape == sem.shape
    np.testing.assert_array_equal(out, [[0, 2, 1], [IGNORE, IGNORE, IGNORE]])
    np.testing.assert_array_equal(cm.apply(sem.astype(np.int64)), out)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        cm.apply(np.array([[-1, 0]]))
    with pytest.raises(ValueError, match="integer"):
        cm.apply(np.zeros((2, 2), np.float32))


def test_matching_is_case_and_separator_insensitive() -> None:
    cm = build_class_map(
        ("_background_", "Traffic_Light", "fire-hydrant", "TV"),
        ("__background__", "traffic light", "fire hydrant", "tv"),
    )
    np.testing.assert_array_equal(cm.lut[:4], [0, 1, 2, 3])


def test_classmap_is_frozen_comparable_and_hashable() -> None:
    a = build_class_map(LABELME_VOC, TV_VOC)
    b = build_class_map(LABELME_VOC, TV_VOC)
    c = build_class_map(LABELME_VOC, TV_VOC, {"person": IGNORE_TARGET})
    assert a == b and hash(a) == hash(b) and a != c
    with pytest.raises(ValueError):
        a.lut[3] = 0
    with pytest.raises(AttributeError):
        a.unmapped = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"\(256,\) uint8"):
        ClassMap(("background",), ("background",), np.zeros(10, np.uint8), ())


def test_parse_mapping_text() -> None:
    assert parse_mapping("airplane=aeroplane, dining table = diningtable,") == {
        "airplane": "aeroplane",
        "dining table": "diningtable",
    }
    assert parse_mapping("a=b;c=d\ne=__ignore__") == {"a": "b", "c": "d", "e": "__ignore__"}
    assert parse_mapping("  ") == {}
    with pytest.raises(ValueError, match="not of the form dataset_name=model_name"):
        parse_mapping("a=b,c")
    with pytest.raises(ValueError, match="empty name"):
        parse_mapping("a=")
    with pytest.raises(ValueError, match="two targets"):
        parse_mapping("a=b,a=c")


def test_parse_mapping_json_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"airplane": "aeroplane", "tv": "tvmonitor"}))
    assert parse_mapping(str(path)) == {"airplane": "aeroplane", "tv": "tvmonitor"}
    with pytest.raises(FileNotFoundError, match="not found"):
        parse_mapping(str(tmp_path / "missing.json"))
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object of strings"):
        parse_mapping(str(path))
    path.write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_mapping(str(path))
    path.write_text('{"airplane": "aeroplane"}')
    assert build_class_map(COCO_SOME, TV_VOC, parse_mapping(str(path))).lut[4] == 1
