"""What a patch stage accepts, and how each accepted builtin becomes an inner op.

Used by ``fuse_patch_stage``. Global pools (AVERAGE_POOL_2D whose window is the whole map,
MEAN over height and width) are accepted here and run only at the end of a streamed stage,
which ``stage_boundary`` checks. Each support rule is a function whose docstring is the message a
user sees when an operator breaks it (``supported_ops_text`` lists them, for docs); it returns
None when the operator passes, else a detail naming the offending value. ``translate`` then
maps an operator onto a ``patch_op.InnerOp`` plus the constant tensors the kernel reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import receptive_field as rf
from tflm_ext.errors import TflmExtError
from tflm_ext.passes import quantization
from tflm_ext.patch_op import InnerOp, OpKind
from tflm_ext.tflite_file import holds_data

Op = model_editor.Operator
Tensor = model_editor.Tensor
BUILTIN = schema.BuiltinOperator
INT8, INT32, INT64 = schema.TensorType.INT8, schema.TensorType.INT32, schema.TensorType.INT64
KINDS = {
    BUILTIN.CONV_2D: OpKind.CONV,
    BUILTIN.DEPTHWISE_CONV_2D: OpKind.DEPTHWISE,
    BUILTIN.ADD: OpKind.ADD,
    BUILTIN.PAD: OpKind.PAD,
    BUILTIN.AVERAGE_POOL_2D: OpKind.GLOBAL_AVERAGE_POOL,
    BUILTIN.MEAN: OpKind.MEAN,
    BUILTIN.MAX_POOL_2D: OpKind.MAX_POOL,
}
POOLS = (BUILTIN.AVERAGE_POOL_2D, BUILTIN.MEAN)
# Operators whose output rows read input rows out of order (backwards, permuted, mirrored).
_ROW_REORDERING = (
    BUILTIN.TRANSPOSE,
    BUILTIN.REVERSE_V2,
    BUILTIN.REVERSE_SEQUENCE,
    BUILTIN.MIRROR_PAD,
    BUILTIN.GATHER,
    BUILTIN.GATHER_ND,
)
_SAME = schema.Padding.SAME


@dataclass(frozen=True)
class Translated:
    """An inner op and, for CONV/DEPTHWISE, its filter, bias, multipliers and shifts."""

    inner: InnerOp
    constants: tuple[Tensor, ...] = ()


def is_constant(tensor: Tensor | None) -> bool:
    """Constants carry data in their buffer; activations (and absent inputs) have none."""
    return tensor is not None and holds_data(tensor)


def activations(op: Op) -> list[Tensor]:
    """The operator's non-constant inputs and its outputs."""
    return [t for t in op.inputs if t is not None and not is_constant(t)] + list(op.outputs)


def rule_rows_in_order(op: Op) -> str | None:
    """The operator reads its input rows in order, top to bottom (a window sliding down by
    its stride), as a stage computed in rows or tiles needs: TRANSPOSE, REVERSE_V2,
    REVERSE_SEQUENCE, MIRROR_PAD, GATHER and slices running backwards reorder them."""
    if op.custom_code is None and op.opcode in _ROW_REORDERING:
        return f"it is {op.opcode_name}"
    if op.opcode == BUILTIN.STRIDED_SLICE and len(op.inputs) > 3 and is_constant(op.inputs[3]):
        strides = op.inputs[3].array.reshape(-1)
        if len(strides) > 1 and strides[1] < 0:
            return f"a STRIDED_SLICE with row stride {int(strides[1])}"
    return None


def rule_kind(op: Op) -> str | None:
    """The operator is CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, PAD, or a global pool
    (AVERAGE_POOL_2D, MEAN)."""
    return None if op.custom_code is None and op.opcode in KINDS else f"it is {op.opcode_name}"


def rule_int8_activations(op: Op) -> str | None:
    """Activations are int8 NHWC tensors with batch 1 and one scale and zero point each
    (MEAN's output may also be [1, channels])."""
    for tensor in activations(op):
        quant = tensor.quantization
        flat = op.opcode == BUILTIN.MEAN and tensor is op.outputs[0] and len(tensor.shape) == 2
        if tensor.dtype != INT8 or len(tensor.shape) != 4 - 2 * flat or tensor.shape[0] != 1:
            return f"tensor {tensor.name!r} has type {tensor.dtype} and shape {tensor.shape}"
        if quant is None or len(quant.scales) != 1:
            return f"tensor {tensor.name!r} is not quantized per tensor"
    return None


