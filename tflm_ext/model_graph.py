"""A read-only view of a .tflite graph: tensors, operators, producers and consumers.

Called by ``memory_profile``, ``receptive_field`` and ``planner``, which need shapes, dtypes,
quantization, operator options and edges rather than flatbuffer objects. Built once with the
wheel's model editor; the view holds plain values and never changes, so analyses can share it.
Only the main subgraph (index 0) is viewed; ``subgraph_count`` tells callers when more exist.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor, tensor_type
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.tflite_file import custom_options, holds_data, read_main_subgraph

# Activation types the model editor's numpy table lacks, with TFLM's TfLiteTypeGetSize.
_EXTRA_ITEMSIZES = {schema.TensorType.BOOL: 1, schema.TensorType.COMPLEX64: 8}


@dataclass(frozen=True)
class TensorView:
    """One tensor. ``nbytes`` is what TFLM allocates for it (unaligned); constants hold
    ``data`` (a numpy array shaped like the tensor, or None for types numpy cannot hold)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    is_constant: bool
    is_variable: bool = False
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int | None = None
    data: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class OpView:
    """One operator. ``inputs`` keeps -1 for an absent optional input; ``options`` is the
    schema's ``*OptionsT`` object (e.g. ``Conv2DOptionsT``) or None."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any = field(default=None, repr=False, compare=False)
    custom_options: bytes = field(default=b"", repr=False)
    is_custom: bool = False


@dataclass(frozen=True)
class ModelGraph:
    """The main subgraph: tensors and operators in execution order, graph inputs/outputs."""

    tensors: tuple[TensorView, ...]
    ops: tuple[OpView, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraph_count: int = 1

    def producer(self, tensor: int) -> int | None:
        """Index of the first operator writing ``tensor``; None for inputs and constants."""
        return self._producers.get(tensor)

    def consumers(self, tensor: int) -> tuple[int, ...]:
        """Indices of the operators reading ``tensor``, in execution order."""
        return self._consumers.get(tensor, ())

    def activation_inputs(self, op: int) -> tuple[int, ...]:
        """The operator's non-constant inputs (absent optional inputs dropped)."""
        return tuple(t for t in self.ops[op].inputs if t >= 0 and not self.tensors[t].is_constant)

    def shape(self, tensor: int) -> tuple[int, ...]:
        """Shorthand for ``tensors[tensor].shape``."""
        return self.tensors[tensor].shape

    @functools.cached_property
    def _producers(self) -> dict[int, int]:
        producers: dict[int, int] = {}
        for op in self.ops:
            for t in op.outputs:
                producers.setdefault(t, op.index)
        return producers

    @functools.cached_property
    def _consumers(self) -> dict[int, tuple[int, ...]]:
        consumers: dict[int, list[int]] = {}
        for op in self.ops:
            for t in dict.fromkeys(op.inputs):  # an op reading a tensor twice counts once
                if t >= 0:
                    consumers.setdefault(t, []).append(op.index)
        return {t: tuple(ops) for t, ops in consumers.items()}


def read_graph(model_bytes: bytes) -> ModelGraph:
    """View the main subgraph of a .tflite flatbuffer."""
    model, subgraph = read_main_subgraph(model_bytes)
    return ModelGraph(
        tensors=tuple(_tensor_view(t) for t in subgraph.tensors),
        ops=tuple(_op_view(op) for op in subgraph.operators),
        inputs=tuple(t.index for t in subgraph.inputs),
        outputs=tuple(t.index for t in subgraph.outputs),
        subgraph_count=len(model.subgraphs),
    )


def _tensor_view(tensor: model_editor.Tensor) -> TensorView:
    shape = tuple(int(d) for d in tensor.shape)
    constant = holds_data(tensor)
    quantization = tensor.quantization
    return TensorView(
        index=tensor.index,
        name=tensor.name or f"tensor_{tensor.index}",
        shape=shape,
        dtype=tensor_type.name(tensor.dtype),
        nbytes=len(tensor.buffer.data) if constant else _activation_bytes(tensor, shape),
        is_constant=constant,
        is_variable=tensor.is_variable,
        scales=tuple(float(s) for s in quantization.scales) if quantization else (),
        zero_points=tuple(int(z) for z in quantization.zero_points) if quantization else (),
        quantized_dimension=_quantized_dimension(quantization),
        data=_constant_data(tensor) if constant else None,
    )


def _activation_bytes(tensor: model_editor.Tensor, shape: tuple[int, ...]) -> int:
    """Elements times element size, as TFLM's TfLiteEvalTensorByteLength computes it."""
    try:
        itemsize = tensor_type.to_numpy(tensor.dtype).itemsize
    except ValueError:
        itemsize = _EXTRA_ITEMSIZES.get(tensor.dtype, 0)
    if not itemsize:
        raise TflmExtError(
            f"tensor {tensor.index} ({tensor.name!r}) has type {tensor_type.name(tensor.dtype)}, "
            f"whose size in TFLM's arena is not known here"
        )
    return math.prod(max(d, 0) for d in shape) * itemsize


def _quantized_dimension(quantization: model_editor.Quantization | None) -> int | None:
    if quantization is None:
        return None
    if quantization.axis is not None:
        return int(quantization.axis)
    return 0 if np.size(quantization.scales) > 1 else None


def _constant_data(tensor: model_editor.Tensor) -> np.ndarray | None:
    try:
        return tensor.array
    except ValueError:  # sub-byte or exotic types, or a shape that does not match the data
        return None


def _op_view(op: model_editor.Operator) -> OpView:
    custom = op.custom_code is not None
    return OpView(
        index=op.index,
        name=op.opcode_name,
        inputs=tuple(t.index if t is not None else -1 for t in op.inputs),
        outputs=tuple(t.index for t in op.outputs),
        options=op._fb.builtinOptions,  # the editor keeps options only on its backing OperatorT
        custom_options=custom_options(op),
        is_custom=custom,
    )
