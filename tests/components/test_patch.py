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


def quantized_model(root, name: str, layers, features) -> QuantizedModel:
    import keras

    keras.utils.set_random_seed(0)
    x, _ = example_records.load_split(features, "train")
    inputs = keras.Input(SHAPE, batch_size=1)
    h = inputs
    for layer in layers:
        h = layer(h)
    model = keras.Model(inputs, keras.layers.Dense(len(LABELS))(h))
    path = root / f"{name}.tflite"
    path.write_bytes(convert_int8(model, x[:32]))
    return QuantizedModel(
        path=path, labels=LABELS, input_shape=SHAPE,
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

    pooled = quantized_model(tmp_path, "pooled", [
        layers.MaxPooling2D(2), layers.Conv2D(8, 3), layers.GlobalAveragePooling2D(),
    ], features)  # fmt: skip
    kept = patch.run(patch.PatchSpec(), pooled, features, tmp_path)
    assert kept.patched is None and "nothing patchable" in kept.reason
    assert not list(tmp_path.glob("*patched*"))


def test_default_grids_are_the_planners():
    assert patch.PatchSpec().grids == tflm_ext.PlannerSpec().grids


def test_a_grid_below_two_is_refused_by_the_spec():
    with pytest.raises(ValueError, match="grids"):
        patch.PatchSpec(grids=(1, 4))