def rule_single_output(op: Op) -> str | None:
    """The operator has exactly one output."""
    return None if len(op.outputs) == 1 else f"it has {len(op.outputs)} outputs"


def rule_weights(op: Op) -> str | None:
    """Filters are int8 constants with zero points of 0; biases are int32 constants or absent."""
    if op.opcode not in (BUILTIN.CONV_2D, BUILTIN.DEPTHWISE_CONV_2D):
        return None
    inputs = list(op.inputs) + [None] * 3
    weights, bias = inputs[1], inputs[2]
    if not is_constant(weights) or weights.dtype != INT8 or weights.quantization is None:
        return "the filter is not an int8 constant"
    if any(int(z) != 0 for z in weights.quantization.zero_points):
        return f"filter {weights.name!r} has non-zero zero points"
    if bias is not None and (not is_constant(bias) or bias.dtype != INT32):
        return f"bias {bias.name!r} is not an int32 constant"
    return None


def rule_activation_function(op: Op) -> str | None:
    """The fused activation is NONE, RELU, RELU_N1_TO_1 or RELU6."""
    options = op._fb.builtinOptions
    activation = getattr(options, "fusedActivationFunction", quantization.NONE)
    if activation in quantization.SUPPORTED_ACTIVATIONS:
        return None
    return f"fused activation {activation}"


def rule_add_operands(op: Op) -> str | None:
    """ADD adds two activations of the same shape (no constants, no broadcasting)."""
    if op.opcode != BUILTIN.ADD:
        return None
    a, b = (list(op.inputs) + [None, None])[:2]
    if a is None or b is None or is_constant(a) or is_constant(b):
        return "an operand is a constant or missing"
    return None if tuple(a.shape) == tuple(b.shape) else f"shapes {a.shape} and {b.shape}"


def rule_pad_spatial(op: Op) -> str | None:
    """PAD has constant paddings on height and width only and keeps scale and zero point."""
    if op.opcode != BUILTIN.PAD:
        return None
    paddings = op.inputs[1] if len(op.inputs) > 1 else None
    if not is_constant(paddings) or paddings.dtype not in (INT32, INT64):
        return "its paddings are not an int32/int64 constant"
    pads = paddings.array.reshape(-1, 2)
    if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
        return f"paddings {pads.tolist()}"
    source, target = op.inputs[0].quantization, op.outputs[0].quantization
    if (source.scales, source.zero_points) != (target.scales, target.zero_points):
        return "input and output quantization differ"
    return None


def rule_global_pool(op: Op) -> str | None:
    """A pool covers the whole map: AVERAGE_POOL_2D's window holds every row and column of
    its input and writes one pixel; MEAN reduces exactly height and width (constant axes 1
    and 2)."""
    if op.opcode not in POOLS:
        return None
    x, y = op.inputs[0], op.outputs[0]
    _, in_h, in_w, channels = (int(d) for d in x.shape)
    if op.opcode == BUILTIN.MEAN:
        axes = op.inputs[1] if len(op.inputs) > 1 else None
        if not is_constant(axes) or sorted(int(a) % 4 for a in axes.array.reshape(-1)) != [1, 2]:
            return "its axes are not the constant [1, 2]"
        return None
    options = op._fb.builtinOptions
    rows = rf.axis_window(
        _pool_axis(in_h, options.filterHeight, options.strideH, options), rf.Span(0, 1)
    )
    cols = rf.axis_window(
        _pool_axis(in_w, options.filterWidth, options.strideW, options), rf.Span(0, 1)
    )
    if tuple(int(d) for d in y.shape) != (1, 1, 1, channels):
        return f"its output has shape {tuple(int(d) for d in y.shape)}"
    if (len(rows.span), len(cols.span)) != (in_h, in_w):
        return (
            f"its {options.filterHeight}x{options.filterWidth} window misses part of {in_h}x{in_w}"
        )
    return None


