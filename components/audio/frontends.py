"""Audio front ends: one-second clips to the 2-D feature maps the keyword model sees.

Pure functions, no Beam. Called by the Beam extraction (``components.audio.extract_features``)
on batches and, at inference time, by the MLflow pyfunc on raw clips, so this module must
import fast (TensorFlow is imported only inside the MFCC path) and be deterministic.

Front ends:

- ``"mfcc"`` (49x10): exactly MLPerf Tiny's reference KWS features (mlcommons/tiny
  ``benchmark/training/keyword_spotting/get_dataset.py`` with the ``kws_util.py`` defaults),
  so that its reference DS-CNN and models trained here see the same input. Each clip is
  divided by its largest sample value (signed, as ``wav / reduce_max(wav)``; a clip whose
  largest value is 0 is divided by its largest magnitude instead, and a silent clip is left
  as it is, where the reference would give NaN), then ``tf.signal``: 30 ms periodic Hann
  window (480 samples), 20 ms stride, no end padding (1 + (16000 - 480) // 320 = 49 frames),
  FFT 512 (the reference's ``fft_length=None``), magnitude spectrum, 40 mel bins over
  20-4000 Hz (``linear_to_mel_weight_matrix``), ``log(mel + 1e-6)``, DCT-II
  (``mfccs_from_log_mel_spectrograms``), first 10 coefficients. Short clips are zero-padded
  at the end to 16000 samples before (``wav.fit_length``), as the reference pads after its
  normalisation; its time-shift pad-and-slice is the identity at evaluation and is omitted.
  Firmware quantizes these with the model's input scale and zero point.
- ``"mfcc40"`` (49x10): the pre-MLPerf variant this project used before: no peak
  normalisation, 40 ms window (640 samples), FFT 1024, otherwise as ``"mfcc"``. Kept only so
  that models trained and logged with it (whose MLflow flavor stored the name ``"mfcc"``)
  still get the features they were trained on; train new models with ``"mfcc"``.
- ``"micro"`` (98x40): the TFLM audio micro-frontend (``pymicro-features``): 30 ms window,
  10 ms step, 40 channels over 125-7500 Hz, noise reduction (smoothing bits 10, even 0.025,
  odd 0.06, min signal 0.05), PCAN (strength 0.95, offset 80, gain bits 21), log scale
  shift 6, each uint16 output multiplied by 0.0390625 (= 1/25.6). Firmware must configure
  its ``FrontendConfig`` identically (note: TFLM's micro_speech example uses a 20 ms step,
  49x40; this front end uses 10 ms) and feed the model ``value / 25.6`` quantized with the
  model's input scale and zero point, resetting the frontend state before each clip. It
  takes the clip as recorded, with no peak normalisation: PCAN adapts the gain per channel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from components.errors import ComponentError

FRONTENDS: dict[str, tuple[int, int]] = {"mfcc": (49, 10), "mfcc40": (49, 10), "micro": (98, 40)}


@dataclass(frozen=True)
class MfccRecipe:
    """One MFCC variant: what differs between ``mfcc`` and ``mfcc40``."""

    window: int  # samples per frame (Hann window length)
    stride: int  # samples between frame starts
    fft: int  # FFT length; spectrogram bins = fft // 2 + 1
    peak_normalise: bool  # divide each clip by its largest sample value first


MFCC_RECIPES: dict[str, MfccRecipe] = {
    "mfcc": MfccRecipe(window=480, stride=320, fft=512, peak_normalise=True),  # MLPerf Tiny
    "mfcc40": MfccRecipe(window=640, stride=320, fft=1024, peak_normalise=False),  # pre-MLPerf
}
# The "mfcc" recipe's frame parameters under their former names (release.firmware_facts).
MFCC_WINDOW = MFCC_RECIPES["mfcc"].window  # 480 = 30 ms at 16 kHz
MFCC_STRIDE = MFCC_RECIPES["mfcc"].stride  # 320 = 20 ms
MFCC_FFT = MFCC_RECIPES["mfcc"].fft  # 512
MFCC_MEL_BINS = 40
MFCC_BAND_HZ = (20.0, 4000.0)
MFCC_LOG_OFFSET = 1e-6
MICRO_CHUNK_BYTES = 320  # 10 ms of int16 little-endian samples per call


def feature_shape(frontend: str) -> tuple[int, int]:
    """(frames, coefficients) of one clip's feature map for ``frontend``."""
    try:
        return FRONTENDS[frontend]
    except KeyError as e:
        raise ComponentError(
            f"unknown frontend {frontend!r}; choose one of {sorted(FRONTENDS)}"
        ) from e


