"""Reader for a folder of images sorted into class folders: builds an ``ImageIndex``.

Called by the VWW pipeline (and usable from a notebook) before the Beam image
preprocessing. It only lists, labels and splits files; pixels are decoded later by
``components.vision.images.load_image``, where unreadable files go to the dead-letter
output, so a listing stays fast on a large folder.

Two layouts are read:

- ``<root>/<class>/*.jpg``: one folder per class (``person/``, ``non_person/``, any
  names). Each file's split comes from :func:`hash_split` of its path relative to the root.
- ``<root>/train/<class>/``, ``<root>/validation/<class>/``, ``<root>/test/<class>/``: the
  splits are the folders'. Any of the three may be missing.

Files are matched by suffix (``IMAGE_SUFFIXES``, case-insensitive); other files and
sub-folders inside a class folder are ignored with a debug log, hidden ones (``.name``)
silently. Labels are ``spec.labels`` or, by default, the sorted class-folder names; a class
folder not in ``spec.labels`` is left out. Items are sorted by split, label, then path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Annotated

import pydantic

from components.artifacts import SPLITS, ImageIndex, ImageItem
from components.errors import ComponentError
from components.spec import component_spec
from components.vision.images import IMAGE_SUFFIXES, has_image_suffix

Percent = Annotated[float, pydantic.Field(ge=0, le=100)]
HASH_BUCKETS = 10_000  # split granularity: 0.01 %

log = logging.getLogger(__name__)


@component_spec
class ImageFolderSpec:
    """How to split and label a folder of class folders."""

    validation_percent: Percent = 10.0  # hash split only; split folders decide otherwise
    test_percent: Percent = 10.0
    labels: tuple[str, ...] | None = None  # class folders to use, in label order; None: all

    @pydantic.model_validator(mode="after")
    def _check(self) -> ImageFolderSpec:
        check_split_percents(self.validation_percent, self.test_percent)
        labels = self.labels
        if labels is not None and (not labels or len(set(labels)) < len(labels)):
            raise ValueError(f"labels must be distinct and not empty, not {self.labels}")
        return self


def run(spec: ImageFolderSpec, root: Path) -> ImageIndex:
    """List, label and split every image under ``root``; raises ComponentError on an
    unusable folder (missing, no class folders, an empty class, an unknown label)."""
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise ComponentError(f"image folder {root} does not exist or is not a folder")
    split_dirs = _split_folders(root)
    if split_dirs:
        labels, found = _labels(spec, [root / s for s in split_dirs])
        items = [ImageItem(str(p), lb, s) for s in split_dirs for lb, p in found[root / s]]
    else:
        labels, found = _labels(spec, [root])
        items = [ImageItem(str(p), lb, _hash_split_path(p, root, spec)) for lb, p in found[root]]
    index = ImageIndex(items=sort_items(items, labels), labels=labels)
    log.info(
        "image folder %s (%s split): %s", root, "folder" if split_dirs else "hash", counts(index)
    )
    if not split_dirs:
        _warn_empty_splits(root, index, spec)
    return index


def hash_split(key: str, validation_percent: float, test_percent: float) -> str:
    """The stable split of ``key``: SHA-1 of its UTF-8 (NFC) text, in 0.01 % buckets.

    Depends on nothing but the key, so the split is the same on every machine and run and
    a file keeps its split when others are added. Bucket ``int(sha1) % 10000`` below
    ``validation_percent * 100`` is validation, below ``(validation + test) * 100`` test,
    the rest train.
    """
    text = unicodedata.normalize("NFC", key)  # macOS may hand back decomposed names
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % HASH_BUCKETS
    if bucket < validation_percent * HASH_BUCKETS / 100:
        return "validation"
    if bucket < (validation_percent + test_percent) * HASH_BUCKETS / 100:
        return "test"
    return "train"


def check_split_percents(validation_percent: float, test_percent: float) -> None:
    """Refuse percentages that would leave no training data (used by spec validators)."""
    if validation_percent + test_percent >= 100:
        raise ValueError("validation_percent + test_percent must stay below 100")


def sort_items(items: list[ImageItem], labels: tuple[str, ...]) -> tuple[ImageItem, ...]:
    """Items in the readers' stable order: split (``SPLITS`` order), label, path."""
    return tuple(
        sorted(items, key=lambda i: (SPLITS.index(i.split), labels.index(i.label), i.path))
    )


