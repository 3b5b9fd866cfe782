"""MLPerf Tiny's keyword-spotting test vectors, as the EEMBC EnergyRunner benchmark lays
them out: ``td_samples/tst_NNNNNN_<Label>_<k>.bin`` (16,000 little-endian int16 samples,
1 s at 16 kHz) and, beside them, ``mfcc/`` (same names: the int8 features MLPerf Tiny's
reference pipeline computed). The label is in the file name, ``k`` its index in the
reference model's outputs.

Read here once for the test that pins the ``mfcc`` front end to MLPerf Tiny's, and for the
KWS benchmark that reports a model's accuracy on these clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.artifacts import SILENCE_LABEL, UNKNOWN_LABEL
from components.errors import ComponentError

#: Output order of MLPerf Tiny's reference DS-CNN (``kws_ref_model.tflite``), in the
#: project's label names; the file names say ``Silence`` and ``Unknown``.
REFERENCE_LABELS = (
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", SILENCE_LABEL,
    UNKNOWN_LABEL,
)  # fmt: skip


@dataclass(frozen=True)
class TestVectors:
    """The clips (N, 16000) float32 in [-1, 1], each clip's reference output index, and
    MLPerf's int8 features (N, 49, 10) when the ``mfcc/`` folder is there."""

    paths: tuple[Path, ...]
    clips: np.ndarray
    reference_index: np.ndarray
    features: np.ndarray | None

    def labels(self) -> list[str]:
        """Each clip's label in the project's names (``_silence_``, ``_unknown_``, words)."""
        return [REFERENCE_LABELS[i] for i in self.reference_index]


def read(root: Path) -> TestVectors:
    """Every ``td_samples/*.bin`` clip under ``root``, in file-name order."""
    root = Path(root)
    paths = tuple(sorted((root / "td_samples").glob("*.bin")))
    if not paths:
        raise ComponentError(f"no td_samples/*.bin clips in {root}")
    clips = np.stack([_samples(p) for p in paths]).astype(np.float32) / 32768
    index = np.array([_reference_index(p) for p in paths])
    mfcc = root / "mfcc"
    features = None
    if mfcc.is_dir():
        features = np.stack([np.fromfile(mfcc / p.name, dtype=np.int8) for p in paths])
        features = features.reshape(len(paths), 49, 10)
    return TestVectors(paths, clips, index, features)


def _samples(path: Path) -> np.ndarray:
    samples = np.fromfile(path, dtype="<i2")
    if samples.size != 16000:
        raise ComponentError(f"{path}: {samples.size} samples; an MLPerf clip has 16000")
    return samples


def _reference_index(path: Path) -> int:
    """``tst_000000_Stop_7.bin`` -> 7, checked against the label's name."""
    parts = path.stem.split("_")
    if len(parts) != 4 or not parts[3].isdigit() or int(parts[3]) >= len(REFERENCE_LABELS):
        raise ComponentError(f"{path.name}: not an MLPerf test vector name tst_N_<Label>_<k>")
    index = int(parts[3])
    if REFERENCE_LABELS[index].strip("_") != parts[2].lower():
        raise ComponentError(f"{path.name}: label {parts[2]!r} is not output {index}")
    return index
