"""Feature extraction as an Apache Beam pipeline: ``ClipIndex`` -> sharded TFRecords.

Called by the KWS pipeline after the Speech Commands reader; training and evaluation read
the result back through ``components.feature_records``.
The same pipeline runs on any Beam runner, named explicitly in ``FeatureSpec.runner``
(DirectRunner by default, tests too).

Shape of the pipeline: clips -> decode (bad clips to a dead-letter output, written to
``skipped.jsonl``) -> optional augmented copies of training clips -> ``BatchElements`` ->
features computed per batch (vectorised TF ops) -> ``<split>-SSSSS-of-NNNNN.tfrecord``.
Each record is a ``tf.train.Example`` with ``features`` (float list, row-major
``feature_shape``), ``label`` (int64 index into the labels) and ``key`` (the clip and copy
it came from, so readers can order records independently of the runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import struct
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal

import apache_beam as beam
import numpy as np
import pydantic
from apache_beam.options.pipeline_options import PipelineOptions

from components.artifacts import SPLITS, Clip, ClipIndex, FeatureSet, SkippedClip
from components.audio import CLIP_SAMPLES, SAMPLE_RATE, load_clip, load_file
from components.errors import ComponentError
from components.features import compute_batch, feature_shape
from components.spec import component_spec

DEAD_LETTER = "dead_letter"
SKIPPED_FILE = "skipped.jsonl"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]

log = logging.getLogger(__name__)
_PROGRESS: dict[str, object] = {}  # run id -> tqdm bar, only in the process that started it


@component_spec
class FeatureSpec:
    """Front end, runner and augmentation of the feature extraction."""

    frontend: Literal["mfcc", "micro"] = "mfcc"
    runner: str = "DirectRunner"
    num_shards: Annotated[int, pydantic.Field(ge=1)] = 2
    augment_copies: Annotated[int, pydantic.Field(ge=0)] = 0
    background_volume: Fraction = 0.1
    background_frequency: Fraction = 0.8
    time_shift_ms: Annotated[int, pydantic.Field(ge=0, le=500)] = 100
    on_wrong_rate: Literal["resample", "skip"] = "resample"
    max_bad_fraction: Fraction = 0.05
    seed: int = 0


def run(
    spec: FeatureSpec, index: ClipIndex, out_dir: Path, pipeline_args: Sequence[str] = ()
) -> FeatureSet:
    """Extract features of every clip; refuses when more than ``max_bad_fraction`` are bad."""
    _check_index(index)
    out_dir = Path(out_dir)
    _clear_outputs(out_dir)
    expected = len(index.clips) + spec.augment_copies * len(index.split("train"))
    with _progress(expected, f"features ({spec.frontend})") as run_id:
        _run_pipeline(spec, index, out_dir, _options(spec, pipeline_args), run_id)
    skipped = _read_skipped(out_dir / SKIPPED_FILE)
    _check_bad(skipped, len(index.clips), spec.max_bad_fraction)
    counts = {s: sum(map(_count_records, out_dir.glob(f"{s}-*.tfrecord"))) for s in SPLITS}
    log.info("wrote features to %s: %s examples per split", out_dir, counts)
    return FeatureSet(
        directory=out_dir,
        labels=index.labels,
        feature_shape=feature_shape(spec.frontend),
        frontend=spec.frontend,
        counts=counts,
        skipped=skipped,
    )


def build(pipeline, spec: FeatureSpec, index: ClipIndex, out_dir: Path, run_id: str = "") -> None:
    """Add the extraction transforms to ``pipeline`` (runner-agnostic)."""
    decoded = (
        pipeline
        | "Clips" >> beam.Create(index.clips)
        | "Decode"
        >> beam.ParDo(DecodeClips(spec, index, run_id)).with_outputs(DEAD_LETTER, main="ok")
    )
    examples = (
        decoded.ok
        | "Batch" >> beam.BatchElements(min_batch_size=8, max_batch_size=64)
        | "Features" >> beam.ParDo(ComputeFeatures(spec.frontend, run_id))
    )
    _write_splits(examples, spec.num_shards, out_dir)
    _ = (
        decoded[DEAD_LETTER]
        | "DeadLetterJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(str(out_dir / SKIPPED_FILE), shard_name_template="")
    )


def _write_splits(examples, num_shards: int, out_dir: Path) -> None:
    """``(split, record)`` pairs to ``<split>-SSSSS-of-NNNNN.tfrecord``, every split written."""
    parts = examples | "BySplit" >> beam.Partition(lambda e, _: SPLITS.index(e[0]), len(SPLITS))
    for split, part in zip(SPLITS, parts, strict=True):
        _ = (
            part
            | f"Records_{split}" >> beam.Map(lambda e: e[1])
            | f"Write_{split}"
            >> beam.io.WriteToTFRecord(
                str(out_dir / split),
                file_name_suffix=".tfrecord",
                num_shards=num_shards,
                shard_name_template=SHARD_TEMPLATE,
            )
        )


def augment(
    audio: np.ndarray, noises: Sequence[np.ndarray], spec: FeatureSpec, rng: np.random.Generator
) -> np.ndarray:
    """Speech Commands-style augmentation: random time shift, then background noise mixed
    in at a random volume with probability ``background_frequency``."""
    limit = spec.time_shift_ms * SAMPLE_RATE // 1000
    shift = int(rng.integers(-limit, limit + 1))
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    if shift >= 0:
        out[shift:] = audio[: CLIP_SAMPLES - shift]
    else:
        out[:shift] = audio[-shift:]
    if noises and rng.random() < spec.background_frequency:
        noise = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(len(noise) - CLIP_SAMPLES + 1))
        out += rng.uniform(0, spec.background_volume) * noise[start : start + CLIP_SAMPLES]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def clip_key(clip: Clip, copy: int = 0) -> str:
    """Location-independent id of a clip (and augmented copy): ``word/file.wav#offset@copy``."""
    path = Path(clip.path)
    return f"{path.parent.name}/{path.name}#{clip.offset}@{copy}"


