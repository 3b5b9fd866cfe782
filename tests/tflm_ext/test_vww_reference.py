"""The MLPerf Tiny person detector, patched in every mode: smaller, and identical in output
on real photos (the shared COCO sample, prepared as the project prepares images)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import require
from tflm_ext.inference import input_details, quantize
from tflm_ext.isolation import run_isolated
from tflm_ext.patching import patch_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the custom op needs g++")


@pytest.fixture(scope="module")
def detector() -> bytes:
    return require("models", "vww_96_int8.tflite").read_bytes()


@pytest.fixture(scope="module")
def photos(detector: bytes) -> np.ndarray:
    """Every photo of the sample, decoded, resized and scaled as ``tflm-pipelines evaluate``
    does (``components.preprocessing``), then quantized to the model's int8 input."""
    from components import preprocessing
    from components.artifacts import Preprocessing
    from components.vision import image_folder

    root = require("data", "vww_coco")
    index = image_folder.run(image_folder.ImageFolderSpec(), Path(root))
    prep = Preprocessing(kind="image", image_size=(96, 96), channels=3)
    x = preprocessing.prepare(prep, [item.path for item in index.items])
    assert len(x) == len(index.items) > 200
    return quantize(x, run_isolated(input_details, detector))


@pytest.mark.parametrize("mode", ["custom", "stream", "builtin"])
def test_every_mode_is_smaller_and_identical_on_real_photos(detector, photos, mode) -> None:
    outcome = patch_model(detector, mode=mode, inputs=photos)

    assert outcome.applied, outcome.plan.reason
    report = outcome.report
    assert report.identical and report.examples == len(photos)
    assert report.arena_after.bisected_min < report.arena_before.bisected_min
    assert report.arena_after.head < report.arena_before.head
    if mode == "stream":
        assert outcome.plan.extra_macs == 0
        assert {s.execution for s in outcome.plan.stages} == {"stream"}
