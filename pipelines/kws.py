"""The keyword-spotting pipeline: clips -> MFCC or micro-frontend features -> the model chain.

Only wiring: the data front (generated clips or a Speech Commands folder, read into a clip
index, features extracted with Beam) hands an example set to ``pipelines.chain``. Generated
clips are kept by their generator's own cache key (``components.generated_set``); the
features are a cached stage keyed by the clips (their index, sizes and times) and the
``features`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from components.artifacts import ClipIndex, ExampleSet, SpeechDataset
from components.audio import extract_features, mix_sources, speech_commands, synth_speech
from pipelines import chain
from pipelines.config import KwsConfig

STAGES = ("data", "features", *chain.STAGES)  # what --force may name, in run order


def run(
    config: KwsConfig,
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
    return chain.run(config, examples, examples_key=stages.keys["features"], stages=stages,
                     tracking_uri=tracking_uri, progress=progress)  # fmt: skip


def data_front(
    config: KwsConfig,
    *,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
    stages: chain.Stages | None = None,
) -> ExampleSet:
    """Clips -> features: the example set the model chain (or a search) trains on, taken
    from the cache when unchanged (its key lands in ``stages.keys["features"]``)."""
    stages = stages or chain.Stages.open(config, STAGES, None)
    generated = config.work_dir / "data" / "synth" if config.data.source == "synth" else None
    index, data_key = stages.source(
        "data", lambda: _index(config, progress),
        _clip_files, generated=generated,
        complete=lambda: synth_speech.is_complete(generated, synth_speech.spec_hash(
            config.data.synth)),
    )  # fmt: skip
    examples, _ = stages.run("features", (data_key, config.features), lambda out: (
        extract_features.run(config.features, index, out, pipeline_args)
    ))  # fmt: skip
    return examples


def _index(config: KwsConfig, progress: bool) -> ClipIndex:
    """The clip index of the data source; a ``mix`` reads each source, then draws from
    each its weight's share of the training split."""
    data = config.data
    if data.source != "mix":
        return speech_commands.run(data.reader, _dataset(config, progress))
    datasets = [
        synth_speech.run(data.synth, config.work_dir / "data" / "synth", progress)
        if s.source == "synth" else SpeechDataset(root=Path(s.path))
        for s in data.mix
    ]  # fmt: skip
    return mix_sources.run(data.mix, datasets, data.reader, seed=data.reader.seed)


def _dataset(config: KwsConfig, progress: bool) -> SpeechDataset:
    if config.data.source == "synth":
        return synth_speech.run(config.data.synth, config.work_dir / "data" / "synth", progress)
    return SpeechDataset(root=Path(config.data.path))


def _clip_files(index: ClipIndex) -> list[str]:
    return [*(c.path for c in index.clips), *index.noise_files]
