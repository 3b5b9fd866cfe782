"""Reader for the Speech Commands layout: builds the 12-class ``ClipIndex`` of MLPerf Tiny KWS.

Called by the KWS pipeline before feature extraction (and usable from a notebook). It only
lists and labels files; audio is decoded later, in the Beam extraction, where bad clips are
routed to a dead-letter output.

Layout: ``<root>/<word>/*.wav`` (16 kHz mono, 1 s), ``<root>/_background_noise_/*.wav``,
and optionally ``validation_list.txt`` / ``testing_list.txt``. Without the list files the
split is the data set's own stable hash split (its README's ``which_set``). Labels are
``(_silence_, _unknown_, *KEYWORDS)``: keywords keep their word, every other word becomes
``_unknown_`` (a deterministic sample of them per split) and ``_silence_`` examples are 1 s
windows cut from the background-noise files.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Annotated

import pydantic

from components.artifacts import (
    KEYWORDS,
    SILENCE_LABEL,
    SPLITS,
    UNKNOWN_LABEL,
    Clip,
    ClipIndex,
    SpeechDataset,
)
from components.audio.wav import CLIP_SAMPLES, frame_count
from components.errors import ComponentError
from components.spec import component_spec

LABELS = (SILENCE_LABEL, UNKNOWN_LABEL, *KEYWORDS)  # the default 12-class task
NOISE_DIR = "_background_noise_"
LIST_FILES = {"validation": "validation_list.txt", "test": "testing_list.txt"}
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1

NonNegative = Annotated[float, pydantic.Field(ge=0)]
Percent = Annotated[float, pydantic.Field(ge=0, le=100)]

log = logging.getLogger(__name__)


@component_spec
class ReaderSpec:
    """How to turn a Speech Commands folder into the 12-class task."""

    keywords: tuple[str, ...] = KEYWORDS  # the classes besides silence and unknown
    silence_percent: NonNegative = 10.0  # silence examples per split, % of keyword+unknown
    unknown_percent: NonNegative = 10.0  # unknown examples kept per split, % of keywords
    validation_percent: Percent = 10.0  # hash split (no list files) and noise-file partition
    testing_percent: Percent = 10.0
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _check_split(self) -> ReaderSpec:
        if self.validation_percent + self.testing_percent >= 100:
            raise ValueError("validation_percent + testing_percent must stay below 100")
        return self


def run(spec: ReaderSpec, dataset: SpeechDataset) -> ClipIndex:
    """List, split and label every clip; raises ComponentError on an unusable folder."""
    root = Path(dataset.root)
    words = _word_folders(root, spec.keywords)
    splitter = _list_splitter(root) or (lambda rel: which_set(rel, spec))
    spoken = [Clip(str(p), w, splitter(f"{w}/{p.name}")) for w, p in _wavs(root, words)]
    clips = [c for c in spoken if c.label in spec.keywords]
    unknown = [c for c in spoken if c.label not in spec.keywords]  # relabelled when sampled
    noise = _noise_files(root)
    for split in SPLITS:
        n_keywords = sum(c.split == split for c in clips)
        kept = _sample_unknown(unknown, split, n_keywords, spec)
        n_silence = math.ceil((n_keywords + len(kept)) * spec.silence_percent / 100)
        clips += kept + _silence(noise, split, n_silence, spec)
    index = ClipIndex(
        clips=tuple(sorted(clips, key=lambda c: (SPLITS.index(c.split), c.path, c.offset))),
        labels=(SILENCE_LABEL, UNKNOWN_LABEL, *spec.keywords),
        noise_files=tuple(path for path, _ in noise),
    )
    log.info("Speech Commands at %s: %s", root, counts(index))
    return index


def which_set(relative_path: str, spec: ReaderSpec) -> str:
    """The data set's stable split: hash of the speaker part of the file name.

    Same arithmetic as ``which_set`` in the Speech Commands README, so that it reproduces
    the published ``validation_list.txt`` / ``testing_list.txt`` at 10 % / 10 %.
    """
    speaker = re.sub(r"_nohash_.*$", "", Path(relative_path).name)
    digest = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percentage = (digest % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < spec.validation_percent:
        return "validation"
    if percentage < spec.validation_percent + spec.testing_percent:
        return "test"
    return "train"


def counts(index: ClipIndex) -> dict[str, dict[str, int]]:
    """Clips per split and label, labels in ``index.labels`` order (for logs and reports)."""
    tally = Counter((c.split, c.label) for c in index.clips)
    return {s: {lb: tally[s, lb] for lb in index.labels} for s in SPLITS}


def _word_folders(root: Path, keywords: tuple[str, ...]) -> list[str]:
    if not root.is_dir():
        raise ComponentError(f"Speech Commands folder {root} does not exist or is not a folder")
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not set(words) & set(keywords):
        raise ComponentError(
            f"{root} has no keyword folders (expected some of {', '.join(keywords)}; "
            f"found {', '.join(words) or 'none'})"
        )
    missing = [k for k in keywords if k not in words]
    if missing:
        log.warning("%s lacks keyword folders %s; those classes get no examples", root, missing)
    return words


def _wavs(root: Path, words: list[str]) -> list[tuple[str, Path]]:
    return [(w, p) for w in words for p in sorted((root / w).glob("*.wav"))]


def _list_splitter(root: Path):
    """Split from the list files when either exists; None means use the hash split."""
    files = {s: root / name for s, name in LIST_FILES.items()}
    if not any(f.is_file() for f in files.values()):
        log.info("%s has no split list files; using the stable hash split", root)
        return None
    members: dict[str, str] = {}
    for split, f in files.items():
        if not f.is_file():
            log.warning("%s is missing; no clips go to the %s split", f, split)
            continue
        lines = f.read_text(encoding="utf-8").splitlines()
        members.update({ln.strip(): split for ln in lines if ln.strip()})
    return lambda rel: members.get(rel, "train")


def _sample_unknown(unknown: list[Clip], split: str, n_keywords: int, spec: ReaderSpec):
    """Deterministic sample: the clips with the smallest seeded hash of their path.

    Ranking by a per-file hash (not shuffling a list) keeps a clip's selection stable
    when other files are added to the data set.
    """
    pool = [c for c in unknown if c.split == split]
    n = min(len(pool), math.ceil(n_keywords * spec.unknown_percent / 100))
    rank = sorted(pool, key=lambda c: _seeded_hash(spec.seed, c.path))
    return [Clip(c.path, UNKNOWN_LABEL, split) for c in rank[:n]]


def _seeded_hash(seed: int, path: str) -> str:
    """Hash of seed and ``word/file.wav``, independent of where the data set lives."""
    relative = f"{Path(path).parent.name}/{Path(path).name}"
    return hashlib.sha1(f"{seed}:{relative}".encode()).hexdigest()


def _noise_files(root: Path) -> list[tuple[str, int]]:
    """Background-noise files at least 1 s long, with their length in 16 kHz samples."""
    usable = []
    for path in sorted((root / NOISE_DIR).glob("*.wav")):
        try:
            frames = frame_count(path)
        except ComponentError as e:
            log.warning("skipping background noise file: %s", e)
            continue
        if frames < CLIP_SAMPLES:
            log.warning("skipping background noise file %s: shorter than 1 s", path)
            continue
        usable.append((str(path), frames))
    return usable


def _silence(noise: list[tuple[str, int]], split: str, n: int, spec: ReaderSpec) -> list[Clip]:
    """``n`` 1 s windows from the noise files, at seeded offsets in the split's own region.

    Each noise file is cut into regions per split (validation, test, train in the same
    proportions as the hash split) so that no window of the test set overlaps training.
    """
    if n == 0:
        return []
    if not noise:
        raise ComponentError(
            f"no usable background noise files in {NOISE_DIR}/ to cut {n} {split} silence "
            "windows from; add them or set silence_percent to 0"
        )
    rng = random.Random(f"{spec.seed}:{split}:silence")
    clips = []
    for i in range(n):
        path, frames = noise[i % len(noise)]
        lo, hi = _region(frames, split, spec)
        clips.append(Clip(path, SILENCE_LABEL, split, offset=rng.randint(lo, hi)))
    return clips


def _region(frames: int, split: str, spec: ReaderSpec) -> tuple[int, int]:
    """Range of window offsets reserved for ``split`` in a file of ``frames`` samples."""
    v, t = spec.validation_percent / 100, spec.testing_percent / 100
    start, end = {"validation": (0.0, v), "test": (v, v + t), "train": (v + t, 1.0)}[split]
    lo, hi = int(start * frames), int(end * frames) - CLIP_SAMPLES
    if hi < lo:  # region shorter than 1 s: fall back to the whole file
        return 0, frames - CLIP_SAMPLES
    return lo, hi
