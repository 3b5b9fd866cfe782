"""Patch component: a model whose first stage dominates is patched, verified on test-split
features and kept; a model where patching cannot help stays as it is, with the reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import tflm_ext
from components import example_records, patch
from components.artifacts import Preprocessing, QuantizedModel
from components.quantize import convert_int8
from tests.components.conftest import LABELS, write_feature_set

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the custom op needs g++")
SHAPE = (48, 40, 1)


def quantized_model(root, name: str, layers, features, shape=SHAPE) -> QuantizedModel:
    import keras

    keras.utils.set_random_seed(0)
    x, _ = example_records.load_split(features, "train")
    inputs = keras.Input(shape, batch_size=1)
    h = inputs
    for layer in layers:
        h = layer(h)
    model = keras.Model(inputs, keras.layers.Dense(len(LABELS))(h))
    path = root / f"{name}.tflite"
    path.write_bytes(convert_int8(model, x[:32]))
    return QuantizedModel(
        path=path, labels=LABELS, input_shape=shape,
        preprocessing=Preprocessing(kind="audio", frontend="mfcc"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_feature_set(tmp_path_factory.mktemp("features"), shape=SHAPE)


@pytest.fixture(scope="module")
def stage_heavy(features, tmp_path_factory):
    """A wide stride-1 conv, then a stride-2 depthwise, then small layers."""
    from keras import layers

    return quantized_model(tmp_path_factory.mktemp("heavy"), "heavy", [
        layers.Conv2D(16, 3, padding="same", activation="relu6"),
        layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"),
        layers.Conv2D(8, 1, activation="relu6"),
        layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"),
        layers.GlobalAveragePooling2D(),
    ], features)  # fmt: skip


def test_dominant_first_stage_is_patched_and_verified(stage_heavy, features, tmp_path):
    result = patch.run(patch.PatchSpec(verify_examples=4), stage_heavy, features, tmp_path)
    assert result.patched is not None, result.reason
    assert "verified bit-exact" in result.reason and result.stages
    assert result.arena_after < result.arena_before
    assert 0 < result.floor_bytes <= result.bound_bytes
    metrics = result.metrics()
    assert metrics["patch.arena_after"] == result.arena_after and len(metrics) == 5
    names = {p.name for p in result.report_files}
    assert names == {"patch_plan.md", "memory_unpatched.png", "memory_patched.png"}
    assert all(p.stat().st_size > 0 for p in result.report_files)
    assert "| yes |" in (tmp_path / "patch_plan.md").read_text()
    x, _ = example_records.load_split(features, "test")
    before = tflm_ext.run_isolated(tflm_ext.run_batch, stage_heavy.read_bytes(), x).scores
    after = tflm_ext.run_isolated(tflm_ext.run_batch, result.patched.read_bytes(), x).scores
    np.testing.assert_array_equal(before, after)  # every test example, not only the verified 4


def test_disabled_patch_keeps_the_model(stage_heavy, features, tmp_path):
    off = patch.run(patch.PatchSpec(enabled=False), stage_heavy, features, tmp_path)
    assert off.patched is None and "disabled" in off.reason
    assert off.metrics() == {} and off.report_files == ()


def test_unpatchable_model_is_kept_with_the_reason(features, tmp_path):
    from keras import layers

    squashed = quantized_model(tmp_path, "squashed", [  # TANH first: no stage can start
        layers.Activation("tanh"), layers.Conv2D(8, 3, strides=2), layers.GlobalAveragePooling2D(),
    ], features)  # fmt: skip
    kept = patch.run(patch.PatchSpec(), squashed, features, tmp_path)
    assert kept.patched is None and "nothing patchable" in kept.reason
    assert not list(tmp_path.glob("*patched*"))


def test_default_grids_are_the_planners():
    assert patch.PatchSpec().grids == tflm_ext.PlannerSpec().grids


def test_a_grid_below_two_is_refused_by_the_spec():
    with pytest.raises(ValueError, match="grids"):
        patch.PatchSpec(grids=(1, 4))


def test_a_row_reader_is_refused_in_builtin_mode_by_the_spec():
    with pytest.raises(ValueError, match="row_reader: true needs mode custom or stream"):
        patch.PatchSpec(mode="builtin", row_reader=True)


IMAGE = (32, 32, 3)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    """A 32x32 RGB classifier (3x3/s2 conv, depthwise, 1x1, pool) and its example set."""
    import dataclasses

    from keras import layers

    root = tmp_path_factory.mktemp("image")
    examples = write_feature_set(root / "features", shape=IMAGE)
    quantized = quantized_model(root, "image", [
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6"),
        layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
        layers.Conv2D(8, 1, activation="relu6"),
        layers.GlobalAveragePooling2D(),
    ], examples, IMAGE)  # fmt: skip
    prep = Preprocessing(kind="image", image_size=IMAGE[:2], channels=IMAGE[2])
    return dataclasses.replace(quantized, preprocessing=prep), examples


def test_a_row_reader_model_is_verified_reported_and_served_whole(image_model, tmp_path):
    """patch.row_reader: the kept model's input is one row, it was verified bit-exact on
    the test split, the result says the image leaves the arena, and the tflm flavor still
    predicts from whole images, exactly as the original does."""
    import mlflow

    from components.tracking import tflm_flavor
    from tflm_ext.model_graph import read_graph

    quantized, examples = image_model
    spec = patch.PatchSpec(row_reader=True, verify_examples=4)
    result = patch.run(spec, quantized, examples, tmp_path / "patch")

    assert result.patched is not None, result.reason
    assert result.row_reader and "row reader" in result.reason
    assert result.arena_after < result.arena_before
    graph = read_graph(result.patched.read_bytes())
    assert graph.shape(graph.inputs[0]) == (1, 1, *IMAGE[1:])
    assert result.patched.input_shape == IMAGE  # what the application feeds: whole images
    images = np.random.default_rng(0).integers(0, 256, (5, *IMAGE), dtype=np.uint8)
    frames = []
    for name, model in (("original", quantized), ("patched", result.patched)):
        tflm_flavor.save_model(
            model.path, tmp_path / name, labels=LABELS, preprocessing=quantized.preprocessing
        )
        frames.append(mlflow.pyfunc.load_model(str(tmp_path / name)).predict(list(images)))
    assert frames[0].equals(frames[1])
