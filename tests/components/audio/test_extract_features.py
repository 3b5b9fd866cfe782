"""Tests for components.audio.extract_features: the Beam pipeline end to end on the DirectRunner,
dead letters, the too-many-bad refusal, and the augmentation it applies to training clips."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydantic
import pytest
import soundfile as sf

from components.artifacts import Clip, ClipIndex, Preprocessing, SpeechDataset
from components.audio import speech_commands
from components.audio.augment import WaveAugmentSpec
from components.audio.extract_features import FeatureSpec, run
from components.audio.feature_transforms import augment, clip_key, clip_rng
from components.audio.frontends import peak_normalise
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from components.errors import ComponentError
from components.example_records import load_split

WORDS = {"yes": 300.0, "no": 500.0, "up": 700.0, "cat": 900.0}  # word -> tone frequency
SPEAKERS = ("aaaa0000", "bbbb1111", "cccc2222", "dddd3333", "eeee4444")
CORRUPT = "no/bbbb1111_nohash_0.wav"
LOW_RATE = "up/cccc2222_nohash_0.wav"
# No room or microphone effects, noise by volume: the tests of time shift and noise see
# those alone.
DRY = WaveAugmentSpec(
    reverb_probability=0.0,
    colour_probability=0.0,
    clip_probability=0.0,
    speed_probability=0.0,
    noise_snr_db=None,
)


def _tone(freq: float, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> ClipIndex:
    """20 clips (4 words x 5 speakers, one corrupt, one at 8 kHz) and a 12 s noise file."""
    root = tmp_path_factory.mktemp("sc")
    for word, freq in WORDS.items():
        (root / word).mkdir()
        for i, speaker in enumerate(SPEAKERS):
            path = root / word / f"{speaker}_nohash_0.wav"
            sf.write(str(path), _tone(freq * (1 + i / 10), 0.8), SAMPLE_RATE, subtype="PCM_16")
    (root / CORRUPT).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    sf.write(str(root / LOW_RATE), _tone(700.0, 1.0, 8000), 8000, subtype="PCM_16")
    (root / "_background_noise_").mkdir()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 12 * SAMPLE_RATE).astype(np.float32)
    sf.write(str(root / "_background_noise_" / "hum.wav"), noise, SAMPLE_RATE)
    (root / "validation_list.txt").write_text(
        "".join(f"{w}/dddd3333_nohash_0.wav\n" for w in WORDS)
    )
    (root / "testing_list.txt").write_text("".join(f"{w}/eeee4444_nohash_0.wav\n" for w in WORDS))
    spec = speech_commands.ReaderSpec(unknown_percent=100.0, silence_percent=20.0)
    return speech_commands.run(spec, SpeechDataset(root))


def _expected_counts(index: ClipIndex, bad: set[str], copies: int) -> dict[str, int]:
    good = [c for c in index.clips if _rel(c) not in bad]
    return {
        split: sum((1 + copies) if split == "train" else 1 for c in good if c.split == split)
        for split in ("train", "validation", "test")
    }


def _rel(clip: Clip) -> str:
    return f"{Path(clip.path).parent.name}/{Path(clip.path).name}"


def _records(path_glob: list[Path]) -> list[dict]:
    import tensorflow as tf

    rows = []
    for raw in tf.data.TFRecordDataset([str(p) for p in path_glob]).as_numpy_iterator():
        example = tf.train.Example.FromString(raw).features.feature
        rows.append({
            "key": example["key"].bytes_list.value[0].decode(),
            "label": example["label"].int64_list.value[0],
            "features": np.asarray(example["features"].float_list.value, np.float32),
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def mfcc_run(index, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    (out / "train-00000-of-00005.tfrecord").write_bytes(b"stale")
    spec = FeatureSpec(augment_copies=2, num_shards=2)
    assert spec.runner == "DirectRunner"
    return run(spec, index, out), out


def test_writes_sharded_tfrecords_with_counts(index, mfcc_run):
    features, out = mfcc_run
    assert features.counts == _expected_counts(index, {CORRUPT}, copies=2)
    assert features.example_shape == (49, 10, 1)
    assert features.preprocessing == Preprocessing(kind="audio", frontend="mfcc")
    assert features.labels == index.labels
    for split in ("train", "validation", "test"):
        names = [p.name for p in features.files(split)]
        assert names == [f"{split}-00000-of-00002.tfrecord", f"{split}-00001-of-00002.tfrecord"]
    assert not (out / "train-00000-of-00005.tfrecord").exists()  # stale shard removed


def test_corrupt_clip_becomes_a_dead_letter(mfcc_run):
    features, out = mfcc_run
    assert [Path(s.path).name for s in features.skipped] == [Path(CORRUPT).name]
    assert "corrupt or not a WAV" in features.skipped[0].reason
    rows = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(r["path"], r["split"]) for r in rows] == [(features.skipped[0].path, "train")]


def test_records_carry_labels_keys_and_augmented_copies(index, mfcc_run):
    features, _ = mfcc_run
    rows = _records(features.files("train"))
    by_key = {r["key"]: r for r in rows}
    good = [c for c in index.split("train") if _rel(c) != CORRUPT]
    assert sorted(by_key) == sorted(clip_key(c, k) for c in good for k in range(3))
    for clip in good:
        original = by_key[clip_key(clip)]
        assert original["label"] == index.labels.index(clip.label)
        assert not np.allclose(original["features"], by_key[clip_key(clip, 1)]["features"])
    assert not any("@1" in r["key"] for r in _records(features.files("test")))


def test_load_split_returns_numpy_in_key_order(index, mfcc_run):
    features, _ = mfcc_run
    x, y = load_split(features, "validation")
    assert x.shape == (features.counts["validation"], 49, 10, 1) and x.dtype == np.float32
    assert y.dtype == np.int64
    labels = Counter(index.labels.index(c.label) for c in index.split("validation"))
    assert Counter(y.tolist()) == labels
    x2, y2 = load_split(features, "validation")
    np.testing.assert_array_equal(x, x2)


def test_micro_frontend_and_skipping_wrong_rate(index, tmp_path):
    spec = FeatureSpec(frontend="micro", num_shards=1, on_wrong_rate="skip", max_bad_fraction=0.2)
    features = run(spec, index, tmp_path, ["--direct_num_workers=1"])
    assert features.counts == _expected_counts(index, {CORRUPT, LOW_RATE}, copies=0)
    assert sorted(Path(s.path).name for s in features.skipped) == sorted(
        Path(p).name for p in (CORRUPT, LOW_RATE)
    )
    assert any("sample rate 8000 Hz" in s.reason for s in features.skipped)
    x, _ = load_split(features, "test")
    assert x.shape == (features.counts["test"], 98, 40, 1)


def test_too_many_bad_clips_are_refused(index, tmp_path):
    with pytest.raises(ComponentError, match=r"1 of \d+ clips could not be decoded") as err:
        run(FeatureSpec(max_bad_fraction=0.01), index, tmp_path)
    assert "bbbb1111_nohash_0.wav" in str(err.value)


def test_refusals_before_any_work(index, tmp_path):
    with pytest.raises(ComponentError, match="set the spec.s runner instead"):
        run(FeatureSpec(), index, tmp_path, ["--runner=FlinkRunner"])
    with pytest.raises(ComponentError, match="clip index is empty"):
        run(FeatureSpec(), ClipIndex(clips=(), labels=index.labels), tmp_path)
    stray = ClipIndex(clips=(Clip("x.wav", "maybe", "train"),), labels=index.labels)
    with pytest.raises(ComponentError, match=r"labels \['maybe'\] are not in"):
        run(FeatureSpec(), stray, tmp_path)
    with pytest.raises(ComponentError, match="failed on runner NoSuchRunner"):
        run(FeatureSpec(runner="NoSuchRunner"), index, tmp_path)
    with pytest.raises(pydantic.ValidationError):
        FeatureSpec(frontend="fbank")
    with pytest.raises(pydantic.ValidationError):
        FeatureSpec(max_bad_fraction=1.5)


def _clip() -> Clip:
    return Clip("/data/yes/abcd_nohash_0.wav", "yes", "train")


def test_augmentation_is_deterministic_per_clip_and_copy():
    spec = FeatureSpec(augment_copies=2)
    audio, noise = _tone(440.0, 1.0), [np.ones(3 * CLIP_SAMPLES, np.float32) * 0.5]
    first = augment(audio, noise, spec, clip_rng(0, _clip(), 1))
    np.testing.assert_array_equal(first, augment(audio, noise, spec, clip_rng(0, _clip(), 1)))
    assert not np.array_equal(first, augment(audio, noise, spec, clip_rng(0, _clip(), 2)))
    assert not np.array_equal(first, augment(audio, noise, spec, clip_rng(1, _clip(), 1)))
    moved = Clip("/elsewhere/yes/abcd_nohash_0.wav", "yes", "train")  # same key, other root
    np.testing.assert_array_equal(first, augment(audio, noise, spec, clip_rng(0, moved, 1)))


def test_time_shift_moves_the_clip_within_the_limit():
    spec = FeatureSpec(background_frequency=0.0, time_shift_ms=100, augment=DRY)
    audio = np.zeros(CLIP_SAMPLES, np.float32)
    audio[8000] = 0.5
    for copy in range(1, 20):
        out = augment(audio, [], spec, clip_rng(0, _clip(), copy))
        (where,) = np.nonzero(out)
        assert len(where) == 1 and abs(int(where[0]) - 8000) <= 1600


def test_background_noise_is_mixed_at_most_at_the_set_volume():
    spec = FeatureSpec(
        background_frequency=1.0, background_volume=0.2, time_shift_ms=0, augment=DRY
    )
    audio = _tone(440.0, 1.0)
    noise = [np.full(2 * CLIP_SAMPLES, 0.5, np.float32)]
    clean = peak_normalise(audio)  # mfcc mixes noise into the clip scaled to a peak of 1
    unclipped = np.abs(clean) < 0.85
    for copy in range(1, 10):
        added = (augment(audio, noise, spec, clip_rng(0, _clip(), copy)) - clean)[unclipped]
        assert 0 < added.max() <= 0.2 * 0.5 + 1e-6
        np.testing.assert_allclose(added, added[0], atol=1e-6)  # a constant noise, scaled


def test_noise_volume_is_relative_to_the_peak_normalised_clip_for_mfcc():
    """As MLPerf Tiny mixes it: a quiet recording gets the same signal-to-noise ratio."""
    spec = FeatureSpec(
        background_frequency=1.0, background_volume=0.2, time_shift_ms=0, augment=DRY
    )
    audio, noise = _tone(440.0, 1.0), [np.full(2 * CLIP_SAMPLES, 0.5, np.float32)]
    loud = augment(audio, noise, spec, clip_rng(0, _clip(), 1))
    quiet = augment(audio / 10, noise, spec, clip_rng(0, _clip(), 1))
    np.testing.assert_allclose(quiet, loud, atol=1e-6)


def test_noise_at_snr_when_set_and_room_effects_on_copies():
    audio, noise = _tone(440.0, 1.0), [np.random.default_rng(0).standard_normal(2 * CLIP_SAMPLES)]
    snr = dataclasses.replace(DRY, noise_snr_db=(10.0, 10.0))
    # micro: no peak normalisation, so the 0.3 tone plus noise stays clear of clipping
    spec = FeatureSpec(frontend="micro", background_frequency=1.0, time_shift_ms=0, augment=snr)
    clean = audio
    added = augment(audio, noise, spec, clip_rng(0, _clip(), 1)) - clean
    assert 10 * np.log10(np.mean(clean**2) / np.mean(added**2)) == pytest.approx(10.0, abs=0.5)
    wet = dataclasses.replace(DRY, reverb_probability=1.0)
    spec = FeatureSpec(background_frequency=0.0, time_shift_ms=0, augment=wet)
    burst = np.zeros(CLIP_SAMPLES, np.float32)
    burst[4000:6000] = _tone(440.0, 2000 / SAMPLE_RATE)
    tail = augment(burst, [], spec, clip_rng(0, _clip(), 1))[7000:]
    assert np.abs(tail).max() > 1e-3  # the room rings on after the word ends


def test_feature_spec_refuses_bad_augmentation_naming_the_key():
    with pytest.raises(pydantic.ValidationError, match="augment.rt60_s|rt60_s"):
        FeatureSpec(augment={"rt60_s": (2.0, 1.0)})
    with pytest.raises(pydantic.ValidationError, match="reverb_probability"):
        FeatureSpec(augment={"reverb_probability": -0.1})
