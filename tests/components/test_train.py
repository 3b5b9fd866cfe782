"""Train: a DS-CNN learns separable features, deterministically, and reports its history."""

from __future__ import annotations

import dataclasses

import pytest

from components import models, train
from components.errors import ComponentError


def test_default_ds_cnn_is_mlperf_tiny_sized():
    model = models.build("ds_cnn", (49, 10, 1), 12)
    assert model.output_shape == (None, 12)
    assert 20_000 < model.count_params() < 30_000  # MLPerf Tiny's DS-CNN: about 24k


def test_training_learns_and_keeps_history(trained):
    assert trained.path.is_file() and trained.path.suffix == ".keras"
    assert trained.input_shape == (49, 10, 1) and len(trained.labels) == 3
    assert set(trained.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(trained.history["loss"]) == 3
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    assert max(trained.history["accuracy"]) > 0.6  # chance is 1/3


def test_same_seed_same_history(trained, feature_set, tmp_path):
    spec = train.TrainSpec(
        model={"filters": 16, "blocks": 1}, epochs=3, batch_size=16, learning_rate=0.01
    )
    again = train.run(spec, feature_set, tmp_path, progress=False)
    assert again.history["loss"] == pytest.approx(trained.history["loss"], rel=1e-5)


def test_no_training_examples_is_refused(feature_set, tmp_path):
    empty = dataclasses.replace(feature_set, counts={"train": 0})
    with pytest.raises(ComponentError, match="no training examples"):
        train.run(train.TrainSpec(epochs=1), empty, tmp_path, progress=False)


def test_spec_refuses_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        train.TrainSpec(epochs=0)
    with pytest.raises(ValueError, match="architecture"):
        train.TrainSpec(architecture="resnet")
