"""Background-noise recordings for the synthetic keyword data set, made with numpy.

Called by ``components.audio.synth_speech``, which writes one recording per entry of
:data:`NOISE_MAKERS` into ``_background_noise_/``; the reader cuts silence examples from
them and mixes them under the spoken words. Each maker takes a seeded generator and a
length in samples (16 kHz) and returns float audio of arbitrary scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.audio.wav import SAMPLE_RATE


def power(x: np.ndarray) -> float:
    """Mean power, never zero (so it can divide)."""
    return float(np.mean(np.square(x))) + 1e-12


def _shaped(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]):
    """Gaussian noise whose amplitude spectrum is multiplied by ``gain(frequency_hz)``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    return np.fft.irfft(spectrum * gain(np.fft.rfftfreq(n, 1 / SAMPLE_RATE)), n)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(power(x))


def _machine(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) plus a motor's band noise, throbbing."""
    t, base = np.arange(n) / SAMPLE_RATE, rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * k * base * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
    motor = _shaped(rng, n, lambda f: ((f > 150) & (f < 1500)).astype(float))
    throb = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(8, 30) * t)
    return _unit(hum) + 0.8 * _unit(motor) * throb


def _babble(rng: np.random.Generator, n: int, talkers: int = 6) -> np.ndarray:
    """Several 'talkers': speech-band noise with formant-like peaks and syllabic bursts."""
    total = np.zeros(n)
    for _ in range(talkers):
        f1, f2 = rng.uniform(300, 900), rng.uniform(1000, 2600)
        shape = lambda f, a=f1, b=f2: (  # noqa: E731
            np.exp(-(((f - a) / 250) ** 2))
            + 0.6 * np.exp(-(((f - b) / 400) ** 2))
            + 0.05 * ((f > 100) & (f < 4000))
        )
        syllables = rng.uniform(3, 6) * n / SAMPLE_RATE
        gains = rng.uniform(0, 1, int(syllables) + 2) * (rng.random(int(syllables) + 2) > 0.3)
        envelope = np.interp(np.linspace(0, syllables, n), np.arange(gains.size), gains)
        total += _unit(_shaped(rng, n, shape)) * envelope**2
    return total


def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    """High-frequency hiss that swells slowly, with random drop clicks."""
    from scipy import signal  # a second to import: only the generator needs it

    t = np.arange(n) / SAMPLE_RATE
    hiss = _shaped(rng, n, lambda f: (f > 800) / np.sqrt(np.maximum(f, 1)))
    swell = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6))
    impulses = np.zeros(n)
    count = rng.poisson(40 * n / SAMPLE_RATE)
    impulses[rng.integers(0, n, count)] = rng.uniform(-3, 3, count)
    drops = signal.fftconvolve(impulses, np.exp(-np.arange(160) / 25.0), mode="same")
    return _unit(hiss) * swell + 0.7 * _unit(drops)


NOISE_MAKERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "white_noise": lambda rng, n: rng.standard_normal(n),
    "pink_noise": lambda rng, n: _shaped(rng, n, lambda f: 1 / np.sqrt(np.maximum(f, 20))),
    "brown_noise": lambda rng, n: _shaped(rng, n, lambda f: 1 / np.maximum(f, 20)),
    "machine_hum": _machine,
    "babble": _babble,
    "rain": _rain,
}
