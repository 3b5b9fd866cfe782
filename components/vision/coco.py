"""Reader for COCO instances annotations: labels every image person / non-person (VWW).

Called by the VWW pipeline before the Beam image preprocessing, on an ``instances_*.json``
and its images folder. It only reads annotations and lists files; pixels are decoded later
by ``components.vision.images.load_image``.

Labelling follows the Visual Wake Words builder, ``_filter_annotations_list`` in
tensorflow/models ``research/slim/datasets/build_visualwakewords_data_lib.py``:

- an image is ``person`` when at least one annotation of the category has
  ``area / (image height * image width) >= min_area_fraction``; smaller ones are dropped
  as small objects (the builder drops ``< threshold``, so a fraction exactly at the
  threshold counts);
- the object area is the annotation's ``area`` field (COCO's segmentation-mask area), not
  the bbox ``w * h``; the image area comes from the image entry's ``height`` and ``width``;
- crowd annotations (``iscrowd: 1``) count like any other: the builder never reads
  ``iscrowd``;
- every other image, including one with no annotations at all, is ``non_person``.

Where the builder quietly falls back to category id 1 when no category has the name, or
reads a file without ``annotations`` (an image-info file) as all background, this reader
refuses the file: either would produce wrong labels without a word.

The default ``min_area_fraction=0.005`` (0.5 %) is the original VWW rule (the builder's
``--small_object_area_threshold`` default). MLPerf Tiny's training set used 2.5 %: set
``min_area_fraction=0.025`` to reproduce it. Labels are ``("non_person", "person")``, in
the order of the MLPerf Tiny reference model's outputs (index 0 non-person, 1 person); for
another ``category`` they are ``non_<category>`` and ``<category>`` (spaces become ``_``).

Splits are :func:`~components.vision.image_folder.hash_split` of the image's
``file_name``. An image entry whose file is missing from the images folder goes to
``ImageIndex.skipped``, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import pydantic

from components.artifacts import ImageIndex, ImageItem, SkippedItem
from components.errors import ComponentError
from components.spec import component_spec
from components.vision.image_folder import (
    Percent,
    check_split_percents,
    counts,
    hash_split,
    sort_items,
)

Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]
REQUIRED_KEYS = ("images", "annotations", "categories")
_NAMES_SHOWN = 5  # missing files named in the warning

log = logging.getLogger(__name__)


@component_spec
class CocoSpec:
    """How to turn COCO instances annotations into the two-class VWW task."""

    min_area_fraction: Fraction = 0.005  # VWW rule; MLPerf Tiny's training set used 0.025
    category: str = "person"  # COCO category name of the positive class
    validation_percent: Percent = 10.0
    test_percent: Percent = 10.0

    @pydantic.model_validator(mode="after")
    def _check_split(self) -> CocoSpec:
        check_split_percents(self.validation_percent, self.test_percent)
        return self


def labels_for(category: str) -> tuple[str, str]:
    """(negative, positive) label names: ``("non_person", "person")`` by default."""
    name = category.strip().replace(" ", "_")
    return f"non_{name}", name


def run(spec: CocoSpec, annotations: Path, images: Path) -> ImageIndex:
    """Label, split and list every image of ``annotations``; raises ComponentError on an
    unusable annotations file or images folder."""
    annotations, images = Path(os.path.abspath(annotations)), Path(os.path.abspath(images))
    data = _read_json(annotations)
    category_ids = _category_ids(data["categories"], spec.category, annotations)
    positive_ids = _positive_images(spec, data, category_ids, annotations)
    if not images.is_dir():
        raise ComponentError(f"COCO images folder {images} does not exist or is not a folder")
    labels = labels_for(spec.category)
    items, skipped = _items(spec, data["images"], positive_ids, annotations, images)
    _warn_missing(skipped, images)
    index = ImageIndex(items=sort_items(items, labels), labels=labels, skipped=tuple(skipped))
    log.info(
        "COCO %s (%s, area fraction >= %g): %s",
        annotations,
        spec.category,
        spec.min_area_fraction,
        counts(index),
    )
    return index


def _items(spec: CocoSpec, entries: list[Any], positive_ids: set[Any], path: Path, images: Path):
    """ImageItems for the files present, SkippedItems for those missing from ``images``."""
    negative, positive = labels_for(spec.category)
    items, skipped = [], []
    for i, entry in enumerate(entries):
        name = _file_name(entry, path, f"images[{i}]")
        file = images / name
        if not file.is_file():
            skipped.append(SkippedItem(str(file), f"listed in {path.name}, missing from {images}"))
            continue
        label = positive if entry["id"] in positive_ids else negative
        split = hash_split(name, spec.validation_percent, spec.test_percent)
        items.append(ImageItem(str(file), label, split))
    return items, skipped


def _read_json(path: Path) -> dict[str, Any]:
    """The annotations as a dict holding every key of ``REQUIRED_KEYS`` as a list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ComponentError(f"COCO annotations file {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ComponentError(f"cannot read COCO annotations file {path}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ComponentError(f"COCO annotations file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ComponentError(f"COCO annotations file {path} is not a JSON object")
    for key in REQUIRED_KEYS:
        if not isinstance(data.get(key), list):
            problem = "lacks" if key not in data else "has a non-list"
            raise ComponentError(f"COCO annotations file {path} {problem} key '{key}'")
    return data


def _category_ids(categories: list[Any], name: str, path: Path) -> set[Any]:
    """Ids of the categories called ``name``; a missing category is refused."""
    ids = {c.get("id") for c in categories if isinstance(c, dict) and c.get("name") == name}
    if not ids:
        found = sorted(str(c.get("name")) for c in categories if isinstance(c, dict))
        raise ComponentError(
            f"COCO annotations file {path}: key 'categories' has no category named '{name}' "
            f"(found {', '.join(found[:10]) or 'none'}{', ...' if len(found) > 10 else ''})"
        )
    return ids


def _positive_images(
    spec: CocoSpec, data: dict[str, Any], category_ids: set[Any], path: Path
) -> set[Any]:
    """Ids of images with an annotation of the category at or above the area fraction."""
    image_areas = {}
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        height, width = (_positive(entry, k, path, where) for k in ("height", "width"))
        image_areas[_key(entry, "id", path, where)] = height * width
    areas = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if _key(ann, "category_id", path, where) in category_ids:
            areas[_key(ann, "image_id", path, where)].append(_number(ann, "area", path, where))
    orphans = set(areas) - set(image_areas)
    if orphans:
        log.debug("%s: %d image ids annotated but not in 'images'", path, len(orphans))
    return {
        image_id
        for image_id, object_areas in areas.items()
        if image_id in image_areas
        # the builder's small-object test is `area / image_area < threshold`: keep its form
        and any(a / image_areas[image_id] >= spec.min_area_fraction for a in object_areas)
    }


def _file_name(record: Any, path: Path, where: str) -> str:
    """``file_name``, relative to the images folder (an absolute one would escape it)."""
    name = _field(record, "file_name", path, where)
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise ComponentError(
            f"COCO annotations file {path}: {where}.file_name is {name!r}, "
            "not a file name relative to the images folder"
        )
    return name


def _key(record: Any, key: str, path: Path, where: str) -> int | str:
    """An id field (``id``, ``image_id``, ``category_id``): an int or a string."""
    value = _field(record, key, path, where)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ComponentError(f"COCO annotations file {path}: {where}.{key} is {value!r}, not an id")
    return value


def _field(record: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise ComponentError(f"COCO annotations file {path}: {where} lacks key '{key}'")
    return record[key]


def _number(record: Any, key: str, path: Path, where: str) -> float:
    value = _field(record, key, path, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ComponentError(
            f"COCO annotations file {path}: {where}.{key} is {value!r}, not a number"
        )
    return value


def _positive(record: Any, key: str, path: Path, where: str) -> float:
    value = _number(record, key, path, where)
    if value <= 0:
        raise ComponentError(f"COCO annotations file {path}: {where}.{key} is {value}, not > 0")
    return value


def _warn_missing(skipped: list[SkippedItem], images: Path) -> None:
    if skipped:
        names = [Path(s.path).name for s in skipped[:_NAMES_SHOWN]]
        more = ", ..." if len(skipped) > _NAMES_SHOWN else ""
        log.warning(
            "%d images listed in the annotations are missing from %s (skipped): %s%s",
            len(skipped),
            images,
            ", ".join(names),
            more,
        )
