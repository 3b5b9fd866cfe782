"""The Beam transform of the image preprocessing: decode, resize and serialize each image.
Kept apart from ``preprocess_images`` (the spec and driver) so that validating a config
never imports Apache Beam."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from components import beam_stage
from components.artifacts import ImageItem
from components.errors import ComponentError
from components.example_records import serialize_example
from components.vision.images import load_image


def image_key(item: ImageItem) -> str:
    """Location-independent id of an image: ``label/file``."""
    path = Path(item.path)
    return f"{path.parent.name}/{path.name}"


class DecodeImages(beam.DoFn):
    """``(split, record)`` for each decodable image; failures go to the dead-letter output."""

    def __init__(
        self, size: tuple[int, int], channels: int, labels: tuple[str, ...], run_id: str = ""
    ) -> None:
        self._size = tuple(size)
        self._channels = channels
        self._labels = labels
        self._run_id = run_id

    def process(self, item: ImageItem) -> Iterator:
        beam_stage.advance(self._run_id, 1)
        try:
            pixels = load_image(item.path, self._size, self._channels)
        except ComponentError as e:
            dead = {"path": item.path, "label": item.label, "split": item.split, "reason": str(e)}
            yield TaggedOutput(beam_stage.DEAD_LETTER, dead)
            return
        label = self._labels.index(item.label)
        yield item.split, serialize_example(pixels, label, image_key(item))
