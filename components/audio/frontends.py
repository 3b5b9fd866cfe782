"""Audio front ends: one-second clips to the 2-D feature maps the keyword model sees.

Pure functions, no Beam. Called by the Beam extraction (``components.audio.extract_features``)
on batches and, at inference time, by the MLflow pyfunc on raw clips, so this module must
import fast (TensorFlow is imported only inside the MFCC path) and be deterministic.

Front ends:

- ``"mfcc"`` (49x10): the MLPerf Tiny DS-CNN features, computed with ``tf.signal``: 40 ms
  Hann window, 20 ms stride, FFT 1024, magnitude spectrum, 40 mel bins over 20-4000 Hz,
  ``log(mel + 1e-6)``, DCT-II, first 10 coefficients.
- ``"micro"`` (98x40): the TFLM audio micro-frontend (``pymicro-features``): 30 ms window,
  10 ms step, 40 channels over 125-7500 Hz, noise reduction (smoothing bits 10, even 0.025,
  odd 0.06, min signal 0.05), PCAN (strength 0.95, offset 80, gain bits 21), log scale
  shift 6, each uint16 output multiplied by 0.0390625 (= 1/25.6). Firmware must configure
  its ``FrontendConfig`` identically (note: TFLM's micro_speech example uses a 20 ms step,
  49x40; this front end uses 10 ms) and feed the model ``value / 25.6`` quantized with the
  model's input scale and zero point, resetting the frontend state before each clip.
"""

from __future__ import annotations

import functools

import numpy as np

from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from components.errors import ComponentError

FRONTENDS: dict[str, tuple[int, int]] = {"mfcc": (49, 10), "micro": (98, 40)}

MFCC_WINDOW = 640  # 40 ms at 16 kHz
MFCC_STRIDE = 320  # 20 ms
MFCC_FFT = 1024
MFCC_MEL_BINS = 40
MFCC_BAND_HZ = (20.0, 4000.0)
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

    MFCC runs as one vectorised TensorFlow call over the batch; the micro-frontend is
    streaming C code and runs clip by clip with a fresh state each (thread-safe).
    """
    shape = feature_shape(frontend)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[1] != CLIP_SAMPLES:
        raise ComponentError(f"audio must have shape (N, {CLIP_SAMPLES}), got {audio.shape}")
    if len(audio) == 0:
        return np.zeros((0, *shape), dtype=np.float32)
    out = _mfcc(audio) if frontend == "mfcc" else np.stack([_micro(a) for a in audio])
    return out.astype(np.float32, copy=False)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 the way soundfile maps PCM_16 (x * 32768), saturating."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")


def _mfcc(audio: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    stft = tf.signal.stft(
        tf.constant(audio),
        frame_length=MFCC_WINDOW,
        frame_step=MFCC_STRIDE,
        fft_length=MFCC_FFT,
        window_fn=tf.signal.hann_window,
    )
    mel = tf.tensordot(tf.abs(stft), _mel_matrix(), 1)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(tf.math.log(mel + 1e-6))
    return mfcc[..., : FRONTENDS["mfcc"][1]].numpy()


@functools.cache
def _mel_matrix():  # -> tf.Tensor; built once per process
    import tensorflow as tf

    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=MFCC_MEL_BINS,
        num_spectrogram_bins=MFCC_FFT // 2 + 1,
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
