"""Quantize component: full-integer int8 post-training quantization of a trained model.

Calibrates activation ranges on a representative sample of the training split (the data
the model saw, never the test split) and forces int8 input and output, so the model runs
on TFLM's int8 kernels end to end and the firmware feeds it quantized features.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from pydantic import Field

from components.artifacts import ExampleSet, QuantizedModel, TrainedModel
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class QuantizeSpec:
    """How many training examples calibrate the activation ranges."""

    representative_examples: Annotated[int, Field(gt=0)] = 500
    seed: int = 0


def run(
    spec: QuantizeSpec,
    trained: TrainedModel,
    examples: ExampleSet,
    out_dir: Path,
) -> QuantizedModel:
    """Convert ``trained`` to ``model_int8.tflite`` in ``out_dir``."""
    import numpy as np

    from components import example_records

    x, _ = example_records.load_split(examples, "train")
    rng = np.random.default_rng(spec.seed)
    sample = x[rng.permutation(len(x))[: spec.representative_examples]]
    try:
        model_bytes = convert_int8(batch_of_one(_load(trained)), sample)
    except Exception as e:  # the converter raises many unrelated types
        raise ComponentError(f"int8 conversion of {trained.path} failed: {e}") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model_int8.tflite"
    path.write_bytes(model_bytes)
    log.info("quantized %s -> %s (%d bytes)", trained.path, path, len(model_bytes))
    return QuantizedModel(
        path=path,
        labels=trained.labels,
        input_shape=trained.input_shape,
        preprocessing=examples.preprocessing,
    )


def convert_int8(model, calibration) -> bytes:
    """Full-integer int8 conversion with int8 input and output.

    ``calibration`` holds representative examples shaped like the model's input without
    the batch axis; the converter sees them one at a time. Tests and benchmarks build their
    models through here too, so every int8 model in the project is made the same way.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def batch_of_one(model):
    """``model`` with its batch fixed to 1, as firmware runs it.

    With a static batch the converter folds Flatten into one RESHAPE; with a dynamic one it
    emits SHAPE, STRIDED_SLICE and PACK ops that the firmware must also register and run.
    The input gets a fixed name: Keras would number it from a process-wide counter, and the
    name is stored in the flatbuffer, so the same model would convert to a different size.
    """
    import keras

    fixed = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="input")
    one = keras.models.clone_model(model, input_tensors=fixed)
    one.set_weights(model.get_weights())
    return one


def _load(trained: TrainedModel):
    import keras

    return keras.models.load_model(trained.path)
