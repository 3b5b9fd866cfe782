"""A plain convolutional network: full 3x3 convolutions and max pooling, in Keras 3.

Why it is here: trained from scratch on the generated person-detection scenes, depthwise-
separable networks (MobileNetV1-0.25, the MCUNet-style network) learn slowly, a few points
above chance after 8-10 epochs, while a plain network of the same MAC count learns the task
within 2-3 epochs (``benchmarks/vww_training.py`` measures both). On a CPU budget of
minutes, what the default job can teach is set by that speed.

``blocks`` blocks of [3x3 convolution (``filters`` doubling each block), batch norm, ReLU,
2x2 max pooling], then a max pool over the whole map (is there a person anywhere?),
dropout and a dense softmax. At the builder's defaults on 96x96x3 (filters 8, 4 blocks) it
has about 10 million MACs, MobileNetV1-0.25's order (7.5 million), and 25 thousand
parameters against its 220 thousand. Each block doubles the receptive field: 46 pixels
after 4 blocks, 94 after 5, so only a fifth block sees a person who fills the frame whole.
The VWW job uses 5 (12.6 million MACs, 100 thousand parameters, half MobileNetV1's flash).
Its largest activation is the first block's full-resolution map (96x96x8), the memory that
patch-based inference exists to remove: the patch stage streams the first blocks, max
pooling included. The int8 model is CONV_2D, MAX_POOL_2D, FULLY_CONNECTED and SOFTMAX, all
TFLM reference kernels.

``stem_stride: 2`` makes the first convolution stride 2 in place of the first block's pooling.
Why: the first block is the only one at full resolution; striding computes its map at 48x48
directly (a quarter of that block's MACs), and the layout after it is the same (48x48 maps
from the second block on, the same doubling, a receptive field of 3 input pixels with a step
of 2 against the pooled block's 4). The full-resolution map is gone from the int8 graph too,
so the unpatched arena no longer peaks there. In a training-step probe it was worth 1.1x
unfused and little on top of the fused batch norm (the README gives the figures).

``blur_sigma`` puts a fixed Gaussian low-pass (a DEPTHWISE_CONV_2D nobody trains) before the
first convolution. Why: the generated scenes have less fine detail than photographs (about
2/3 of their edge density at 96 px), so a detector trained on them meets detail in every
real photo that it never saw without a person. A blur in the data would only soften the
training scenes; in the model it filters every input the same way, on TFLM too, so a real
photo reaches the first convolution as soft as a scene. It is part of the patch stage like
any convolution (its padding rule is the same SAME rule).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from components.errors import ComponentError
from components.spec import component_spec

WIDTH_OPTION = "filters"  # the option a search scales (components.search)


@component_spec
class Options:
    """First block's filters (doubling each block), depth, regularization and dropout."""

    filters: Annotated[int, Field(gt=0, le=256)] = 8
    blocks: Annotated[int, Field(gt=0, le=6)] = 4
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    l2: Annotated[float, Field(ge=0)] = 1e-4
    blur_sigma: Annotated[float, Field(ge=0, le=3)] = 0.0  # fixed Gaussian low-pass first; 0: none
    stem_stride: Literal[1, 2] = 1  # 2: the first convolution strides instead of pooling


def build(input_shape: tuple[int, ...], num_classes: int, options: Options):
    """An uncompiled plain CNN for (height, width, channels) images."""
    import keras

    layers = keras.layers
    regularizer = keras.regularizers.L2(options.l2) if options.l2 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if options.blur_sigma:
        x = _low_pass(x, options.blur_sigma)
    for block in range(options.blocks):
        if min(x.shape[1:3]) < 2:
            raise ComponentError(
                f"plain_cnn: {options.blocks} blocks pool a {input_shape[:2]} input below 1x1"
            )
        filters = options.filters * 2**block
        strided = block == 0 and options.stem_stride == 2
        x = layers.Conv2D(
            filters,
            3,
            strides=2 if strided else 1,
            padding="same",
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
        )(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        if not strided:
            x = layers.MaxPooling2D(2)(x)
    x = layers.MaxPooling2D(pool_size=x.shape[1:3])(x)
    x = layers.Flatten()(x)
    if options.dropout:
        x = layers.Dropout(options.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


def _low_pass(x, sigma: float):
    """A fixed (untrained) Gaussian blur of each channel, as a depthwise convolution."""
    import keras
    import numpy as np

    radius = max(1, int(np.ceil(2 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    channels = x.shape[-1]
    weights = np.repeat(kernel[:, :, None, None], channels, axis=2).astype("float32")
    blur = keras.layers.DepthwiseConv2D(
        2 * radius + 1,
        padding="same",
        use_bias=False,
        trainable=False,
        name="low_pass",
        depthwise_initializer=keras.initializers.Constant(weights),
    )
    return blur(x)
