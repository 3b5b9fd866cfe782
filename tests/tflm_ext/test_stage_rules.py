"""stage_rules: which operator ranges form a stage, and what a stage costs on a grid."""

from __future__ import annotations

import pytest

from tflm_ext import stage_rules
from tflm_ext.model_graph import read_graph
from tflm_ext.passes import stage_ops


@pytest.fixture(scope="module")
def residual(inverted_residual_int8_model: bytes):
    graph = read_graph(inverted_residual_int8_model)
    return graph, stage_rules.operator_problems(inverted_residual_int8_model, graph)


def test_operator_problems_use_the_rewrites_rules(residual) -> None:
    graph, problems = residual
    assert problems[:9] == [None] * 9  # conv, depthwise, ADD and the global MEAN pass
    assert "operator 9 (FULLY_CONNECTED) cannot join a patch stage" in problems[9]
    assert stage_ops.rule_text(stage_ops.rule_kind) in problems[9]


def test_stage_rules_name_the_offending_tensor_or_operator(residual) -> None:
    graph, _ = residual
    skip = graph.ops[0].outputs[0]
    assert stage_rules.stage_problem(graph, 0, 4) is None
    closed = stage_rules.stage_problem(graph, 0, 2)  # the ADD (op 4) still reads op 0's output
    assert stage_rules.rule_closed.__doc__ in closed
    assert f"operator 0's output (tensor {skip}) is read by operators (1, 4)" in closed
    one_input = stage_rules.stage_problem(graph, 2, 4)  # the ADD reads the skip from outside
    assert stage_rules.rule_one_input.__doc__ in one_input
    assert "all its strides are 1" in stage_rules.stage_problem(graph, 1, 4)


def test_stage_ends_stop_at_the_first_unsupported_operator(residual) -> None:
    graph, problems = residual
    ends, why = stage_rules.stage_ends(graph, problems, 0)
    assert ends == [0, 4, 5, 6, 7]  # inside the residual block the skip would escape
    assert "A tile stage holds no global pool" in why and "operator 8 is MEAN" in why
    ends, why = stage_rules.stage_ends(graph, problems, 2)
    assert ends == []
    assert "all its strides are 1" in why and "reads tensors" in why


def test_streamed_stages_may_keep_stride_1_and_end_in_the_global_pool(residual) -> None:
    graph, problems = residual
    ends, why = stage_rules.stage_ends(graph, problems, 0, stage_rules.STREAM)
    assert ends == [0, 4, 5, 6, 7, 8]  # through the MEAN, which nothing may follow
    assert "operator 9 (FULLY_CONNECTED)" in why
    # from inside the block the skip is the stage input: stride-1 stages stream
    assert stage_rules.stage_ends(graph, problems, 1, stage_rules.STREAM)[0] == list(range(1, 9))
    assert stage_rules.stage_ends(graph, problems, 5, stage_rules.STREAM)[0] == [5, 6, 7, 8]
    assert stage_rules.stage_problem(graph, 0, 2, stage_rules.STREAM_RULES) is not None
    assert stage_rules.stage_problem(graph, 1, 4, stage_rules.STREAM_RULES) is None


def test_stage_cost_is_the_kernels_working_set(tiny_int8_model: bytes) -> None:
    """Ops 0..2 of the tiny model on 2x2 tiles of the 8x8 output: the depthwise reads a 5x5
    window (4 rows plus one of padding clipped away) of the 8x8x4 conv output, the 1x1 conv a
    4x4x4 window; both are alive while the 1x1 conv runs."""
    graph = read_graph(tiny_int8_model)
    cost = stage_rules.stage_cost(graph, 0, 2, (2, 2))

    assert cost.input_tensor == graph.inputs[0]
    assert cost.output_tensor == graph.ops[2].outputs[0]
    assert cost.scratch_bytes == 5 * 5 * 4 + 4 * 4 * 4
    assert cost.working_set_bytes == 256 + 512 + 176  # scratch aligned to 16
    # the strided conv computes rows 0-4 and 3-7 (and the same columns): 100 pixels, not 64
    assert cost.extra_macs == (100 - 64) * 36
    single = stage_rules.stage_cost(graph, 0, 0, (2, 2))
    assert (single.scratch_bytes, single.extra_macs) == (0, 0)


def test_stream_cost_has_no_extra_macs_on_one_strip(tiny_int8_model: bytes) -> None:
    """Ops 0..3 streamed: the depthwise reads 3 rows of the 8x8x4 conv output, the 1x1 conv
    1 row of the depthwise's, the global pool 1 row of the 8x8x8 conv output and keeps 8
    int32 sums; the stage output is the pool's 8 values."""
    graph = read_graph(tiny_int8_model)
    cost = stage_rules.stage_cost(graph, 0, 3, (1, 1), execution=stage_rules.STREAM)

    assert cost.scratch_bytes == 4 * 8 + 3 * 8 * 4 + 1 * 8 * 4 + 1 * 8 * 8
    assert cost.working_set_bytes == 256 + 16 + 224  # input, output and scratch, 16-aligned
    assert cost.extra_macs == 0
    strips = stage_rules.stage_cost(graph, 0, 2, (1, 2), execution=stage_rules.STREAM)
    assert strips.extra_macs > 0  # the strips' halos: columns 3-4 computed twice


def test_supported_ops_table_lists_every_rule() -> None:
    table = stage_rules.supported_ops_table()
    assert table.startswith("# What a patch stage runs")
    assert "ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, MEAN, PAD" in table
    for rule in (*stage_ops.RULES, *stage_rules.TILE_RULES, *stage_rules.STREAM_RULES):
        assert f"`{rule.__name__}` | {' '.join(rule.__doc__.split())} |" in table
    assert "| stage (stream) | `rule_pool_last` |" in table
