"""planner: chosen stages lower the arena TFLM really plans, exactly as predicted, and the
planner says why when it keeps a model or refuses one."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace

import pytest

from tests.shared_data import require
from tests.tflm_ext.hand_models import unsupported_first_model
from tflm_ext import memory_profile, stage_rules
from tflm_ext.arena import ArenaMeasurement
from tflm_ext.errors import NothingPatchableError, TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.model_graph import read_graph
from tflm_ext.patching import rewrite_all, stage_spec
from tflm_ext.planner import (
    PatchPlan,
    PlannerSpec,
    StagePlan,
    keep_if_smaller,
    plan,
    plan_table,
    supported_ops_table,
)
from tflm_ext.rewrite import verify

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the kernel")


TILES_ONLY = PlannerSpec(executions=("tiles",))


def _rewrite(model_bytes: bytes, patch_plan: PatchPlan) -> bytes:
    return rewrite_all(model_bytes, patch_plan)  # each stage in its execution, last first


def _check_valid(model_bytes: bytes, patch_plan: PatchPlan, spec: PlannerSpec) -> None:
    graph = read_graph(model_bytes)
    budget = spec.max_extra_mac_fraction * graph_stats(model_bytes).total_macs
    assert patch_plan.extra_macs == sum(s.extra_macs for s in patch_plan.stages) <= budget
    assert patch_plan.split_floor <= patch_plan.planned_peak < patch_plan.original_peak
    assert patch_plan.planned_head < patch_plan.original_head
    for stage in patch_plan.stages:
        rules = stage_rules.RULES_BY_EXECUTION[stage.execution]
        assert stage_rules.stage_problem(graph, stage.first_op, stage.last_op, rules) is None
        assert stage.execution in spec.executions
    for before, after in itertools.pairwise(patch_plan.stages):
        assert before.last_op < after.first_op  # disjoint, in operator order


@needs_gxx
@pytest.mark.parametrize("spec", [PlannerSpec(), TILES_ONLY], ids=["any", "tiles"])
def test_plan_lowers_the_measured_arena_as_predicted(
    inverted_residual_int8_model: bytes, spec: PlannerSpec
) -> None:
    patch_plan = plan(inverted_residual_int8_model, spec)

    assert patch_plan.original_peak == 14336
    assert patch_plan.stages, patch_plan.reason
    _check_valid(inverted_residual_int8_model, patch_plan, spec)
    rewritten = _rewrite(inverted_residual_int8_model, patch_plan)
    assert memory_profile.profile(rewritten, measure=False).peak_bytes == patch_plan.planned_peak
    report = verify(inverted_residual_int8_model, rewritten, inputs=2)
    assert report.identical, report.first_mismatch
    assert report.arena_before.head == patch_plan.original_head
    assert report.arena_after.head == patch_plan.planned_head
    assert report.arena_after.bisected_min < report.arena_before.bisected_min
    assert keep_if_smaller(patch_plan, report.arena_before, report.arena_after) is patch_plan


@needs_gxx
def test_two_peaks_take_two_stages(two_peak_int8_model: bytes) -> None:
    """A pool the kernel does not run separates the peaks: one stage on each side."""
    spec = PlannerSpec()
    both = plan(two_peak_int8_model, spec)
    one = plan(two_peak_int8_model, PlannerSpec(max_stages=1))

    assert [(s.first_op, s.last_op) for s in both.stages][0][1] < 3 < both.stages[1].first_op
    assert both.stages[0].peak_bytes > both.stages[1].peak_bytes == both.planned_peak
    assert len(one.stages) == 1 and one.planned_peak > both.planned_peak
    _check_valid(two_peak_int8_model, both, spec)
    report = verify(two_peak_int8_model, _rewrite(two_peak_int8_model, both), inputs=2)
    assert report.identical, report.first_mismatch
    assert report.arena_after.head == both.planned_head


def test_alternatives_are_leading_stages_that_lower_the_peak(
    inverted_residual_int8_model: bytes,
) -> None:
    patch_plan = plan(inverted_residual_int8_model, PlannerSpec())
    assert patch_plan.alternatives
    peaks = [a.peak_bytes for a in patch_plan.alternatives]
    assert peaks == sorted(peaks) and max(peaks) < patch_plan.original_peak
    assert all(a.first_op == 0 and a not in patch_plan.stages for a in patch_plan.alternatives)


def test_a_zero_budget_allows_only_stages_that_recompute_nothing(
    inverted_residual_int8_model: bytes,
) -> None:
    patch_plan = plan(inverted_residual_int8_model, PlannerSpec(max_extra_mac_fraction=0.0))
    assert patch_plan.extra_macs == 0
    assert all(s.extra_macs == 0 for s in patch_plan.stages)
    if not patch_plan.stages:
        assert "budget of 0 extra MACs" in patch_plan.reason


def test_a_peak_no_tile_stage_can_lower_keeps_the_model(tiny_int8_model: bytes) -> None:
    """The peak is the 1x1 conv writing 8x8x8: any tile stage covering it holds that output
    and its 16x16 input at once, already more than the peak."""
    patch_plan = plan(tiny_int8_model, TILES_ONLY)
    assert patch_plan.stages == ()
    assert patch_plan.planned_peak == patch_plan.original_peak == 768
    assert patch_plan.planned_head == patch_plan.original_head
    assert patch_plan.extra_macs == 0
    assert patch_plan.reason.startswith("model kept as it is: no supported stage covers")


@needs_gxx
def test_streaming_through_the_global_pool_lowers_that_peak(tiny_int8_model: bytes) -> None:
    """Streamed to the end of its global AVERAGE_POOL_2D, the stage's output is 8 values: the
    8x8x8 tensor never exists, at no extra MAC."""
    patch_plan = plan(tiny_int8_model, PlannerSpec())
    assert [(s.first_op, s.last_op, s.execution) for s in patch_plan.stages] == [(0, 3, "stream")]
    assert patch_plan.extra_macs == 0 and patch_plan.planned_peak < 768
    report = verify(tiny_int8_model, _rewrite(tiny_int8_model, patch_plan), inputs=3)
    assert report.identical, report.first_mismatch
    assert report.arena_after.head == patch_plan.planned_head


def test_models_without_a_leading_stage_are_refused(prepare_bound_int8_model: bytes) -> None:
    with pytest.raises(NothingPatchableError, match="nothing patchable: .*downsampling layer"):
        plan(prepare_bound_int8_model, TILES_ONLY)
    with pytest.raises(
        NothingPatchableError, match=r"nothing patchable: operator 0 \(SPACE_TO_DEPTH\)"
    ):
        plan(unsupported_first_model(), PlannerSpec())


@pytest.fixture(scope="module")
def mobile_stage_model() -> bytes:
    """MobileNetV2's first stage in miniature at 96x96x3: 3x3/s2 (16) -> depthwise -> 1x1 (8)
    -> 1x1 (48) -> depthwise/s2 -> 1x1 (8), then a residual block at 24x24, 1x1 (32), MEAN,
    dense. Its first stage is wide: rings of whole rows cost more there than 4x4 tiles."""
    from tests.int8_models import convert_on_noise, seeded_keras

    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((96, 96, 3), batch_size=1)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=bias)(x)
    x = layers.Conv2D(8, 1, bias_initializer=bias)(x)
    x = layers.Conv2D(48, 1, activation="relu6", bias_initializer=bias)(x)
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="same", activation="relu6", bias_initializer=bias
    )(x)
    x = layers.Conv2D(8, 1, bias_initializer=bias)(x)
    y = layers.Conv2D(48, 1, activation="relu6", bias_initializer=bias)(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=bias)(y)
    x = layers.Add()([x, layers.Conv2D(8, 1, bias_initializer=bias)(y)])
    x = layers.Conv2D(32, 1, activation="relu6", bias_initializer=bias)(x)
    outputs = layers.Dense(3, bias_initializer=bias)(layers.GlobalAveragePooling2D()(x))
    return convert_on_noise(keras.Model(inputs, outputs), (96, 96, 3))


@needs_gxx
def test_each_stage_gets_the_execution_that_fits_it(mobile_stage_model: bytes) -> None:
    """Whole-width streaming only: the wide first stage runs in tiles (its rings would cost
    more than 4x4 tiles' windows), the rest streams at no extra MAC; both fused stages agree
    with the original bit for bit, and TFLM plans exactly the predicted head."""
    spec = PlannerSpec(strips=(1,))
    patch_plan = plan(mobile_stage_model, spec)

    assert [(s.first_op, s.last_op, s.execution) for s in patch_plan.stages] == [
        (0, 5, "tiles"),
        (6, 11, "stream"),
    ]
    assert patch_plan.stages[1].extra_macs == 0
    _check_valid(mobile_stage_model, patch_plan, spec)
    table = plan_table(patch_plan)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| yes")]
    assert [(r[1], r[2], r[-1]) for r in rows] == [
        ("0..5", "4x4", "tiles |"),
        ("6..11", "whole", "stream |"),
    ]
    report = verify(mobile_stage_model, _rewrite(mobile_stage_model, patch_plan), inputs=2)
    assert report.identical, report.first_mismatch
    assert report.arena_after.head == patch_plan.planned_head


def test_choosing_per_stage_beats_either_execution_alone(mobile_stage_model: bytes) -> None:
    heads = {
        executions: plan(mobile_stage_model, PlannerSpec(executions=executions)).planned_head
        for executions in (("tiles",), ("stream",), ("tiles", "stream"))
    }
    assert heads[("tiles", "stream")] <= min(heads[("tiles",)], heads[("stream",)])
    assert heads[("tiles", "stream")] < heads[("tiles",)]


def test_stream_mode_streams_every_stage_whole(mobile_stage_model: bytes) -> None:
    patch_plan = plan(mobile_stage_model, stage_spec(PlannerSpec(), "stream"))
    assert patch_plan.stages and patch_plan.extra_macs == 0
    assert {(s.execution, s.grid) for s in patch_plan.stages} == {("stream", (1, 1))}


def test_without_a_mac_budget_only_streams_are_chosen(inverted_residual_int8_model) -> None:
    patch_plan = plan(inverted_residual_int8_model, PlannerSpec(max_extra_mac_fraction=0.0))
    assert patch_plan.stages and patch_plan.extra_macs == 0
    assert {s.execution for s in patch_plan.stages} == {"stream"}


@needs_gxx
def test_spare_stage_slots_fuse_the_rest_at_no_cost() -> None:
    """MLPerf Tiny's person detector: one stage sets the head; with stage slots to spare
    the planner also streams the cold rest at no extra MAC, which leaves the head where it
    is and takes those operators' persistent data out of TFLM's tail."""
    detector = require("models", "vww_96_int8.tflite").read_bytes()
    one = plan(detector, PlannerSpec(max_stages=1))
    three = plan(detector, PlannerSpec(max_stages=3))

    assert len(one.stages) == 1 and len(three.stages) == 3
    assert three.planned_head == one.planned_head and three.extra_macs == one.extra_macs
    assert all(s.execution == "stream" and s.extra_macs == 0 for s in three.stages[1:])
    before = verify(detector, _rewrite(detector, one), inputs=2).arena_after
    after = verify(detector, _rewrite(detector, three), inputs=2)
    assert after.identical and after.arena_after.head == before.head
    assert after.arena_after.tail < before.tail


@needs_gxx
def test_a_row_reader_takes_the_image_out_of_the_arena(mobile_stage_model: bytes) -> None:
    """Only when asked for: the first stage then streams the image from the row reader,
    and the head no longer holds the 96x96x3 input. Its wide rings shrink further on column
    strips (each strip reads the rows again), which the planner picks over one strip within
    the MAC budget; bit-exact, and TFLM plans exactly the simulated head."""
    assert not any(s.row_reader for s in plan(mobile_stage_model, PlannerSpec()).stages)
    spec = PlannerSpec(row_reader=True)
    patch_plan = plan(mobile_stage_model, spec)
    one_strip = plan(mobile_stage_model, replace(spec, strips=(1,)))

    first = patch_plan.stages[0]
    assert (first.first_op, first.execution, first.row_reader) == (0, "stream", True)
    assert first.grid[1] > 1 and 0 < first.extra_macs <= patch_plan.extra_macs
    assert one_strip.stages[0].row_reader and one_strip.stages[0].grid == (1, 1)
    assert patch_plan.planned_head < one_strip.planned_head
    assert first.rewrite_mode == "reader" and "strips | " in plan_table(patch_plan)
    assert "stream (row reader)" in plan_table(patch_plan)
    assert patch_plan.planned_head < plan(mobile_stage_model, PlannerSpec()).planned_head
    _check_valid(mobile_stage_model, patch_plan, spec)
    report = verify(mobile_stage_model, _rewrite(mobile_stage_model, patch_plan), inputs=2)
    assert report.identical, report.first_mismatch
    assert report.arena_after.head == patch_plan.planned_head


def test_keep_if_smaller_drops_a_plan_that_grows_the_arena() -> None:
    stage_plan = StagePlan(0, 3, (2, 2), 900, 50, 900)
    patch_plan = PatchPlan((stage_plan,), 1000, 900, 800, 50, (), "fused", 1000, 900)
    smaller = ArenaMeasurement(head=900, tail=100, total=1000, bisected_min=1000)
    larger = ArenaMeasurement(head=1000, tail=100, total=1100, bisected_min=1100)

    assert keep_if_smaller(patch_plan, larger, smaller) is patch_plan
    kept = keep_if_smaller(patch_plan, smaller, larger)
    assert kept.stages == () and kept.extra_macs == 0
    assert kept.planned_peak == kept.original_peak == 1000 and kept.planned_head == 1000
    assert "1100 B of arena, not less than the original's 1000 B" in kept.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_extra_mac_fraction": -0.1}, "max_extra_mac_fraction"),
        ({"grids": ()}, "grids"),
        ({"grids": (1, 2)}, "at least 2"),
        ({"max_stages": 0}, "max_stages"),
        ({"executions": ()}, "executions"),
        ({"executions": ("tiles", "rows")}, "executions"),
        ({"strips": (0, 2)}, "strips"),
    ],
)
def test_spec_is_checked(kwargs, message) -> None:
    with pytest.raises(TflmExtError, match=message):
        PlannerSpec(**kwargs)


def test_supported_ops_table_is_the_stage_rules_table() -> None:
    assert supported_ops_table() == stage_rules.supported_ops_table()
