"""split_stage_into_tiles: bit-exact on TFLM for every geometry the custom mode is tested on,
tile windows identical to the custom op's, exact-copy quantization of the new builtins,
CONCATENATION trees of at most 10 inputs, the arena TFLM plans, and refusals. Models are built
with the wheel's model editor (``test_fuse_patch_stage.Graph``): no TensorFlow, no compiler.
"""

from __future__ import annotations

import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tests.tflm_ext.passes.test_fuse_patch_stage import CASES, RELU6, VALID, Graph
from tflm_ext import receptive_field as rf
from tflm_ext.arena import measure_arena
from tflm_ext.errors import TflmExtError
from tflm_ext.isolation import run_isolated
from tflm_ext.memory_profile import profile
from tflm_ext.passes import fuse_patch_stage
from tflm_ext.passes.split_stage_builtin import split_stage_into_tiles
from tflm_ext.patch_op import decode_options
from tflm_ext.rewrite import example_inputs, first_mismatch, rewrite_stage, run_outputs

OPS = schema.BuiltinOperator
BUILTINS = {"STRIDED_SLICE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION"}
COPIES = ("STRIDED_SLICE", "PAD", "CONCATENATION")


def _wide_output() -> tuple[bytes, int, tuple[int, int]]:
    """A stage output 24 columns wide on a 2 x 12 grid: each row joins 12 tiles (a tree)."""
    g = Graph((9, 48, 3), seed=8)
    x = g.conv(g.input, 6, (3, 3), (2, 2), activation=RELU6)
    x = g.conv(x, 6, (3, 3), depthwise=True)
    return g.build(x), 1, (2, 12)


def _stage_in_the_middle() -> tuple[bytes, int, int, tuple[int, int]]:
    """A stage reading an intermediate and feeding a builtin after it: ops 1..2 of 4."""
    g = Graph((18, 16, 4), seed=9)
    x = g.conv(g.input, 8, (1, 1), activation=RELU6)
    x = g.conv(x, 8, (3, 3), (2, 2), VALID, depthwise=True)
    x = g.conv(x, 6, (3, 3))
    x = g.conv(x, 4, (1, 1))
    return g.build(x), 1, 2, (3, 2)


def _cases() -> dict[str, tuple[bytes, int, int, tuple[int, int]]]:
    cases = {}
    for name, build in CASES.items():
        model, last_op, grid = build()
        cases[name] = (model, 0, last_op, grid)
    model, last_op, grid = _wide_output()
    cases["wide_output"] = (model, 0, last_op, grid)
    cases["stage_in_the_middle"] = _stage_in_the_middle()
    return cases


def _compare(pairs: list[tuple[bytes, bytes]], count: int) -> list[tuple[str | None, int]]:
    """Child: per (original, rewritten) pair, the first output difference on the same
    inputs, and the rewritten model's arena head as TFLM records it."""
    found = []
    for original, rewritten in pairs:
        examples = example_inputs(original, count, seed=len(found))
        outputs = [run_outputs(model, examples) for model in (original, rewritten)]
        found.append((first_mismatch(*outputs), measure_arena(rewritten).head))
    return found


def _ops(model: me.Model) -> list[me.Operator]:
    return model.subgraphs[0].operators


def _split(model_bytes: bytes, first: int, last: int, grid: tuple[int, int]) -> me.Model:
    model = me.read(model_bytes)
    split_stage_into_tiles(model, first_op=first, last_op=last, grid=grid)
    return model


def test_every_stage_is_bit_exact_on_tflm_and_its_head_as_simulated() -> None:
    cases = _cases()
    rewritten = {
        name: rewrite_stage(model, first, last, grid, mode="builtin")
        for name, (model, first, last, grid) in cases.items()
    }

    results = run_isolated(_compare, [(c[0], rewritten[n]) for n, c in cases.items()], 5)

    assert [r[0] for r in results] == [None] * len(cases), dict(zip(cases, results, strict=True))
    simulated = [profile(rewritten[name], measure=False).planned_head for name in cases]
    assert [r[1] for r in results] == simulated
    for name, model in rewritten.items():
        names = {op.opcode_name for op in _ops(me.read(model))}
        assert names <= BUILTINS, (name, names - BUILTINS)


def test_tile_windows_are_the_custom_ops() -> None:
    """The stage-input slice of every tile is the window the custom op's chain gives it."""
    model_bytes, first, last, grid = _stage_in_the_middle()
    fused = me.read(model_bytes)
    fuse_patch_stage(fused, first_op=first, last_op=last, grid=grid)
    stage = decode_options(bytes(_ops(fused)[first]._fb.customOptions))
    chain = rf.chain_from_stage(stage)
    whole = rf.full_region(chain)
    tiles = rf.grid_tiles(len(whole.rows), len(whole.cols), grid)
    expected = [rf.tile_regions(chain, tile)[0] for tile in tiles]

    model = _split(model_bytes, first, last, grid)
    source = _ops(model)[first - 1].outputs[0]
    slices = [op for op in _ops(model) if op.inputs and op.inputs[0] is source]

    assert [op.opcode_name for op in slices] == ["STRIDED_SLICE"] * len(expected)
    begins = [op.inputs[1].array.tolist() for op in slices]
    ends = [op.inputs[2].array.tolist() for op in slices]
    assert begins == [[0, r.rows.start, r.cols.start, 0] for r in expected]
    assert ends == [[1, r.rows.stop, r.cols.stop, 8] for r in expected]
    assert all(op.inputs[3].array.tolist() == [1, 1, 1, 1] for op in slices)


