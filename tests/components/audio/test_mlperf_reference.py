"""The ``mfcc`` front end against MLPerf Tiny's own KWS test vectors and reference model.

``../shared/data/mlperf_tiny_kws`` holds 59 raw test clips with the int8 MFCCs MLPerf Tiny's
reference pipeline computed for them; ``../shared/models/kws_ref_model.tflite`` is the DS-CNN
trained on those features. If the project's features match the vectors and the reference
model keeps its accuracy on them, firmware built from this project's description of the
front end will feed models the input they were trained on. Tests skip when the shared
folder is absent.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from components.audio import frontends, mlperf_kws
from tests.shared_data import require
from tflm_ext import input_details, run_batch
from tflm_ext.inference import TensorDetails, dequantize, quantize

log = logging.getLogger(__name__)

# The reference model's input quantization (shared/data/mlperf_tiny_kws/README.md).
REFERENCE_INPUT = TensorDetails(
    shape=(1, 49, 10, 1), dtype=np.dtype(np.int8), scale=0.5847029, zero_point=83
)


@pytest.fixture(scope="module")
def vectors():
    """Raw clips as floats in [-1, 1], MLPerf's int8 features and the labels, by file name."""
    read = mlperf_kws.read(require("data", "mlperf_tiny_kws"))
    return read.clips, read.features, read.reference_index


@pytest.fixture(scope="module")
def features(vectors):
    return frontends.compute_batch("mfcc", vectors[0])


def test_the_shared_folder_holds_the_59_mlperf_clips(vectors):
    clips, reference, labels = vectors
    assert clips.shape == (59, 16000) and reference.shape == (59, 49, 10)
    assert len(set(labels)) == len(mlperf_kws.REFERENCE_LABELS)  # silence and unknown too


def test_mfcc_equals_mlperf_test_vectors_within_one_lsb(vectors, features):
    _, reference, _ = vectors
    rounded = quantize(features, REFERENCE_INPUT).astype(np.int64)  # TFLite QUANTIZE, as run
    diff = np.abs(rounded - reference)
    log.info("rounded: max |diff| %d LSB, %.2f%% of values differ", diff.max(), 100 * diff.mean())
    assert diff.max() <= 1, f"max difference {diff.max()} LSB"
    # MLPerf's make_bin_files.py quantizes as int8(x / scale + zero point): it truncates, so
    # about half the values differ by 1 from rounding. With its formula the features are
    # bit-exact except in the all-zero frames that end short clips: there c1 and c5 are 0
    # here and a hair below 0 there, so they truncate to the zero point and to one below it
    # (0.4% of the values).
    truncated = np.clip(np.trunc(features / REFERENCE_INPUT.scale + REFERENCE_INPUT.zero_point),
                        -128, 127)  # fmt: skip
    exact = np.abs(truncated - reference)
    log.info("truncated: max |diff| %d LSB, %.2f%% of values differ", exact.max(),
             100 * np.mean(exact > 0))  # fmt: skip
    assert exact.max() <= 1 and np.mean(exact > 0) < 0.01, f"{np.mean(exact > 0):.2%} differ"


def test_reference_model_classifies_the_clips_through_the_project_front_end(vectors, features):
    _, reference, labels = vectors
    model = require("models", "kws_ref_model.tflite").read_bytes()
    details = input_details(model)
    assert (details.shape, details.zero_point) == (REFERENCE_INPUT.shape, 83)
    assert details.scale == pytest.approx(REFERENCE_INPUT.scale, rel=1e-6)
    ours = run_batch(model, features).scores.argmax(axis=1)
    theirs = run_batch(model, dequantize(reference, details)).scores.argmax(axis=1)
    accuracy, reference_accuracy = np.mean(ours == labels), np.mean(theirs == labels)
    log.info("reference model: %.3f through mfcc, %.3f on MLPerf's vectors, %d/%d agree",
             accuracy, reference_accuracy, np.sum(ours == theirs), len(labels))  # fmt: skip
    assert accuracy >= 0.85, f"{accuracy:.3f} (MLPerf's own vectors: {reference_accuracy:.3f})"
    assert np.mean(ours == theirs) >= 0.95
