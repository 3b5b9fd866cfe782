"""planner: chosen stages lower the arena TFLM really plans, exactly as predicted, and the
planner says why when it keeps a model or refuses one."""

from __future__ import annotations

import itertools
import shutil

import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import memory_profile, stage_rules
from tflm_ext.arena import ArenaMeasurement
from tflm_ext.errors import NothingPatchableError, TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.model_graph import read_graph
from tflm_ext.planner import (
    PatchPlan,
    PlannerSpec,
    StagePlan,
    keep_if_smaller,
    plan,
    supported_ops_table,
)
from tflm_ext.rewrite import rewrite_stage, verify

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the kernel")


def _rewrite(model_bytes: bytes, patch_plan: PatchPlan) -> bytes:
    for stage in sorted(patch_plan.stages, key=lambda s: -s.first_op):  # last first
        model_bytes = rewrite_stage(model_bytes, stage.first_op, stage.last_op, stage.grid)
    return model_bytes


def _check_valid(model_bytes: bytes, patch_plan: PatchPlan, spec: PlannerSpec) -> None:
    graph = read_graph(model_bytes)
    budget = spec.max_extra_mac_fraction * graph_stats(model_bytes).total_macs
    assert patch_plan.extra_macs == sum(s.extra_macs for s in patch_plan.stages) <= budget
    assert patch_plan.split_floor <= patch_plan.planned_peak < patch_plan.original_peak
    assert patch_plan.planned_head < patch_plan.original_head
    for stage in patch_plan.stages:
        assert stage_rules.stage_problem(graph, stage.first_op, stage.last_op) is None
    for before, after in itertools.pairwise(patch_plan.stages):
        assert before.last_op < after.first_op  # disjoint, in operator order


@needs_gxx
def test_plan_lowers_the_measured_arena_as_predicted(inverted_residual_int8_model: bytes) -> None:
    spec = PlannerSpec()
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


def test_a_peak_no_stage_can_lower_keeps_the_model(tiny_int8_model: bytes) -> None:
    """The peak is the 1x1 conv writing 8x8x8: any stage covering it holds that output and
    its 16x16 input at once, already more than the peak."""
    patch_plan = plan(tiny_int8_model, PlannerSpec())
    assert patch_plan.stages == ()
    assert patch_plan.planned_peak == patch_plan.original_peak == 768
    assert patch_plan.planned_head == patch_plan.original_head
    assert patch_plan.extra_macs == 0
    assert patch_plan.reason.startswith("model kept as it is: no supported stage covers")


def test_models_without_a_leading_stage_are_refused(prepare_bound_int8_model: bytes) -> None:
    with pytest.raises(NothingPatchableError, match="nothing patchable: .*downsampling layer"):
        plan(prepare_bound_int8_model, PlannerSpec())
    with pytest.raises(
        NothingPatchableError, match=r"nothing patchable: operator 0 \(MAX_POOL_2D\)"
    ):
        plan(_pool_first_model(), PlannerSpec())


def _pool_first_model() -> bytes:
    int8 = schema.TensorType.INT8
    quantization = model_editor.Quantization(scales=0.5, zero_points=0)
    x = model_editor.Tensor(shape=(1, 8, 8, 2), dtype=int8, quantization=quantization)
    y = model_editor.Tensor(shape=(1, 4, 4, 2), dtype=int8, quantization=quantization)
    pool = model_editor.Operator(opcode=schema.BuiltinOperator.MAX_POOL_2D, inputs=[x], outputs=[y])
    subgraph = model_editor.Subgraph(tensors=[x, y], operators=[pool], inputs=[x], outputs=[y])
    return bytes(model_editor.Model(subgraphs=[subgraph]).build())


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
    ],
)
def test_spec_is_checked(kwargs, message) -> None:
    with pytest.raises(TflmExtError, match=message):
        PlannerSpec(**kwargs)


def test_supported_ops_table_is_the_stage_rules_table() -> None:
    assert supported_ops_table() == stage_rules.supported_ops_table()
