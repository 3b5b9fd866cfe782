"""Typed artifacts that flow between components.

An artifact is a frozen record of where a result lives (a path) plus the properties a
later component needs, so that components never pass string-keyed dicts to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_LABEL = "_unknown_"
SILENCE_LABEL = "_silence_"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SpeechDataset:
    """A folder in the Speech Commands layout: ``<word>/*.wav``, ``_background_noise_/``,
    and optionally ``validation_list.txt`` / ``testing_list.txt``."""

    root: Path


@dataclass(frozen=True)
class Clip:
    """One example: a WAV file (or a 1 s window of a noise file for silence) and its label."""

    path: str
    label: str
    split: str
    offset: int = 0  # first sample of the window, used for silence cut from noise files


@dataclass(frozen=True)
class SkippedClip:
    """A clip that could not be used, and why (corrupt, empty, wrong rate, ...)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ClipIndex:
    """Every clip of a data set with its 12-class label and split, in a stable order."""

    clips: tuple[Clip, ...]
    labels: tuple[str, ...]
    noise_files: tuple[str, ...] = ()

    def split(self, name: str) -> tuple[Clip, ...]:
        return tuple(c for c in self.clips if c.split == name)


@dataclass(frozen=True)
class FeatureSet:
    """Sharded TFRecords of (features, label) per split, written by the Beam extraction.

    Each record is a ``tf.train.Example`` with ``features`` (float32 list, row-major
    ``feature_shape``) and ``label`` (int64 index into ``labels``).
    """

    directory: Path
    labels: tuple[str, ...]
    feature_shape: tuple[int, int]
    frontend: str
    counts: Mapping[str, int]
    skipped: tuple[SkippedClip, ...] = ()

    def files(self, split: str) -> list[Path]:
        return sorted(self.directory.glob(f"{split}-*.tfrecord"))


@dataclass(frozen=True)
class TrainedModel:
    """A trained float Keras model saved as ``.keras`` and its per-epoch history."""

    path: Path
    labels: tuple[str, ...]
    input_shape: tuple[int, int]
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    params: int = 0


@dataclass(frozen=True)
class QuantizedModel:
    """A full-integer int8 ``.tflite`` (int8 input and output)."""

    path: Path
    labels: tuple[str, ...]
    input_shape: tuple[int, int]
    frontend: str

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation measured on the real TFLM runtime."""

    int8_accuracy: float
    float_accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    arena_head: int
    arena_tail: int
    arena_total: int
    arena_bisected: int
    flash_bytes: int
    macs: int
    host_latency_ms: float
    estimated_latency_ms: Mapping[str, float] = field(default_factory=dict)
    test_examples: int = 0


@dataclass(frozen=True)
class RuleResult:
    """One gate rule: its name, the measured value, the limit, the verdict and why."""

    name: str
    value: float | None
    limit: float | None
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    """Every rule checked for one device target, and whether all passed."""

    device: str
    rules: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)
