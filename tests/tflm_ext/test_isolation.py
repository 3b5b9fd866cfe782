"""run_isolated: results come back, crashes and exceptions become TflmExtError.

The helpers below are module-level so the spawned child can import them by name; this
module must therefore not import TensorFlow at import time.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor

from tflm_ext.errors import TflmExtError
from tflm_ext.inference import BatchResult, run_batch
from tflm_ext.interpreter import make_interpreter
from tflm_ext.isolation import run_isolated


def _power(base: int, exponent: int = 2) -> int:
    return base**exponent


def _run_batch_reporting_tensorflow(model_bytes: bytes, features: np.ndarray):
    return run_batch(model_bytes, features), "tensorflow" in sys.modules


def _abort_after_a_message() -> None:
    os.write(2, b"some earlier line\ntflm_ext test: giving up now\n")
    os.abort()


def _raise_value_error() -> None:
    raise ValueError("bad value 42 in layer 'conv'")


def _exit_with_status_3() -> None:
    os._exit(3)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _builds(model_bytes: bytes) -> bool:
    make_interpreter(model_bytes)
    return True


def test_returns_the_result_with_args_and_kwargs() -> None:
    assert run_isolated(_power, 3, exponent=4) == 81


def test_runs_tflm_in_a_child_without_tensorflow(tiny_int8_model: bytes) -> None:
    features = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    result, child_has_tensorflow = run_isolated(
        _run_batch_reporting_tensorflow, tiny_int8_model, features
    )
    assert "tensorflow" in sys.modules  # the fixture built the model with it, here
    assert not child_has_tensorflow
    assert isinstance(result, BatchResult)
    assert np.array_equal(result.scores, run_batch(tiny_int8_model, features).scores)


def test_abort_becomes_an_error_naming_the_signal_and_stderr() -> None:
    with pytest.raises(TflmExtError) as caught:
        run_isolated(_abort_after_a_message)
    message = str(caught.value)
    assert "SIGABRT" in message
    assert "_abort_after_a_message" in message
    assert "tflm_ext test: giving up now" in message


@pytest.fixture(scope="module")
def softmax_int8_model() -> bytes:
    """Dense(4) -> Softmax, full int8; TensorFlow is imported here, never in the child."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(4)(inputs)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 8), v, np.float32)] for v in (-1, 1))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def test_tflm_abort_on_a_degenerate_model_is_survived(softmax_int8_model: bytes) -> None:
    """A SOFTMAX input scale of 1e-30 makes TFLM's QuantizeMultiplier check abort()."""
    assert run_isolated(_builds, softmax_int8_model)
    model = model_editor.read(softmax_int8_model)
    softmax = next(op for op in model.subgraphs[0].operators if op.opcode_name == "SOFTMAX")
    softmax.inputs[0].quantization.scales = [1e-30]
    with pytest.raises(TflmExtError, match="was killed by SIGABRT"):
        run_isolated(_builds, bytes(model.build()))


def test_exception_is_reraised_with_its_message() -> None:
    with pytest.raises(TflmExtError, match="ValueError: bad value 42 in layer 'conv'"):
        run_isolated(_raise_value_error)


def test_nonzero_exit_is_an_error() -> None:
    with pytest.raises(TflmExtError, match="exited with status 3"):
        run_isolated(_exit_with_status_3)


def test_timeout_kills_the_child() -> None:
    start = time.monotonic()
    with pytest.raises(TflmExtError, match="timed out after 0.5 s"):
        run_isolated(_sleep, 30, timeout_s=0.5)
    assert time.monotonic() - start < 10


def test_unpicklable_function_is_an_error() -> None:
    with pytest.raises(TflmExtError, match="cannot start"):
        run_isolated(lambda: 1)
