"""Tests for components.audio: clip loading, padding, resampling and bad-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE, frame_count, load_clip, load_file
from components.errors import ComponentError


def _wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


def _sine(freq: float, seconds: float, rate: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_reads_pcm16_exactly_as_float(tmp_path):
    ints = np.array([0, 1, -1, 16384, -32768, 32767] * 2667, dtype=np.int16)[:CLIP_SAMPLES]
    path = tmp_path / "exact.wav"
    sf.write(str(path), ints, SAMPLE_RATE, subtype="PCM_16")
    audio = load_clip(path)
    assert audio.dtype == np.float32 and audio.shape == (CLIP_SAMPLES,)
    np.testing.assert_array_equal(audio, ints.astype(np.float32) / 32768)


def test_short_clip_is_zero_padded_at_the_end(tmp_path):
    short = _sine(300, 0.25)
    audio = load_clip(_wav(tmp_path / "short.wav", short))
    assert audio.shape == (CLIP_SAMPLES,)
    np.testing.assert_allclose(audio[: len(short)], short, atol=1 / 32768)
    assert not audio[len(short) :].any()


def test_offset_reads_a_window_of_a_long_file(tmp_path):
    ramp = (np.arange(3 * SAMPLE_RATE) % 20000 - 10000).astype(np.int16)
    path = tmp_path / "long.wav"
    sf.write(str(path), ramp, SAMPLE_RATE, subtype="PCM_16")
    audio = load_clip(path, offset=20000)
    np.testing.assert_array_equal(audio, ramp[20000 : 20000 + CLIP_SAMPLES] / 32768)
    assert frame_count(path) == 3 * SAMPLE_RATE


def test_offset_past_the_end_names_the_file(tmp_path):
    path = _wav(tmp_path / "one.wav", _sine(300, 1.0))
    with pytest.raises(ComponentError, match="one.wav: offset 16000 outside"):
        load_clip(path, offset=16000)


def test_stereo_is_mixed_down_to_mono(tmp_path):
    left, right = _sine(300, 1.0, amp=0.4), _sine(700, 1.0, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_allclose(load_clip(path), (left + right) / 2, atol=2 / 32768)


def test_8khz_clip_is_resampled_keeping_its_pitch(tmp_path):
    path = _wav(tmp_path / "8k.wav", _sine(500, 1.0, rate=8000), rate=8000)
    audio = load_clip(path)
    assert audio.shape == (CLIP_SAMPLES,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) == 500  # 1 Hz per bin for a 1 s clip at 16 kHz
    assert 0.45 < np.abs(audio[1000:-1000]).max() < 0.55


def test_8khz_clip_is_refused_when_skipping(tmp_path):
    path = _wav(tmp_path / "8k.wav", _sine(500, 1.0, rate=8000), rate=8000)
    with pytest.raises(ComponentError, match=r"8k.wav: sample rate 8000 Hz, expected 16000"):
        load_clip(path, on_wrong_rate="skip")


def _good_bytes(tmp_path: Path) -> bytes:
    return _wav(tmp_path / "good.wav", _sine(440, 1.0)).read_bytes()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda good: b"", "empty file"),
        (lambda good: good[:20], "corrupt or not a WAV"),
        (lambda good: bytes(range(256)) * 8, "corrupt or not a WAV"),
        (lambda good: good[:44], "truncated"),
        (lambda good: good[:5000], "truncated"),
    ],
    ids=["empty", "cut-in-header", "random-bytes", "header-only", "cut-in-data"],
)
def test_bad_files_raise_naming_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(make(_good_bytes(tmp_path)))
    with pytest.raises(ComponentError, match=reason) as err:
        load_clip(path)
    assert str(path) in str(err.value)


def test_wav_without_samples_is_empty(tmp_path):
    path = _wav(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(ComponentError, match="nothing.wav: empty WAV"):
        load_clip(path)


def test_missing_file_is_a_component_error(tmp_path):
    with pytest.raises(ComponentError, match="missing.wav: cannot read"):
        load_clip(tmp_path / "missing.wav")


def test_load_file_returns_the_whole_recording_at_16khz(tmp_path):
    path = _wav(tmp_path / "noise.wav", _sine(200, 2.5, rate=8000), rate=8000)
    assert load_file(path).shape == (int(2.5 * SAMPLE_RATE),)
    with pytest.raises(ComponentError, match="sample rate 8000"):
        load_file(path, on_wrong_rate="skip")
