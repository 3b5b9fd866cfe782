"""Tests for the synthetic keyword data generator, on tiny specs with real eSpeak NG."""

from __future__ import annotations

import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pydantic
import pytest

from components.artifacts import KEYWORDS, SpeechDataset
from components.audio import espeak, speech_commands, synth_noise, synth_speech
from components.audio.synth_speech import SynthSpec, voice_tag
from components.errors import ComponentError

pytest.importorskip("espeakng_loader", reason="the optional [synth] extra is not installed")

VOICES = {
    "train": ("en-us+m1", "en+f3"),
    "validation": ("en-029+m7", "en-gb-scotland+f2"),
    "test": ("en-us+klatt", "en-gb-x-rp+m4"),
}
TINY = SynthSpec(
    keywords=("yes", "no"),
    unknown_words=("cat", "dog"),
    train_voices=VOICES["train"],
    validation_voices=VOICES["validation"],
    test_voices=VOICES["test"],
    takes_per_voice=2,
    eval_takes_per_voice=1,
    noise_seconds=2.0,
)
WORDS = ("yes", "no", "cat", "dog")


def _read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return pcm, w.getframerate(), w.getnchannels(), w.getsampwidth()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


def _clips(root: Path) -> list[str]:
    return [f for f in _files(root) if not f.startswith(synth_speech.NOISE_DIR)]


def _listed(root: Path, name: str) -> list[str]:
    return (root / name).read_text().splitlines()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synth_speech.run(TINY, tmp_path_factory.mktemp("tiny") / "set", progress=False).root


def test_writes_the_speech_commands_layout(tiny):
    assert sorted(p.name for p in tiny.iterdir()) == sorted(
        [*WORDS, "_background_noise_", "SYNTH_INFO.json", "testing_list.txt", "validation_list.txt"]
    )
    keyword_clips = 2 * 2 + 2 * 1 + 2 * 1  # train voices x takes + validation + test voices
    for word in ("yes", "no"):
        assert len(list((tiny / word).glob("*.wav"))) == keyword_clips
    assert (tiny / "yes" / f"{voice_tag('en-us+m1')}_001.wav").is_file()
    assert voice_tag("en-us+m1") == "en-us-m1"


def test_clips_are_one_second_16khz_mono_int16(tiny):
    for rel in _clips(tiny):
        pcm, rate, channels, width = _read_wav(tiny / rel)
        assert (rate, channels, width, pcm.size) == (16000, 1, 2, 16000), rel


def test_clips_are_not_silent(tiny):
    for rel in _clips(tiny):
        pcm = _read_wav(tiny / rel)[0].astype(np.float64) / 32768
        assert np.abs(pcm).max() > 10 ** (-25 / 20), rel  # level_dbfs starts at -24 dB


def test_noise_recordings_are_distinct_and_as_long_as_asked(tiny):
    noises = sorted((tiny / "_background_noise_").glob("*.wav"))
    assert len(noises) == len(synth_noise.NOISE_MAKERS) >= 5
    signals = []
    for path in noises:
        pcm, rate, channels, _ = _read_wav(path)
        assert (rate, channels, pcm.size) == (16000, 1, 2 * 16000)
        assert pcm.std() > 100, path.name  # audible, not silence
        signals.append(pcm.astype(np.float64))
    freqs = np.fft.rfftfreq(signals[0].size, 1 / 16000)
    bands = [(0, 250), (250, 2000), (2000, 8001)]
    shares = []
    for x in signals:
        power = np.abs(np.fft.rfft(x)) ** 2
        in_band = [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in bands]
        shares.append(tuple(np.round(np.array(in_band) / sum(in_band), 2)))
    assert len(set(shares)) == len(noises)  # each recording has its own spectral colour


def test_the_speech_commands_reader_reads_it(tiny):
    index = speech_commands.run(
        speech_commands.ReaderSpec(keywords=("yes", "no")), SpeechDataset(tiny)
    )
    by_split = {s: index.split(s) for s in ("train", "validation", "test")}

    assert set(index.labels) == {"_silence_", "_unknown_", "yes", "no"}
    for split, clips in by_split.items():
        spoken = [c for c in clips if c.label != "_silence_"]
        assert {c.label for c in spoken} >= {"yes", "no"}, split
        assert {Path(c.path).name.split("_")[0] for c in spoken} <= {
            voice_tag(v) for v in VOICES[split]
        }, split


def test_held_out_voices_are_listed_and_never_in_training(tiny):
    validation = _listed(tiny, "validation_list.txt")
    test = _listed(tiny, "testing_list.txt")
    tags = {split: {voice_tag(v) for v in voices} for split, voices in VOICES.items()}

    assert validation and test and not set(validation) & set(test)
    assert {Path(p).name.split("_")[0] for p in validation} == tags["validation"]
    assert {Path(p).name.split("_")[0] for p in test} == tags["test"]
    train = set(_clips(tiny)) - set(validation) - set(test)
    assert {Path(p).name.split("_")[0] for p in train} == tags["train"]
    assert set(validation) | set(test) <= set(_clips(tiny))  # lists name real files


def test_info_records_spec_counts_and_espeak_version(tiny):
    info = json.loads((tiny / "SYNTH_INFO.json").read_text())

    assert info["spec_hash"] == synth_speech.spec_hash(TINY)
    assert info["spec"]["test_voices"] == list(VOICES["test"])
    assert info["espeak_ng_version"] == espeak.engine().version
    assert info["clips"] == len(_clips(tiny))
    assert info["counts"]["yes"] == {"train": 4, "validation": 2, "test": 2}
    for word, counts in info["counts"].items():
        assert len(list((tiny / word).glob("*.wav"))) == sum(counts.values())