def clip_rng(seed: int, clip: Clip, copy: int) -> np.random.Generator:
    """Random generator of one augmented copy, the same on every run and runner."""
    digest = hashlib.sha1(f"{seed}:{clip_key(clip, copy)}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class DecodeClips(beam.DoFn):
    """Decode each clip to 16 kHz audio; failures go to the dead-letter output.

    Emits ``(split, label_index, key, audio)`` for the clip and, for training clips, for
    each of ``augment_copies`` augmented copies. Noise files load once, in ``setup``.
    """

    def __init__(self, spec: FeatureSpec, index: ClipIndex, run_id: str = "") -> None:
        self._spec = spec
        self._run_id = run_id
        self._labels = index.labels
        self._noise_files = index.noise_files
        self._noises: list[np.ndarray] = []

    def setup(self) -> None:
        if self._spec.augment_copies and self._spec.background_frequency > 0:
            self._noises = _load_noises(self._noise_files)

    def process(self, clip: Clip) -> Iterator:
        copies = self._spec.augment_copies if clip.split == "train" else 0
        try:
            audio = load_clip(clip.path, offset=clip.offset, on_wrong_rate=self._spec.on_wrong_rate)
        except ComponentError as e:
            _advance(self._run_id, 1 + copies)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, _dead_letter(clip, e))
            return
        label = self._labels.index(clip.label)
        yield clip.split, label, clip_key(clip), audio
        for copy in range(1, copies + 1):
            noisy = augment(audio, self._noises, self._spec, clip_rng(self._spec.seed, clip, copy))
            yield clip.split, label, clip_key(clip, copy), noisy


class ComputeFeatures(beam.DoFn):
    """Features of a batch of decoded clips in one vectorised call, as serialized Examples."""

    def __init__(self, frontend: str, run_id: str = "") -> None:
        self._frontend = frontend
        self._run_id = run_id

    def setup(self) -> None:
        # Import TensorFlow and build the front end's constants once per worker.
        compute_batch(self._frontend, np.zeros((1, CLIP_SAMPLES), dtype=np.float32))

    def process(self, batch: list[tuple]) -> Iterator[tuple[str, bytes]]:
        features = compute_batch(self._frontend, np.stack([e[3] for e in batch]))
        for (split, label, key, _), values in zip(batch, features, strict=True):
            yield split, serialize_example(values, label, key)
        _advance(self._run_id, len(batch))


