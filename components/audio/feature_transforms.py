"""The Beam transforms of the audio feature extraction: decode and augment clips, compute
features per batch. Kept apart from ``extract_features`` (the spec and the driver) so that
validating a config never imports Apache Beam.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import TaggedOutput

from components import beam_stage
from components.artifacts import Clip, ClipIndex
from components.audio import augment as effects
from components.audio.extract_features import copies_of
from components.audio.frontends import compute_batch, peak_normalise
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE, load_clip, load_file
from components.errors import ComponentError
from components.example_records import serialize_example

if TYPE_CHECKING:
    from components.audio.extract_features import FeatureSpec

log = logging.getLogger(__name__)


def augment(
    audio: np.ndarray, noises: Sequence[np.ndarray], spec: FeatureSpec, rng: np.random.Generator
) -> np.ndarray:
    """One augmented copy of a training clip: the room and microphone effects of
    ``spec.augment`` (``components.audio.augment``), a random time shift, then background
    noise with probability ``background_frequency``, at a random SNR (``augment.noise_snr_db``)
    or volume. For ``mfcc`` the clip is first scaled to a peak of 1, as MLPerf Tiny's
    pipeline does before it adds noise, so the noise volume means the same signal-to-noise
    ratio whatever the recording's level."""
    if spec.frontend == "mfcc":
        audio = peak_normalise(audio)
    audio = effects.apply_effects(audio, spec.augment, rng)
    limit = spec.time_shift_ms * SAMPLE_RATE // 1000
    out = effects.time_shift(audio, int(rng.integers(-limit, limit + 1)))
    if noises and rng.random() < spec.background_frequency:
        noise = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(len(noise) - CLIP_SAMPLES + 1))
        window = noise[start : start + CLIP_SAMPLES]
        if spec.augment.noise_snr_db is not None:
            out = effects.add_noise(out, window, rng.uniform(*spec.augment.noise_snr_db))
        else:
            out = effects.mix_noise(out, window, rng.uniform(0, spec.background_volume))
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

    Takes ``(clip, times listed in the index)``; emits ``(split, label_index, key, audio)``
    for the clip and, for training clips, for each of its augmented copies
    (``extract_features.copies_of``). Noise files load once, in ``setup``.
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

    def process(self, weighted: tuple[Clip, int]) -> Iterator:
        clip, repeats = weighted
        copies = copies_of(clip, repeats, self._spec)
        try:
            audio = load_clip(clip.path, offset=clip.offset, on_wrong_rate=self._spec.on_wrong_rate)
        except ComponentError as e:
            beam_stage.advance(self._run_id, 1 + copies)
            yield TaggedOutput(beam_stage.DEAD_LETTER, _dead_letter(clip, e))
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
        beam_stage.advance(self._run_id, len(batch))


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
