"""The reader of MLPerf Tiny's KWS test vectors names the file it cannot take."""

from __future__ import annotations

import numpy as np
import pytest

from components.audio import mlperf_kws
from components.errors import ComponentError


def _write(root, name, samples=16000):
    (root / "td_samples").mkdir(parents=True, exist_ok=True)
    (np.arange(samples) % 100).astype("<i2").tofile(root / "td_samples" / name)


def test_reads_clips_and_labels_in_the_project_names(tmp_path):
    _write(tmp_path, "tst_000001_Silence_10.bin")
    _write(tmp_path, "tst_000000_Stop_7.bin")
    vectors = mlperf_kws.read(tmp_path)
    assert [p.name for p in vectors.paths] == ["tst_000000_Stop_7.bin", "tst_000001_Silence_10.bin"]
    assert vectors.labels() == ["stop", "_silence_"]
    assert vectors.clips.shape == (2, 16000) and vectors.clips.dtype == np.float32
    assert vectors.clips[0, 99] == pytest.approx(99 / 32768)
    assert vectors.features is None  # no mfcc/ folder


@pytest.mark.parametrize(
    ("name", "samples", "message"),
    [
        ("tst_000000_Stop_3.bin", 16000, "label 'Stop' is not output 3"),
        ("clip.bin", 16000, "not an MLPerf test vector name"),
        ("tst_000000_Stop_7.bin", 8000, "8000 samples"),
    ],
)
def test_bad_vectors_are_refused_naming_the_file(tmp_path, name, samples, message):
    _write(tmp_path, name, samples)
    with pytest.raises(ComponentError, match=message):
        mlperf_kws.read(tmp_path)


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ComponentError, match="no td_samples"):
        mlperf_kws.read(tmp_path)
