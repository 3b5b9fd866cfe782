"""Synthetic keyword-spotting data: words spoken by eSpeak NG, mixed with generated noise.

The project's embedded default data set is generated here rather than downloaded. Each
keyword is spoken by many eSpeak voices (English accents x voice variants; voices listed as
``flite:<voice>`` are CMU Flite's recorded speakers, ``components.audio.flite``) at random
rate, pitch and pitch range, replayed slightly faster or slower (a shorter or longer vocal tract),
trimmed, fitted into 1 s at 16 kHz, optionally coloured like a cheap microphone, scaled to
a random level, shifted in time and mixed with a window of a generated noise recording at
a random SNR. Other words become the "unknown" class;
the noise recordings in ``_background_noise_/`` give the "silence" class. The output uses
the Speech Commands layout (with ``validation_list.txt`` / ``testing_list.txt`` naming the
clips of the held-out voices), so one reader serves real and generated data.

The result is a pure function of the spec (see ``components.audio.espeak.synthesize_isolated``
for why synthesis runs in fresh processes) and is cached in ``out_dir``: a second call with
an identical spec returns at once. Called by the KWS pipeline before the data reader.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
import time
import wave
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pydantic
from tqdm import tqdm

from components import generated_set
from components.artifacts import KEYWORDS, SpeechDataset
from components.audio import espeak, flite, synth_noise
from components.audio.speech_commands import LIST_FILES, NOISE_DIR
from components.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)

INFO_FILE = "SYNTH_INFO.json"
GENERATOR_VERSION = 1  # bump whenever the audio recipe changes, so cached sets are rebuilt

UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)  # fmt: skip
# Voices are "<English accent>+<variant>". Every family of eSpeak variants (plain male and
# female, Klatt, whisper, child) is heard in training, each variant in two accents; no
# variant, nor one with identical settings under another name (Mario/Michael, john/pedro,
# belinda/linda, ...), is shared between splits, so held-out voices differ in timbre too.
ACCENTS = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
    "en-us-nyc",
)  # fmt: skip
TRAIN_VARIANTS = (
    "m1", "m3", "m4", "m7", "m8", "Andy", "Denis", "Gene", "Jacky", "Michael", "croak", "ian",
    "iven2", "travis", "Marco", "antonio", "f1", "f2", "f3", "Annie", "anika", "aunty",
    "belinda", "shelby", "steph", "steph3", "Alicia", "klatt", "klatt2", "klatt5", "adam",
    "edward", "mike2", "Reed", "whisper", "whisperf", "caleb", "zac",
)  # fmt: skip
TRAIN_VOICES = tuple(
    f"{ACCENTS[(i + 3 * k) % len(ACCENTS)]}+{variant}"
    for k in range(2)
    for i, variant in enumerate(TRAIN_VARIANTS)
)
#: Names that stand for a list of voices in ``train_voices``: ``espeak`` the list above
#: (no system package needed), ``flite`` CMU Flite's four recorded speakers.
VOICE_GROUPS = {"espeak": TRAIN_VOICES, "flite": flite.VOICES}
VALIDATION_VOICES = (
    "en-us+m2", "en-gb-x-gbclan+Hugo", "en-029+f4", "en+grandma", "en-us-nyc+klatt3",
    "en-gb-scotland+paul",
)  # fmt: skip
TEST_VOICES = (
    "en-us+m6", "en+john", "en-gb-scotland+gustave", "en-gb-x-rp+victor", "en-029+f5",
    "en-gb-x-gbcwmd+Andrea", "en-us-nyc+klatt4", "en-gb-x-gbclan+david",
)  # fmt: skip

_WORD = re.compile(r"[a-z][a-z0-9'-]*")
Range = tuple[float, float]


@component_spec
class SynthSpec:
    """What to generate. Every field feeds the cache key, so any change regenerates."""

    seed: int = 0
    keywords: tuple[str, ...] = KEYWORDS
    unknown_words: tuple[str, ...] = UNKNOWN_WORDS
    train_voices: tuple[str, ...] = TRAIN_VOICES
    validation_voices: tuple[str, ...] = VALIDATION_VOICES
    test_voices: tuple[str, ...] = TEST_VOICES
    # Renditions per (keyword, voice) in train, and in validation/test (fewer: they only measure).
    takes_per_voice: int = pydantic.Field(6, ge=1)
    eval_takes_per_voice: int = pydantic.Field(8, ge=1)
    # Renditions per (unknown word, voice) pair that is spoken. Each voice speaks a rotating
    # share of the unknown words, so that it gives about as many unknown clips as it gives
    # for one keyword; across voices every unknown word is spoken.
    unknown_takes_per_voice: int = pydantic.Field(1, ge=0)
    noise_seconds: float = pydantic.Field(30.0, ge=1.0)  # length of each noise recording
    snr_db: tuple[float, float] = (5.0, 30.0)  # speech-to-noise ratio over the spoken word
    noise_probability: float = pydantic.Field(0.85, ge=0.0, le=1.0)  # else the clip is clean
    max_shift_ms: int = pydantic.Field(100, ge=0, le=400)  # random offset from centred
    max_word_ms: int = pydantic.Field(900, ge=200, le=1000)  # longer words are sped up
    warp: tuple[float, float] = (0.88, 1.12)  # replay speed: raises/lowers pitch and formants
    rate_wpm: tuple[int, int] = (110, 220)  # eSpeak speaking rate, words per minute
    pitch: tuple[int, int] = (20, 80)  # eSpeak base pitch, 0-100 around the voice's own
    pitch_range: tuple[int, int] = (20, 90)  # eSpeak intonation range, 0 = monotone
    level_dbfs: tuple[float, float] = (-24.0, -3.0)  # peak level of the spoken word
    channel_probability: float = pydantic.Field(0.5, ge=0.0, le=1.0)  # random band/EQ colour

    @pydantic.field_validator("train_voices", mode="before")
    @classmethod
    def _expand_voice_groups(cls, voices):
        """``[espeak, flite]`` -> every voice of both groups, in order, each once: a config
        says which synthesizers train without listing 80 voices."""
        if isinstance(voices, str) or not isinstance(voices, (list, tuple)):
            return voices
        expanded = [v for name in voices for v in VOICE_GROUPS.get(name, (name,))]
        return tuple(dict.fromkeys(expanded))

    def __post_init__(self) -> None:
        _check_words(self.keywords, self.unknown_words)
        _check_voice_sets(self.train_voices, self.validation_voices, self.test_voices)
        for name, lo, hi in (("rate_wpm", 80, 450), ("pitch", 0, 100), ("pitch_range", 0, 100)):
            _check_range(name, getattr(self, name), lo, hi)
        _check_range("warp", self.warp, 0.5, 2.0)
        _check_range("snr_db", self.snr_db, -20.0, 80.0)
        _check_range("level_dbfs", self.level_dbfs, -60.0, 0.0)


def _check_range(name: str, value: Range, lo: float, hi: float) -> None:
    if not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name}={value} must be (low, high) with {lo} <= low <= high <= {hi}")


def _check_words(keywords: tuple[str, ...], unknown: tuple[str, ...]) -> None:
    if not keywords:
        raise ValueError("keywords must not be empty")
    for word in keywords + unknown:
        if not _WORD.fullmatch(word):
            raise ValueError(f"word {word!r} must be lower case letters, digits, ' or -")
    if len(set(keywords + unknown)) != len(keywords) + len(unknown):
        raise ValueError("keywords and unknown_words must be distinct and share no word")


def _check_voice_sets(*splits: tuple[str, ...]) -> None:
    names = ("train_voices", "validation_voices", "test_voices")
    for name, voices in zip(names, splits, strict=True):
        if not voices:
            raise ValueError(f"{name} must not be empty")
    for i, j in ((0, 1), (0, 2), (1, 2)):
        speakers = [{flite.speaker(v) for v in splits[k]} for k in (i, j)]
        if shared := sorted(speakers[0] & speakers[1]):
            raise ValueError(
                f"{names[i]} and {names[j]} share voices {shared}: held-out "
                "voices must never be heard in training"
            )
    tags = [voice_tag(v) for voices in splits for v in voices]
    if duplicated := sorted({t for t in tags if tags.count(t) > 1}):
        raise ValueError(f"voices repeat or collide in file names: {duplicated}")


def voice_tag(voice: str) -> str:
    """The file-name form of a voice: ``en-us+m1`` -> ``en-us-m1`` (no ``_``, no ``+``)."""
    return re.sub(r"[^a-z0-9-]+", "-", voice.lower())


@dataclasses.dataclass(frozen=True)
class _Job:
    word: str
    voice: str
    split: str
    take: int

    @property
    def path(self) -> str:
        return f"{self.word}/{voice_tag(self.voice)}_{self.take:03d}.wav"


def run(
    spec: SynthSpec, out_dir: Path, progress: bool = True, workers: int | None = None
) -> SpeechDataset:
    """Generate the data set into ``out_dir`` (or reuse it if it already holds this spec's).

    ``workers`` is how many eSpeak processes run at once (default: CPU count, at most 4);
    it does not change the output.
    """
    out_dir, key = Path(out_dir), spec_hash(spec)
    if is_complete(out_dir, key):
        log.info("synthetic data in %s is up to date (spec %s), not regenerating", out_dir, key)
        return SpeechDataset(root=out_dir)
    _check_target(out_dir)
    _check_voices(spec.train_voices + spec.validation_voices + spec.test_voices)
    started = time.monotonic()
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        clips = _generate(spec, key, partial, progress, workers or _default_workers())
        _replace(out_dir, partial, key)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("generated %d clips in %s in %.1f s", clips, out_dir, time.monotonic() - started)
    return SpeechDataset(root=out_dir)


def _generate(spec: SynthSpec, key: str, root: Path, progress: bool, workers: int) -> int:
    """Write the whole set into ``root``, its info file last; return the number of clips."""
    root.mkdir(parents=True)
    noises = _write_noises(spec, root)
    jobs = list(_jobs(spec))
    version = _write_clips(spec, jobs, root, noises, progress, workers)
    _write_lists(jobs, root)
    _write_info(spec, key, jobs, sorted(noises), version, root)
    return len(jobs)


def spec_hash(spec: SynthSpec) -> str:
    """The cache key: the generator version and every field of the spec."""
    return generated_set.spec_hash(GENERATOR_VERSION, spec)


def is_complete(out_dir: Path, key: str) -> bool:
    """Whether ``out_dir`` holds a finished set generated from the spec with this key."""
    out_dir = Path(out_dir)
    info = generated_set.finished_info(out_dir, INFO_FILE, key)
    if info is None:
        return False
    noise_ok = all((out_dir / NOISE_DIR / n).is_file() for n in info.get("noise_files", []))
    counts = {w: sum(c.values()) for w, c in info.get("counts", {}).items()}
    return noise_ok and all(len(list((out_dir / w).glob("*.wav"))) == n for w, n in counts.items())


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _jobs(spec: SynthSpec) -> Iterator[_Job]:
    """Every clip to make, in a fixed order: per split, per voice, per word, per take."""
    splits = (
        ("train", spec.train_voices),
        ("validation", spec.validation_voices),
        ("test", spec.test_voices),
    )
    for split, voices in splits:
        takes = spec.takes_per_voice if split == "train" else spec.eval_takes_per_voice
        spoken = len(spec.unknown_words) * spec.unknown_takes_per_voice
        stride = max(1, round(spoken / takes))
        for v, voice in enumerate(voices):
            for word in spec.keywords:
                yield from (_Job(word, voice, split, t) for t in range(takes))
            for w, word in enumerate(spec.unknown_words):
                if (w + v) % stride == 0:
                    yield from (
                        _Job(word, voice, split, t) for t in range(spec.unknown_takes_per_voice)
                    )


def _rng(seed: int, job: _Job, stream: int) -> np.random.Generator:
    """A generator private to one clip, so a clip never depends on which others are made."""
    ids = (zlib.crc32(job.word.encode()), zlib.crc32(job.voice.encode()), job.take, stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=ids))


def _rendition(spec: SynthSpec, job: _Job) -> espeak.Rendition:
    rng = _rng(spec.seed, job, 0)
    draw = lambda r: int(rng.integers(r[0], r[1] + 1))  # noqa: E731
    return espeak.Rendition(
        job.voice,
        rate=draw(spec.rate_wpm),
        pitch=draw(spec.pitch),
        pitch_range=draw(spec.pitch_range),
        seed=int(rng.integers(1, 2**31 - 1)),
    )


def _write_clips(
    spec: SynthSpec,
    jobs: list[_Job],
    root: Path,
    noises: dict[str, np.ndarray],
    progress: bool,
    workers: int,
) -> str:
    """Synthesize one batch per voice in parallel processes, then finish and write each clip."""
    batches: dict[str, list[_Job]] = {}
    for job in jobs:
        batches.setdefault(job.voice, []).append(job)
    for word in {j.word for j in jobs}:
        (root / word).mkdir()
    noise_list, version = [noises[k] for k in sorted(noises)], ""
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(jobs), unit="clip", desc="synthesizing words", disable=not progress) as bar,
    ):
        futures = {
            pool.submit(_synthesizer(voice), [(j.word, _rendition(spec, j)) for j in batch]): batch
            for voice, batch in batches.items()
        }
        for future in as_completed(futures):
            batch_version, rate, audio = future.result()
            if not flite.is_flite(futures[future][0].voice):
                version = batch_version
            for job, raw in zip(futures[future], audio, strict=True):
                clip = _render_clip(spec, job, raw, rate, noise_list)
                _write_wav(root / job.path, clip)
                bar.update()
    return version


def _check_voices(voices: tuple[str, ...]) -> None:
    espeak.check_voices([v for v in voices if not flite.is_flite(v)])
    flite.check_voices([v for v in voices if flite.is_flite(v)])


def _synthesizer(voice: str):
    """eSpeak NG for ``language+variant`` voices, CMU Flite for ``flite:<voice>``."""
    return flite.synthesize if flite.is_flite(voice) else espeak.synthesize_isolated


def _render_clip(
    spec: SynthSpec, job: _Job, raw: np.ndarray, rate: int, noises: list[np.ndarray]
) -> np.ndarray:
    """Turn eSpeak's raw int16 output into one finished 1 s, 16 kHz int16 clip."""
    rng = _rng(spec.seed, job, 1)
    replay_rate = 50 * round(rate * rng.uniform(*spec.warp) / 50)  # a small set of ratios
    word = _trim(_resample(raw / 32768.0, replay_rate, SAMPLE_RATE))
    if word.size == 0:
        raise ComponentError(f"eSpeak produced no audio for {job.word!r} in voice {job.voice!r}")
    word = _fit(word, spec.max_word_ms * SAMPLE_RATE // 1000)
    if rng.random() < spec.channel_probability:
        word = _colour(word, rng)
    word *= 10 ** (rng.uniform(*spec.level_dbfs) / 20) / max(np.abs(word).max(), 1e-9)
    clip = _place(word, rng, spec.max_shift_ms * SAMPLE_RATE // 1000)
    if rng.random() < spec.noise_probability:
        snr = rng.uniform(*spec.snr_db)
        noise = noises[rng.integers(len(noises))]
        start = rng.integers(noise.size - CLIP_SAMPLES + 1)
        window = noise[start : start + CLIP_SAMPLES]
        ratio = synth_noise.power(word) / (synth_noise.power(window) * 10 ** (snr / 10))
        clip += window * np.sqrt(ratio)
    return _to_int16(clip)


def _resample(audio: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    if rate == new_rate:  # a 16 kHz voice (Flite's) replayed at its own speed
        return audio
    g = math.gcd(rate, new_rate)
    up, down = new_rate // g, rate // g
    return _signal().resample_poly(audio, up, down, window=_lowpass(max(up, down)))


@functools.lru_cache(maxsize=256)
def _lowpass(max_rate: int) -> np.ndarray:
    """resample_poly's own default filter, designed once instead of once per call."""
    return _signal().firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def _signal():
    """scipy.signal, imported on first use: it takes a second, and validating a config
    imports this module for its spec."""
    from scipy import signal

    return signal


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    """16-bit mono PCM; the stdlib writer is several times faster than soundfile's."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())


def _trim(audio: np.ndarray, threshold_db: float = -35.0, frame: int = 160) -> np.ndarray:
    """Cut leading and trailing silence: 10 ms frames quieter than the loudest by 35 dB."""
    n = audio.size // frame
    if n == 0:
        return audio[:0]
    rms = np.sqrt(np.mean(np.square(audio[: n * frame].reshape(n, frame)), axis=1))
    active = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if rms.max() <= 0 or active.size == 0:
        return audio[:0]
    return audio[max(active[0] - 1, 0) * frame : min(active[-1] + 2, n) * frame]


def _fit(word: np.ndarray, max_len: int) -> np.ndarray:
    """Make an over-long word fit: speed it up by up to 30 %, then cut and fade the end."""
    if word.size <= max_len:
        return word
    factor = min(word.size / max_len, 1.3)
    word = _signal().resample_poly(word, 100, round(100 * factor))[:max_len].copy()
    fade = min(160, word.size)
    word[-fade:] *= np.linspace(1.0, 0.0, fade)
    return word


def _colour(word: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap microphone and room: random band limits (60-300 Hz, 3-7.5 kHz) and one
    random resonance or dip (250 Hz - 4 kHz), standing in for the 'tone' of unseen voices."""
    low, high = 20 * int(rng.integers(3, 16)), 250 * int(rng.integers(12, 31))
    word = _signal().sosfilt(_bandpass(low, high), word)
    centre = 250 * 2 ** (int(rng.integers(0, 17)) / 4)  # on a grid, so filters are reused
    return word + rng.uniform(-0.6, 1.5) * _signal().sosfilt(
        _bandpass(centre / 1.4, centre * 1.4), word
    )


@functools.cache
def _bandpass(low_hz: float, high_hz: float) -> np.ndarray:
    return _signal().butter(2, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")


def _place(word: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Put the word in a 1 s clip, centred, then shifted by up to ``max_shift`` samples."""
    centre = (CLIP_SAMPLES - word.size) // 2
    start = int(
        np.clip(centre + rng.integers(-max_shift, max_shift + 1), 0, CLIP_SAMPLES - word.size)
    )
    clip = np.zeros(CLIP_SAMPLES)
    clip[start : start + word.size] = word
    return clip


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def _write_noises(spec: SynthSpec, root: Path) -> dict[str, np.ndarray]:
    """Write the background-noise recordings; return them as read back (float, 16 kHz)."""
    (root / NOISE_DIR).mkdir()
    n, noises = int(spec.noise_seconds * SAMPLE_RATE), {}
    for i, (name, make) in enumerate(synth_noise.NOISE_MAKERS.items()):
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(7919, i)))
        x = make(rng, n)
        x *= 10 ** (rng.uniform(-30.0, -20.0) / 20) / np.sqrt(synth_noise.power(x))
        pcm = _to_int16(x)
        _write_wav(root / NOISE_DIR / f"{name}.wav", pcm)
        noises[f"{name}.wav"] = pcm / 32768.0
    return noises


def _write_lists(jobs: list[_Job], root: Path) -> None:
    """The Speech Commands split lists: one ``word/file.wav`` per held-out clip."""
    for split, name in LIST_FILES.items():
        paths = sorted(j.path for j in jobs if j.split == split)
        (root / name).write_text("".join(f"{p}\n" for p in paths))


def _write_info(
    spec: SynthSpec, key: str, jobs: list[_Job], noise_files: list[str], version: str, root: Path
) -> None:
    """Written last: its presence (with the right key) marks a complete set."""
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        split_counts = counts.setdefault(job.word, {"train": 0, "validation": 0, "test": 0})
        split_counts[job.split] += 1
    info = {
        "generator": GENERATOR_VERSION,
        "spec_hash": key,
        "spec": dataclasses.asdict(spec),
        "espeak_ng_version": version,
        "sample_rate": SAMPLE_RATE,
        "clips": len(jobs),
        "counts": counts,
        "noise_files": noise_files,
    }
    (root / INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def _replace(out_dir: Path, partial: Path, key: str) -> None:
    """Move the finished set into place, replacing only an earlier generated (or empty) one."""
    if is_complete(out_dir, key):  # another process finished the same set meanwhile
        return
    _check_target(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def _check_target(out_dir: Path) -> None:
    """Only an empty folder, or one the generator wrote, may be replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ComponentError(f"{out_dir} is a file; the generator needs a folder there")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / INFO_FILE).exists():
        raise ComponentError(
            f"{out_dir} holds files the generator did not write; "
            "give the generator an empty folder or one it wrote before"
        )
