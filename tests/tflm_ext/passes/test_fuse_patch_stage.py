"""fuse_patch_stage: structure of the fused op, refusals, and bit-exactness on TFLM across
geometries the Keras models do not reach (5x5/1x7 kernels, dilation, VALID stride 2, depth
multiplier 2, grouped conv, per-tensor filters, no bias, RELU_N1_TO_1, multipliers > 1, PAD,
ADD of the stage input). Models are built with the wheel's model editor: no TensorFlow, so the
comparison child imports this module cheaply.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.isolation import run_isolated
from tflm_ext.passes import fuse_patch_stage
from tflm_ext.patch_op import OP_NAME, OpKind, decode_options
from tflm_ext.rewrite import example_inputs, first_mismatch, rewrite_stage, run_outputs

OPS, OPTIONS, INT8, INT32 = (
    schema.BuiltinOperator,
    schema.BuiltinOptions,
    schema.TensorType.INT8,
    schema.TensorType.INT32,
)
SAME, VALID = schema.Padding.SAME, schema.Padding.VALID
RELU, RELU_N1_TO_1, RELU6 = 1, 2, 3


class Graph:
    """A small random int8 NHWC graph, built op by op."""

    def __init__(self, shape: tuple[int, int, int], seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.input = self.activation(shape, "input")
        self.tensors, self.ops = [self.input], []

    def activation(self, shape, name, scale=None, zero_point=None) -> me.Tensor:
        scale = float(self.rng.uniform(0.02, 0.06)) if scale is None else scale
        zero_point = int(self.rng.integers(-20, 20)) if zero_point is None else zero_point
        quant = me.Quantization(scales=[scale], zero_points=[zero_point])
        return me.Tensor(shape=(1, *shape), dtype=INT8, quantization=quant, name=name)

    def constant(self, values: np.ndarray, dtype, name: str, quant=None) -> me.Tensor:
        tensor = me.Tensor(
            shape=values.shape, dtype=dtype, data=values, name=name, quantization=quant
        )
        self.tensors.append(tensor)
        return tensor

    def add_op(self, opcode, inputs, out_shape, options_type, options, **quant) -> me.Tensor:
        out = self.activation(out_shape, f"t{len(self.ops)}", **quant)
        op = me.Operator(opcode=opcode, inputs=inputs, outputs=[out])
        op._fb.builtinOptionsType, op._fb.builtinOptions = options_type, options
        self.tensors.append(out)
        self.ops.append(op)
        return out

    def conv(
        self,
        x,
        out_c,
        kernel,
        stride=(1, 1),
        padding=SAME,
        dilation=(1, 1),
        activation=0,
        depthwise=False,
        groups=1,
        per_channel=True,
        bias=True,
        out_scale=None,
    ) -> me.Tensor:
        _, h, w, in_c = x.shape
        out_h, out_w = (
            _out(s, k, st, d, padding)
            for s, k, st, d in zip((h, w), kernel, stride, dilation, strict=True)
        )
        shape = (1, *kernel, out_c) if depthwise else (out_c, *kernel, in_c // groups)
        scales = self.rng.uniform(0.002, 0.02, out_c if per_channel else 1)
        quant = me.Quantization(
            scales=[float(s) for s in scales],
            zero_points=[0] * len(scales),
            axis=(3 if depthwise else 0) if per_channel else None,
        )
        filters = self.rng.integers(-127, 128, shape).astype(np.int8)
        inputs = [x, self.constant(filters, INT8, f"w{len(self.ops)}", quant)]
        biases = self.rng.integers(-3000, 3000, out_c).astype(np.int32)
        inputs.append(self.constant(biases, INT32, f"b{len(self.ops)}") if bias else None)
        options = schema.DepthwiseConv2DOptionsT() if depthwise else schema.Conv2DOptionsT()
        options.padding, options.strideH, options.strideW = padding, *stride
        options.dilationHFactor, options.dilationWFactor = dilation
        options.fusedActivationFunction = activation
        if depthwise:
            options.depthMultiplier = out_c // in_c
        opcode = OPS.DEPTHWISE_CONV_2D if depthwise else OPS.CONV_2D
        kind = OPTIONS.DepthwiseConv2DOptions if depthwise else OPTIONS.Conv2DOptions
        return self.add_op(opcode, inputs, (out_h, out_w, out_c), kind, options, scale=out_scale)

    def pad(self, x, top, bottom, left, right) -> me.Tensor:
        _, h, w, c = x.shape
        paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        inputs = [x, self.constant(paddings, INT32, f"p{len(self.ops)}")]
        quant = x.quantization
        return self.add_op(
            OPS.PAD,
            inputs,
            (h + top + bottom, w + left + right, c),
            OPTIONS.PadOptions,
            schema.PadOptionsT(),
            scale=quant.scales[0],
            zero_point=quant.zero_points[0],
        )

    def add(self, a, b, activation=0) -> me.Tensor:
        options = schema.AddOptionsT()
        options.fusedActivationFunction = activation
        return self.add_op(OPS.ADD, [a, b], tuple(a.shape[1:]), OPTIONS.AddOptions, options)

    def build(self, output: me.Tensor) -> bytes:
        subgraph = me.Subgraph(
            tensors=self.tensors, operators=self.ops, inputs=[self.input], outputs=[output]
        )
        return bytes(me.Model(subgraphs=[subgraph]).build())


def _out(size, kernel, stride, dilation, padding) -> int:
    reach = (kernel - 1) * dilation + 1
    return -(-size // stride) if padding == SAME else (size - reach) // stride + 1


def _wide_kernels() -> tuple[bytes, int, tuple[int, int]]:
    g = Graph((19, 17, 3), seed=1)
    x = g.conv(g.input, 8, (5, 5), (2, 2), VALID, activation=RELU6)
    x = g.conv(x, 16, (3, 3), depthwise=True)  # depth multiplier 2
    x = g.conv(x, 8, (1, 1), per_channel=False, bias=False)
    return g.build(x), 2, (3, 3)


def _dilated_and_rectangular() -> tuple[bytes, int, tuple[int, int]]:
    g = Graph((20, 18, 4), seed=2)
    x = g.conv(g.input, 8, (3, 3), dilation=(2, 2), activation=RELU_N1_TO_1)
    x = g.conv(x, 8, (5, 5), (2, 2), depthwise=True, activation=RELU)
    x = g.conv(x, 6, (1, 7))
    x = g.conv(x, 6, (1, 1))  # a builtin after the stage
    return g.build(x), 2, (2, 3)


def _pad_and_residual() -> tuple[bytes, int, tuple[int, int]]:
    g = Graph((16, 15, 6), seed=3)
    x = g.pad(g.input, 1, 2, 0, 3)
    y = g.conv(x, 6, (3, 3), (2, 2), VALID, depthwise=True, activation=RELU6)
    z = g.conv(y, 6, (3, 3), activation=RELU6)
    x = g.add(y, z, activation=RELU)
    return g.build(x), 3, (2, 2)


def _residual_from_stage_input_and_groups() -> tuple[bytes, int, tuple[int, int]]:
    g = Graph((14, 14, 8), seed=4)
    y = g.conv(g.input, 8, (3, 3), groups=2, activation=RELU6)
    y = g.conv(y, 8, (3, 3), depthwise=True, activation=RELU6)
    y = g.conv(y, 8, (1, 1))
    x = g.add(g.input, y)
    return g.build(x), 3, (3, 3)


def _multiplier_above_one() -> tuple[bytes, int, tuple[int, int]]:
    """Output scales small enough that input*filter/output > 1: positive shifts."""
    g = Graph((12, 12, 2), seed=5)
    x = g.conv(g.input, 4, (3, 3), (2, 2), out_scale=2e-5)
    x = g.conv(x, 4, (1, 1), out_scale=0.5)
    return g.build(x), 1, (4, 4)


CASES = {
    "wide_kernels": _wide_kernels,
    "dilated_and_rectangular": _dilated_and_rectangular,
    "pad_and_residual": _pad_and_residual,
    "residual_from_stage_input_and_groups": _residual_from_stage_input_and_groups,
    "multiplier_above_one": _multiplier_above_one,
}


def _mismatches(pairs: list[tuple[bytes, bytes]], count: int) -> list[str | None]:
    """Child: run each (original, rewritten) pair on the same inputs; first differences."""
    found = []
    for original, rewritten in pairs:
        examples = example_inputs(original, count, seed=len(found))
        outputs = [run_outputs(model, examples) for model in (original, rewritten)]
        found.append(first_mismatch(*outputs))
    return found


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ builds the host kernel")
def test_every_geometry_is_bit_exact_on_tflm() -> None:
    pairs = []
    for build in CASES.values():
        model, last_op, grid = build()
        pairs.append((model, rewrite_stage(model, 0, last_op, grid)))

    mismatches = run_isolated(_mismatches, pairs, 5)

    assert dict(zip(CASES, mismatches, strict=True)) == dict.fromkeys(CASES)


def test_fused_op_reads_stage_input_then_four_constants_per_weighted_op() -> None:
    model = me.read(_wide_kernels()[0])
    subgraph = model.subgraphs[0]
    source, last_output = subgraph.inputs[0], subgraph.operators[2].outputs[0]
    filters = [op.inputs[1] for op in subgraph.operators]
    tensors_before, buffers_before = len(subgraph.tensors), len(model.buffers)

    fuse_patch_stage(model, first_op=0, last_op=2, grid=(3, 3))

    (custom,) = subgraph.operators
    assert custom.custom_code == OP_NAME and custom.opcode == OPS.CUSTOM
    assert custom.inputs[0] is source and custom.outputs == [last_output]
    assert [custom.inputs[1 + 4 * i] for i in range(3)] == filters
    # bias absent on the last conv: a zero bias is created with the multipliers and shifts
    assert np.array_equal(custom.inputs[10].array, np.zeros(8, np.int32))
    assert len(subgraph.tensors) == tensors_before + 2 * 3 + 1
    assert len(model.buffers) == buffers_before + 2 * 3 + 1
    stage = decode_options(bytes(custom._fb.customOptions))
    assert [op.kind for op in stage.ops] == [OpKind.CONV, OpKind.DEPTHWISE, OpKind.CONV]
    assert stage.ops[0].padding == (0, 0, 0, 0) and stage.ops[1].depth_multiplier == 2
    assert stage.ops[0].activation[0] == stage.ops[0].output_zero_point  # RELU6 floor


def test_shifts_are_positive_when_the_multiplier_exceeds_one() -> None:
    model = me.read(_multiplier_above_one()[0])
    fuse_patch_stage(model, first_op=0, last_op=1, grid=(1, 1))
    shifts = model.subgraphs[0].operators[0].inputs[4].array
    assert (shifts > 0).all()


def test_stage_reading_two_outside_activations_is_refused() -> None:
    g = Graph((8, 8, 4), seed=6)
    y = g.conv(g.input, 4, (1, 1))
    z = g.conv(g.input, 4, (3, 3))
    x = g.add(y, z)
    model = me.read(g.build(x))
    with pytest.raises(TflmExtError, match="exactly one activation from outside, not 2"):
        fuse_patch_stage(model, first_op=1, last_op=2, grid=(1, 1))


def test_pad_of_channels_is_refused_naming_the_rule() -> None:
    g = Graph((8, 8, 4), seed=7)
    x = g.pad(g.input, 1, 1, 1, 1)
    model = me.read(g.build(x))
    paddings = model.subgraphs[0].operators[0].inputs[1]
    paddings.array = np.array([[0, 0], [1, 1], [1, 1], [0, 2]], np.int32)
    with pytest.raises(TflmExtError, match="PAD has constant paddings on height and width only"):
        fuse_patch_stage(model, first_op=0, last_op=0, grid=(1, 1))
