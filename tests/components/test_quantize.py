"""Quantize: full int8 in and out, and TFLM's int8 model agrees with the float model."""

from __future__ import annotations

import numpy as np

import tflm_ext
from components import example_records
from tflm_ext.inference import input_details, output_details


def test_model_is_full_int8(quantized):
    model_bytes = quantized.read_bytes()
    assert quantized.path.name == "model_int8.tflite"
    assert input_details(model_bytes).dtype == np.int8
    assert output_details(model_bytes).dtype == np.int8
    assert quantized.labels == ("_silence_", "_unknown_", "yes")


def test_int8_on_tflm_agrees_with_float(quantized, trained, feature_set):
    import keras

    x, _ = example_records.load_split(feature_set, "test")
    float_pred = keras.models.load_model(trained.path).predict(x, verbose=0)
    int8_scores = tflm_ext.run_isolated(tflm_ext.run_batch, quantized.read_bytes(), x).scores
    agreement = np.mean(float_pred.argmax(1) == int8_scores.argmax(1))
    assert agreement >= 0.9
    assert np.abs(float_pred - int8_scores).max() < 0.1
