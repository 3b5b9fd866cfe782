"""The Speech Commands reader (components.audio): splits, 12-class labels, unknown and silence
sampling."""

from __future__ import annotations

import functools
import io
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pydantic
import pytest
import soundfile as sf

from components.artifacts import KEYWORDS, SILENCE_LABEL, SPLITS, UNKNOWN_LABEL, SpeechDataset
from components.audio.speech_commands import LABELS, ReaderSpec, counts, run, which_set
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from components.errors import ComponentError
from tests.shared_data import shared

REAL = shared("data", "speech_commands")
KEYWORD_WORDS = ("yes", "no", "up")
OTHER_WORDS = ("cat", "dog", "bird", "wow")
SPEAKERS = [f"{i:08x}" for i in range(0x1000, 0x1000 + 24 * 7919, 7919)]


@functools.cache
def _silent_wav(samples: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(samples, np.int16), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _wav(path: Path, samples: int) -> None:
    """A silent WAV; the reader never decodes speech clips, so content does not matter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_silent_wav(samples))


def _layout(root: Path, noise_seconds: tuple[float, ...] = (20.0, 15.0, 0.5)) -> Path:
    """24 speakers x 7 words (1-2 takes each), plus noise files (one shorter than 1 s)."""
    for word in KEYWORD_WORDS + OTHER_WORDS:
        for i, speaker in enumerate(SPEAKERS):
            for take in range(1 + i % 2):
                _wav(root / word / f"{speaker}_nohash_{take}.wav", 1600)
    for i, seconds in enumerate(noise_seconds):
        _wav(root / "_background_noise_" / f"noise{i}.wav", int(seconds * SAMPLE_RATE))
    (root / "_background_noise_" / "README.md").write_text("not audio")
    return root


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return _layout(tmp_path / "sc")


def _rel(path: str) -> str:
    return f"{Path(path).parent.name}/{Path(path).name}"


def test_labels_are_silence_unknown_then_keywords(layout):
    index = run(ReaderSpec(), SpeechDataset(layout))
    assert index.labels == LABELS == (SILENCE_LABEL, UNKNOWN_LABEL, *KEYWORDS)
    for clip in index.clips:
        word = Path(clip.path).parent.name
        if clip.label == SILENCE_LABEL:
            assert word == "_background_noise_"
        elif clip.label == UNKNOWN_LABEL:
            assert word in OTHER_WORDS
        else:
            assert clip.label == word and word in KEYWORD_WORDS


def test_list_files_decide_the_split(layout):
    val = [f"yes/{SPEAKERS[0]}_nohash_0.wav", f"cat/{SPEAKERS[1]}_nohash_0.wav"]
    test = [f"no/{SPEAKERS[2]}_nohash_0.wav", "up/not_on_disk_nohash_0.wav"]
    (layout / "validation_list.txt").write_text("\n".join(val) + "\n")
    (layout / "testing_list.txt").write_text("\n".join(test) + "\n")
    index = run(ReaderSpec(unknown_percent=100.0), SpeechDataset(layout))
    splits = {_rel(c.path): c.split for c in index.clips if c.label != SILENCE_LABEL}
    assert splits[val[0]] == "validation" and splits[test[0]] == "test"
    assert {s for r, s in splits.items() if r not in val + test} == {"train"}
    assert "up/not_on_disk_nohash_0.wav" not in splits
    assert splits.get(val[1]) == "validation"  # the lone validation unknown is kept


def test_hash_split_keeps_a_speaker_together_and_matches_which_set(layout):
    spec = ReaderSpec(validation_percent=20.0, testing_percent=20.0, unknown_percent=100.0)
    index = run(spec, SpeechDataset(layout))
    by_speaker: dict[str, set[str]] = {}
    for clip in index.clips:
        if clip.label != SILENCE_LABEL:
            by_speaker.setdefault(Path(clip.path).name.split("_")[0], set()).add(clip.split)
            assert clip.split == which_set(_rel(clip.path), spec)
    assert all(len(s) == 1 for s in by_speaker.values())
    assert {s for (s,) in by_speaker.values()} == set(SPLITS)


def test_which_set_uses_the_readme_arithmetic():
    # Values from the data set's published lists (v0.01, 10 % / 10 %).
    spec = ReaderSpec()
    assert which_set("bed/026290a7_nohash_0.wav", spec) == "validation"
    assert which_set("bed/060cd039_nohash_1.wav", spec) == "validation"
    assert which_set("yes/439c84f4_nohash_1.wav", spec) == which_set(
        "no/439c84f4_nohash_0.wav", spec
    )


def test_unknown_sample_size_and_determinism(layout):
    spec = ReaderSpec(unknown_percent=25.0)
    first = run(spec, SpeechDataset(layout))
    assert run(spec, SpeechDataset(layout)) == first
    for split, per_label in counts(first).items():
        keywords = sum(per_label[k] for k in KEYWORDS)
        available = sum(
            1
            for p in layout.glob("*/*.wav")
            if p.parent.name in OTHER_WORDS and which_set(_rel(str(p)), spec) == split
        )
        assert per_label[UNKNOWN_LABEL] == min(available, math.ceil(keywords * 0.25))
    reseeded = run(ReaderSpec(unknown_percent=25.0, seed=1), SpeechDataset(layout))
    unknown = {c.path for c in first.clips if c.label == UNKNOWN_LABEL}
    assert unknown != {c.path for c in reseeded.clips if c.label == UNKNOWN_LABEL}


def test_silence_windows_are_cut_from_usable_noise_in_split_regions(layout):
    spec = ReaderSpec(silence_percent=50.0)
    index = run(spec, SpeechDataset(layout))
    frames = {"noise0.wav": 20 * SAMPLE_RATE, "noise1.wav": 15 * SAMPLE_RATE}
    assert sorted(Path(p).name for p in index.noise_files) == sorted(frames)  # 0.5 s dropped
    windows: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for per_label in counts(index).values():
        speech = sum(n for label, n in per_label.items() if label != SILENCE_LABEL)
        assert per_label[SILENCE_LABEL] == math.ceil(speech * 0.5)
    for clip in index.clips:
        if clip.label == SILENCE_LABEL:
            name = Path(clip.path).name
            assert 0 <= clip.offset <= frames[name] - CLIP_SAMPLES
            windows[clip.split].append((name, clip.offset))
    # the train region starts after validation (10 %) and test (10 %) of each file
    assert all(off >= 0.2 * frames[name] for name, off in windows["train"])
    for name, off in windows["test"]:
        assert 0.1 * frames[name] <= off <= 0.2 * frames[name] - CLIP_SAMPLES
    assert len(set(windows["train"])) > 1
    assert run(spec, SpeechDataset(layout)) == index


def test_clip_order_is_split_then_path(layout):
    index = run(ReaderSpec(), SpeechDataset(layout))
    keys = [(SPLITS.index(c.split), c.path, c.offset) for c in index.clips]
    assert keys == sorted(keys)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ComponentError, match="does not exist"):
        run(ReaderSpec(), SpeechDataset(tmp_path / "nope"))


def test_folder_without_keywords_is_refused(tmp_path):
    _wav(tmp_path / "cat" / "a_nohash_0.wav", 100)
    with pytest.raises(ComponentError, match="no keyword folders.*found cat"):
        run(ReaderSpec(), SpeechDataset(tmp_path))


def test_silence_without_noise_files_is_refused_unless_disabled(tmp_path):
    root = _layout(tmp_path / "sc", noise_seconds=(0.5,))
    with pytest.raises(ComponentError, match="no usable background noise.*silence_percent"):
        run(ReaderSpec(), SpeechDataset(root))
    index = run(ReaderSpec(silence_percent=0.0), SpeechDataset(root))
    assert not any(c.label == SILENCE_LABEL for c in index.clips)


def test_spec_is_validated_when_parsed():
    with pytest.raises(pydantic.ValidationError):
        ReaderSpec(unknown_percent=-1.0)
    with pytest.raises(pydantic.ValidationError):
        ReaderSpec(validation_percent=60.0, testing_percent=50.0)
    with pytest.raises(pydantic.ValidationError):
        ReaderSpec(silence=1.0)  # unknown key


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Speech Commands sample not found at {REAL}")
def test_real_sample(caplog):
    caplog.set_level(logging.INFO)
    index = run(ReaderSpec(), SpeechDataset(REAL))
    per_split = counts(index)
    logging.getLogger(__name__).info("real Speech Commands sample: %s", per_split)
    # the published list files are the README's hash split at 10 % / 10 %
    spec = ReaderSpec()
    speech = [c for c in index.clips if c.label != SILENCE_LABEL]
    assert all(c.split == which_set(_rel(c.path), spec) for c in speech)
    assert all(per_split["train"][label] > 0 for label in LABELS)
    assert sum(per_split[s][k] for s in SPLITS for k in KEYWORDS) == 100  # 10 words x 10 clips
    assert len(index.noise_files) == 6
    assert Counter(c.split for c in index.clips)["train"] == sum(per_split["train"].values())


def test_keywords_subset_makes_a_smaller_task(layout):
    index = run(ReaderSpec(keywords=("yes", "no")), SpeechDataset(layout))
    assert index.labels == (SILENCE_LABEL, UNKNOWN_LABEL, "yes", "no")
    assert {c.label for c in index.clips} == set(index.labels)
    assert not any(c.label == "up" for c in index.clips)  # "up" is now an unknown word
