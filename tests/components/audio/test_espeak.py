"""Tests for the eSpeak NG binding: real synthesis through the espeakng-loader wheel."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from components.audio import espeak
from components.errors import ComponentError

pytest.importorskip("espeakng_loader", reason="the optional [synth] extra is not installed")


def test_engine_speaks_a_word_as_int16_at_its_sample_rate():
    eng = espeak.engine()
    audio = eng.synthesize("yes", espeak.Rendition("en-us+m1"))

    assert eng.sample_rate == 22050
    assert audio.dtype == np.int16
    assert 0.1 < audio.size / eng.sample_rate < 1.5  # one short word
    assert np.abs(audio.astype(np.int32)).max() > 1000  # audible, not silence
    assert eng.version.startswith("1.")


def test_engine_is_one_per_process():
    assert espeak.engine() is espeak.engine()


def test_rendition_parameters_change_the_audio():
    eng = espeak.engine()
    slow = eng.synthesize("seven", espeak.Rendition("en-us", rate=100))
    fast = eng.synthesize("seven", espeak.Rendition("en-us", rate=300))

    assert slow.size > 1.5 * fast.size


def test_engine_rejects_an_unknown_language():
    with pytest.raises(ComponentError, match="no-such-voice"):
        espeak.engine().synthesize("yes", espeak.Rendition("no-such-voice"))


def test_check_voices_accepts_every_english_accent_and_variant_family():
    espeak.check_voices(["en", "en-us+m3", "en-gb-scotland+f2", "en-029+klatt", "en+whisper"])


@pytest.mark.parametrize(
    ("voice", "missing"), [("xx-yy+m1", "language 'xx-yy'"), ("en-us+m99", "variant 'm99'")]
)
def test_check_voices_names_what_is_missing(voice, missing):
    # eSpeak would silently ignore an unknown variant, so the check must catch it.
    with pytest.raises(ComponentError, match=f"{re.escape(voice)}.*{missing}"):
        espeak.check_voices(["en-us", voice])


def test_isolated_batches_are_reproducible_whatever_ran_before():
    items = [
        ("left", espeak.Rendition("en-us+m1", rate=150, pitch=30, seed=1)),
        ("right", espeak.Rendition("en+whisper", rate=200, pitch=70, seed=2)),
    ]
    first = espeak.synthesize_isolated(items)
    espeak.engine().synthesize("something else first", espeak.Rendition("en-029"))
    second = espeak.synthesize_isolated(items)

    assert first.sample_rate == 22050
    assert first.version == espeak.engine().version
    assert len(first.audio) == 2
    for a, b in zip(first.audio, second.audio, strict=True):
        assert a.size > 0
        np.testing.assert_array_equal(a, b)


def test_isolated_worker_failure_becomes_a_component_error():
    with pytest.raises(ComponentError, match="worker failed.*zz-top"):
        espeak.synthesize_isolated([("yes", espeak.Rendition("zz-top"))])


def test_missing_extra_tells_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now raises ImportError

    with pytest.raises(ComponentError, match=r"pip install tflm-pipelines\[synth\]"):
        espeak.data_path()