def compute(frontend: str, audio: np.ndarray) -> np.ndarray:
    """Features of one clip: (CLIP_SAMPLES,) float32 in [-1, 1] -> float32 ``feature_shape``."""
    return compute_batch(frontend, np.asarray(audio)[None, :])[0]


def compute_batch(frontend: str, audio: np.ndarray) -> np.ndarray:
    """Features of N clips at once: (N, CLIP_SAMPLES) -> (N, *feature_shape), float32.

    MFCC runs as one vectorised TensorFlow call over the batch (each clip normalised on its
    own); the micro-frontend is streaming C code and runs clip by clip with a fresh state
    each (thread-safe).
    """
    shape = feature_shape(frontend)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[1] != CLIP_SAMPLES:
        raise ComponentError(f"audio must have shape (N, {CLIP_SAMPLES}), got {audio.shape}")
    if len(audio) == 0:
        return np.zeros((0, *shape), dtype=np.float32)
    if frontend in MFCC_RECIPES:
        out = _mfcc(audio, MFCC_RECIPES[frontend], shape[1])
    else:
        out = np.stack([_micro(a) for a in audio])
    return out.astype(np.float32, copy=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 the way soundfile maps PCM_16 (x * 32768), saturating."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")


def peak_normalise(audio: np.ndarray) -> np.ndarray:
    """Each clip (last axis) divided by its largest sample value, as MLPerf Tiny does.

    The reference divides by the signed maximum, not the largest magnitude: a clip that is
    negative everywhere flips sign, which the magnitude spectrum does not see. Where that
    maximum is 0 the reference yields NaN (0 / 0) or infinities; here such a clip is divided
    by its largest magnitude, and a silent clip stays silent, so features are always finite.
    The result does not depend on the input's scale (int16 counts or [-1, 1] floats).
    """
    audio = np.asarray(audio, dtype=np.float32)
    peak = audio.max(axis=-1, keepdims=True)
    magnitude = np.abs(audio).max(axis=-1, keepdims=True)
    divisor = np.where(peak != 0, peak, np.where(magnitude != 0, magnitude, 1.0))
    return (audio / divisor.astype(np.float32)).astype(np.float32)


def _mfcc(audio: np.ndarray, recipe: MfccRecipe, coefficients: int) -> np.ndarray:
    import tensorflow as tf

    if recipe.peak_normalise:
        audio = peak_normalise(audio)
    stft = tf.signal.stft(
        tf.constant(audio),
        frame_length=recipe.window,
        frame_step=recipe.stride,
        fft_length=recipe.fft,
        window_fn=tf.signal.hann_window,
    )
    mel = tf.tensordot(tf.abs(stft), _mel_matrix(recipe.fft // 2 + 1), 1)
    log_mel = tf.math.log(mel + MFCC_LOG_OFFSET)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :coefficients].numpy()


@functools.cache
def _mel_matrix(spectrogram_bins: int):  # -> tf.Tensor; built once per size and process
    import tensorflow as tf

    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=MFCC_MEL_BINS,
        num_spectrogram_bins=spectrogram_bins,
        sample_rate=SAMPLE_RATE,
        lower_edge_hertz=MFCC_BAND_HZ[0],
        upper_edge_hertz=MFCC_BAND_HZ[1],
    )


def _micro(audio: np.ndarray) -> np.ndarray:
    """Stream one clip through a fresh micro-frontend, 10 ms at a time."""
    from pymicro_features import MicroFrontend

    frontend = MicroFrontend()
    data = to_int16(audio).tobytes()
    frames, pos = [], 0
    while pos + MICRO_CHUNK_BYTES <= len(data):
        result = frontend.process_samples(data[pos : pos + MICRO_CHUNK_BYTES])
        if result.samples_read <= 0:
            break
        pos += 2 * result.samples_read
        if result.features:
            frames.append(result.features)
    out = np.asarray(frames, dtype=np.float32)
    if out.shape != FRONTENDS["micro"]:
        raise ComponentError(f"micro frontend produced {out.shape}, expected {FRONTENDS['micro']}")
    return out
