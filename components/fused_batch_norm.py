"""Batch normalization's training step as one fused TensorFlow kernel, while ``train.fit`` runs.

Keras 3's ``BatchNormalization`` trains through ``tf.nn.moments`` and
``tf.nn.batch_normalization``: a dozen element-wise and reduction ops per layer each way,
each a pass over the activations. On the project's CPU training that was about half of
every training step (the 96x96 first block of the person detector above all; profiled with
``tf.profiler`` on 2 cores), where TensorFlow's ``FusedBatchNormV3`` (oneDNN on x86) does the
same in one pass forward and one back: on in-memory batches the plain CNN trained 500 images
a second against 280-320, and a whole VWW run's epochs took 98 s against 131 s (README). tf.keras 2
picked the fused kernel itself; Keras 3 has no such option.

:func:`fused_batch_norm` swaps the training-mode call of every ``BatchNormalization`` of a
model for the fused kernel for as long as its ``with`` block lasts, then puts Keras' own
back, so the saved model holds plain Keras layers (loadable without this project, and what
pruning's surgery and the TFLite converter expect). It computes what Keras computes (the
batch's mean and biased variance, the same moving averages) up to float rounding; anything
the fused kernel does not cover (another axis or rank, a mask, renorm, float16, another
backend) keeps Keras' call.
"""

from __future__ import annotations

import contextlib
import types

# FusedBatchNormV3 refuses a smaller epsilon (TensorFlow raises it to this silently).
_MIN_EPSILON = 1.001e-5


def _fused_training_call(self, inputs, training=None, mask=None):
    """``BatchNormalization.call``, with the training branch on ``FusedBatchNormV3``."""
    import tensorflow as tf

    rank = inputs.shape.rank
    if not (
        training and self.trainable and mask is None and not self.renorm
        and rank == 4 and self.axis in (-1, rank - 1) and inputs.dtype == tf.float32
        and self.epsilon >= _MIN_EPSILON
    ):  # fmt: skip
        return type(self).call(self, inputs, training=training, mask=mask)
    ones = tf.ones_like(self.moving_mean)
    gamma = self.gamma if self.scale else ones
    beta = self.beta if self.center else tf.zeros_like(ones)
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=self.epsilon, is_training=True, data_format="NHWC"
    )
    # The kernel returns the batch variance with Bessel's correction; Keras averages the
    # biased one (and normalises with it, as the kernel does too).
    count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
    variance = variance * (count - 1.0) / count
    keep = self.momentum
    self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
    self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
    return outputs


@contextlib.contextmanager
def fused_batch_norm(model):
    """Within the block, ``model``'s ``BatchNormalization`` layers (nested models included)
    train on the fused kernel; on the TensorFlow backend only, elsewhere a no-op."""
    import keras

    if keras.backend.backend() != "tensorflow":
        yield model
        return
    layers = [
        layer for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and "call" not in vars(layer)
    ]  # fmt: skip
    for layer in layers:
        layer.call = types.MethodType(_fused_training_call, layer)
    try:
        yield model
    finally:
        for layer in layers:
            del layer.call
