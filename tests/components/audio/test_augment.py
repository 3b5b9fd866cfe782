"""Waveform augmentation: each effect does what it says, the chain is deterministic per seed,
and bad settings are refused naming the key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydantic
import pytest

from components.audio import augment
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE

ALL_ON = augment.WaveAugmentSpec(
    reverb_probability=1.0,
    colour_probability=1.0,
    clip_probability=1.0,
    speed_probability=1.0,
)


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return amplitude * np.sin(2 * np.pi * freq * t)


def _burst() -> np.ndarray:
    """0.2 s of noise starting at 0.3 s, silence elsewhere."""
    audio = np.zeros(CLIP_SAMPLES)
    audio[4800:8000] = np.random.default_rng(0).standard_normal(3200) * 0.3
    return audio


def _band_energy(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())


def test_reverb_lengthens_the_energy_decay_and_keeps_the_onset():
    rng = np.random.default_rng(1)
    dry = _burst()
    rir = augment.room_impulse_response(0.6, 0.0, rng)
    wet = augment.reverberate(dry, rir)
    assert wet.size == dry.size
    after = slice(8000 + 1600, 8000 + 4800)  # 100-300 ms after the burst ends
    assert np.sum(dry[after] ** 2) == 0
    assert np.sum(wet[after] ** 2) > 1e-3 * np.sum(wet[4800:8000] ** 2)
    assert np.abs(wet[:4800]).max() < 1e-9  # causal: nothing before the onset
    assert np.abs(wet).max() == pytest.approx(np.abs(dry).max())


def test_room_impulse_response_decays_by_60_db_in_rt60_and_has_its_direct_ratio():
    rir = augment.room_impulse_response(0.4, 6.0, np.random.default_rng(2))
    tail = rir[1:]
    assert 10 * np.log10(rir[0] ** 2 / np.sum(tail**2)) == pytest.approx(6.0, abs=0.01)
    envelope = [np.sqrt(np.mean(tail[i : i + 320] ** 2)) for i in (400, 400 + 3200)]
    # 0.2 s later the level is 30 dB lower (60 dB per 0.4 s), within noise of a short window
    assert 20 * np.log10(envelope[0] / envelope[1]) == pytest.approx(30.0, abs=4.0)


def test_band_limit_removes_energy_outside_the_pass_band():
    audio = np.random.default_rng(3).standard_normal(CLIP_SAMPLES)
    out = augment.band_limit(audio, 200.0, 3000.0)
    assert _band_energy(out, 4000, 8000) < 1e-4 * _band_energy(audio, 4000, 8000)
    assert _band_energy(out, 0, 60) < 1e-2 * _band_energy(audio, 0, 60)
    assert _band_energy(out, 500, 2500) > 0.8 * _band_energy(audio, 500, 2500)


def test_peaking_eq_raises_or_cuts_its_centre_frequency_only():
    tone, far = _tone(1000.0), _tone(6000.0)
    boosted = augment.peaking_eq(tone, 1000.0, 9.0)[4000:]
    cut = augment.peaking_eq(tone, 1000.0, -9.0)[4000:]
    gain = lambda out, ref: 20 * np.log10(np.abs(out).max() / np.abs(ref).max())  # noqa: E731
    assert gain(boosted, tone) == pytest.approx(9.0, abs=0.2)
    assert gain(cut, tone) == pytest.approx(-9.0, abs=0.2)
    assert abs(gain(augment.peaking_eq(far, 1000.0, 9.0)[4000:], far)) < 1.0


def test_gain_and_clip_bounds():
    tone = _tone(440.0, amplitude=0.5)
    out = augment.gain_and_clip(tone, 12.0, limit=1.0)
    assert np.abs(out).max() == 1.0
    assert np.mean(np.abs(out) == 1.0) > 0.3  # 2 x over full scale: most of it clipped
    quiet = augment.gain_and_clip(tone, -6.0)
    np.testing.assert_allclose(quiet, tone * 10 ** (-6 / 20))


def test_speed_changes_duration_and_pitch():
    tone = _tone(500.0)
    fast = augment.change_speed(tone, 1.25)
    assert fast.size == pytest.approx(tone.size / 1.25, abs=2)
    peak = np.fft.rfftfreq(fast.size, 1 / SAMPLE_RATE)[np.argmax(np.abs(np.fft.rfft(fast)))]
    assert peak == pytest.approx(625.0, abs=2.0)
    assert augment.change_speed(tone, 0.8).size == pytest.approx(tone.size / 0.8, abs=2)
    assert augment.fit_length(fast, CLIP_SAMPLES).size == CLIP_SAMPLES


@pytest.mark.parametrize("samples", [1234, -2000, 0])
def test_time_shift_moves_the_onset_by_the_requested_samples(samples):
    audio = _burst()
    out = augment.time_shift(audio, samples)
    assert out.size == audio.size
    assert np.flatnonzero(out)[0] == np.flatnonzero(audio)[0] + samples
    np.testing.assert_array_equal(out[4800 + samples : 8000 + samples], audio[4800:8000])


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_requested_snr(snr_db):
    speech, noise = _burst(), np.random.default_rng(4).standard_normal(CLIP_SAMPLES)
    mixed = augment.add_noise(speech, noise, snr_db)
    added = mixed - speech
    speech_power = np.mean(speech[4800:8000] ** 2)  # the active part of the clip
    measured = 10 * np.log10(speech_power / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_effects_are_deterministic_per_seed_and_keep_the_length():
    audio = _tone(300.0) * np.hanning(CLIP_SAMPLES)
    first = augment.apply_effects(audio, ALL_ON, np.random.default_rng(5))
    again = augment.apply_effects(audio, ALL_ON, np.random.default_rng(5))
    other = augment.apply_effects(audio, ALL_ON, np.random.default_rng(6))
    assert first.shape == audio.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_no_effect_at_probability_zero_and_probabilities_do_not_reshuffle_draws():
    audio = _tone(300.0)
    off = dataclasses.replace(
        ALL_ON,
        reverb_probability=0.0,
        colour_probability=0.0,
        clip_probability=0.0,
        speed_probability=0.0,
    )
    np.testing.assert_allclose(
        augment.apply_effects(audio, off, np.random.default_rng(7)), audio, atol=1e-7
    )
    only_clip = dataclasses.replace(off, clip_probability=1.0)
    out = augment.apply_effects(audio, only_clip, np.random.default_rng(7))
    assert np.abs(out).max() == pytest.approx(1.0) and not np.allclose(out, audio)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rt60_s": (0.9, 0.2)}, "rt60_s"),
        ({"low_cut_hz": (100.0, 4000.0)}, "low_cut_hz"),
        ({"speed": (0.1, 1.0)}, "speed"),
        ({"noise_snr_db": (10.0, 200.0)}, "noise_snr_db"),
        ({"reverb_probability": 1.5}, "reverb_probability"),
        ({"reverb": 0.5}, "reverb"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(fields, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        augment.WaveAugmentSpec(**fields)
