"""image_folder.run: both layouts, the stable hash split and the refused folders."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from PIL import Image

from components.artifacts import SPLITS
from components.errors import ComponentError
from components.vision import image_folder
from components.vision.image_folder import ImageFolderSpec, hash_split
from components.vision.images import load_image

VWW_COCO = Path("/work/shared/data/vww_coco")


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)


def _class_folders(root: Path, per_class: int = 3) -> None:
    for label in ("person", "non_person"):
        for n in range(per_class):
            _image(root / label / f"{n:03d}.png")


def test_class_folders_sorted_labels_absolute_paths(tmp_path):
    _class_folders(tmp_path)
    index = image_folder.run(ImageFolderSpec(), tmp_path)
    assert index.labels == ("non_person", "person")
    assert len(index.items) == 6 and index.skipped == ()
    assert all(Path(i.path).is_absolute() and Path(i.path).is_file() for i in index.items)
    assert {i.label for i in index.items} == {"person", "non_person"}


def test_other_suffixes_hidden_files_and_subfolders_ignored(tmp_path):
    _class_folders(tmp_path, per_class=1)
    (tmp_path / "person" / "notes.txt").write_text("x")
    _image(tmp_path / "person" / ".hidden.png")
    _image(tmp_path / "person" / "nested" / "deep.png")
    _image(tmp_path / "person" / "UPPER.JPG")
    (tmp_path / ".cache").mkdir()
    index = image_folder.run(ImageFolderSpec(), tmp_path)
    names = sorted(Path(i.path).name for i in index.items)
    assert names == ["000.png", "000.png", "UPPER.JPG"]


def test_hash_split_stable_and_all_splits_present(tmp_path):
    _class_folders(tmp_path, per_class=30)
    spec = ImageFolderSpec(validation_percent=20, test_percent=20)
    first = image_folder.run(spec, tmp_path)
    assert image_folder.run(spec, tmp_path) == first
    assert all(first.split(s) for s in SPLITS)
    for item in first.items:  # depends only on the path relative to the root
        relative = Path(item.path).relative_to(tmp_path).as_posix()
        assert item.split == hash_split(relative, 20, 20)


def test_hash_split_is_pinned():
    # buckets sha1(key) % 10000, pinned so that a change of the arithmetic cannot go unnoticed:
    # "non_person/000.png" -> 809, "h" -> 1237, "person/000.png" -> 4417
    assert hash_split("non_person/000.png", 10, 10) == "validation"
    assert hash_split("h", 10, 10) == "test"
    assert hash_split("person/000.png", 10, 10) == "train"
    assert hash_split("person/000.png", 44.1, 0) == "train"
    assert hash_split("person/000.png", 44.2, 0) == "validation"
    assert hash_split("non_person/000.png", 0, 0) == "train"


def test_items_sorted_by_split_label_path(tmp_path):
    _class_folders(tmp_path, per_class=20)
    items = image_folder.run(ImageFolderSpec(), tmp_path).items
    labels = ("non_person", "person")
    keys = [(SPLITS.index(i.split), labels.index(i.label), i.path) for i in items]
    assert keys == sorted(keys)


def test_split_folders_decide_split_and_may_be_missing(tmp_path):
    _class_folders(tmp_path / "train", per_class=2)
    _class_folders(tmp_path / "test", per_class=1)
    index = image_folder.run(ImageFolderSpec(), tmp_path)
    assert len(index.split("train")) == 4 and len(index.split("test")) == 2
    assert index.split("validation") == ()
    assert all(Path(i.path).parts[-3] == i.split for i in index.items)


def test_split_folders_mixed_with_class_folders_refused(tmp_path):
    _class_folders(tmp_path / "train", per_class=1)
    _image(tmp_path / "person" / "x.png")
    with pytest.raises(ComponentError, match="mixes split folders"):
        image_folder.run(ImageFolderSpec(), tmp_path)


def test_labels_choose_classes_and_order(tmp_path):
    _class_folders(tmp_path, per_class=1)
    _image(tmp_path / "cat" / "c.png")
    index = image_folder.run(ImageFolderSpec(labels=("person", "non_person")), tmp_path)
    assert index.labels == ("person", "non_person")
    assert {i.label for i in index.items} == {"person", "non_person"}


def test_label_without_folder_refused(tmp_path):
    _class_folders(tmp_path, per_class=1)
    with pytest.raises(ComponentError, match=r"\['dog'\] name no folder"):
        image_folder.run(ImageFolderSpec(labels=("person", "dog")), tmp_path)


def test_empty_class_folder_refused(tmp_path):
    _class_folders(tmp_path, per_class=1)
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(ComponentError, match="empty_class has no image files"):
        image_folder.run(ImageFolderSpec(), tmp_path)


def test_missing_root_and_no_class_folders_refused(tmp_path):
    with pytest.raises(ComponentError, match="does not exist"):
        image_folder.run(ImageFolderSpec(), tmp_path / "nowhere")
    _image(tmp_path / "loose.png")
    with pytest.raises(ComponentError, match="has no class folders"):
        image_folder.run(ImageFolderSpec(), tmp_path)


def test_spec_checks_percents_labels_and_keys():
    with pytest.raises(pydantic.ValidationError):
        ImageFolderSpec(validation_percent=60, test_percent=40)
    with pytest.raises(pydantic.ValidationError):
        ImageFolderSpec(labels=("a", "a"))
    with pytest.raises(pydantic.ValidationError):
        ImageFolderSpec(validaton_percent=5)  # typo: extra keys are refused


@pytest.mark.skipif(not VWW_COCO.is_dir(), reason=f"{VWW_COCO} (real VWW photos) is absent")
def test_real_vww_photos_load_at_96x96():
    index = image_folder.run(ImageFolderSpec(), VWW_COCO)
    assert index.labels == ("non_person", "person")
    assert len(index.items) > 0
    for item in index.items:
        assert load_image(item.path, (96, 96), 3).shape == (96, 96, 3)
