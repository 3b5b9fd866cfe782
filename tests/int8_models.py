"""Helpers the test suite builds its small int8 models with (Keras seeded, noise-calibrated)."""

from __future__ import annotations

import os

import numpy as np


def seeded_keras():
    """Keras with TensorFlow's C++ logging quiet and a fixed seed, so builds repeat."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    return keras


def convert_on_noise(model, input_shape: tuple[int, ...]) -> bytes:
    """Full-integer int8 conversion, calibrated on 16 examples of uniform noise in [-1, 1)."""
    from components.quantize import convert_int8

    noise = np.random.default_rng(0).uniform(-1.0, 1.0, (16, *input_shape)).astype(np.float32)
    return convert_int8(model, noise)
