"""Session-wide fixtures: tiny int8 .tflite models built once with Keras + TFLiteConverter.

TensorFlow is imported inside the fixtures, so test files that do not ask for a model never
pay for it.
"""

from __future__ import annotations

import pytest

from tests.int8_models import convert_on_noise, seeded_keras


@pytest.fixture(scope="session")
def tiny_int8_model() -> bytes:
    """16x16x1 -> CONV_2D(4, 3x3, stride 2) -> DEPTHWISE_CONV_2D(3x3) -> CONV_2D(8, 1x1)
    -> AVERAGE_POOL_2D(8x8) -> FULLY_CONNECTED(3); int8 in and out.

    Biases are random so that no two constants are byte-identical (the converter would
    share their buffer). Hand-computed: MACs 2304 + 2304 + 2048 + 0 + 24 = 6680; weight
    bytes 36+16 + 36+16 + 32+32 + 24+12 = 204; activations 256+256+256+512+8+3 = 1291.
    """
    keras = seeded_keras()
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
    return convert_on_noise(keras.Model(inputs, outputs), (16, 16, 1))


@pytest.fixture(scope="session")
def prepare_bound_int8_model() -> bytes:
    """7x7x3 -> CONV_2D(5, 3x3) -> DEPTHWISE_CONV_2D -> FULLY_CONNECTED(5): activations so
    small that the kernels' prepare-time temporaries, not the activation plan, set the
    smallest arena (TFLM's recorded total then underestimates it)."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((7, 7, 3), batch_size=1)
    x = layers.Conv2D(5, 3, activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (7, 7, 3))


@pytest.fixture(scope="session")
def inverted_residual_int8_model() -> bytes:
    """32x32x3 -> CONV_2D(8, 3x3, s2, ReLU6) -> [CONV_2D(24, 1x1) -> DEPTHWISE(3x3) ->
    CONV_2D(8, 1x1) -> ADD(skip)] -> CONV_2D(24, 1x1) -> DEPTHWISE(3x3, s2) -> CONV_2D(16)
    -> MEAN -> FULLY_CONNECTED(4): MobileNetV2's first blocks in miniature (10 operators;
    the ZeroPadding2D before the strided depthwise folds into its SAME padding).

    Live activations per operator (16 B aligned): 5120, 8192, 14336 (the depthwise's 16x16x24
    input and output, plus the 16x16x8 skip), 10240, 6144, 8192, 7680, 2560, ...
    """
    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", bias_initializer=bias)(
        inputs
    )
    y = layers.Conv2D(24, 1, activation="relu6", bias_initializer=bias)(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=bias)(y)
    y = layers.Conv2D(8, 1, bias_initializer=bias)(y)
    x = layers.Add()([x, y])
    x = layers.Conv2D(24, 1, activation="relu6", bias_initializer=bias)(x)
    x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="valid", activation="relu6", bias_initializer=bias
    )(x)
    x = layers.Conv2D(16, 1, bias_initializer=bias)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(4, bias_initializer=bias)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (32, 32, 3))


@pytest.fixture(scope="session")
def two_peak_int8_model() -> bytes:
    """48x48x3 -> CONV_2D(16, 3x3, s2) -> DEPTHWISE(3x3) -> CONV_2D(8, 1x1) ->
    AVERAGE_POOL_2D(2) -> CONV_2D(96, 1x1) -> DEPTHWISE(3x3, s2) -> CONV_2D(16, 1x1) ->
    RESHAPE -> FULLY_CONNECTED(4): two memory peaks (18,432 B at the first depthwise, 17,280 B
    at the second) separated by a pool no patch stage runs, so one stage cannot cover both."""
    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((48, 48, 3), batch_size=1)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6", bias_initializer=bias)(
        inputs
    )
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=bias)(x)
    x = layers.Conv2D(8, 1, bias_initializer=bias)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(96, 1, activation="relu6", bias_initializer=bias)(x)
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="same", activation="relu6", bias_initializer=bias
    )(x)
    x = layers.Conv2D(16, 1, bias_initializer=bias)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(4, bias_initializer=bias)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (48, 48, 3))


@pytest.fixture(scope="session")
def mean_peak_int8_model() -> bytes:
    """8x8x4 -> CONV_2D(256, 1x1) -> MEAN (global average pool) -> FULLY_CONNECTED(3): the
    MEAN's input, output and int32 scratch set the arena's peak."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((8, 8, 4), batch_size=1)
    x = layers.Conv2D(256, 1)(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (8, 8, 4))
