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


def _masked_batches(spec_augment, seed: int = 0, shape=(49, 10, 1)):
    """64 copies of one example (distinct values 0, 1, 2, ...) through the masker in a
    parallel tf.data map, as training runs it: masked positions are those that changed."""
    import numpy as np
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    masker = train._masker(spec_augment, shape, seed)
    ds = tf.data.Dataset.from_tensor_slices(np.stack([x] * 64)).batch(16)
    ds = ds.map(masker, num_parallel_calls=tf.data.AUTOTUNE)
    return x, np.concatenate(list(ds.as_numpy_iterator()))


def test_spec_augment_masks_bands_of_time_and_coefficients_with_the_mean():
    import numpy as np

    spec = train.SpecAugmentSpec(
        time_masks=1, max_time_frames=5, frequency_masks=1, max_frequency_bins=2
    )
    x, out = _masked_batches(spec)
    mean = x.mean()
    assert out.shape == (64, 49, 10, 1)
    changed = out != x
    assert changed.any() and not changed.all(axis=(1, 2, 3)).any()
    np.testing.assert_allclose(out[changed], mean)
    for example in changed[..., 0]:
        frames = np.flatnonzero(example.all(axis=1))  # time band: every coefficient masked
        bins = np.flatnonzero(example.all(axis=0))  # coefficient band: every frame masked
        assert len(frames) <= 5 and len(bins) <= 2
        assert np.all(np.diff(frames) == 1) and np.all(np.diff(bins) == 1)  # one band each
        rest = example.copy()
        rest[frames, :] = False
        rest[:, bins] = False
        assert not rest.any()  # nothing masked outside the two bands
    widths = {int(example.all(axis=1).sum()) for example in changed[..., 0]}
    assert len(widths) > 2  # widths are drawn per example


def test_spec_augment_is_deterministic_per_seed():
    import numpy as np

    spec = train.SpecAugmentSpec()
    _, first = _masked_batches(spec, seed=3)
    _, again = _masked_batches(spec, seed=3)
    _, other = _masked_batches(spec, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_spec_augment_trains_and_refuses_masks_wider_than_the_features(feature_set, tmp_path):
    spec = train.TrainSpec(
        model={"filters": 16, "blocks": 1}, epochs=1, batch_size=16,
        spec_augment=train.SpecAugmentSpec(),
    )  # fmt: skip
    assert train.run(spec, feature_set, tmp_path, progress=False).history["loss"]
    wide = dataclasses.replace(spec, spec_augment=train.SpecAugmentSpec(max_frequency_bins=99))
    with pytest.raises(ComponentError, match="max_frequency_bins=99 must stay below"):
        train.run(wide, feature_set, tmp_path, progress=False)
    with pytest.raises(ValueError, match="time_masks"):
        train.SpecAugmentSpec(time_masks=-1)
    with pytest.raises(ValueError, match="max_time_frames"):
        train.SpecAugmentSpec(max_time_frames=0)


def test_fused_batch_norm_trains_the_same_way_each_time(trained, feature_set, tmp_path):
    """Batch norm on the fused kernel: deterministic, and it learns as Keras' own does."""
    spec = train.TrainSpec(
        model={"filters": 16, "blocks": 1},
        epochs=3,
        batch_size=16,
        learning_rate=0.01,
        fused_batch_norm=True,
    )
    first = train.run(spec, feature_set, tmp_path / "a", progress=False)
    again = train.run(spec, feature_set, tmp_path / "b", progress=False)
    assert again.history == first.history
    assert first.history["loss"][-1] < first.history["loss"][0]
    assert first.history["loss"] == pytest.approx(trained.history["loss"], rel=0.05)
