"""Evaluating a model the user brings on a folder of real inputs (``tflm-pipelines evaluate``):
a hand-made int8 image model on an image folder with bad files, and MLPerf Tiny's reference
models on the real samples in the shared folder, through the project's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from components import evaluate_files
from components.errors import ComponentError
from tests.components.tracking.test_flavor_inputs import SIZE, make_tiny_image_tflite
from tests.shared_data import require

KWS_REFERENCE_LABELS = (
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
    "_silence_", "_unknown_",
)  # fmt: skip


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    return make_tiny_image_tflite(tmp_path_factory.mktemp("own") / "detector.tflite")


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.jpg")
    (tmp_path / "dog" / "broken.png").write_text("not an image")
    return tmp_path


def test_own_model_on_an_image_folder_skips_bad_files(own_model, photo_folder):
    result = evaluate_files.run(own_model, photo_folder, progress=False)
    report = result.report()
    assert report["examples"] == 6 and tuple(report["labels"]) == ("cat", "dog")
    assert [s.path.endswith("broken.png") for s in result.skipped] == [True]
    assert report["flash_bytes"] == own_model.stat().st_size and report["arena_total"] > 0
    assert sum(map(sum, report["confusion"])) == 6
    assert result.preprocessing.image_size == SIZE and result.preprocessing.channels == 3


def test_label_count_must_match_the_outputs(own_model, photo_folder):
    with pytest.raises(ComponentError, match="2 outputs but 3 labels"):
        evaluate_files.run(own_model, photo_folder, ("cat", "dog", "bird"), progress=False)
    with pytest.raises(ComponentError, match=r"labels \['bird'\] name no folder"):
        evaluate_files.run(own_model, photo_folder, ("cat", "bird"), progress=False)


def test_a_file_that_is_not_a_model_is_refused(tmp_path, photo_folder):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ComponentError, match="fake.tflite"):
        evaluate_files.run(fake, photo_folder, progress=False)


def test_mlperf_reference_person_detector_on_real_photos():
    """MLPerf Tiny's VWW model reads RGB scaled to [0, 1] (85% on its own test set): the
    project's image preprocessing must feed it the same, so it scores as well here."""
    model = require("models", "vww_96_int8.tflite")
    result = evaluate_files.run(model, require("data", "vww_coco"), progress=False)
    assert result.evaluation.labels == ("non_person", "person")
    assert result.evaluation.test_examples == 264
    assert result.evaluation.int8_accuracy >= 0.8


def test_mlperf_reference_keyword_model_on_real_clips():
    """Through the project's mfcc front end (MLPerf Tiny's features exactly), the reference
    model hears real speakers as well as on its own test set (90%)."""
    model = require("models", "kws_ref_model.tflite")
    data = require("data", "speech_commands")
    result = evaluate_files.run(model, data, KWS_REFERENCE_LABELS, progress=False)
    assert result.preprocessing.frontend == "mfcc"
    assert result.evaluation.int8_accuracy >= 0.9
