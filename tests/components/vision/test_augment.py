"""The training transforms: one random affine warp per image (MLPerf Tiny's ranges) and
random convolutions (RandConv)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from components import train  # noqa: E402
from components.vision.augment import RandomAffine, RandomConvolution  # noqa: E402


def _images(n: int = 64, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def test_identity_unless_training_and_with_zero_ranges():
    x = _images()
    warp = RandomAffine(10, 0.05, 0.1, True, seed=0)
    np.testing.assert_array_equal(np.asarray(warp(x, training=False)), x)
    still = RandomAffine(0, 0, 0, False, seed=0)
    np.testing.assert_allclose(np.asarray(still(x, training=True)), x, atol=1e-5)


def test_flip_mirrors_about_half_the_images():
    x = _images()
    out = np.asarray(RandomAffine(0, 0, 0, True, seed=1)(x, training=True))
    same = [np.allclose(o, i, atol=1e-5) for o, i in zip(out, x, strict=True)]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-5) for o, i in zip(out, x, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48


def test_transforms_stay_in_the_configured_ranges_about_the_centre():
    size, batch = 96, 512
    warp = RandomAffine(10, 0.05, 0.1, True, seed=2)
    rows = np.asarray(warp.transforms(batch, size, size))
    a0, a1, a2, b0, b1, b2 = rows[:, :6].T
    mirror = np.sign(a0 * b1 - a1 * b0)  # a mirror reverses the orientation
    angle = np.degrees(np.arctan2(b0 * mirror, a0 * mirror))
    assert np.abs(angle).max() <= 10 + 1e-3 and np.abs(angle).max() > 8
    zoom_x, zoom_y = np.hypot(a0, b0), np.hypot(a1, b1)
    for zoom in zoom_x, zoom_y:
        assert 0.9 - 1e-5 <= zoom.min() and zoom.max() <= 1.1 + 1e-5
    assert not np.allclose(zoom_x, zoom_y)  # one factor per axis, as ImageDataGenerator
    centre = (size - 1) / 2
    shift_x = a0 * centre + a1 * centre + a2 - centre
    shift_y = b0 * centre + b1 * centre + b2 - centre
    for shift in shift_x, shift_y:
        assert np.abs(shift).max() <= 0.05 * size + 1e-3 and np.abs(shift).max() > 0.04 * size
    assert 0.4 < np.mean(mirror < 0) < 0.6
    assert not math.isclose(float(np.std(angle)), 0.0)


def test_same_seed_same_warp_and_another_seed_another():
    x = _images(8)

    def warped(seed):
        return np.asarray(RandomAffine(10, 0.05, 0.1, True, seed=seed)(x, training=True))

    np.testing.assert_array_equal(warped(3), warped(3))
    assert not np.allclose(warped(3), warped(4))


def test_training_with_augmentation_saves_the_model_without_the_warp(tmp_path):
    from tests.components.conftest import write_feature_set

    images = write_feature_set(tmp_path / "images", shape=(16, 16, 3))
    spec = train.TrainSpec(
        architecture="plain_cnn", model={"filters": 4, "blocks": 2}, epochs=2, batch_size=16,
        augment=train.AugmentSpec(random_convolution=0.5),
    )  # fmt: skip
    first = train.run(spec, images, tmp_path / "a", progress=False)
    saved = keras.models.load_model(first.path, compile=False)
    assert saved.name == "plain_cnn"
    assert not any(isinstance(layer, RandomAffine | RandomConvolution) for layer in saved.layers)
    assert saved.input_shape == (None, 16, 16, 3)
    again = train.run(spec, images, tmp_path / "b", progress=False)
    assert again.history == first.history
    plain = train.run(
        dataclasses.replace(spec, augment=None), images, tmp_path / "c",
        progress=False,
    )  # fmt: skip
    assert plain.history != first.history


def test_random_convolution_is_the_identity_unless_training_or_at_probability_zero():
    x = _images()
    np.testing.assert_array_equal(np.asarray(RandomConvolution(1.0, 7, 0)(x)), x)
    np.testing.assert_array_equal(np.asarray(RandomConvolution(0.0, 7, 0)(x, training=True)), x)


def test_random_convolution_redraws_textures_but_keeps_each_images_colour():
    x = _images(64, size=32)
    x[:32] *= 0.5  # dark images stay dark
    layer = RandomConvolution(1.0, 7, seed=0)
    for _ in range(3):  # three batches, three filter banks
        out = np.asarray(layer(x, training=True))
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - x).mean() > 0.02
        np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.06)


def test_random_convolution_alters_about_its_share_of_the_images():
    x = _images(256, size=16)
    out = np.asarray(RandomConvolution(0.25, 3, seed=1)(x, training=True))
    altered = np.abs(out - x).reshape(len(x), -1).max(axis=1) > 1e-6
    assert 32 < altered.sum() < 96


def test_random_convolution_is_seeded():
    x = _images(8)

    def filtered(seed):
        return np.asarray(RandomConvolution(1.0, 5, seed)(x, training=True))

    np.testing.assert_array_equal(filtered(3), filtered(3))
    assert not np.allclose(filtered(3), filtered(4))


def test_an_even_random_convolution_kernel_is_refused_by_the_spec():
    with pytest.raises(ValueError, match="random_convolution_kernel"):
        train.AugmentSpec(random_convolution=0.5, random_convolution_kernel=4)
