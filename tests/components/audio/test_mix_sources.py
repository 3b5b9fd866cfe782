"""Mixing sources: training shares follow the weights, held-out splits stay whole, a mixed
index's repeats become augmented copies in the feature stage, bad sources are refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydantic
import pytest
import soundfile as sf

from components.artifacts import SpeechDataset
from components.audio import mix_sources, speech_commands
from components.audio.extract_features import FeatureSpec, copies_of, run, weighted_clips
from components.audio.wav import SAMPLE_RATE
from components.errors import ComponentError

READER = speech_commands.ReaderSpec(silence_percent=0.0, unknown_percent=0.0)


def _folder(root: Path, speakers: int, words=("yes", "no"), freq: float = 400.0) -> Path:
    """``speakers`` clips per word (tones); the hash split puts some in validation/test."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            tone = 0.3 * np.sin(2 * np.pi * freq * (1 + w + s / 50) * t)
            sf.write(str(root / word / f"{s:08x}_nohash_0.wav"), tone, SAMPLE_RATE)
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("mix")
    big, small = _folder(base / "generated", 60), _folder(base / "real", 12, freq=900.0)
    return [speech_commands.run(READER, SpeechDataset(root)) for root in (big, small)]


def _train_counts(index, roots) -> list[int]:
    train = index.split("train")
    return [sum(str(c.path).startswith(str(r)) for c in train) for r in roots]


def _roots(indexes) -> list[Path]:
    return [Path(i.clips[0].path).parents[1] for i in indexes]


@pytest.mark.parametrize("weights", [(1.0, 1.0), (3.0, 1.0), (1.0, 4.0)])
def test_training_shares_follow_the_weights_and_keep_the_total(sources, weights):
    mixed = mix_sources.mix(sources, weights)
    sizes = [len(s.split("train")) for s in sources]
    counts = _train_counts(mixed, _roots(sources))
    assert sum(counts) == sum(sizes)
    for count, weight in zip(counts, weights, strict=True):
        assert abs(count - sum(sizes) * weight / sum(weights)) <= 1


def test_held_out_splits_are_every_source_whole(sources):
    mixed = mix_sources.mix(sources, (1.0, 5.0))
    for split in ("validation", "test"):
        assert Counter(mixed.split(split)) == Counter(c for s in sources for c in s.split(split))


def test_a_source_below_its_share_is_repeated_evenly(sources):
    mixed = mix_sources.mix(sources, (1.0, 1.0), seed=3)
    small = set(sources[1].split("train"))
    repeats = Counter(c for c in mixed.split("train") if c in small)
    assert set(repeats) == small and max(repeats.values()) - min(repeats.values()) <= 1
    assert mixed == mix_sources.mix(sources, (1.0, 1.0), seed=3)


def test_repeats_become_distinct_augmented_copies_of_training_clips_only(sources, tmp_path):
    mixed = mix_sources.mix(sources, (1.0, 1.0))
    spec = FeatureSpec(augment_copies=1, num_shards=1)
    weighted = dict(weighted_clips(mixed))
    examples = run(spec, mixed, tmp_path)
    expected_train = sum(
        1 + copies_of(c, n, spec) for c, n in weighted.items() if c.split == "train"
    )
    assert examples.counts["train"] == expected_train == 2 * len(mixed.split("train"))
    assert examples.counts["test"] == len(mixed.split("test"))
    assert all(copies_of(c, 3, spec) == 0 for c in mixed.split("test"))


def test_run_reads_each_source_with_its_reader(sources, tmp_path):
    roots = _roots(sources)
    specs = [
        mix_sources.SourceSpec(source="speech_commands", path=roots[0], weight=2.0),
        mix_sources.SourceSpec(source="speech_commands", path=roots[1], reader=READER),
    ]
    datasets = [SpeechDataset(r) for r in roots]
    mixed = mix_sources.run(specs, datasets, READER)
    assert _train_counts(mixed, roots) == _train_counts(mix_sources.mix(sources, (2, 1)), roots)


def test_bad_mixes_are_refused(sources, tmp_path):
    other = speech_commands.run(
        speech_commands.ReaderSpec(keywords=("yes",), silence_percent=0.0, unknown_percent=0.0),
        SpeechDataset(_roots(sources)[1]),
    )
    with pytest.raises(ComponentError, match="every source must use the same keywords"):
        mix_sources.mix([sources[0], other], (1.0, 1.0))
    with pytest.raises(ComponentError, match="one data set per source"):
        mix_sources.run([], [], READER)
    with pytest.raises(pydantic.ValidationError, match="needs 'path'"):
        mix_sources.SourceSpec(source="speech_commands")
    with pytest.raises(pydantic.ValidationError, match="is not a folder"):
        mix_sources.SourceSpec(source="speech_commands", path=tmp_path / "nowhere")
    with pytest.raises(pydantic.ValidationError, match="takes no 'path'"):
        mix_sources.SourceSpec(source="synth", path=tmp_path)
    with pytest.raises(pydantic.ValidationError, match="weight"):
        mix_sources.SourceSpec(source="synth", weight=0.0)


def test_config_takes_a_mix_and_names_the_bad_key(sources, tmp_path):
    from pipelines import config
    from pipelines.errors import PipelineError

    real = _roots(sources)[1]
    base = Path(__file__).resolve().parents[3] / "configs" / "kws.yaml"
    mix = f'[{{source: synth, weight: 1}}, {{source: speech_commands, path: "{real}", weight: 3}}]'
    loaded = config.load(base, ["data.source=mix", f"data.mix={mix}"])
    assert [(s.source, s.weight) for s in loaded.data.mix] == [
        ("synth", 1.0),
        ("speech_commands", 3.0),
    ]
    with pytest.raises(PipelineError, match=r"key 'data.mix.1.weight'.*greater than 0"):
        config.load(
            base, ["data.source=mix", "data.mix=[{source: synth}, {source: synth, weight: -1}]"]
        )
    with pytest.raises(PipelineError, match=r"key 'data'.*only of it"):
        config.load(base, ["data.source=mix"])
    with pytest.raises(PipelineError, match=r"data.mix.0.*is not a folder"):
        config.load(
            base, ["data.source=mix", "data.mix=[{source: speech_commands, path: /nowhere}]"]
        )
