"""Session-wide fixtures: tiny int8 .tflite models built once with Keras + TFLiteConverter.

TensorFlow is imported inside the fixtures, so test files that do not ask for a model never
pay for it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest


def _convert_int8(model, input_shape: tuple[int, ...]) -> bytes:
    """Full-integer quantization with int8 input and output, calibrated on uniform noise."""
    import tensorflow as tf

    def representative_data():
        rng = np.random.default_rng(0)
        for _ in range(16):
            yield [rng.uniform(-1.0, 1.0, (1, *input_shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    return keras


@pytest.fixture(scope="session")
def tiny_int8_model() -> bytes:
    """16x16x1 -> CONV_2D(4, 3x3, stride 2) -> DEPTHWISE_CONV_2D(3x3) -> CONV_2D(8, 1x1)
    -> AVERAGE_POOL_2D(8x8) -> FULLY_CONNECTED(3); int8 in and out.

    Biases are random so that no two constants are byte-identical (the converter would
    share their buffer). Hand-computed: MACs 2304 + 2304 + 2048 + 0 + 24 = 6680; weight
    bytes 36+16 + 36+16 + 32+32 + 24+12 = 204; activations 256+256+256+512+8+3 = 1291.
    """
    keras = _keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((16, 16, 1), batch_size=1)
    x = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", bias_initializer=bias)(
        inputs
    )
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", bias_initializer=bias)(x)
    x = layers.Conv2D(8, 1, activation="relu", bias_initializer=bias)(x)
    x = layers.AveragePooling2D(8)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, bias_initializer=bias)(x)
    return _convert_int8(keras.Model(inputs, outputs), (16, 16, 1))


@pytest.fixture(scope="session")
def prepare_bound_int8_model() -> bytes:
    """7x7x3 -> CONV_2D(5, 3x3) -> DEPTHWISE_CONV_2D -> FULLY_CONNECTED(5): activations so
    small that the kernels' prepare-time temporaries, not the activation plan, set the
    smallest arena (TFLM's recorded total then underestimates it)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((7, 7, 3), batch_size=1)
    x = layers.Conv2D(5, 3, activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)
    return _convert_int8(keras.Model(inputs, outputs), (7, 7, 3))
