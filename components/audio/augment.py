"""Waveform augmentation for keyword spotting: what real rooms, microphones and speakers do
to a clip that generated speech never has.

Called by ``components.audio.feature_transforms`` on the augmented copies of training clips,
before the front end (validation and test clips are never augmented). One function per
effect, each pure numpy/scipy and deterministic given its arguments (random draws come from
the caller's ``numpy.random.Generator``, so a copy is the same on every run and runner).
:class:`WaveAugmentSpec` (the ``features.augment`` config section) says how often each
effect is applied and over which ranges; :func:`apply_effects` draws and applies them in
the order sound meets them: the speaker (speed), the room (reverberation), the microphone
(band limits and colouring), the preamp and converter (gain and clipping). Time shift and
background noise are applied by the caller, after these, with :func:`time_shift` and
:func:`add_noise` / :func:`mix_noise`.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated

import numpy as np
import pydantic

from components.audio.wav import SAMPLE_RATE
from components.spec import component_spec

Probability = Annotated[float, pydantic.Field(ge=0, le=1)]
Range = tuple[float, float]


def _range(name: str, value: Range, lo: float, hi: float) -> None:
    if not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name}={value} must be (low, high) with {lo} <= low <= high <= {hi}")


@component_spec
class WaveAugmentSpec:
    """How often each room/microphone effect hits an augmented copy, and its ranges.

    The defaults are the ones the KWS ablation (``benchmarks/kws_ablation.py``) chose.
    """

    reverb_probability: Probability = 0.5
    rt60_s: Range = (0.15, 0.7)  # reverberation time: small office to large living room
    direct_to_reverb_db: Range = (-3.0, 12.0)  # near (dry) to far (wet) microphone
    colour_probability: Probability = 0.5
    low_cut_hz: Range = (50.0, 400.0)  # a small capsule's bass roll-off
    high_cut_hz: Range = (3000.0, 7500.0)  # cheap ADC / codec / capsule top end
    peak_gain_db: Range = (-9.0, 9.0)  # one resonance or dip of the housing
    peak_hz: Range = (300.0, 4000.0)
    clip_probability: Probability = 0.1
    drive_db: Range = (3.0, 15.0)  # gain over full scale before the converter clips
    speed_probability: Probability = 0.5
    speed: Range = (0.9, 1.1)  # replay speed: tempo and pitch together (Kaldi-style)
    noise_snr_db: Range | None = (0.0, 25.0)  # background noise SNR (None: mix by volume)

    def __post_init__(self) -> None:
        _range("rt60_s", self.rt60_s, 0.05, 2.0)
        _range("direct_to_reverb_db", self.direct_to_reverb_db, -20.0, 40.0)
        _range("low_cut_hz", self.low_cut_hz, 10.0, 2000.0)
        _range("high_cut_hz", self.high_cut_hz, 1000.0, SAMPLE_RATE / 2 - 100)
        if self.low_cut_hz[1] >= self.high_cut_hz[0]:
            raise ValueError(
                f"low_cut_hz={self.low_cut_hz} must stay below high_cut_hz={self.high_cut_hz}"
            )
        _range("peak_gain_db", self.peak_gain_db, -24.0, 24.0)
        _range("peak_hz", self.peak_hz, 50.0, 7000.0)
        _range("drive_db", self.drive_db, 0.0, 40.0)
        _range("speed", self.speed, 0.5, 2.0)
        if self.noise_snr_db is not None:
            _range("noise_snr_db", self.noise_snr_db, -20.0, 80.0)


def apply_effects(audio: np.ndarray, spec: WaveAugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """Speed, reverberation, colouring and clipping, each with its probability; the result
    has the input's length. Every draw is made whether or not its effect applies, so that
    changing one probability does not reshuffle the other effects' draws."""
    n = audio.size
    draws = {
        "speed": (rng.random(), rng.uniform(*spec.speed)),
        "reverb": (rng.random(), rng.uniform(*spec.rt60_s), rng.uniform(*spec.direct_to_reverb_db)),
        "colour": (rng.random(), rng.uniform(*spec.low_cut_hz), rng.uniform(*spec.high_cut_hz),
                   rng.uniform(*spec.peak_hz), rng.uniform(*spec.peak_gain_db)),
        "clip": (rng.random(), rng.uniform(*spec.drive_db)),
    }  # fmt: skip
    seed = int(rng.integers(2**32))
    p, factor = draws["speed"]
    if p < spec.speed_probability:
        audio = fit_length(change_speed(audio, factor), n)
    p, rt60, drr = draws["reverb"]
    if p < spec.reverb_probability:
        rir = room_impulse_response(rt60, drr, np.random.default_rng(seed))
        audio = reverberate(audio, rir)
    p, low, high, centre, gain = draws["colour"]
    if p < spec.colour_probability:
        audio = peaking_eq(band_limit(audio, low, high), centre, gain)
    p, drive = draws["clip"]
    if p < spec.clip_probability:
        audio = gain_and_clip(audio / max(float(np.abs(audio).max()), 1e-9), drive)
    return audio.astype(np.float32)


