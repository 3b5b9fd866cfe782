"""DS-CNN, the MLPerf Tiny keyword-spotting reference architecture, in Keras 3.

A strided 10x4 convolution, then blocks of 3x3 depthwise + 1x1 pointwise convolutions with
batch norm and ReLU, global average pooling and a dense softmax. With 64 filters and four
blocks on 49x10 MFCCs it has about 24k parameters (MLPerf Tiny's model). Batch norm folds
into the convolutions at conversion, so the int8 model has only conv, depthwise, pool and
fully connected ops, all of which TFLM's reference kernels run.
"""

from __future__ import annotations

import keras


def build(
    input_shape: tuple[int, int],
    num_classes: int,
    *,
    filters: int = 64,
    blocks: int = 4,
    dropout: float = 0.2,
) -> keras.Model:
    """Build an uncompiled DS-CNN for (frames, bins) features."""
    inputs = keras.Input(shape=(*input_shape, 1), name="features")
    x = keras.layers.Conv2D(filters, (10, 4), strides=2, padding="same", use_bias=False)(inputs)
    x = _bn_relu(x)
    x = keras.layers.Dropout(dropout)(x)
    for _ in range(blocks):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = _bn_relu(x)
        x = keras.layers.Conv2D(filters, 1, use_bias=False)(x)
        x = _bn_relu(x)
    x = keras.layers.Dropout(2 * dropout)(x)
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")


def _bn_relu(x):
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.ReLU()(x)