def _pool_axis(size: int, kernel: int, stride: int, options) -> rf.Axis:
    if options.padding == _SAME:
        return rf.same_axis(size, kernel, stride)
    return rf.Axis(kernel, stride, 0, size, max((size - kernel) // stride + 1, 0))


RULES: tuple[Callable[[Op], str | None], ...] = (
    rule_rows_in_order,
    rule_kind,
    rule_single_output,
    rule_int8_activations,
    rule_weights,
    rule_activation_function,
    rule_add_operands,
    rule_pad_spatial,
    rule_global_pool,
)


def check_supported(op: Op, index: int) -> None:
    """Raise TflmExtError naming the first rule operator ``index`` breaks."""
    for rule in RULES:
        detail = rule(op)
        if detail is not None:
            raise TflmExtError(
                f"operator {index} ({op.opcode_name}) cannot join a patch stage: "
                f"{rule_text(rule)} Here {detail}."
            )


def rule_text(rule: Callable[[Op], str | None]) -> str:
    """A rule's docstring on one line: the message a user sees."""
    return " ".join((rule.__doc__ or rule.__name__).split())


def supported_ops_text() -> str:
    """The rules as a bullet list, for the docs."""
    return "\n".join(f"- {rule_text(rule)}" for rule in RULES)


def translate(op: Op, buffers: dict[int, int], weights_input: int) -> Translated:
    """The inner op for a supported builtin; buffers maps id(tensor) to its stage buffer."""
    kind = KINDS[op.opcode]
    if kind == OpKind.ADD:
        return Translated(_add(op, buffers))
    if kind == OpKind.PAD:
        return Translated(_pad(op, buffers))
    if kind in (OpKind.GLOBAL_AVERAGE_POOL, OpKind.MEAN):
        return Translated(_pool(op, kind, buffers))
    if kind == OpKind.MAX_POOL:
        return Translated(_max_pool(op, buffers))
    return _weighted(op, kind, buffers, weights_input)


def _weighted(op: Op, kind: OpKind, buffers: dict[int, int], weights_input: int) -> Translated:
    x, weights, y = op.inputs[0], op.inputs[1], op.outputs[0]
    options = op._fb.builtinOptions
    _, in_h, in_w, in_c = (int(d) for d in x.shape)
    _, out_h, out_w, out_c = (int(d) for d in y.shape)
    kh, kw = int(weights.shape[1]), int(weights.shape[2])
    stride = (options.strideH, options.strideW)
    dilation = (options.dilationHFactor, options.dilationWFactor)
    top, bottom = _padding(options.padding, in_h, out_h, kh, stride[0], dilation[0], op)
    left, right = _padding(options.padding, in_w, out_w, kw, stride[1], dilation[1], op)
    if kind == OpKind.DEPTHWISE and out_c % in_c:
        raise TflmExtError(f"{op.opcode_name} maps {in_c} channels to {out_c}")
    inner = InnerOp(
        kind=kind,
        input=buffers[id(x)],
        output_shape=(out_h, out_w, out_c),
        weights_input=weights_input,
        kernel=(kh, kw),
        stride=stride,
        dilation=dilation,
        padding=(top, left, bottom, right),
        depth_multiplier=out_c // in_c if kind == OpKind.DEPTHWISE else 1,
        input_zero_point=_zero_point(x),
        output_zero_point=_zero_point(y),
        activation=_activation(op),
    )
    return Translated(inner, _weighted_constants(op, out_c))


def _padding(
    padding: int, size: int, out: int, kernel: int, stride: int, dilation: int, op: Op
) -> tuple[int, int]:
    """TFLM's (pad-before, pad-after) along one axis, checking the model's output size."""
    expected, total = rf.tf_padding(size, rf.reach(kernel, dilation), stride, padding == _SAME)
    if expected != out:
        raise TflmExtError(
            f"{op.opcode_name} output size {out} differs from the {expected} TFLM computes"
        )
    return total // 2, total - total // 2


def _weighted_constants(op: Op, channels: int) -> tuple[Tensor, ...]:
    x, weights, y = op.inputs[0], op.inputs[1], op.outputs[0]
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] is not None else None
    if bias is None:
        bias = _int32_tensor(np.zeros(channels, np.int32), f"{y.name}/patch_bias")
    elif tuple(bias.shape) != (channels,):
        raise TflmExtError(f"bias {bias.name!r} has shape {bias.shape}, not ({channels},)")
    multipliers, shifts = quantization.channel_multipliers(
        _scale(x), [float(s) for s in weights.quantization.scales], _scale(y), channels
    )
    return (
        weights,
        bias,
        _int32_tensor(multipliers, f"{y.name}/patch_multipliers"),
        _int32_tensor(shifts, f"{y.name}/patch_shifts"),
    )


def _add(op: Op, buffers: dict[int, int]) -> InnerOp:
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    return InnerOp(
        kind=OpKind.ADD,
        input=buffers[id(a)],
        input_b=buffers[id(b)],
        output_shape=tuple(int(d) for d in y.shape[1:]),
        input_zero_point=_zero_point(a),
        input_b_zero_point=_zero_point(b),
        output_zero_point=_zero_point(y),
        activation=_activation(op),
        add=quantization.add_params(_scale(a), _scale(b), _scale(y)),
    )


def _pad(op: Op, buffers: dict[int, int]) -> InnerOp:
    x, y = op.inputs[0], op.outputs[0]
    pads = op.inputs[1].array.reshape(4, 2)
    return InnerOp(
        kind=OpKind.PAD,
        input=buffers[id(x)],
        output_shape=tuple(int(d) for d in y.shape[1:]),
        padding=(int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1])),
        input_zero_point=_zero_point(x),
        output_zero_point=_zero_point(y),
    )


