"""The patching driver: plan, rewrite, verify and keep only a measured gain, in both modes."""

from __future__ import annotations

import shutil

import pytest

from tests.int8_models import convert_on_noise, seeded_keras
from tests.tflm_ext.hand_models import pool_first_model
from tflm_ext.builtin_planner import MAX_GRID
from tflm_ext.errors import NothingPatchableError
from tflm_ext.interpreter import ARENA_ALIGNMENT
from tflm_ext.patching import patch_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the custom op needs g++")


def test_custom_mode_patches_verified_and_smaller(inverted_residual_int8_model):
    outcome = patch_model(inverted_residual_int8_model, mode="custom", inputs=3)
    assert outcome.applied and outcome.plan.stages
    assert outcome.report.identical and outcome.report.examples == 3
    assert outcome.report.arena_after.bisected_min < outcome.report.arena_before.bisected_min


@pytest.fixture(scope="module")
def wide_input_model() -> bytes:
    """96x96x3 -> conv3x3 s2 (48x48x16) -> dw3x3 s2 relu6 -> conv1x1 -> pool -> dense: the
    first two operators' tensors dominate, as in a person-detection network."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((96, 96, 3), batch_size=1)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)
    x = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (96, 96, 3))


def test_builtin_mode_measures_its_candidates_and_keeps_the_smallest(wide_input_model):
    outcome = patch_model(wide_input_model, mode="builtin", inputs=3)

    assert outcome.applied and outcome.report.identical
    chosen, others = outcome.plan.stages[0], outcome.plan.alternatives
    assert others and all(chosen.arena_bytes <= o.arena_bytes for o in others)
    # what the search recorded, at a generous arena: the minimum differs by alignment only
    assert abs(outcome.report.arena_after.total - chosen.arena_bytes) < ARENA_ALIGNMENT
    assert outcome.report.arena_after.bisected_min < outcome.report.arena_before.bisected_min
    assert "builtin split of operators 0.." in outcome.plan.reason
    assert max(g for o in (chosen, *others) for g in o.grid) <= MAX_GRID


def test_builtin_mode_keeps_the_model_when_its_extra_ops_cost_more(inverted_residual_int8_model):
    """On a model this small every builtin split's per-operator arena outweighs the lower
    head: the original is kept and the reason gives the measured figures."""
    outcome = patch_model(inverted_residual_int8_model, mode="builtin", inputs=3)
    assert not outcome.applied and outcome.model_bytes is None
    assert not outcome.plan.stages
    assert "measured below the original's" in outcome.plan.reason


def test_unpatchable_model_is_refused():
    for mode in ("custom", "stream", "builtin"):
        with pytest.raises(NothingPatchableError):
            patch_model(pool_first_model(), mode=mode)
