"""MobileNetV1 (Howard et al. 2017) in Keras 3; at alpha 0.25 on 96x96x3, MLPerf Tiny's VWW model.

The MLPerf Tiny visual wake words reference (mlcommons/tiny,
``benchmark/training/visual_wake_words/vww_model.py``) is this network at alpha 0.25:

| layer | kernel / stride | channels (alpha 1) | at 0.25 | output at 96x96 |
| --- | --- | --- | --- | --- |
| conv | 3x3 / 2 | 32 | 8 | 48x48 |
| dw + pw | 3x3 / 1 | 64 | 16 | 48x48 |
| dw + pw | 3x3 / 2 | 128 | 32 | 24x24 |
| dw + pw | 3x3 / 1 | 128 | 32 | 24x24 |
| dw + pw | 3x3 / 2 | 256 | 64 | 12x12 |
| dw + pw | 3x3 / 1 | 256 | 64 | 12x12 |
| dw + pw | 3x3 / 2 | 512 | 128 | 6x6 |
| 5 x (dw + pw) | 3x3 / 1 | 512 | 128 | 6x6 |
| dw + pw | 3x3 / 2 | 1024 | 256 | 3x3 |
| dw + pw | 3x3 / 1 | 1024 | 256 | 3x3 |
| average pool over the whole map, flatten, dense softmax | | | | 1x1 |

Every convolution (the first, each depthwise, each pointwise) uses ``same`` padding, keeps its
bias and is followed by batch norm and plain ReLU (not Keras' ReLU6), as in the reference.
The reference passes ``kernel_regularizer=l2(1e-4)`` to all of them, but Keras'
``DepthwiseConv2D`` takes its regularizer as ``depthwise_regularizer`` and ignores that
argument, so in the reference only the full convolutions carry L2 (and the depthwise kernels
keep Glorot init); this module does the same, which is also the MobileNet paper's advice
(little or no weight decay on depthwise filters). The reference has no dropout; ``dropout``
(default 0) adds one before the classifier, which converts to nothing in the .tflite.

Channels are ``int(base * alpha)`` as in Keras' MobileNet (no rounding to multiples of 8).
Batch norm folds into the convolutions at conversion, so the int8 model is 27 CONV_2D and
DEPTHWISE_CONV_2D, then AVERAGE_POOL_2D, FULLY_CONNECTED and SOFTMAX: the reference's
sequence, shapes and parameter count (``tests/components/models/test_reference_vww.py``),
except that TensorFlow 2.21 drops the reference's flattening RESHAPE before the classifier
(FULLY_CONNECTED flattens its input itself) and quantizes the classifier per channel.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.spec import component_spec

#: (pointwise channels at alpha 1, depthwise stride) of the 13 depthwise-separable blocks.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
FIRST_FILTERS = 32


WIDTH_OPTION = "alpha"  # the option a search scales (components.search)


@component_spec
class Options:
    """Width, regularization and dropout; the defaults are MLPerf Tiny's VWW reference."""

    alpha: Annotated[float, Field(gt=0, le=4)] = 0.25
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    l2: Annotated[float, Field(ge=0)] = 1e-4


def channels(base: int, alpha: float) -> int:
    """Keras MobileNet's width rule: ``int(base * alpha)``, at least 1."""
    return max(1, int(base * alpha))


def build(input_shape: tuple[int, ...], num_classes: int, options: Options):
    """An uncompiled MobileNetV1 for (height, width, channels) images."""
    import keras

    regularizer = keras.regularizers.L2(options.l2) if options.l2 else None

    def conv(x, filters, kernel, stride):
        x = keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            kernel_initializer="he_normal",
            kernel_regularizer=regularizer,
        )(x)
        return _bn_relu(x)

    def depthwise(x, stride):
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same")(x)
        return _bn_relu(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = conv(inputs, channels(FIRST_FILTERS, options.alpha), 3, 2)
    for filters, stride in BLOCKS:
        x = depthwise(x, stride)
        x = conv(x, channels(filters, options.alpha), 1, 1)
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    if options.dropout:
        x = keras.layers.Dropout(options.dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v1")


def _bn_relu(x):
    import keras

    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x)