def _pool(op: Op, kind: OpKind, buffers: dict[int, int]) -> InnerOp:
    """A global pool: its kernel is the whole input. AVERAGE_POOL_2D ignores scales (TFLM
    averages the raw values) but clamps to its fused activation; MEAN requantizes by
    QuantizeMultiplier(input scale / output scale) and clamps to int8 only."""
    x, y = op.inputs[0], op.outputs[0]
    _, in_h, in_w, channels = (int(d) for d in x.shape)
    mean = kind == OpKind.MEAN
    return InnerOp(
        kind=kind,
        input=buffers[id(x)],
        output_shape=(1, 1, channels),
        kernel=(in_h, in_w),
        input_zero_point=_zero_point(x),
        output_zero_point=_zero_point(y),
        activation=(quantization.INT8_MIN, quantization.INT8_MAX) if mean else _activation(op),
        requant=quantization.quantize_multiplier(_scale(x) / _scale(y)) if mean else (0, 0),
    )


def _max_pool(op: Op, buffers: dict[int, int]) -> InnerOp:
    """MAX_POOL_2D: TFLM copies the raw largest value (no rescaling) and clamps it to the
    fused activation; its padding is computed as a convolution's, without dilation."""
    x, y = op.inputs[0], op.outputs[0]
    options = op._fb.builtinOptions
    _, in_h, in_w, _ = (int(d) for d in x.shape)
    _, out_h, out_w, channels = (int(d) for d in y.shape)
    kernel = (options.filterHeight, options.filterWidth)
    stride = (options.strideH, options.strideW)
    top, bottom = _padding(options.padding, in_h, out_h, kernel[0], stride[0], 1, op)
    left, right = _padding(options.padding, in_w, out_w, kernel[1], stride[1], 1, op)
    return InnerOp(
        kind=OpKind.MAX_POOL,
        input=buffers[id(x)],
        output_shape=(out_h, out_w, channels),
        kernel=kernel,
        stride=stride,
        padding=(top, left, bottom, right),
        input_zero_point=_zero_point(x),
        output_zero_point=_zero_point(y),
        activation=_activation(op),
    )


def _activation(op: Op) -> tuple[int, int]:
    y = op.outputs[0]
    function = getattr(op._fb.builtinOptions, "fusedActivationFunction", quantization.NONE)
    return quantization.activation_range(function, _scale(y), _zero_point(y))


def _scale(tensor: Tensor) -> float:
    """The float32 scale as TFLM reads it, widened to double (TFLM divides in double)."""
    return float(np.float32(tensor.quantization.scales[0]))


def _zero_point(tensor: Tensor) -> int:
    return int(tensor.quantization.zero_points[0])


def _int32_tensor(values: np.ndarray, name: str) -> Tensor:
    return model_editor.Tensor(
        shape=(len(values),), dtype=INT32, data=np.ascontiguousarray(values, np.int32), name=name
    )
