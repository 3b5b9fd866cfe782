"""The person-detection (Visual Wake Words) pipeline: images -> preprocessing -> the model chain.

Only wiring: the data front (generated scenes, an image folder or COCO annotations, read
into an image index, decoded and resized with Beam) hands an example set to
``pipelines.chain``.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.artifacts import ImageIndex
from components.vision import coco, image_folder, preprocess_images, scenes
from pipelines import chain
from pipelines.config import VwwConfig


def run(
    config: VwwConfig,
    *,
    tracking_uri: str | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
) -> chain.ChainResult:
    """Run every stage of ``config``; returns even when the gate fails (see ``passed``)."""
    timings: dict[str, float] = {}
    with chain.timed(timings, "data"):
        index = _index(config, progress)
    with chain.timed(timings, "images"):
        examples = preprocess_images.run(
            config.images, index, config.work_dir / "images", pipeline_args
        )
    return chain.run(
        config, examples, tracking_uri=tracking_uri, timings=timings, progress=progress
    )


def _index(config: VwwConfig, progress: bool) -> ImageIndex:
    data = config.data
    if data.source == "synth":
        root = scenes.run(data.synth, config.work_dir / "data" / "scenes", progress)
        return image_folder.run(data.folder, root)
    if data.source == "folder":
        return image_folder.run(data.folder, data.path)
    return coco.run(data.coco, data.annotations, data.path)
