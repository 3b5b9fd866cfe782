"""DS-CNN, the MLPerf Tiny keyword-spotting reference architecture, in Keras 3.

A strided 10x4 convolution, then blocks of 3x3 depthwise + 1x1 pointwise convolutions with
batch norm and ReLU, global average pooling and a dense softmax. With 64 filters and four
blocks on 49x10x1 MFCCs it has about 24k parameters (MLPerf Tiny's model). Batch norm folds
into the convolutions at conversion, so the int8 model has only conv, depthwise, pool and
fully connected ops, all of which TFLM's reference kernels run.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.spec import component_spec

WIDTH_OPTION = "filters"  # the option a search scales (components.search)


@component_spec
class Options:
    """Width, depth and dropout; the defaults are MLPerf Tiny's DS-CNN."""

    filters: Annotated[int, Field(gt=0)] = 64
    blocks: Annotated[int, Field(gt=0)] = 4
    dropout: Annotated[float, Field(ge=0, lt=0.5)] = 0.2


def build(input_shape: tuple[int, ...], num_classes: int, options: Options):
    """An uncompiled DS-CNN for (frames, bins, 1) features."""
    import keras

    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Conv2D(options.filters, (10, 4), strides=2, padding="same", use_bias=False)(
        inputs
    )
    x = _bn_relu(x)
    x = keras.layers.Dropout(options.dropout)(x)
    for _ in range(options.blocks):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = _bn_relu(x)
        x = keras.layers.Conv2D(options.filters, 1, use_bias=False)(x)
        x = _bn_relu(x)
    x = keras.layers.Dropout(2 * options.dropout)(x)
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")


def _bn_relu(x):
    import keras

    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.ReLU()(x)
