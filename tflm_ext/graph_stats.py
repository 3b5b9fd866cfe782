"""Static figures of a .tflite graph: MACs per operator, weight bytes, activation bytes.

Read from the flatbuffer with the wheel's model editor, without running anything, so it is
safe on any model. Called by the evaluate component (MACs for latency estimates), by
``interpreter.default_arena_size`` and by the planners; ``receptive_field`` counts a tile's
MACs with the same ``macs_per_output``.

What counts as a MAC: one multiply-accumulate against a weight tensor. CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED are counted; every other operator (pooling, ADD,
activations, reshapes, softmax, ...) counts 0 because its cost is a few element operations
per output, small next to the convolutions and not what MCU latency models scale with.
Bias additions are not counted. Only the main subgraph (index 0) is read.

The project's patch-stage operator (``TFLM_EXT_PATCH_STAGE``) counts the MACs of its inner
convolutions, read from its options, each output value once: exact for streamed stages; a
tiled stage also recomputes its tiles' overlapping halos, which the planner reports as the
plan's extra MACs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.compression import model_editor, tensor_type

from tflm_ext.patch_op import OP_NAME as PATCH_STAGE_OP_NAME
from tflm_ext.patch_op import OpKind, decode_options
from tflm_ext.tflite_file import custom_options, holds_data, read_main_subgraph


@dataclass(frozen=True)
class OpStats:
    """One operator: its position, builtin (or custom) name, MACs and first output's shape."""

    index: int
    op: str
    macs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphStats:
    """Per-operator MACs plus whole-graph sizes.

    weight_bytes: data of all constant tensors (weights, biases, other constants), each
    shared buffer once: what the graph puts in flash besides flatbuffer overhead.
    activation_bytes: all non-constant tensors side by side, an upper bound of TFLM's
    planned arena head (before alignment padding). tensor_count: tensors in the subgraph.
    """

    ops: tuple[OpStats, ...]
    total_macs: int
    weight_bytes: int
    activation_bytes: int = 0
    tensor_count: int = 0


def graph_stats(model_bytes: bytes) -> GraphStats:
    """Count MACs per operator and the graph's constant and activation bytes."""
    _, subgraph = read_main_subgraph(model_bytes)
    ops = tuple(_op_stats(op) for op in subgraph.operators)
    constants = {id(t.buffer): t.buffer for t in subgraph.tensors if holds_data(t)}
    return GraphStats(
        ops=ops,
        total_macs=sum(op.macs for op in ops),
        weight_bytes=sum(len(buffer.data) for buffer in constants.values()),
        activation_bytes=sum(_tensor_bytes(t) for t in subgraph.tensors if not holds_data(t)),
        tensor_count=len(subgraph.tensors),
    )


def macs_per_output(op_name: str, filter_shape: Sequence[int]) -> int:
    """MACs per output element of the builtin ``op_name`` with a filter (second input) of
    ``filter_shape``; 0 for operators not counted. ``receptive_field.macs_per_pixel``
    multiplies it by the output channels."""
    count = _MACS_PER_OUTPUT.get(op_name)
    return count(tuple(int(d) for d in filter_shape)) if count else 0


def _op_stats(op: model_editor.Operator) -> OpStats:
    output_shape = tuple(int(d) for d in op.outputs[0].shape) if op.outputs else ()
    macs = 0
    if op.custom_code is None and op.opcode_name in _MACS_PER_OUTPUT:
        macs = math.prod(output_shape) * macs_per_output(op.opcode_name, op.inputs[1].shape)
    elif op.custom_code == PATCH_STAGE_OP_NAME:
        macs = _patch_stage_macs(op)
    name = op.custom_code or op.opcode_name
    return OpStats(index=op.index, op=name, macs=macs, output_shape=output_shape)


def _patch_stage_macs(op: model_editor.Operator) -> int:
    """Every inner convolution's output elements times its MACs per output."""
    names = {OpKind.CONV: "CONV_2D", OpKind.DEPTHWISE: "DEPTHWISE_CONV_2D"}
    stage = decode_options(custom_options(op))
    return sum(
        math.prod(inner.output_shape)
        * macs_per_output(names[inner.kind], op.inputs[inner.weights_input].shape)
        for inner in stage.ops
        if inner.kind in names
    )


def _conv_macs(filter_shape: tuple[int, ...]) -> int:
    """Filter [out_ch, kh, kw, in_ch_per_group]: each output element reads kh*kw*in_ch."""
    return math.prod(filter_shape[1:])


def _depthwise_macs(filter_shape: tuple[int, ...]) -> int:
    """Filter [1, kh, kw, out_ch]: each output element reads one kh*kw window."""
    _, kh, kw, _ = filter_shape
    return kh * kw


def _fully_connected_macs(filter_shape: tuple[int, ...]) -> int:
    """Filter [units, in_features]: each output element is one in_features dot product."""
    return filter_shape[-1]


_MACS_PER_OUTPUT: dict[str, Callable[[tuple[int, ...]], int]] = {
    "CONV_2D": _conv_macs,
    "DEPTHWISE_CONV_2D": _depthwise_macs,
    "FULLY_CONNECTED": _fully_connected_macs,
}


def _tensor_bytes(tensor: model_editor.Tensor) -> int:
    try:
        itemsize = tensor_type.to_numpy(tensor.dtype).itemsize
    except ValueError:
        itemsize = 8  # sub-byte and exotic types: overestimate, this is only an upper bound
    return math.prod(max(int(d), 1) for d in tensor.shape) * itemsize
