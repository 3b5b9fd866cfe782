"""CMU Flite voices: synthesis follows the rendition, the generator mixes them with eSpeak
voices keeping held-out voices out of training, and a missing Flite or voice is named."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from components.audio import flite, synth_speech
from components.audio.espeak import Rendition
from components.audio.synth_speech import SynthSpec
from components.errors import ComponentError

needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="CMU Flite is not installed (apt-get install flite)"
)


@needs_flite
def test_rate_stretches_duration_and_each_word_is_audio():
    slow, fast = flite.synthesize([
        ("seven", Rendition("flite:slt", rate=110)),
        ("seven", Rendition("flite:slt", rate=220)),
    ]).audio  # fmt: skip
    assert slow.dtype == np.int16 and np.abs(slow).max() > 1000
    assert slow.size / fast.size == pytest.approx(2.0, rel=0.15)


@needs_flite
@pytest.mark.parametrize("voice", ["flite:kal16", "flite:slt"])  # rms ignores f0_shift
def test_pitch_changes_the_audio_not_the_length(voice):
    low, high = flite.synthesize([
        ("yes", Rendition(voice, pitch=10)), ("yes", Rendition(voice, pitch=90)),
    ]).audio  # fmt: skip
    assert not np.array_equal(low[: min(low.size, high.size)], high[: min(low.size, high.size)])


@needs_flite
def test_unknown_flite_voice_is_named():
    with pytest.raises(ComponentError, match=r"unknown Flite voice 'flite:nobody'"):
        flite.check_voices(["flite:nobody"])


def test_missing_flite_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    flite._program.cache_clear()
    flite.voices.cache_clear()
    try:
        with pytest.raises(ComponentError, match="apt-get install flite"):
            flite.check_voices(["flite:slt"])
    finally:
        flite._program.cache_clear()
        flite.voices.cache_clear()


@needs_flite
def test_generator_mixes_flite_and_espeak_voices_and_holds_voices_out(tmp_path: Path):
    pytest.importorskip("espeakng_loader", reason="the optional [synth] extra is not installed")
    spec = SynthSpec(
        keywords=("yes",), unknown_words=("cat",), train_voices=("flite:slt", "en-us+m1"),
        validation_voices=("en+f3",), test_voices=("flite:kal16",), takes_per_voice=1,
        eval_takes_per_voice=1, noise_seconds=2.0,
    )  # fmt: skip
    root = synth_speech.run(spec, tmp_path / "set", progress=False).root
    train = sorted(p.name for p in (root / "yes").glob("flite-slt_*.wav"))
    assert train and (root / "yes" / "flite-kal16_000.wav").is_file()
    assert "yes/flite-kal16_000.wav" in (root / "testing_list.txt").read_text().splitlines()
    with wave.open(str(root / "yes" / train[0])) as w:
        assert (w.getframerate(), w.getnframes()) == (16000, 16000)


def test_one_speaker_under_two_names_cannot_cross_splits():
    with pytest.raises(ValueError, match=r"share voices \['flite:kal16'\]"):
        SynthSpec(train_voices=("flite:kal",), test_voices=("flite:kal16",))