def test_slices_pads_and_joins_copy_scale_and_zero_point() -> None:
    model_bytes, first, last, grid = _cases()["pad_and_residual"]
    for op in _ops(_split(model_bytes, first, last, grid)):
        if op.opcode_name in COPIES:
            for tensor in [op.inputs[0], *(op.inputs if op.opcode == OPS.CONCATENATION else ())]:
                assert tensor.quantization == op.outputs[0].quantization, op.opcode_name
        if op.opcode == OPS.PAD:
            pads = op.inputs[1].array
            assert pads[0].tolist() == [0, 0] and pads[3].tolist() == [0, 0]


def test_joins_are_trees_of_at_most_ten_and_write_the_original_output() -> None:
    model_bytes, last, grid = _wide_output()
    original = me.read(model_bytes)
    output = _ops(original)[last].outputs[0]
    model = me.read(model_bytes)
    split_stage_into_tiles(model, first_op=0, last_op=last, grid=grid)
    joins = [op for op in _ops(model) if op.opcode == OPS.CONCATENATION]

    # per row: 12 tiles -> 2 joins of 6 -> 1 join of 2; then the 2 rows
    assert [len(op.inputs) for op in joins] == [6, 6, 2, 6, 6, 2, 2]
    assert [op._fb.builtinOptions.axis for op in joins] == [2] * 6 + [1]
    assert joins[-1] is _ops(model)[-1] and joins[-1].outputs[0].name == output.name
    assert joins[-1].outputs[0] is model.subgraphs[0].outputs[0]


def test_constants_are_shared_between_tiles() -> None:
    model_bytes, first, last, grid = _cases()["residual_from_stage_input_and_groups"]
    model = _split(model_bytes, first, last, grid)
    strides = {id(op.inputs[3]) for op in _ops(model) if op.opcode == OPS.STRIDED_SLICE}
    filters = {id(op.inputs[1]) for op in _ops(model) if op.opcode == OPS.DEPTHWISE_CONV_2D}
    assert len(strides) == 1 and len(filters) == 1


def test_interior_tiles_need_no_padding() -> None:
    """On a 3 x 3 grid of a one-conv SAME stage only border tiles pad: 8 of 9."""
    g = Graph((12, 12, 2), seed=10)
    x = g.conv(g.input, 4, (3, 3))
    model = _split(g.build(x), 0, 0, (3, 3))
    names = [op.opcode_name for op in _ops(model)]
    assert names.count("CONV_2D") == 9 and names.count("PAD") == 8
    assert names.count("STRIDED_SLICE") == 9 and names.count("CONCATENATION") == 4


def test_a_one_by_one_grid_is_refused() -> None:
    model_bytes, first, last, _ = _stage_in_the_middle()
    with pytest.raises(TflmExtError, match=r"a \(1, 1\) grid splits nothing"):
        _split(model_bytes, first, last, (1, 1))


def test_a_grid_finer_than_the_output_is_refused() -> None:
    model_bytes, first, last, _ = _stage_in_the_middle()
    with pytest.raises(TflmExtError, match="cannot cut an axis of 8 into 9 tiles"):
        _split(model_bytes, first, last, (9, 1))


def test_unsupported_operators_are_refused_naming_rule_and_operator() -> None:
    model_bytes, _, _, _ = _stage_in_the_middle()
    model = me.read(model_bytes)
    _ops(model)[2]._fb.builtinOptions.fusedActivationFunction = 4  # TANH
    with pytest.raises(TflmExtError) as caught:
        split_stage_into_tiles(model, first_op=1, last_op=2, grid=(2, 2))
    assert "operator 2 (CONV_2D) cannot join a patch stage" in str(caught.value)
    assert "The fused activation is NONE, RELU, RELU_N1_TO_1 or RELU6." in str(caught.value)


def test_a_stage_whose_intermediate_escapes_is_refused() -> None:
    model_bytes, _, _ = CASES["pad_and_residual"]()  # PAD, DEPTHWISE, CONV, ADD(t1, t2)
    with pytest.raises(TflmExtError, match="operator 1's output 't1' is used outside the stage"):
        _split(model_bytes, 0, 2, (2, 2))


def test_a_stage_reading_two_activations_is_refused() -> None:
    g = Graph((8, 8, 4), seed=6)
    y = g.conv(g.input, 4, (1, 1))
    z = g.conv(g.input, 4, (3, 3))
    x = g.add(y, z)
    with pytest.raises(TflmExtError, match="exactly one activation from outside, not 2"):
        _split(g.build(x), 1, 2, (2, 2))
