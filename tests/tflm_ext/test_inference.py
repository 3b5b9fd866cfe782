"""run_batch against TensorFlow Lite's reference kernels on the same int8 model."""

from __future__ import annotations

import numpy as np
import pytest

from tflm_ext.errors import TflmExtError
from tflm_ext.inference import (
    TensorDetails,
    dequantize,
    input_details,
    output_details,
    quantize,
    run_batch,
)

INT8_HALF = TensorDetails(shape=(1, 4), dtype=np.dtype(np.int8), scale=0.5, zero_point=-3)


def _tflite_int8_outputs(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """TFLite's own interpreter, reference kernels (no XNNPACK), one example at a time."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    outputs = []
    for example in inputs:
        interpreter.set_tensor(source, example[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target)[0])
    return np.stack(outputs)


def test_matches_tflite_within_one_quantization_step(tiny_int8_model: bytes) -> None:
    features = np.random.default_rng(7).uniform(-1, 1, (64, 16, 16, 1)).astype(np.float32)
    source, target = input_details(tiny_int8_model), output_details(tiny_int8_model)
    # quantized independently of tflm_ext (no exact .5 ties occur with random floats)
    int8_inputs = np.clip(np.round(features / source.scale) + source.zero_point, -128, 127)
    expected_q = _tflite_int8_outputs(tiny_int8_model, int8_inputs.astype(np.int8))

    result = run_batch(tiny_int8_model, features)

    assert result.scores.shape == (64, 3) and result.scores.dtype == np.float32
    steps = result.scores / target.scale + target.zero_point - expected_q
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # whole quantization steps apart
    assert np.abs(steps).max() <= 1  # TFLite rounds requantization once, TFLM twice
    assert np.mean(np.abs(steps) < 0.5) >= 0.9
    assert len(result.latency_ms) == 64 and min(result.latency_ms) > 0


def test_features_without_the_channel_axis_are_reshaped(tiny_int8_model: bytes) -> None:
    features = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16)).astype(np.float32)
    with_axis = run_batch(tiny_int8_model, features[..., np.newaxis])
    assert np.array_equal(run_batch(tiny_int8_model, features).scores, with_axis.scores)


def test_features_of_the_wrong_size_are_an_error(tiny_int8_model: bytes) -> None:
    with pytest.raises(TflmExtError, match=r"\(2, 15, 16\).*\(1, 16, 16, 1\)"):
        run_batch(tiny_int8_model, np.zeros((2, 15, 16), np.float32))


def test_quantize_rounds_half_away_from_zero_and_saturates() -> None:
    values = np.array([0.25, -0.25, 0.75, 1000.0], np.float32)
    assert quantize(values, INT8_HALF).tolist() == [-2, -4, -1, 127]
    assert quantize(values, INT8_HALF).dtype == np.int8


def test_dequantize_inverts_quantize_within_half_a_step() -> None:
    values = np.linspace(-60, 60, 101, dtype=np.float32)
    restored = dequantize(quantize(values, INT8_HALF), INT8_HALF)
    assert restored.dtype == np.float32
    assert np.abs(restored - values).max() <= 0.25
