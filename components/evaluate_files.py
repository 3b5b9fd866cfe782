"""Evaluate any int8 classification .tflite on a folder of real inputs: a model the user
brings, not only the project's own.

Called by ``tflm-pipelines evaluate``. The folder is an image folder (one folder per class,
``components.vision.image_folder``) or a Speech Commands folder (``components.audio.
speech_commands``); which one, and the preprocessing, follow from the files and the model's
input: (1, H, W, C) takes images resized to HxW (C = 3 RGB, 1 grayscale), (1, 49, 10, 1)
MFCCs and (1, 98, 40, 1) micro-frontend features. Each input is prepared exactly as the
``tflm`` flavor prepares it (``components.preprocessing``); one that cannot be read is
reported and skipped. ``labels`` names the model's outputs in order (default: the class
folders sorted, or the project's 12-class order for Speech Commands).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components import evaluate, preprocessing
from components.artifacts import Evaluation, Preprocessing, SkippedItem
from components.device import DeviceSpec
from components.errors import ComponentError

log = logging.getLogger(__name__)

FRONTEND_BY_SHAPE = {(49, 10, 1): "mfcc", (98, 40, 1): "micro"}


@dataclass(frozen=True)
class FolderEvaluation:
    """The evaluation, the preprocessing it used and the inputs it had to skip."""

    evaluation: Evaluation
    preprocessing: Preprocessing
    skipped: tuple[SkippedItem, ...]

    def report(self) -> dict[str, object]:
        """The JSON report: ``accuracy``, ``examples``, ``arena_total``, ``flash_bytes`` and
        every other figure."""
        ev = self.evaluation
        return {
            "accuracy": ev.int8_accuracy,
            "examples": ev.test_examples,
            **{k: v for k, v in ev.record().items() if k != "float_accuracy"},
            "preprocessing": self.preprocessing.describe(),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def run(
    model_path: Path,
    data_dir: Path,
    labels: Sequence[str] | None = None,
    devices: Sequence[DeviceSpec] = (),
    progress: bool = True,
) -> FolderEvaluation:
    """Accuracy, confusion, arena, flash, MACs and latency of ``model_path`` on ``data_dir``."""
    model_bytes = _read_model(model_path)
    prep, classes = _model_io(model_bytes, model_path)
    if labels:
        _check_label_count(labels, classes, model_path)
    items, truth, labels = _inputs(prep, Path(data_dir), labels)
    _check_label_count(labels, classes, model_path)
    _check_classes(labels, truth)
    x, kept, skipped = _prepare(prep, items, truth, progress)
    if not kept:
        raise ComponentError(f"no input in {data_dir} could be read ({len(skipped)} skipped)")
    y = np.array([labels.index(name) for name in kept], dtype=np.int64)
    evaluation = evaluate.measure(model_bytes, x, y, labels, devices, progress)
    log.info("%s on %s: accuracy %.4f over %d inputs", model_path, data_dir,
             evaluation.int8_accuracy, len(y))  # fmt: skip
    return FolderEvaluation(evaluation, prep, skipped)


def _read_model(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ComponentError(f"cannot read model {path}: {e}") from e


def _model_io(model_bytes: bytes, path: Path) -> tuple[Preprocessing, int]:
    """The preprocessing the model's input asks for, and its number of outputs."""
    import tflm_ext
    from tflm_ext.inference import output_details

    try:
        details = tflm_ext.run_isolated(tflm_ext.input_details, model_bytes)
        output = tflm_ext.run_isolated(output_details, model_bytes)
    except tflm_ext.TflmExtError as e:
        raise ComponentError(f"TFLM cannot build an interpreter for {path}: {e}") from e
    return _preprocessing(details, path), int(output.shape[-1])


def _preprocessing(details, path: Path) -> Preprocessing:
    """Audio front end or image size and colour, from the input's shape."""
    shape = tuple(details.shape[1:])
    if details.dtype not in (np.int8, np.uint8) or details.shape[:1] != (1,):
        raise ComponentError(f"{path}: input {details.shape} {details.dtype}; expected an int8 "
                             "model with a batch of 1")  # fmt: skip
    if shape in FRONTEND_BY_SHAPE:
        return Preprocessing(kind="audio", frontend=FRONTEND_BY_SHAPE[shape])
    if len(shape) == 3 and shape[2] in (1, 3):
        return Preprocessing(kind="image", image_size=shape[:2], channels=shape[2])
    raise ComponentError(
        f"{path}: input shape {details.shape} is neither an image (1, H, W, 1 or 3) nor a "
        f"known audio front end {sorted(FRONTEND_BY_SHAPE)}"
    )


def _inputs(prep: Preprocessing, root: Path, labels: Sequence[str] | None):
    """(paths or (path, offset) pairs, label names, output labels) of every input."""
    if prep.kind == "image":
        from components.vision import image_folder

        spec = image_folder.ImageFolderSpec(labels=tuple(labels) if labels else None)
        index = image_folder.run(spec, root)
        names = tuple(labels) if labels else index.labels
        return [i.path for i in index.items], [i.label for i in index.items], names
    from components.artifacts import SpeechDataset
    from components.audio import speech_commands

    index = speech_commands.run(speech_commands.ReaderSpec(), SpeechDataset(root))
    names = tuple(labels) if labels else index.labels
    return [(c.path, c.offset) for c in index.clips], [c.label for c in index.clips], names


def _check_label_count(labels: Sequence[str], classes: int, path: Path) -> None:
    if len(labels) != classes:
        raise ComponentError(
            f"{path} has {classes} outputs but {len(labels)} labels {list(labels)}; pass "
            "--labels with one name per output, in output order"
        )


def _check_classes(labels: Sequence[str], truth: Sequence[str]) -> None:
    unknown = sorted(set(truth) - set(labels))
    if unknown:
        raise ComponentError(f"the data has classes {unknown} that are not among the labels "
                             f"{list(labels)}")  # fmt: skip


def _prepare(prep: Preprocessing, items, truth, progress: bool):
    """Prepared inputs and label indices, skipping (and reporting) what cannot be read."""
    from tqdm.auto import tqdm

    from components.audio.wav import load_clip

    rows, kept, skipped = [], [], []
    for item, label in tqdm(list(zip(items, truth, strict=True)), desc="inputs",
                            disable=not progress, leave=False):  # fmt: skip
        path = item[0] if isinstance(item, tuple) else item
        try:
            raw = load_clip(item[0], offset=item[1]) if isinstance(item, tuple) else item
            rows.append(preprocessing.prepare(prep, [raw])[0])
            kept.append(label)
        except ComponentError as e:
            skipped.append(SkippedItem(str(path), str(e)))
    if skipped:
        log.warning("skipped %d unreadable inputs, e.g. %s", len(skipped), skipped[0].path)
    shape = preprocessing.example_shape(prep)
    x = np.stack(rows) if rows else np.zeros((0, *shape), np.float32)
    return x, kept, tuple(skipped)
