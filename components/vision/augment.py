"""Random image transforms for training: one affine warp per image, as MLPerf Tiny's VWW
(and, as an option, random convolutions: :class:`RandomConvolution`).

MLPerf Tiny trains its person detector with Keras's ``ImageDataGenerator(rotation_range=10,
width_shift_range=0.05, height_shift_range=0.05, zoom_range=0.1, horizontal_flip=True)``,
which draws a rotation, a shift, a zoom per axis and a flip for each image, composes them
into one matrix and resamples the image once (nearest-pixel fill at the border). This does
the same on a whole batch in one ``keras.ops.image.affine_transform`` call; a chain of
Keras's ``RandomRotation``, ``RandomTranslation`` and ``RandomZoom`` layers would resample
(and blur) each image three times, and zoom both axes alike. Keras 3 has no preprocessing
layer for one combined affine transform, hence this layer.

``components.train`` runs it inside the training step, in front of the model, which is
where its speed comes from (see ``train._augmented``). It imports Keras at import time:
import it where training starts, not from a config path.
"""

from __future__ import annotations

import math

import keras
from keras import ops, random


class RandomAffine(keras.layers.Layer):
    """Each image of a batch (N, H, W, C) rotated by up to ``rotation_degrees``, shifted by
    up to ``shift_fraction`` of each side, zoomed by a factor in [1 - zoom, 1 + zoom] per
    axis and, with ``horizontal_flip``, mirrored with probability one half; all about the
    image centre, in one bilinear resampling. Seeded; the identity unless ``training``."""

    def __init__(
        self, rotation_degrees: float, shift_fraction: float, zoom_fraction: float,
        horizontal_flip: bool, seed: int, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.rotation = math.radians(rotation_degrees)
        self.shift = shift_fraction
        self.zoom = zoom_fraction
        self.flip = horizontal_flip
        self.seeds = random.SeedGenerator(seed)

    def transforms(self, batch, height: int, width: int):
        """The (batch, 8) projective rows mapping each output pixel to its input point."""

        def uniform(limit):
            return random.uniform((batch,), -limit, limit, seed=self.seeds)

        angle = uniform(self.rotation)
        zoom_x, zoom_y = 1.0 + uniform(self.zoom), 1.0 + uniform(self.zoom)
        shift_x, shift_y = uniform(self.shift) * width, uniform(self.shift) * height
        mirror = ops.ones((batch,))
        if self.flip:
            mirror = ops.where(random.uniform((batch,), seed=self.seeds) < 0.5, -1.0, 1.0)
        cos, sin = ops.cos(angle), ops.sin(angle)
        # input point = centre + rotation @ zoom @ mirror @ (output point - centre) + shift
        a0, a1 = cos * zoom_x * mirror, -sin * zoom_y
        b0, b1 = sin * zoom_x * mirror, cos * zoom_y
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a2 = cx - a0 * cx - a1 * cy + shift_x
        b2 = cy - b0 * cx - b1 * cy + shift_y
        zero = ops.zeros((batch,))
        return ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)

    def call(self, images, training=None):
        if not training:
            return images
        rows = self.transforms(ops.shape(images)[0], images.shape[1], images.shape[2])
        return ops.image.affine_transform(images, rows, "bilinear", fill_mode="nearest")


class RandomConvolution(keras.layers.Layer):
    """Random convolutions (RandConv, Xu et al., ICLR 2021): textures and local contrast
    re-drawn per batch, so a detector trained on generated scenes cannot lean on their
    texture statistics and must learn shapes; photographs carry more fine detail than any
    scene, which a texture-led detector reads as a person.

    Each batch draws one random ``k`` x ``k`` filter bank (``k`` odd, up to
    ``max_kernel_size``; weights from N(0, 1 / (k * k * C)), as in the paper), filters every
    image with it and rescales the result to the image's own channel means and spreads
    (so brightness, colour balance and the batch-norm statistics stay the image's
    own), then mixes it into each image with a uniform weight; each image is
    altered with probability ``probability``. Seeded; the identity unless ``training``."""

    def __init__(self, probability: float, max_kernel_size: int, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if max_kernel_size < 1 or max_kernel_size % 2 == 0:
            raise ValueError(f"max_kernel_size must be odd and positive, not {max_kernel_size}")
        self.probability = probability
        self.max_kernel_size = max_kernel_size
        self.seeds = random.SeedGenerator(seed)

    def kernel(self, channels: int):
        """A (K, K, C, C) random filter bank, zero outside its centred k x k window."""
        most = self.max_kernel_size
        half = ops.cast(random.randint((), 0, most // 2 + 1, seed=self.seeds), "float32")
        size = 2.0 * half + 1.0
        offsets = ops.abs(ops.arange(most, dtype="float32") - most // 2)
        inside = ops.cast(offsets <= half, "float32")
        window = ops.reshape(inside[:, None] * inside[None, :], (most, most, 1, 1))
        std = 1.0 / (size * ops.sqrt(float(channels)))
        weights = random.normal((most, most, channels, channels), seed=self.seeds) * std
        return weights * window

    def call(self, images, training=None):
        if not training or self.probability == 0:
            return images
        batch, channels = ops.shape(images)[0], images.shape[-1]
        filtered = ops.conv(images, self.kernel(channels), padding="same")
        mean = ops.mean(images, axis=(1, 2), keepdims=True)
        spread = ops.std(images, axis=(1, 2), keepdims=True)
        f_mean = ops.mean(filtered, axis=(1, 2), keepdims=True)
        f_spread = ops.std(filtered, axis=(1, 2), keepdims=True)
        filtered = (filtered - f_mean) / (f_spread + 1e-6) * spread + mean
        filtered = ops.clip(filtered, 0.0, 1.0)
        altered = random.uniform((batch, 1, 1, 1), seed=self.seeds) < self.probability
        weight = random.uniform((batch, 1, 1, 1), seed=self.seeds) * ops.cast(altered, "float32")
        return images + weight * (filtered - images)
