"""Raw inputs to model inputs, for every kind of model the chain makes.

A model carries its :class:`~components.artifacts.Preprocessing` (in the example set, the
quantized model, the MLflow flavor and the release manifest); :func:`prepare` applies it to
what a user hands over, exactly as training data was prepared:

- ``audio``: 1 s, 16 kHz clips as WAV paths or arrays. int16 arrays are PCM (divided by
  32,768, the natural format of a microphone buffer or ``np.fromfile``); float arrays must
  already be in [-1, 1]; anything else is refused naming the clip. Features come from the
  model's front end (``components.audio.frontends``).
- ``image``: image files (JPEG, PNG, BMP, ...) or HxWx3 / HxW uint8 arrays, decoded and
  resized by ``components.vision.images.load_image`` (the function the image preprocessing
  uses), then scaled to [0, 1].

Called by the ``tflm`` flavor's ``predict`` and by ``tflm-pipelines evaluate``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from components.artifacts import Preprocessing
from components.errors import ComponentError

PCM16_SCALE = 32768.0
_FLOAT_TOLERANCE = 1e-3  # rounding slack of float clips that were scaled to [-1, 1]


def example_shape(preprocessing: Preprocessing) -> tuple[int, ...]:
    """The model input (channels last, no batch axis) this preprocessing produces."""
    if preprocessing.kind == "audio":
        from components.audio.frontends import feature_shape

        return (*feature_shape(str(preprocessing.frontend)), 1)
    if preprocessing.kind == "image":
        if not preprocessing.image_size or preprocessing.channels not in (1, 3):
            raise ComponentError(
                f"image preprocessing needs image_size and 1 or 3 channels: "
                f"{preprocessing.describe()}"
            )
        return (*preprocessing.image_size, int(preprocessing.channels))
    raise ComponentError(f"unknown preprocessing kind {preprocessing.kind!r} (audio or image)")


def prepare(preprocessing: Preprocessing, inputs: Any) -> np.ndarray:
    """Model inputs ``(N, *example_shape)`` float32 for ``inputs`` (one item or many)."""
    shape = example_shape(preprocessing)
    items = input_items(inputs, sample_ndim=1 if preprocessing.kind == "audio" else 3)
    if not items:
        return np.zeros((0, *shape), dtype=np.float32)
    if preprocessing.kind == "audio":
        return _audio_examples(items, str(preprocessing.frontend)).reshape(len(items), *shape)
    return _image_examples(items, shape)


def input_items(inputs: Any, sample_ndim: int) -> list[Any]:
    """Split any accepted input into one item per example (a path or an array).

    ``sample_ndim`` is the rank of one example as an array (1 for a clip, 3 for an HxWxC
    image; an HxW grayscale image is rank 2 and also accepted alone)."""
    import pandas as pd

    if isinstance(inputs, pd.DataFrame):
        if inputs.shape[1] == 1:
            return list(inputs.iloc[:, 0])
        return list(inputs.to_numpy())
    if isinstance(inputs, pd.Series):
        return list(inputs)
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        if inputs.dtype.kind in "OUS":
            return list(inputs.reshape(-1))
        single = inputs.ndim == sample_ndim or (sample_ndim == 3 and inputs.ndim == 2)
        return [inputs] if single else list(inputs)
    return list(inputs)


def pcm_clip(item: Any, index: int) -> np.ndarray:
    """One clip as float32 in [-1, 1]: a WAV path, int16 PCM, or float already in range."""
    from components.audio.wav import CLIP_SAMPLES, load_clip

    if isinstance(item, (str, os.PathLike)):
        return np.asarray(load_clip(Path(item)), dtype=np.float32)
    clip = np.asarray(item)
    if clip.dtype == np.int16:
        clip = clip.astype(np.float32) / PCM16_SCALE
    elif clip.dtype.kind != "f":
        raise ComponentError(
            f"clip {index} has dtype {clip.dtype}; give int16 PCM or float in [-1, 1]"
        )
    elif clip.size and np.abs(clip).max() > 1.0 + _FLOAT_TOLERANCE:
        raise ComponentError(
            f"clip {index} is float with peak {np.abs(clip).max():.4g}, outside [-1, 1]; "
            "give int16 PCM or float scaled to [-1, 1]"
        )
    if clip.shape != (CLIP_SAMPLES,):
        raise ComponentError(
            f"clip {index} has shape {clip.shape}; expected ({CLIP_SAMPLES},) samples, "
            "1 s at 16 kHz"
        )
    return clip.astype(np.float32)


def _audio_examples(items: list[Any], frontend: str) -> np.ndarray:
    from components.audio.frontends import compute_batch

    return compute_batch(frontend, np.stack([pcm_clip(item, i) for i, item in enumerate(items)]))


def _image_examples(items: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    from components.vision.images import load_image

    out = np.empty((len(items), *shape), dtype=np.float32)
    for i, item in enumerate(items):
        try:
            out[i] = load_image(item, shape[:2], shape[2]) / np.float32(255.0)
        except ComponentError as e:
            raise ComponentError(f"image {i}: {e}") from e
    return out
