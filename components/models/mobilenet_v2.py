"""MobileNetV2 (Sandler et al. 2018) in Keras 3, at any input resolution and width.

The layer table is Keras' ``keras.applications.MobileNetV2`` (t: expansion, c: output channels
at alpha 1, n: repeats, s: stride of the first repeat):

| stage | t | c | n | s | output at 96x96 |
| --- | --- | --- | --- | --- | --- |
| conv 3x3 | - | 32 | 1 | 2 | 48x48 |
| inverted residual | 1 | 16 | 1 | 1 | 48x48 |
| inverted residual | 6 | 24 | 2 | 2 | 24x24 |
| inverted residual | 6 | 32 | 3 | 2 | 12x12 |
| inverted residual | 6 | 64 | 4 | 2 | 6x6 |
| inverted residual | 6 | 96 | 3 | 1 | 6x6 |
| inverted residual | 6 | 160 | 3 | 2 | 3x3 |
| inverted residual | 6 | 320 | 1 | 1 | 3x3 |
| conv 1x1 | - | 1280 | 1 | 1 | 3x3 |
| average pool over the whole map, flatten, dropout, dense softmax | | | | | 1x1 |

An inverted residual block is a 1x1 expansion to ``t`` times its input channels (absent when
t is 1), a 3x3 depthwise convolution with the block's stride, each followed by batch norm and
ReLU6, then a linear 1x1 projection with batch norm; an Add joins the block's input when the
stride is 1 and the channels match. Channels follow Keras: the stem has
``make_divisible(32 * alpha)`` and each block ``make_divisible(int(c * alpha))`` (multiples of
8, never more than 10% below the scaled width); the last conv keeps 1280 channels up to
alpha 1 and scales above. Unlike Keras, stride-2 convolutions use ``same`` padding instead of
an explicit ZeroPadding2D, so the int8 model has no PAD operators, and convolutions have no
bias (batch norm supplies it). L2 applies to the full convolutions' kernels only, not to
depthwise kernels (the MobileNet papers' advice) nor the classifier, as in
``components.models.mobilenet_v1`` (MLPerf Tiny's VWW reference).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.spec import component_spec

#: (expansion t, channels c at alpha 1, repeats n, first stride s), Keras' MobileNetV2.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32
LAST_FILTERS = 1280


WIDTH_OPTION = "alpha"  # the option a search scales (components.search)


@component_spec
class Options:
    """Width, regularization and dropout (0.35 is the width MCU ports of MobileNetV2 use)."""

    alpha: Annotated[float, Field(gt=0, le=4)] = 0.35
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    l2: Annotated[float, Field(ge=0)] = 1e-4


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below it nor 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def block_table(alpha: float) -> tuple[tuple[int, int, int, int], ...]:
    """Every inverted residual block as (expansion, kernel, output channels, stride)."""
    return tuple(
        (t, 3, make_divisible(int(c * alpha)), s if i == 0 else 1)
        for t, c, n, s in STAGES
        for i in range(n)
    )


def first_stage_receptive_field(options: Options | None = None, output_stride: int = 8) -> int:
    """Receptive field (input pixels per side) of one output pixel of the first stage.

    The first stage is the stem and every block whose output is at most ``output_stride``
    times smaller than the input (the high-resolution part a patch-based plan tiles; 8 by
    default: MCUNetV2 patches MobileNetV2's first 5 blocks, which reach that stride). Width
    does not change it.
    """
    alpha = (options or Options()).alpha
    layers = [(3, 2)] + [(k, s) for _, k, _, s in block_table(alpha)]
    return receptive_field(layers, output_stride)


def receptive_field(layers, output_stride: int) -> int:
    """Receptive field of a chain of (kernel, stride) layers, stopped before the first layer
    that would take the total stride past ``output_stride``."""
    field, jump = 1, 1
    for kernel, stride in layers:
        if jump * stride > output_stride:
            break
        field += (kernel - 1) * jump
        jump *= stride
    return field


def build(input_shape: tuple[int, ...], num_classes: int, options: Options):
    """An uncompiled MobileNetV2 for (height, width, channels) images."""
    import keras

    regularizer = keras.regularizers.L2(options.l2) if options.l2 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_bn(inputs, make_divisible(STEM_FILTERS * options.alpha), 3, 2, regularizer)
    x = keras.layers.ReLU(6.0)(x)
    for expansion, kernel, filters, stride in block_table(options.alpha):
        x = inverted_residual(x, expansion, kernel, filters, stride, regularizer)
    last = LAST_FILTERS if options.alpha <= 1 else make_divisible(LAST_FILTERS * options.alpha)
    x = keras.layers.ReLU(6.0)(conv_bn(x, last, 1, 1, regularizer))
    return classifier(inputs, x, num_classes, options, "mobilenet_v2")


def inverted_residual(x, expansion: int, kernel: int, filters: int, stride: int, regularizer):
    """Expand (1x1, ReLU6), depthwise (kernel, stride, ReLU6), project (1x1, linear), add."""
    import keras

    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = keras.layers.ReLU(6.0)(conv_bn(y, expansion * in_channels, 1, 1, regularizer))
    y = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)(y)
    y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(y))
    y = conv_bn(y, filters, 1, 1, regularizer)
    if stride == 1 and in_channels == filters:
        y = keras.layers.Add()([x, y])
    return y


def conv_bn(x, filters: int, kernel: int, stride: int, regularizer):
    """A bias-free ``same`` convolution and batch norm (activation left to the caller)."""
    import keras

    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
    )(x)
    return keras.layers.BatchNormalization()(x)


def classifier(inputs, x, num_classes: int, options, name: str):
    """Average pool over the whole map, flatten, dropout, dense softmax: the model."""
    import keras

    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    if options.dropout:
        x = keras.layers.Dropout(options.dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)
