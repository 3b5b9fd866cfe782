"""Tests for components.audio.frontends: shapes, pinned outputs, an independent MFCC check,
MLPerf Tiny's peak normalisation. The check against MLPerf Tiny's own test vectors and
reference model is in test_mlperf_reference.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.fft import dct

from components.audio import frontends
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE, load_clip
from components.errors import ComponentError
from tests.shared_data import REPO, shared

YES = shared("data", "tflm_testdata", "yes_1000ms.wav")
needs_yes = pytest.mark.skipif(not YES.is_file(), reason=f"TFLM test clip not found at {YES}")

# Pinned outputs: (mean, std, sum |x|, x[0, :3], x[mid, :3], x[-1, -1]).
PINS = {
    ("generated", "mfcc"): (
        -4.530830, 15.816644, 4632.1652,
        [-80.217010, 19.959141, 0.836030], [-25.863655, 10.091906, -5.804395], 5.317408,
    ),
    ("generated", "mfcc40"): (
        -4.939050, 16.387652, 4861.6124,
        [-83.808510, 20.655846, 0.511867], [-28.678425, 9.062216, -6.475718], 5.958434,
    ),
    ("generated", "micro"): (
        5.5062978, 7.6997953, 21584.6875,
        [0.0, 12.265625, 22.1484375], [12.6953125, 9.6875, 15.9765625], 0.0,
    ),
    ("yes", "mfcc"): (
        -2.205248, 8.443242, 1782.9004,
        [-34.802658, 8.159611, 4.225037], [-6.767480, -0.781282, 12.390904], -1.428590,
    ),
    ("yes", "mfcc40"): (
        -1.864997, 7.711091, 1655.4579,
        [-30.495308, 6.968112, 3.521338], [1.255275, -1.595597, 11.196364], -1.272171,
    ),
    ("yes", "micro"): (
        6.5917670, 8.5917836, 25839.7265625,
        [24.84375, 23.0078125, 24.9609375], [20.0390625, 21.25, 22.8515625], 0.0,
    ),
}  # fmt: skip
# MFCC goes through float FFTs and oneDNN matmuls: allow last-digit drift between CPUs.
# The micro-frontend is fixed-point C: its outputs are multiples of 1/25.6, exact anywhere.
# The mfcc40 pins are those of the project's MFCC before it became MLPerf Tiny's: unchanged.
MFCC_TOLERANCE = {"rtol": 1e-4, "atol": 2e-3}
TOLERANCE = {"mfcc": MFCC_TOLERANCE, "mfcc40": MFCC_TOLERANCE, "micro": {"rtol": 0, "atol": 1e-6}}


def generated_clip() -> np.ndarray:
    """A deterministic 1 s test signal: a tone and a chirp under a Gaussian envelope."""
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    envelope = np.exp(-((t - 0.5) ** 2) / (2 * 0.15**2))
    tone = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (300 + 1500 * t) * t)
    return (envelope * tone).astype(np.float32)


def _summary(x: np.ndarray) -> tuple:
    x = x.astype(np.float64)
    mid = x.shape[0] // 2
    return (x.mean(), x.std(), np.abs(x).sum(), *x[0, :3], *x[mid, :3], x[-1, -1])


def _flat(pin: tuple) -> tuple:
    mean, std, total, first, middle, last = pin
    return (mean, std, total, *first, *middle, last)


@pytest.mark.parametrize("frontend", sorted(frontends.FRONTENDS))
def test_generated_clip_output_is_pinned(frontend):
    out = frontends.compute(frontend, generated_clip())
    assert out.shape == frontends.feature_shape(frontend) and out.dtype == np.float32
    expected = _flat(PINS["generated", frontend])
    np.testing.assert_allclose(_summary(out), expected, **TOLERANCE[frontend])


@needs_yes
@pytest.mark.parametrize("frontend", sorted(frontends.FRONTENDS))
def test_tflm_yes_clip_output_is_pinned(frontend):
    out = frontends.compute(frontend, load_clip(YES))
    np.testing.assert_allclose(_summary(out), _flat(PINS["yes", frontend]), **TOLERANCE[frontend])


def _numpy_mfcc(audio: np.ndarray, window: int, fft: int, peak: bool) -> np.ndarray:
    """The MFCC recipe written out in numpy/scipy, independent of tf.signal."""

    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz) / 700.0)

    if peak:
        audio = audio / audio.max()
    frames_count = 1 + (CLIP_SAMPLES - window) // 320
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic Hann
    frames = np.stack([audio[i * 320 : i * 320 + window] * hann for i in range(frames_count)])
    magnitude = np.abs(np.fft.rfft(frames, fft))
    bins = mel(np.linspace(0, SAMPLE_RATE / 2, fft // 2 + 1))[1:, None]
    edges = np.linspace(mel(20.0), mel(4000.0), 42)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0, np.minimum((bins - lo) / (centre - lo), (hi - bins) / (hi - centre)))
    weights = np.vstack([np.zeros((1, 40)), weights])  # TF gives the DC bin no weight
    log_mel = np.log(magnitude @ weights + 1e-6)
    return dct(log_mel, type=2, axis=-1)[:, :10] / np.sqrt(2 * 40)


@pytest.mark.parametrize(
    ("frontend", "window", "fft", "peak"),
    [("mfcc", 480, 512, True), ("mfcc40", 640, 1024, False)],
)
def test_mfcc_matches_an_independent_numpy_implementation(frontend, window, fft, peak):
    # float32 vs float64 differ by up to ~0.02 where mel bands are nearly empty (the log
    # amplifies tiny energies); a wrong window, stride, band or DCT scaling is off by units.
    audio = generated_clip()
    expected = _numpy_mfcc(audio.astype(np.float64), window, fft, peak)
    assert expected.shape == frontends.feature_shape(frontend)  # 49 frames, no end padding
    np.testing.assert_allclose(frontends.compute(frontend, audio), expected, atol=0.05)


def test_mfcc_does_not_depend_on_the_level_of_the_clip():
    # Peak normalisation: a clip recorded 20 dB quieter gives the same features.
    clip = generated_clip()
    loud, quiet = frontends.compute_batch("mfcc", np.stack([clip, 0.1 * clip]))
    np.testing.assert_allclose(quiet, loud, atol=0.05)  # float32 rounding, as above
    old_loud, old_quiet = frontends.compute_batch("mfcc40", np.stack([clip, 0.1 * clip]))
    assert np.abs(old_loud - old_quiet).max() > 1.0  # the old variant saw the level


def test_peak_normalise_divides_by_the_signed_maximum_and_never_makes_nan():
    clips = np.array(
        [[0.5, -0.8, 0.25], [-0.5, -0.25, -1.0], [0.0, -0.5, -0.25], [0.0, 0.0, 0.0]],
        dtype=np.float32,
    )
    out = frontends.peak_normalise(clips)
    np.testing.assert_allclose(out[0], [1.0, -1.6, 0.5])  # max, not max |x|: as the reference
    np.testing.assert_allclose(out[1], [2.0, 1.0, 4.0])  # divided by -0.25, sign flipped
    np.testing.assert_allclose(out[2], [0.0, -1.0, -0.5])  # max 0: by the largest magnitude
    np.testing.assert_array_equal(out[3], [0.0, 0.0, 0.0])  # silence stays silence
    assert out.dtype == np.float32


def test_silent_and_negative_clips_give_finite_mfccs():
    clips = np.stack([np.zeros(CLIP_SAMPLES, np.float32), -np.abs(generated_clip()) - 1e-3])
    for frontend in frontends.MFCC_RECIPES:
        assert np.isfinite(frontends.compute_batch(frontend, clips)).all(), frontend


@pytest.mark.parametrize("frontend", sorted(frontends.FRONTENDS))
def test_batch_equals_clip_by_clip_and_is_deterministic(frontend):
    clips = np.stack([generated_clip(), np.zeros(CLIP_SAMPLES, np.float32), -generated_clip()])
    batch = frontends.compute_batch(frontend, clips)
    assert batch.shape == (3, *frontends.feature_shape(frontend))
    for clip, row in zip(clips, batch, strict=True):
        np.testing.assert_allclose(frontends.compute(frontend, clip), row, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(frontends.compute_batch(frontend, clips), batch)
    assert frontends.compute_batch(frontend, clips[:0]).shape == (0, *frontends.FRONTENDS[frontend])


def test_micro_frontend_sees_the_signal_not_silence():
    clips = np.stack([np.zeros(CLIP_SAMPLES, np.float32), generated_clip()])
    silent, tone = frontends.compute_batch("micro", clips)
    assert tone[40:60].mean() > silent[40:60].mean() + 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ComponentError, match="unknown frontend 'fbank'"):
        frontends.feature_shape("fbank")
    with pytest.raises(ComponentError, match=r"shape \(N, 16000\)"):
        frontends.compute_batch("mfcc", np.zeros((2, 8000), np.float32))


def test_to_int16_matches_pcm16_scaling():
    audio = np.array([0.0, 1 / 32768, -1.0, 1.0, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(frontends.to_int16(audio), [0, 1, -32768, 32767, 16384])


def test_import_does_not_load_tensorflow():
    code = "import sys, components.audio.frontends; print('tensorflow' in sys.modules)"
    root = REPO
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
