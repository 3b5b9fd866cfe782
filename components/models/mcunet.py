"""An MCUNet-style inverted-residual network shaped for patch-based inference, in Keras 3.

MCUNetV2 (Lin et al., NeurIPS 2021) runs the first, high-resolution stage of a CNN patch by
patch so that only one patch's activations are alive; each patch recomputes a halo that
grows with the stage's receptive field. Its section 3.2 (receptive-field redistribution)
therefore shrinks the receptive field of that per-patch stage (small kernels, few blocks)
and gives it back in the later, low-resolution stages (larger kernels, more blocks), where
it is cheap in MACs and memory. This network does that with MobileNetV2's blocks
(``components.models.mobilenet_v2.inverted_residual``: 1x1 expansion, depthwise, linear 1x1
projection, Add when the stride is 1 and channels match; batch norm and ReLU6).

Layer table (t: expansion, k: depthwise kernel, c: output channels at alpha 1 (rounded to
multiples of 8 after scaling, as MobileNetV2), n: repeats, s: first stride):

| stage | t | k | c | n | s | output at 96x96 |
| --- | --- | --- | --- | --- | --- | --- |
| conv 3x3 (patch stage) | - | 3 | 16 | 1 | 2 | 48x48 |
| inverted residual (patch stage) | 1 | 3 | 8 | 1 | 1 | 48x48 |
| inverted residual (patch stage) | 4 | 3 | 16 | 1 | 2 | 24x24 |
| inverted residual (patch stage) | 4 | 3 | 24 | 1 | 2 | 12x12 |
| inverted residual | 6 | 7 | 40 | 1 | 2 | 6x6 |
| inverted residual | 4 | 5 | 40 | 2 | 1 | 6x6 |
| inverted residual | 6 | 5 | 48 | 2 | 1 | 6x6 |
| inverted residual | 6 | 7 | 96 | 1 | 2 | 3x3 |
| inverted residual | 4 | 5 | 96 | 2 | 1 | 3x3 |
| inverted residual | 6 | 3 | 160 | 1 | 1 | 3x3 |
| average pool over the whole map, flatten, dropout, dense softmax | | | | | | 1x1 |

The patch stage is everything up to output stride 8 (MCUNetV2 patches MobileNetV2's first 5
blocks, which reach that stride): 4 spatial layers, all 3x3, and one block per resolution. Its
receptive field (``first_stage_receptive_field``) is 19 input pixels, against 59 for
MobileNetV2's layers up to the same stride (stem, the t=1 block, 2 blocks at 1/4 and 3 at
1/8, all 3x3: ``mobilenet_v2.first_stage_receptive_field``), so a tile of T x T stage-output
pixels reads (8T + 11) input pixels a side instead of (8T + 51). After the patch stage every
downsampling uses a 7x7 kernel and the stride-1 blocks 5x5, and 9 of the 12 blocks run at
1/16 or 1/32 resolution. At the default alpha 0.5 on 96x96x3 (2 classes) the int8 model has
4.7 million MACs, MobileNetV1-0.25's order (7.5 million), and 163 thousand parameters (Keras'
count, batch norm included). Unpatched, its activation peak is the 48x48 expansion of the
first stride-2 block (TFLM arena about 130 kB against MobileNetV1-0.25's 104 kB): the patch
stage is meant to be tiled (``tflm-pipelines patch``), which removes that peak. The receptive
field does not depend on the width or the input channels (RGB or grayscale).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.models import mobilenet_v2
from components.spec import component_spec

STEM_FILTERS = 16
#: (expansion t, kernel k, channels c at alpha 1, repeats n, first stride s).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 8, 1, 1),
    (4, 3, 16, 1, 2),
    (4, 3, 24, 1, 2),
    (6, 7, 40, 1, 2),
    (4, 5, 40, 2, 1),
    (6, 5, 48, 2, 1),
    (6, 7, 96, 1, 2),
    (4, 5, 96, 2, 1),
    (6, 3, 160, 1, 1),
)
#: Total stride at which the patch stage ends.
PATCH_STAGE_STRIDE = 8


WIDTH_OPTION = "alpha"  # the option a search scales (components.search)


@component_spec
class Options:
    """Width multiplier, regularization and dropout."""

    alpha: Annotated[float, Field(gt=0, le=4)] = 0.5
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    l2: Annotated[float, Field(ge=0)] = 1e-4


def block_table(alpha: float) -> tuple[tuple[int, int, int, int], ...]:
    """Every inverted residual block as (expansion, kernel, output channels, stride)."""
    return tuple(
        (t, k, mobilenet_v2.make_divisible(c * alpha), s if i == 0 else 1)
        for t, k, c, n, s in STAGES
        for i in range(n)
    )


def first_stage_receptive_field(options: Options | None = None) -> int:
    """Receptive field (input pixels per side) of one output pixel of the patch stage:
    the stem and the blocks up to output stride ``PATCH_STAGE_STRIDE``."""
    alpha = (options or Options()).alpha
    layers = [(3, 2)] + [(k, s) for _, k, _, s in block_table(alpha)]
    return mobilenet_v2.receptive_field(layers, PATCH_STAGE_STRIDE)


def build(input_shape: tuple[int, ...], num_classes: int, options: Options):
    """An uncompiled MCUNet-style network for (height, width, channels) images."""
    import keras

    regularizer = keras.regularizers.L2(options.l2) if options.l2 else None
    inputs = keras.Input(shape=input_shape, name="image")
    stem = mobilenet_v2.make_divisible(STEM_FILTERS * options.alpha)
    x = keras.layers.ReLU(6.0)(mobilenet_v2.conv_bn(inputs, stem, 3, 2, regularizer))
    for expansion, kernel, filters, stride in block_table(options.alpha):
        x = mobilenet_v2.inverted_residual(x, expansion, kernel, filters, stride, regularizer)
    return mobilenet_v2.classifier(inputs, x, num_classes, options, "mcunet")
