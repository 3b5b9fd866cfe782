"""Typed artifacts that flow between components.

An artifact is a frozen record of where a result lives (a path) plus the properties a
later component needs, so that components never pass string-keyed dicts to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
class SkippedItem:
    """An input file (clip, image, annotation) that could not be used, and why (corrupt,
    empty, wrong rate, not an image, ...)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageItem:
    """One image file and its class label and split."""

    path: str
    label: str
    split: str


@dataclass(frozen=True)
class ImageIndex:
    """Every image of a data set with its label and split, in a stable order; ``skipped``
    holds what the reader already refused (e.g. annotations naming a missing file)."""

    items: tuple[ImageItem, ...]
    labels: tuple[str, ...]
    skipped: tuple[SkippedItem, ...] = ()

    def split(self, name: str) -> tuple[ImageItem, ...]:
        return tuple(i for i in self.items if i.split == name)


@dataclass(frozen=True)
class ClipIndex:
    """Every clip of a data set with its 12-class label and split, in a stable order."""

    clips: tuple[Clip, ...]
    labels: tuple[str, ...]
    noise_files: tuple[str, ...] = ()

    def split(self, name: str) -> tuple[Clip, ...]:
        return tuple(c for c in self.clips if c.split == name)


@dataclass(frozen=True)
class Preprocessing:
    """What turns a raw input (a clip, an image) into the model's input, as the firmware
    must reproduce it. ``kind`` is ``audio`` (``frontend`` names the front end) or ``image``
    (``image_size`` is (height, width), ``channels`` 3 for RGB or 1 for grayscale, pixels
    scaled to [0, 1])."""

    kind: str
    frontend: str | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None

    def describe(self) -> dict[str, object]:
        """A JSON-ready record of every field that is set."""
        fields_set = {
            "kind": self.kind,
            "frontend": self.frontend,
            "image_size": list(self.image_size) if self.image_size else None,
            "channels": self.channels,
        }
        return {k: v for k, v in fields_set.items() if v is not None}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Preprocessing:
        size = record.get("image_size")
        return cls(
            kind=str(record["kind"]),
            frontend=record.get("frontend"),  # type: ignore[arg-type]
            image_size=tuple(size) if size else None,  # type: ignore[arg-type]
            channels=record.get("channels"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ExampleSet:
    """Sharded TFRecords of (example, label) per split, written by a Beam preprocessing.

    Each record is a ``tf.train.Example`` with ``label`` (int64 index into ``labels``),
    ``key`` (where it came from) and the example, row-major ``example_shape`` (any rank,
    channels last, exactly the model's input without the batch axis): ``features`` as a
    float32 list when ``storage`` is ``float32``, or ``pixels`` as raw bytes when it is
    ``uint8`` (read back as value / 255).
    """

    directory: Path
    labels: tuple[str, ...]
    example_shape: tuple[int, ...]
    preprocessing: Preprocessing
    counts: Mapping[str, int]
    skipped: tuple[SkippedItem, ...] = ()
    storage: str = "float32"

    def files(self, split: str) -> list[Path]:
        return sorted(self.directory.glob(f"{split}-*.tfrecord"))


@dataclass(frozen=True)
class TrainedModel:
    """A trained float Keras model saved as ``.keras`` and its per-epoch history."""

    path: Path
    labels: tuple[str, ...]
    input_shape: tuple[int, ...]
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    params: int = 0


@dataclass(frozen=True)
class QuantizedModel:
    """A full-integer int8 ``.tflite`` (int8 input and output)."""

    path: Path
    labels: tuple[str, ...]
    input_shape: tuple[int, ...]
    preprocessing: Preprocessing

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation measured on the real TFLM runtime."""

    int8_accuracy: float
    float_accuracy: float | None  # None: no float model (a model the user brought)
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

    def scalars(self) -> dict[str, float]:
        """Every single-valued figure, by field name (what MLflow logs as metrics)."""
        return {
            f.name: float(value)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), (int, float))
        }

    def record(self) -> dict[str, object]:
        """Every field as JSON-ready values (mappings may be read-only proxies)."""
        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v
            for f in fields(self)
        }


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
