"""Int8 .tflite models for the benchmarks, built with Keras and the TFLiteConverter.

Called by ``benchmarks/memory_profile.py`` and ``benchmarks/patch_memory.py``. Weights are
random (seeded) and calibration data is uniform noise: memory and MAC figures depend on the
shapes only, and bit-exactness checks need no trained weights. Classifier heads end without
softmax where Keras allows it: with random weights a softmax's input scale can be degenerate,
which aborts TFLM while it builds the interpreter. TensorFlow is imported inside the
builders, so importing this module stays cheap (isolated children re-import ``__main__``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

_CALIBRATION_EXAMPLES = 8


def mobilenet_v2(alpha: float, size: int) -> bytes:
    """Keras MobileNetV2 at alpha and size x size x 3, 1000 classes, no softmax."""
    keras = _keras()
    model = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(size, size, 3), classifier_activation=None
    )
    return convert_int8(model, (size, size, 3))


def mobilenet_v1(alpha: float, size: int) -> bytes:
    """Keras MobileNet (v1) at alpha and size x size x 3, 1000 classes, no softmax."""
    keras = _keras()
    model = keras.applications.MobileNet(
        weights=None, alpha=alpha, input_shape=(size, size, 3), classifier_activation=None
    )
    return convert_int8(model, (size, size, 3))


def ds_cnn(input_shape: tuple[int, int] = (49, 10), num_classes: int = 12) -> bytes:
    """The project's DS-CNN (``components.models.ds_cnn``), softmax included, as trained."""
    _keras()
    from components import models

    model = models.build("ds_cnn", (*input_shape, 1), num_classes)
    return convert_int8(model, (*input_shape, 1))


def convert_int8(model, input_shape: tuple[int, ...]) -> bytes:
    """Full-integer int8 conversion (int8 input and output), calibrated on uniform noise."""
    from components.quantize import convert_int8 as convert

    rng = np.random.default_rng(0)
    noise = rng.uniform(-1.0, 1.0, (_CALIBRATION_EXAMPLES, *input_shape)).astype(np.float32)
    return convert(model, noise)


def _keras():
    """Keras with TensorFlow's C++ logging quiet and a fixed seed, so builds repeat."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    return keras


# The benchmark suite by name. "ds-cnn-micro" is the DS-CNN the KWS pipeline trains on the
# TFLM micro frontend's 98x40 features (configs/kws.yaml, features.frontend: micro).
BENCHMARK_MODELS: dict[str, Callable[[], bytes]] = {
    "mbv2-0.35-96": lambda: mobilenet_v2(0.35, 96),
    "mbv2-0.35-144": lambda: mobilenet_v2(0.35, 144),
    "mbv2-1.0-224": lambda: mobilenet_v2(1.0, 224),
    "mbv1-0.25-96": lambda: mobilenet_v1(0.25, 96),
    "ds-cnn": lambda: ds_cnn((49, 10), 12),
    "ds-cnn-micro": lambda: ds_cnn((98, 40), 12),
}
