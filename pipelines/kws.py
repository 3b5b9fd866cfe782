"""The keyword-spotting pipeline: clips -> MFCC or micro-frontend features -> the model chain.

Only wiring: the data front (generated clips or a Speech Commands folder, read into a clip
index, features extracted with Beam) hands an example set to ``pipelines.chain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from components.artifacts import SpeechDataset
from components.audio import extract_features, speech_commands, synth_speech
from pipelines import chain
from pipelines.config import KwsConfig


def run(
    config: KwsConfig,
    *,
    tracking_uri: str | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
) -> chain.ChainResult:
    """Run every stage of ``config``; returns even when the gate fails (see ``passed``)."""
    timings: dict[str, float] = {}
    with chain.timed(timings, "data"):
        index = speech_commands.run(config.data.reader, _dataset(config, progress))
    with chain.timed(timings, "features"):
        examples = extract_features.run(
            config.features, index, config.work_dir / "features", pipeline_args
        )
    return chain.run(
        config, examples, tracking_uri=tracking_uri, timings=timings, progress=progress
    )


def _dataset(config: KwsConfig, progress: bool) -> SpeechDataset:
    if config.data.source == "synth":
        return synth_speech.run(config.data.synth, config.work_dir / "data" / "synth", progress)
    return SpeechDataset(root=Path(config.data.path))