def serialize_example(values: np.ndarray, label: int, key: str) -> bytes:
    """One record: ``features`` (flattened float32), ``label`` (int64), ``key`` (bytes)."""
    import tensorflow as tf

    feature = {
        "features": tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _check_index(index: ClipIndex) -> None:
    if not index.clips:
        raise ComponentError("the clip index is empty: nothing to extract features from")
    unknown = sorted({c.label for c in index.clips} - set(index.labels))
    if unknown:
        raise ComponentError(f"clip labels {unknown} are not in the index labels {index.labels}")


def _run_pipeline(spec, index, out_dir, options, run_id) -> None:
    try:
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, spec, index, out_dir, run_id)
    except ComponentError:
        raise
    except Exception as e:  # a runner failure of any kind: name the runner and the cause
        raise ComponentError(f"feature extraction failed on runner {spec.runner}: {e}") from e


def _options(spec: FeatureSpec, pipeline_args: Sequence[str]) -> PipelineOptions:
    """Beam options: ``--runner`` from the spec, everything else passed through."""
    if any(a == "--runner" or a.startswith("--runner=") for a in pipeline_args):
        raise ComponentError(
            f"pipeline_args {list(pipeline_args)} set --runner; set FeatureSpec.runner instead"
        )
    return PipelineOptions([f"--runner={spec.runner}", *pipeline_args])


def _load_noises(paths: Sequence[str]) -> list[np.ndarray]:
    noises = []
    for path in paths:
        try:
            audio = load_file(path)
        except ComponentError as e:
            log.warning("augmentation skips background noise file: %s", e)
            continue
        if len(audio) >= CLIP_SAMPLES:
            noises.append(audio)
    return noises


def _dead_letter(clip: Clip, error: ComponentError) -> dict:
    return {
        "path": clip.path,
        "offset": clip.offset,
        "label": clip.label,
        "split": clip.split,
        "reason": str(error),
    }


def _read_skipped(path: Path) -> tuple[SkippedClip, ...]:
    if not path.is_file():
        return ()
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return tuple(sorted((SkippedClip(r["path"], r["reason"]) for r in rows), key=lambda s: s.path))


def _check_bad(skipped: tuple[SkippedClip, ...], total: int, max_fraction: float) -> None:
    """Warn about every skipped clip; refuse when too many of them are bad."""
    if not skipped:
        return
    names = ", ".join(Path(s.path).name for s in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    log.warning("skipped %d of %d clips: %s%s", len(skipped), total, names, more)
    if len(skipped) / total > max_fraction:
        raise ComponentError(
            f"{len(skipped)} of {total} clips could not be decoded "
            f"({len(skipped) / total:.1%} > max_bad_fraction {max_fraction:.1%}), e.g. "
            + "; ".join(s.reason for s in skipped[:3])
        )


def _count_records(path: Path) -> int:
    """Records in a TFRecord file, read from its framing (length, crc, data, crc)."""
    count = 0
    with path.open("rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            f.seek(length + 4, 1)
            count += 1
    return count


def _clear_outputs(out_dir: Path) -> None:
    """Remove a previous run's shards so a changed shard count cannot mix old and new."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for f in out_dir.glob(f"{split}-*.tfrecord"):
            f.unlink()
    (out_dir / SKIPPED_FILE).unlink(missing_ok=True)


def _advance(run_id: str, n: int) -> None:
    bar = _PROGRESS.get(run_id)
    if bar is not None:
        bar.update(n)


@contextlib.contextmanager
def _progress(total: int, desc: str) -> Iterator[str]:
    """A tqdm bar that in-process DoFns update; remote workers simply find no bar."""
    from tqdm.auto import tqdm

    run_id = uuid.uuid4().hex
    _PROGRESS[run_id] = tqdm(total=total, desc=desc, unit="clip", disable=None, leave=False)
    try:
        yield run_id
    finally:
        _PROGRESS.pop(run_id).close()