def _hash_split_path(path: Path, root: Path, spec: ImageFolderSpec) -> str:
    """Split from the path relative to the root with ``/`` separators, e.g.
    ``person/0001.jpg``, so that where the data set lives does not matter."""
    return hash_split(path.relative_to(root).as_posix(), spec.validation_percent, spec.test_percent)


def _split_folders(root: Path) -> list[str]:
    """The split folders present, in ``SPLITS`` order; [] for the class-folder layout.

    A root that mixes split folders with other folders is refused: whether ``test/`` is a
    split or a class named "test" would otherwise be a guess.
    """
    present = [s for s in SPLITS if (root / s).is_dir()]
    others = sorted(p.name for p in _folders(root) if p.name not in SPLITS)
    if present and others:
        raise ComponentError(
            f"{root} mixes split folders ({', '.join(present)}) with other folders "
            f"({', '.join(others)}); put every class folder inside a split folder"
        )
    return present


def _labels(
    spec: ImageFolderSpec, parents: list[Path]
) -> tuple[tuple[str, ...], dict[Path, list[tuple[str, Path]]]]:
    """The labels, and for each parent folder its (label, image path) pairs."""
    names = sorted({p.name for parent in parents for p in _folders(parent)})
    if not names:
        where = " or ".join(str(p) for p in parents)
        raise ComponentError(f"{where} has no class folders (expected e.g. person/, non_person/)")
    labels = tuple(spec.labels) if spec.labels is not None else tuple(names)
    unknown = [lb for lb in labels if lb not in names]
    if unknown:
        raise ComponentError(
            f"labels {unknown} name no folder in {' or '.join(str(p) for p in parents)} "
            f"(class folders found: {', '.join(names)})"
        )
    ignored = [n for n in names if n not in labels]
    if ignored:
        log.info("ignoring class folders not in labels: %s", ignored)
    found = {parent: _class_images(parent, labels) for parent in parents}
    return labels, found


def _class_images(parent: Path, labels: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(label, path) of every image in ``parent/<label>/``; an empty class folder is refused."""
    pairs = []
    for label in labels:
        folder = parent / label
        if not folder.is_dir():
            log.warning("%s is missing; no %s images in it", folder, label)
            continue
        images = _images(folder)
        if not images:
            raise ComponentError(
                f"class folder {folder} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))});"
                " an empty class cannot be trained or evaluated"
            )
        pairs += [(label, p) for p in images]
    return pairs


def _images(folder: Path) -> list[Path]:
    images = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and has_image_suffix(path):
            images.append(path)
        else:
            log.debug("ignoring %s: not an image file (by suffix) or a folder", path)
    return images


def _folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def counts(index: ImageIndex) -> dict[str, dict[str, int]]:
    """Images per split and label, labels in ``index.labels`` order (for logs and reports)."""
    tally = Counter((i.split, i.label) for i in index.items)
    return {s: {lb: tally[s, lb] for lb in index.labels} for s in SPLITS}


def _warn_empty_splits(root: Path, index: ImageIndex, spec: ImageFolderSpec) -> None:
    """A split the percentages ask for but the hash left empty (a very small folder)."""
    wanted = {"train": 100.0, "validation": spec.validation_percent, "test": spec.test_percent}
    empty = [s for s in SPLITS if wanted[s] > 0 and not index.split(s)]
    if empty:
        log.warning("image folder %s: the hash split left no images in %s", root, empty)