def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    again = synth_speech.run(TINY, tmp_path / "again", progress=False).root

    assert _files(again) == _files(tiny)
    assert (again / "testing_list.txt").read_bytes() == (tiny / "testing_list.txt").read_bytes()


def test_other_seed_gives_other_audio_with_the_same_layout(tiny, tmp_path):
    other = synth_speech.run(
        TINY.__class__(**{**_fields(TINY), "seed": 1}), tmp_path / "o", progress=False
    ).root
    mine, theirs = _files(tiny), _files(other)

    assert mine.keys() == theirs.keys()
    differing = [k for k in mine if mine[k] != theirs[k]]
    assert len(differing) == len(mine)  # every clip and every noise recording changed


def test_words_sit_near_the_centre_within_the_shift(tmp_path):
    clean = SynthSpec(
        **{
            **_fields(TINY),
            "noise_probability": 0.0,
            "channel_probability": 0.0,
            "max_shift_ms": 50,
        }
    )
    root = synth_speech.run(clean, tmp_path / "clean", progress=False).root
    for rel in _clips(root):
        pcm = _read_wav(root / rel)[0].astype(np.float64) / 32768
        voiced = np.flatnonzero(np.abs(pcm) > 1e-3)
        middle, length = (voiced[0] + voiced[-1]) / 2, voiced[-1] - voiced[0]
        assert 0.15 * 16000 < length <= 0.9 * 16000, rel  # a word, fitted into max_word_ms
        assert abs(middle - 8000) <= (50 + 15) * 16, rel  # shift plus the trim margin
        peak_db = 20 * np.log10(np.abs(pcm).max())
        assert -24.5 <= peak_db <= -2.9, rel  # level_dbfs


def test_second_run_with_the_same_spec_is_skipped(tiny):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}

    dataset = synth_speech.run(TINY, tiny, progress=False)

    assert dataset == SpeechDataset(root=tiny)
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before
    assert not list(tiny.parent.glob(".*partial*"))


def test_cache_hit_needs_no_espeak(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)

    assert synth_speech.run(TINY, tiny, progress=False).root == tiny


def test_changed_spec_regenerates_over_an_earlier_set(tiny, tmp_path):
    target = tmp_path / "set"
    shutil.copytree(tiny, target)
    louder = SynthSpec(**{**_fields(TINY), "level_dbfs": (-6.0, -3.0)})

    synth_speech.run(louder, target, progress=False)

    info = json.loads((target / "SYNTH_INFO.json").read_text())
    assert info["spec_hash"] == synth_speech.spec_hash(louder) != synth_speech.spec_hash(TINY)
    assert _files(target).keys() == _files(tiny).keys()
    assert _files(target)["yes/en-us-m1_000.wav"] != _files(tiny)["yes/en-us-m1_000.wav"]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")

    with pytest.raises(ComponentError, match="did not write"):
        synth_speech.run(TINY, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no partial left behind


def test_overlapping_voice_sets_are_refused_naming_them():
    with pytest.raises(pydantic.ValidationError, match=r"train_voices and test_voices.*en\+f3"):
        SynthSpec(**{**_fields(TINY), "test_voices": ("en+f3", "en-us+klatt")})


def test_keyword_used_as_unknown_word_is_refused():
    with pytest.raises(pydantic.ValidationError, match="share no word"):
        SynthSpec(**{**_fields(TINY), "unknown_words": ("cat", "yes")})


@pytest.mark.parametrize("field", ["snr_db", "rate_wpm", "warp"])
def test_reversed_ranges_are_refused(field):
    low, high = getattr(TINY, field)
    with pytest.raises(pydantic.ValidationError, match=field):
        SynthSpec(**{**_fields(TINY), field: (high, low)})


def test_unknown_voice_name_is_a_clear_error_and_writes_nothing(tmp_path):
    spec = SynthSpec(**{**_fields(TINY), "test_voices": ("en-us+klatt", "en-us+nobody")})

    with pytest.raises(ComponentError, match=r"en-us\+nobody.*variant 'nobody'"):
        synth_speech.run(spec, tmp_path / "set", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_tells_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)

    with pytest.raises(ComponentError, match=r"pip install tflm-pipelines\[synth\]"):
        synth_speech.run(TINY, tmp_path / "set", progress=False)


def test_default_spec_is_sized_for_training_and_holds_voices_out():
    spec = SynthSpec()
    jobs = list(synth_speech._jobs(spec))
    per_word = {w: sum(j.word == w and j.split == "train" for j in jobs) for w in spec.keywords}
    unknown = sum(j.word in spec.unknown_words and j.split == "train" for j in jobs)
    test_keywords = sum(j.word in KEYWORDS and j.split == "test" for j in jobs)

    assert spec.keywords == KEYWORDS
    assert all(300 <= n <= 500 for n in per_word.values())
    assert 0.8 <= unknown / per_word["yes"] <= 1.25  # unknown ~ one keyword's worth
    assert {j.word for j in jobs if j.split == "test"} >= set(spec.unknown_words)
    assert test_keywords >= 500
    variants = {
        s: {v.split("+")[1] for v in getattr(spec, f"{s}_voices")}
        for s in ("train", "validation", "test")
    }
    assert not variants["train"] & (variants["validation"] | variants["test"])
    espeak.check_voices(spec.train_voices + spec.validation_voices + spec.test_voices)


def _fields(spec: SynthSpec) -> dict:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def test_voice_groups_expand_in_order_each_voice_once():
    from components.audio import flite

    spec = SynthSpec(train_voices=("espeak", "flite", "flite:slt", "en-us+m1"))
    assert spec.train_voices == (*synth_speech.TRAIN_VOICES, *flite.VOICES)
    assert SynthSpec(train_voices=["flite"]).train_voices == flite.VOICES
