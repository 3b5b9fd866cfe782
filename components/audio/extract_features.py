"""Feature extraction as an Apache Beam pipeline: ``ClipIndex`` -> an example set.

Called by the KWS pipeline after the Speech Commands reader; training and evaluation read
the result back through ``components.example_records``.
The same pipeline runs on any Beam runner, named explicitly in ``FeatureSpec.runner``
(DirectRunner by default, tests too).

Shape of the pipeline: clips -> decode (bad clips to a dead-letter output, written to
``skipped.jsonl``) -> optional augmented copies of training clips (``components.audio.augment``;
more of a clip the index lists several times, as a weighted mix of sources does) ->
``BatchElements`` -> features computed per batch (vectorised TF ops) ->
``<split>-SSSSS-of-NNNNN.tfrecord``
(layout in ``components.example_records``; each record's ``key`` names the clip and copy it
came from, so readers can order records independently of the runner).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import pydantic

from components import beam_stage
from components.artifacts import Clip, ClipIndex, ExampleSet, Preprocessing
from components.audio.augment import WaveAugmentSpec
from components.audio.frontends import feature_shape
from components.errors import ComponentError
from components.spec import component_spec

Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]

log = logging.getLogger(__name__)


@component_spec
class FeatureSpec:
    """Front end, runner and augmentation of the feature extraction.

    Each training clip gets ``augment_copies`` augmented copies: the room and microphone
    effects of ``augment``, then a time shift of up to ``time_shift_ms`` and, with
    probability ``background_frequency``, background noise (at ``augment.noise_snr_db``
    when set, else scaled by up to ``background_volume`` as Speech Commands and MLPerf Tiny
    do). Validation and test clips are never augmented.
    """

    frontend: Literal["mfcc", "micro"] = "mfcc"
    runner: str = "DirectRunner"
    num_shards: Annotated[int, pydantic.Field(ge=1)] = 2
    augment_copies: Annotated[int, pydantic.Field(ge=0)] = 0
    background_volume: Fraction = 0.1
    background_frequency: Fraction = 0.8
    time_shift_ms: Annotated[int, pydantic.Field(ge=0, le=500)] = 100
    augment: WaveAugmentSpec = WaveAugmentSpec()
    on_wrong_rate: Literal["resample", "skip"] = "resample"
    max_bad_fraction: Fraction = 0.05
    seed: int = 0


def example_shape(frontend: str) -> tuple[int, int, int]:
    """The model's input for ``frontend``: (frames, coefficients, 1 channel)."""
    return (*feature_shape(frontend), 1)


def run(
    spec: FeatureSpec, index: ClipIndex, out_dir: Path, pipeline_args: Sequence[str] = ()
) -> ExampleSet:
    """Extract features of every clip; refuses when more than ``max_bad_fraction`` are bad."""
    _check_index(index)
    out_dir = Path(out_dir)
    beam_stage.clear_outputs(out_dir)
    weighted = weighted_clips(index)
    expected = sum(1 + copies_of(clip, repeats, spec) for clip, repeats in weighted)
    with beam_stage.progress(expected, f"features ({spec.frontend})", "clip") as run_id:
        beam_stage.run_pipeline(
            spec.runner,
            pipeline_args,
            lambda p: build(p, spec, index, out_dir, run_id, weighted),
            "feature extraction",
        )
    skipped = beam_stage.read_skipped(out_dir)
    beam_stage.check_bad(skipped, len(weighted), spec.max_bad_fraction, "clips")
    counts = beam_stage.split_counts(out_dir)
    log.info("wrote features to %s: %s examples per split", out_dir, counts)
    return ExampleSet(
        directory=out_dir,
        labels=index.labels,
        example_shape=example_shape(spec.frontend),
        preprocessing=Preprocessing(kind="audio", frontend=spec.frontend),
        counts=counts,
        skipped=skipped,
    )


def build(
    pipeline,
    spec: FeatureSpec,
    index: ClipIndex,
    out_dir: Path,
    run_id: str = "",
    weighted: Sequence[tuple[Clip, int]] | None = None,
) -> None:
    """Add the extraction transforms to ``pipeline`` (runner-agnostic)."""
    import apache_beam as beam

    from components.audio.feature_transforms import ComputeFeatures, DecodeClips

    decoded = (
        pipeline
        | "Clips" >> beam.Create(weighted or weighted_clips(index))
        | "Decode"
        >> beam.ParDo(DecodeClips(spec, index, run_id)).with_outputs(
            beam_stage.DEAD_LETTER, main="ok"
        )
    )
    examples = (
        decoded.ok
        | "Batch" >> beam.BatchElements(min_batch_size=8, max_batch_size=64)
        | "Features" >> beam.ParDo(ComputeFeatures(spec.frontend, run_id))
    )
    beam_stage.write_splits(examples, spec.num_shards, out_dir)
    beam_stage.write_dead_letters(decoded[beam_stage.DEAD_LETTER], out_dir)


def weighted_clips(index: ClipIndex) -> list[tuple[Clip, int]]:
    """Each distinct clip with the number of times the index lists it (a mix of sources
    repeats the clips of a source it weights up), in index order."""
    return list(Counter(index.clips).items())


def copies_of(clip: Clip, repeats: int, spec: FeatureSpec) -> int:
    """Augmented copies made of ``clip``: ``augment_copies`` per listing of a training clip
    and one more for each repeat beyond the first (a repeat is never an identical copy);
    none of a validation or test clip."""
    if clip.split != "train":
        return 0
    return repeats * (1 + spec.augment_copies) - 1


def _check_index(index: ClipIndex) -> None:
    if not index.clips:
        raise ComponentError("the clip index is empty: nothing to extract features from")
    unknown = sorted({c.label for c in index.clips} - set(index.labels))
    if unknown:
        raise ComponentError(f"clip labels {unknown} are not in the index labels {index.labels}")
