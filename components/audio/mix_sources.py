"""Mix several keyword data sets into one clip index, with a weight per source.

For teams that have a few hundred real clips of their own: generated clips plus a real
folder (each in the Speech Commands layout, read by ``components.audio.speech_commands``),
where the real clips should count for more than their number. Called by the KWS pipeline
when ``data.source`` is ``mix``.

Weights set each source's share of the training split; the split keeps its total size (the
sum of the sources' training clips), so a run takes as long as without weights. A source
below its share has its clips repeated (a clip listed k times in the index is k times as
heavy: the feature extraction makes each repeat its own augmented copy), one above it is
subsampled by a seeded per-file hash. Validation and test splits are every source's own,
unweighted, so that each source's held-out clips are all measured.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import pydantic

from components.artifacts import SPLITS, Clip, ClipIndex, SpeechDataset
from components.audio import speech_commands
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class SourceSpec:
    """One source of a mix: generated clips (``synth``, as ``data.synth`` says) or a folder
    in the Speech Commands layout, and its weight (relative share of the training split)."""

    source: Literal["synth", "speech_commands"]
    path: Path | None = None
    weight: Annotated[float, pydantic.Field(gt=0)] = 1.0
    reader: speech_commands.ReaderSpec | None = None  # else data.reader

    def __post_init__(self) -> None:
        if self.source == "speech_commands":
            if self.path is None:
                raise ValueError("a 'speech_commands' source needs 'path' (a folder)")
            if not Path(self.path).is_dir():
                raise ValueError(f"source path '{self.path}' is not a folder")
        elif self.path is not None:
            raise ValueError("a 'synth' source takes no 'path' (it is generated from data.synth)")


def run(
    sources: Sequence[SourceSpec],
    datasets: Sequence[SpeechDataset],
    reader: speech_commands.ReaderSpec,
    seed: int = 0,
) -> ClipIndex:
    """Read each source's ``dataset`` (with its own reader spec, else ``reader``) and mix."""
    if not sources or len(sources) != len(datasets):
        raise ComponentError(f"a mix needs one data set per source, got {len(datasets)} for "
                             f"{len(sources)} sources")  # fmt: skip
    indexes = [
        speech_commands.run(s.reader or reader, d) for s, d in zip(sources, datasets, strict=True)
    ]
    return mix(indexes, [s.weight for s in sources], seed)


def mix(indexes: Sequence[ClipIndex], weights: Sequence[float], seed: int = 0) -> ClipIndex:
    """One index: training clips in shares ``weights`` of the summed training size, held-out
    splits whole, noise files of every source."""
    _check_labels(indexes)
    sizes = [len(index.split("train")) for index in indexes]
    if not all(sizes):
        empty = [i for i, n in enumerate(sizes) if not n]
        raise ComponentError(f"mix sources {empty} have no training clips to weight")
    targets = _targets(sizes, weights)
    clips = [c for index in indexes for c in index.clips if c.split != "train"]
    for index, target in zip(indexes, targets, strict=True):
        clips += _resized(index.split("train"), target, seed)
    log.info("mixed %d sources: training clips %s -> %s", len(indexes), sizes, targets)
    return ClipIndex(
        clips=tuple(sorted(clips, key=lambda c: (SPLITS.index(c.split), c.path, c.offset))),
        labels=indexes[0].labels,
        noise_files=tuple(dict.fromkeys(f for index in indexes for f in index.noise_files)),
    )


def _check_labels(indexes: Sequence[ClipIndex]) -> None:
    if not indexes:
        raise ComponentError("a mix needs at least one source")
    for i, index in enumerate(indexes[1:], start=1):
        if index.labels != indexes[0].labels:
            raise ComponentError(
                f"mix source {i} has labels {list(index.labels)}, source 0 has "
                f"{list(indexes[0].labels)}: every source must use the same keywords"
            )


def _targets(sizes: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Clips per source: shares ``weights`` of ``sum(sizes)``, rounded so they add up."""
    total, weight_sum = sum(sizes), sum(weights)
    exact = [total * w / weight_sum for w in weights]
    targets = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: targets[i] - exact[i])
    for i in by_remainder[: total - sum(targets)]:
        targets[i] += 1
    return [max(t, 1) for t in targets]


def _resized(clips: Sequence[Clip], target: int, seed: int) -> list[Clip]:
    """``target`` clips: every clip ``target // n`` times, then the rest by seeded hash."""
    ranked = sorted(clips, key=lambda c: _rank(seed, c))
    repeats, rest = divmod(target, len(ranked))
    return [*ranked * repeats, *ranked[:rest]]


def _rank(seed: int, clip: Clip) -> str:
    relative = f"{Path(clip.path).parent.name}/{Path(clip.path).name}#{clip.offset}"
    return hashlib.sha1(f"{seed}:mix:{relative}".encode()).hexdigest()