def room_impulse_response(
    rt60_s: float, direct_to_reverb_db: float, rng: np.random.Generator
) -> np.ndarray:
    """A synthetic room: a unit direct path, then a Gaussian-noise tail decaying by 60 dB in
    ``rt60_s`` (the statistical model of a diffuse late field), starting 2-10 ms later as
    the first reflections do, scaled so that the direct path carries ``direct_to_reverb_db``
    more energy than the tail."""
    length = int(min(rt60_s, 1.0) * SAMPLE_RATE)
    delay = int(rng.integers(SAMPLE_RATE // 500, SAMPLE_RATE // 100))
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-3 * math.log(10) * t / rt60_s)
    tail *= math.sqrt(10 ** (-direct_to_reverb_db / 10) / np.sum(np.square(tail)))
    rir = np.zeros(delay + length)
    rir[0] = 1.0
    rir[delay:] += tail
    return rir


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response, cut to the input's length (the response is
    causal, so the onset stays where it was) and rescaled to the input's peak."""
    from scipy import signal

    wet = signal.fftconvolve(audio, rir)[: audio.size]
    return wet * (np.abs(audio).max() / max(float(np.abs(wet).max()), 1e-9))


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """A microphone's pass band: 4th-order Butterworth high-pass at ``low_hz`` and 8th-order
    low-pass at ``high_hz`` (steep, as a converter's anti-alias filter)."""
    from scipy import signal

    return signal.sosfilt(_band_filter(round(low_hz), round(high_hz)), audio)


@functools.lru_cache(maxsize=512)
def _band_filter(low_hz: int, high_hz: int) -> np.ndarray:
    from scipy import signal

    high = signal.butter(4, low_hz, btype="highpass", fs=SAMPLE_RATE, output="sos")
    low = signal.butter(8, high_hz, btype="lowpass", fs=SAMPLE_RATE, output="sos")
    return np.concatenate([high, low])


def peaking_eq(audio: np.ndarray, centre_hz: float, gain_db: float, q: float = 1.0) -> np.ndarray:
    """One resonance (``gain_db`` > 0) or dip of a housing or capsule: the RBJ audio-EQ
    cookbook's peaking biquad."""
    from scipy import signal

    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * centre_hz / SAMPLE_RATE
    alpha = math.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * math.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * math.cos(w0), 1 - alpha / a]
    return signal.lfilter(b, den, audio)


def gain_and_clip(audio: np.ndarray, gain_db: float, limit: float = 1.0) -> np.ndarray:
    """Amplify by ``gain_db`` and hard-clip at +-``limit``, as an over-driven converter."""
    return np.clip(audio * 10 ** (gain_db / 20), -limit, limit)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Replay ``factor`` times faster (resampling): duration / factor, pitch and formants
    x factor, as a faster-speaking, smaller speaker. The factor is rounded to n/100."""
    from scipy import signal

    up, down = 100, max(1, round(100 * factor))
    g = math.gcd(up, down)
    return signal.resample_poly(audio, up // g, down // g)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Cut the end off or pad zeros at the end, to ``n`` samples (the onset stays put)."""
    if audio.size >= n:
        return audio[:n]
    return np.pad(audio, (0, n - audio.size))


def time_shift(audio: np.ndarray, samples: int) -> np.ndarray:
    """Move the clip ``samples`` later (earlier when negative), filling with silence: what
    falls off the end is lost. (MLPerf Tiny's reference pads and then slices back at the
    same offset, so its 'shift' leaves the clip where it was.)"""
    out = np.zeros_like(audio)
    if samples >= 0:
        out[samples:] = audio[: audio.size - samples]
    else:
        out[:samples] = audio[-samples:]
    return out


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` (as long as ``audio``) in at a signal-to-noise ratio of ``snr_db``,
    speech power measured over the active part (frames within 35 dB of the loudest), so
    that the silence around a word does not lower the SNR it is heard at."""
    from components.audio.synth_noise import power

    scale = math.sqrt(active_power(audio) / (power(noise) * 10 ** (snr_db / 10)))
    return audio + scale * noise


def mix_noise(audio: np.ndarray, noise: np.ndarray, volume: float) -> np.ndarray:
    """Mix ``noise`` in scaled by ``volume`` (Speech Commands' and MLPerf Tiny's recipe)."""
    return audio + volume * noise


def active_power(audio: np.ndarray, frame: int = 160, floor_db: float = -35.0) -> float:
    """Mean power of the 10 ms frames within ``floor_db`` of the loudest (never zero)."""
    n = max(audio.size // frame, 1)
    frames = np.square(np.resize(audio, n * frame).reshape(n, frame)).mean(axis=1)
    active = frames[frames >= frames.max() * 10 ** (floor_db / 10)]
    return float(active.mean()) + 1e-12
