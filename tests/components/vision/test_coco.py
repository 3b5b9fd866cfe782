"""coco.run: the VWW labelling rule on a hand-made instances file, splits, skips, refusals."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from components.errors import ComponentError
from components.vision import coco
from components.vision.coco import CocoSpec
from components.vision.image_folder import hash_split

PERSON, CAR = 1, 3
# image name -> annotations as (category, area, bbox); every image is 100 x 100 = 10000 px,
# so at the default 0.005 the threshold is an area of exactly 50
CASES = {
    "at_threshold.jpg": [(PERSON, 50.0, [0, 0, 5, 10])],
    "just_below.jpg": [(PERSON, 49.99, [0, 0, 5, 10])],
    "just_above.jpg": [(PERSON, 50.01, [0, 0, 5, 10])],
    "big_box_small_mask.jpg": [(PERSON, 10.0, [0, 0, 100, 100])],  # area field, not bbox
    "small_box_big_mask.jpg": [(PERSON, 60.0, [0, 0, 1, 1])],
    "crowd.jpg": [(PERSON, 300.0, [0, 0, 50, 50], 1)],  # iscrowd counts like any other
    "car_only.jpg": [(CAR, 5000.0, [0, 0, 80, 80])],
    "small_person_and_car.jpg": [(PERSON, 20.0, [0, 0, 5, 4]), (CAR, 5000.0, [0, 0, 80, 80])],
    "two_people.jpg": [(PERSON, 20.0, [0, 0, 5, 4]), (PERSON, 400.0, [0, 0, 20, 20])],
    "no_annotations.jpg": [],
    "mid_size.jpg": [(PERSON, 300.0, [0, 0, 20, 15])],  # 3 %: person at 0.5 %, and at 2.5 %
    "two_percent.jpg": [(PERSON, 200.0, [0, 0, 20, 10])],  # 2 %: non_person at 2.5 %
}
EXPECTED = {
    "at_threshold.jpg": "person",
    "just_below.jpg": "non_person",
    "just_above.jpg": "person",
    "big_box_small_mask.jpg": "non_person",
    "small_box_big_mask.jpg": "person",
    "crowd.jpg": "person",
    "car_only.jpg": "non_person",
    "small_person_and_car.jpg": "non_person",
    "two_people.jpg": "person",
    "no_annotations.jpg": "non_person",
    "mid_size.jpg": "person",
    "two_percent.jpg": "person",
}


def _instances(cases=CASES, missing=()) -> dict:
    images, annotations = [], []
    for image_id, (name, anns) in enumerate(cases.items(), start=1):
        images.append({"id": image_id, "file_name": name, "height": 100, "width": 100})
        for category, area, bbox, *crowd in anns:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "area": area,
                    "bbox": bbox,
                    "iscrowd": crowd[0] if crowd else 0,
                }
            )
    for name in missing:
        images.append({"id": len(images) + 1, "file_name": name, "height": 100, "width": 100})
    categories = [{"id": PERSON, "name": "person"}, {"id": CAR, "name": "car"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write(tmp_path: Path, data, names=CASES) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4)).save(images / name)
    path = tmp_path / "instances.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path, images


def _labels(index) -> dict[str, str]:
    return {Path(i.path).name: i.label for i in index.items}


def test_vww_area_rule(tmp_path):
    index = coco.run(CocoSpec(), *_write(tmp_path, _instances()))
    assert index.labels == ("non_person", "person")
    assert _labels(index) == EXPECTED
    assert index.skipped == ()


def test_mlperf_tiny_threshold(tmp_path):
    index = coco.run(CocoSpec(min_area_fraction=0.025), *_write(tmp_path, _instances()))
    labels = _labels(index)
    assert labels["mid_size.jpg"] == "person" and labels["two_percent.jpg"] == "non_person"
    assert labels["at_threshold.jpg"] == "non_person"


def test_other_category_becomes_positive_class(tmp_path):
    index = coco.run(CocoSpec(category="car"), *_write(tmp_path, _instances()))
    assert index.labels == ("non_car", "car")
    assert _labels(index)["car_only.jpg"] == "car" and _labels(index)["crowd.jpg"] == "non_car"


def test_split_is_hash_of_file_name_and_paths_absolute(tmp_path):
    spec = CocoSpec(validation_percent=30, test_percent=30)
    index = coco.run(spec, *_write(tmp_path, _instances()))
    for item in index.items:
        assert Path(item.path).is_absolute() and Path(item.path).is_file()
        assert item.split == hash_split(Path(item.path).name, 30, 30)
    assert coco.run(spec, tmp_path / "instances.json", tmp_path / "images") == index


def test_missing_image_file_is_skipped_and_logged(tmp_path, caplog):
    data = _instances(missing=("gone_1.jpg", "gone_2.jpg"))
    with caplog.at_level(logging.WARNING, logger="components.vision.coco"):
        index = coco.run(CocoSpec(), *_write(tmp_path, data))
    assert [Path(s.path).name for s in index.skipped] == ["gone_1.jpg", "gone_2.jpg"]
    assert all("missing" in s.reason for s in index.skipped)
    assert len(index.items) == len(CASES)
    assert "2 images" in caplog.text and "gone_1.jpg" in caplog.text


def test_missing_or_broken_json_refused(tmp_path):
    with pytest.raises(ComponentError, match="nothing.json does not exist"):
        coco.run(CocoSpec(), tmp_path / "nothing.json", tmp_path)
    path, images = _write(tmp_path, '{"images": [')
    with pytest.raises(ComponentError, match="instances.json is not valid JSON"):
        coco.run(CocoSpec(), path, images)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key_refused(tmp_path, key):
    data = _instances()
    del data[key]
    with pytest.raises(ComponentError, match=f"instances.json lacks key '{key}'"):
        coco.run(CocoSpec(), *_write(tmp_path, data))


def test_missing_category_refused(tmp_path):
    with pytest.raises(ComponentError, match="no category named 'dog'"):
        coco.run(CocoSpec(category="dog"), *_write(tmp_path, _instances()))


def test_entry_missing_field_refused(tmp_path):
    data = _instances()
    del data["annotations"][0]["area"]
    with pytest.raises(ComponentError, match=r"annotations\[0\] lacks key 'area'"):
        coco.run(CocoSpec(), *_write(tmp_path, data))
    data = _instances()
    del data["images"][1]["width"]
    with pytest.raises(ComponentError, match=r"images\[1\] lacks key 'width'"):
        coco.run(CocoSpec(), *_write(tmp_path, data))


def test_missing_images_folder_refused(tmp_path):
    path, _ = _write(tmp_path, _instances())
    with pytest.raises(ComponentError, match="images folder .* does not exist"):
        coco.run(CocoSpec(), path, tmp_path / "nowhere")
