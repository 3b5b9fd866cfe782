"""Evaluate component: measure an int8 candidate on the real TFLM runtime.

Called by the model chain (``run``, on the example set's test split) and by
``tflm-pipelines evaluate`` (``measure``, through ``components.evaluate_files`` for a model
the user brings). Accuracy and host latency come from the tflite-micro wheel's interpreter,
run in a child process (``tflm_ext.run_isolated``) because TFLM aborts the process on a
model it cannot handle; the float model's accuracy is measured beside it for reference.
Arena bytes are TFLM's own figures, flash is the flatbuffer's size, MACs come from the graph.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from components.artifacts import Evaluation, ExampleSet, QuantizedModel, TrainedModel
from components.device import DeviceSpec, estimate_latency_ms
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class EvaluateSpec:
    """How much of the test split to run (None: all of it)."""

    max_examples: Annotated[int, Field(gt=0)] | None = None


def run(
    spec: EvaluateSpec,
    quantized: QuantizedModel,
    trained: TrainedModel,
    examples: ExampleSet,
    devices: Sequence[DeviceSpec] = (),
    progress: bool = True,
) -> Evaluation:
    """Accuracy (int8 on TFLM, float on Keras), confusion, arena, flash, MACs, latency."""
    from components import example_records

    x, y = example_records.load_split(examples, "test", limit=spec.max_examples)
    evaluation = measure(quantized.read_bytes(), x, y, quantized.labels, devices, progress)
    evaluation = dataclasses.replace(evaluation, float_accuracy=_float_accuracy(trained, x, y))
    log.info(
        "int8 accuracy %.4f (float %.4f) on %d test examples, arena %d B, flash %d B",
        evaluation.int8_accuracy,
        evaluation.float_accuracy,
        len(y),
        evaluation.arena_total,
        evaluation.flash_bytes,
    )
    return evaluation


def measure(
    model_bytes: bytes,
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    devices: Sequence[DeviceSpec] = (),
    progress: bool = True,
) -> Evaluation:
    """Everything measured on TFLM for an int8 classifier on prepared inputs ``x`` with
    true label indices ``y`` (no float model: ``float_accuracy`` stays None)."""
    import tflm_ext

    # Vet the model in a child first (TFLM aborts the process on a model it cannot run);
    # once it has built and run, the examples run here, behind a progress bar.
    arena = tflm_ext.run_isolated(tflm_ext.measure_arena, model_bytes)
    tflm_ext.run_isolated(tflm_ext.run_batch, model_bytes, x[:1])
    result = tflm_ext.run_batch(model_bytes, x, progress=progress)
    predicted = result.scores.argmax(axis=1)
    macs = tflm_ext.graph_stats(model_bytes).total_macs
    return Evaluation(
        int8_accuracy=float(np.mean(predicted == y)),
        float_accuracy=None,
        confusion=_confusion(y, predicted, len(labels)),
        labels=tuple(labels),
        arena_head=arena.head,
        arena_tail=arena.tail,
        arena_total=arena.total,
        arena_bisected=arena.bisected_min,
        flash_bytes=len(model_bytes),
        macs=macs,
        host_latency_ms=statistics.median(result.latency_ms),
        estimated_latency_ms={d.name: estimate_latency_ms(macs, d) for d in devices},
        test_examples=len(y),
    )


def _float_accuracy(trained: TrainedModel, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    model = keras.models.load_model(trained.path)
    scores = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(scores.argmax(axis=1) == y))


def _confusion(y: np.ndarray, predicted: np.ndarray, classes: int) -> tuple[tuple[int, ...], ...]:
    """Rows are true labels, columns predicted labels."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return tuple(tuple(int(v) for v in row) for row in matrix)
