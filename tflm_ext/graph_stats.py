"""Static figures of a .tflite graph: MACs per operator, weight bytes, activation bytes.

Read from the flatbuffer with the wheel's model editor, without running anything, so it is
safe on any model. Called by the evaluate component (MACs for latency estimates), by
``interpreter.default_arena_size`` and by the planners.

What counts as a MAC: one multiply-accumulate against a weight tensor. CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED are counted; every other operator (pooling, ADD,
activations, reshapes, softmax, ...) counts 0 because its cost is a few element operations
per output, small next to the convolutions and not what MCU latency models scale with.
Bias additions are not counted. Only the main subgraph (index 0) is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.compression import model_editor, tensor_type
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError


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
    try:
        model = model_editor.read(model_bytes)
        subgraph = model.subgraphs[0]
    except Exception as e:  # the flatbuffer reader raises anything on garbage input
        raise TflmExtError(f"cannot read a .tflite model from {len(model_bytes)} B: {e}") from e
    ops = tuple(_op_stats(op) for op in subgraph.operators)
    constants = {id(t.buffer): t.buffer for t in subgraph.tensors if _is_constant(t)}
    return GraphStats(
        ops=ops,
        total_macs=sum(op.macs for op in ops),
        weight_bytes=sum(len(buffer.data) for buffer in constants.values()),
        activation_bytes=sum(_tensor_bytes(t) for t in subgraph.tensors if not _is_constant(t)),
        tensor_count=len(subgraph.tensors),
    )


def _op_stats(op: model_editor.Operator) -> OpStats:
    count = _MAC_COUNTERS.get(op.opcode) if op.custom_code is None else None
    output_shape = tuple(int(d) for d in op.outputs[0].shape) if op.outputs else ()
    macs = count(op, output_shape) if count else 0
    return OpStats(index=op.index, op=op.opcode_name, macs=macs, output_shape=output_shape)


def _conv_macs(op: model_editor.Operator, output_shape: tuple[int, ...]) -> int:
    """Filter [out_ch, kh, kw, in_ch_per_group]: each output element reads kh*kw*in_ch."""
    return math.prod(output_shape) * math.prod(int(d) for d in op.inputs[1].shape[1:])


def _depthwise_macs(op: model_editor.Operator, output_shape: tuple[int, ...]) -> int:
    """Filter [1, kh, kw, out_ch]: each output element reads one kh*kw window."""
    _, kh, kw, _ = (int(d) for d in op.inputs[1].shape)
    return math.prod(output_shape) * kh * kw


def _fully_connected_macs(op: model_editor.Operator, output_shape: tuple[int, ...]) -> int:
    """Filter [units, in_features]: each output element is one in_features dot product."""
    return math.prod(output_shape) * int(op.inputs[1].shape[-1])


_MAC_COUNTERS: dict[int, Callable[[model_editor.Operator, tuple[int, ...]], int]] = {
    schema.BuiltinOperator.CONV_2D: _conv_macs,
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: _depthwise_macs,
    schema.BuiltinOperator.FULLY_CONNECTED: _fully_connected_macs,
}


def _is_constant(tensor: model_editor.Tensor) -> bool:
    """Converters give every tensor a buffer; only constants' buffers hold data."""
    return tensor.buffer is not None and len(tensor.buffer.data) > 0


def _tensor_bytes(tensor: model_editor.Tensor) -> int:
    try:
        itemsize = tensor_type.to_numpy(tensor.dtype).itemsize
    except ValueError:
        itemsize = 8  # sub-byte and exotic types: overestimate, this is only an upper bound
    return math.prod(max(int(d), 1) for d in tensor.shape) * itemsize
