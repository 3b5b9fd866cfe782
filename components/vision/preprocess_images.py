"""Image preprocessing as an Apache Beam pipeline: ``ImageIndex`` -> an example set.

The vision twin of ``components.audio.extract_features``, with the same runner handling,
pass-through options, dead-letter output and sharded TFRecords (``components.beam_stage``).
Each image is decoded and resized by ``components.vision.images.load_image`` (the function
the ``tflm`` flavor's ``predict`` also calls, so serving resizes exactly as training did)
and stored as uint8 pixels; readers get value / 255, the [0, 1] input MLPerf Tiny's VWW
reference uses. Corrupt, truncated, empty or non-image files are reported and skipped; the
run refuses above ``max_bad_fraction``. Augmentation happens later, per training batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import pydantic

from components import beam_stage
from components.artifacts import ExampleSet, ImageIndex, Preprocessing
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)
Side = Annotated[int, pydantic.Field(ge=8)]


@component_spec
class ImageSpec:
    """Model resolution and colour, runner and the share of bad files tolerated."""

    image_size: tuple[Side, Side] = (96, 96)  # (height, width)
    color: Literal["rgb", "grayscale"] = "rgb"
    runner: str = "DirectRunner"
    num_shards: Annotated[int, pydantic.Field(ge=1)] = 2
    max_bad_fraction: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.05

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1


def run(
    spec: ImageSpec, index: ImageIndex, out_dir: Path, pipeline_args: Sequence[str] = ()
) -> ExampleSet:
    """Decode and resize every image into sharded TFRecords per split."""
    if not index.items:
        raise ComponentError("the image index is empty: nothing to preprocess")
    out_dir = Path(out_dir)
    beam_stage.clear_outputs(out_dir)
    with beam_stage.progress(len(index.items), "images", "image") as run_id:
        beam_stage.run_pipeline(
            spec.runner, pipeline_args, lambda p: build(p, spec, index, out_dir, run_id),
            "image preprocessing",
        )  # fmt: skip
    skipped = (*index.skipped, *beam_stage.read_skipped(out_dir))
    total = len(index.items) + len(index.skipped)
    beam_stage.check_bad(skipped, total, spec.max_bad_fraction, "images")
    counts = beam_stage.split_counts(out_dir)
    log.info("wrote images to %s: %s examples per split", out_dir, counts)
    height, width = spec.image_size
    return ExampleSet(
        directory=out_dir,
        labels=index.labels,
        example_shape=(height, width, spec.channels),
        preprocessing=Preprocessing(
            kind="image", image_size=spec.image_size, channels=spec.channels
        ),
        counts=counts,
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        storage="uint8",
    )


def build(pipeline, spec: ImageSpec, index: ImageIndex, out_dir: Path, run_id: str = "") -> None:
    """Add the preprocessing transforms to ``pipeline`` (runner-agnostic)."""
    import apache_beam as beam

    from components.vision.image_transforms import DecodeImages

    decoded = (
        pipeline
        | "Images" >> beam.Create(index.items)
        | "Decode"
        >> beam.ParDo(
            DecodeImages(spec.image_size, spec.channels, index.labels, run_id)
        ).with_outputs(beam_stage.DEAD_LETTER, main="ok")
    )
    beam_stage.write_splits(decoded.ok, spec.num_shards, out_dir)
    beam_stage.write_dead_letters(decoded[beam_stage.DEAD_LETTER], out_dir)
