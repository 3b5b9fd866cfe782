"""The person-detection (Visual Wake Words) pipeline: images -> preprocessing -> the model chain.

Only wiring: the data front (generated scenes, an image folder or COCO annotations, read
into an image index, decoded and resized with Beam) hands an example set to
``pipelines.chain``. Generated scenes are kept by their generator's own cache key
(``components.generated_set``); the preprocessed images are a cached stage keyed by the
images (their index, sizes and times) and the ``images`` section.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.artifacts import ExampleSet, ImageIndex
from components.vision import coco, image_folder, preprocess_images, scenes
from pipelines import chain
from pipelines.config import VwwConfig

STAGES = ("data", "images", *chain.STAGES)  # what --force may name, in run order


def run(
    config: VwwConfig,
    *,
    tracking_uri: str | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
    force: str | None = None,
) -> chain.ChainResult:
    """Run every stage of ``config``, reusing the cached ones; returns even when the gate
    fails (see ``passed``). ``force``: None, ``chain.FORCE_ALL`` or a stage of
    :data:`STAGES` to recompute with every later one."""
    stages = chain.Stages.open(config, STAGES, force)
    examples = data_front(config, pipeline_args=pipeline_args, progress=progress, stages=stages)
    return chain.run(config, examples, examples_key=stages.keys["images"], stages=stages,
                     tracking_uri=tracking_uri, progress=progress)  # fmt: skip


def data_front(
    config: VwwConfig,
    *,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
    stages: chain.Stages | None = None,
) -> ExampleSet:
    """Images -> preprocessed examples: what the model chain (or a search) trains on, taken
    from the cache when unchanged (its key lands in ``stages.keys["images"]``)."""
    stages = stages or chain.Stages.open(config, STAGES, None)
    generated = config.work_dir / "data" / "scenes" if config.data.source == "synth" else None
    index, data_key = stages.source(
        "data", lambda: _index(config, progress), _image_files, generated=generated,
        complete=lambda: scenes.is_complete(generated, scenes.spec_hash(config.data.synth)),
    )  # fmt: skip
    examples, _ = stages.run("images", (data_key, config.images), lambda out: (
        preprocess_images.run(config.images, index, out, pipeline_args)
    ))  # fmt: skip
    return examples


def _index(config: VwwConfig, progress: bool) -> ImageIndex:
    data = config.data
    if data.source == "synth":
        root = scenes.run(data.synth, config.work_dir / "data" / "scenes", progress)
        return image_folder.run(data.folder, root)
    if data.source == "folder":
        return image_folder.run(data.folder, data.path)
    return coco.run(data.coco, data.annotations, data.path)


def _image_files(index: ImageIndex) -> list[str]:
    return [*(i.path for i in index.items), *(s.path for s in index.skipped)]
