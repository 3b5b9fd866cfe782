"""The patching driver: plan, rewrite, verify and keep only a measured gain, in every mode,
the smallest total arena of the plans weighed, and the row reader on whole images."""

from __future__ import annotations

import shutil

import pytest

from tests.int8_models import convert_on_noise, seeded_keras
from tests.tflm_ext.hand_models import unsupported_first_model
from tflm_ext.builtin_planner import MAX_GRID
from tflm_ext.errors import NothingPatchableError, TflmExtError
from tflm_ext.interpreter import ARENA_ALIGNMENT
from tflm_ext.patching import patch_model
from tflm_ext.planner import PlannerSpec

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
            patch_model(unsupported_first_model(), mode=mode)


def test_custom_mode_keeps_the_plan_of_smallest_total_arena(inverted_residual_int8_model):
    """The firmware reserves head + tail. On this model the head-optimal plan's two stages
    (one on 2 strips) leave more of TFLM's persistent structures than one longer stream:
    the driver keeps the latter, smaller in total though its head is not the smallest,
    and TFLM plans exactly the head simulated for it."""
    from tflm_ext.patching import rewrite_all
    from tflm_ext.planner import plan
    from tflm_ext.rewrite import verify

    outcome = patch_model(inverted_residual_int8_model, mode="custom", inputs=2)
    head_first = plan(inverted_residual_int8_model, PlannerSpec())
    by_head = verify(
        inverted_residual_int8_model, rewrite_all(inverted_residual_int8_model, head_first), 2
    )

    after = outcome.report.arena_after
    assert outcome.applied and after.head == outcome.plan.planned_head
    assert abs(outcome.plan.planned_arena - after.total) < ARENA_ALIGNMENT
    assert outcome.plan.stages != head_first.stages
    assert outcome.plan.planned_head > head_first.planned_head
    assert after.bisected_min < by_head.arena_after.bisected_min
    assert "TFLM total arena" in outcome.plan.reason


@pytest.mark.parametrize("mode", ["custom", "stream"])
def test_the_row_reader_takes_the_image_out_of_the_measured_arena(
    inverted_residual_int8_model, mode
):
    """Both custom-op modes: the first stage reads the image from the row reader, the
    rewrite is verified bit-exact on whole images, and the measured arena is smaller than
    with the image in the arena."""
    with_image = patch_model(inverted_residual_int8_model, mode=mode, inputs=2)
    outcome = patch_model(
        inverted_residual_int8_model, PlannerSpec(row_reader=True), mode=mode, inputs=2
    )

    assert outcome.applied and outcome.report.identical
    first = outcome.plan.stages[0]
    assert (first.first_op, first.row_reader) == (0, True)
    assert outcome.report.arena_after.head == outcome.plan.planned_head
    assert outcome.report.arena_after.bisected_min < with_image.report.arena_after.bisected_min


def test_builtin_mode_refuses_the_row_reader(inverted_residual_int8_model):
    with pytest.raises(TflmExtError, match="row reader runs in the custom op"):
        patch_model(inverted_residual_int8_model, PlannerSpec(row_reader=True), mode="builtin")
