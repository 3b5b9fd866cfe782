"""Builds the builtin operators of a stage split into tiles, and collects what they create.

Used by ``split_stage_builtin``: STRIDED_SLICE cuts a tile's window out of a larger tensor,
PAD adds the border rows and columns a SAME convolution would have padded, copies of the
stage's own operators run on the window with VALID padding, and CONCATENATION joins the
tiles. Every activation made here copies the scale and zero point of the tensor it comes
from, so slices, pads and concatenations are exact int8 copies; PAD fills with that zero
point, which is the value a convolution's implicit padding stands for (it adds nothing).
Constants (slice bounds, paddings) are shared between operators that need the same values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.receptive_field import Region

Tensor = model_editor.Tensor
OPS, OPTIONS = schema.BuiltinOperator, schema.BuiltinOptions
MAX_CONCAT_INPUTS = 10  # TFLM's CONCATENATION refuses more inputs (kMaxInputNum)
HEIGHT, WIDTH = 1, 2  # NHWC axes


@dataclass(frozen=True)
class Held:
    """A tensor holding ``region`` of a feature map (the whole map, or one tile's window)."""

    tensor: Tensor
    region: Region


class TileBuilder:
    """Appends operators in execution order; ``operators`` and ``tensors`` are what the
    pass splices into the subgraph (tensors include new constants, not reused ones)."""

    def __init__(self) -> None:
        self.operators: list[model_editor.Operator] = []
        self.tensors: list[Tensor] = []
        self._constants: dict[tuple, Tensor] = {}

    def activation(self, like: Tensor, shape: Sequence[int], name: str) -> Tensor:
        """A new int8 activation with ``like``'s type, scale and zero point."""
        quant = like.quantization
        tensor = Tensor(
            shape=tuple(int(d) for d in shape),
            dtype=like.dtype,
            quantization=model_editor.Quantization(
                scales=[float(s) for s in quant.scales],
                zero_points=[int(z) for z in quant.zero_points],
            ),
            name=name,
        )
        self.tensors.append(tensor)
        return tensor

    def constant(self, values: np.ndarray, name: str) -> Tensor:
        """An int32 constant, shared with any earlier one of the same shape and values."""
        values = np.ascontiguousarray(values, np.int32)
        key = (values.shape, values.tobytes())
        if key not in self._constants:
            tensor = Tensor(
                shape=values.shape, dtype=schema.TensorType.INT32, data=values, name=name
            )
            self._constants[key] = tensor
            self.tensors.append(tensor)
        return self._constants[key]

    def emit(
        self, opcode: int, inputs: list, output: Tensor, options_type: int, options: object
    ) -> Tensor:
        """Append one builtin operator writing ``output``; return ``output``."""
        op = model_editor.Operator(opcode=opcode, inputs=inputs, outputs=[output])
        op._fb.builtinOptionsType, op._fb.builtinOptions = options_type, options
        self.operators.append(op)
        return output

    def crop(self, held: Held, want: Region, name: str) -> Tensor:
        """``held``'s tensor cut to region ``want`` (inside held.region); the tensor itself
        when it already holds exactly that region."""
        if held.region == want:
            return held.tensor
        channels = int(held.tensor.shape[3])
        rows, cols = held.region.rows, held.region.cols
        begin = [0, want.rows.start - rows.start, want.cols.start - cols.start, 0]
        size = [1, len(want.rows), len(want.cols), channels]
        end = [b + s for b, s in zip(begin, size, strict=True)]
        inputs = [
            held.tensor,
            self.constant(np.array(begin), f"{name}/begin"),
            self.constant(np.array(end), f"{name}/end"),
            self.constant(np.ones(4), "tile/strides"),
        ]
        output = self.activation(held.tensor, size, f"{name}/window")
        options = schema.StridedSliceOptionsT()
        return self.emit(OPS.STRIDED_SLICE, inputs, output, OPTIONS.StridedSliceOptions, options)

    def pad(self, x: Tensor, pad: tuple[int, int, int, int], name: str) -> Tensor:
        """``x`` with (top, bottom, left, right) rows and columns of its zero point; ``x``
        itself when there is nothing to add."""
        if not any(pad):
            return x
        top, bottom, left, right = pad
        paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]])
        _, height, width, channels = (int(d) for d in x.shape)
        shape = (1, height + top + bottom, width + left + right, channels)
        output = self.activation(x, shape, f"{name}/padded")
        inputs = [x, self.constant(paddings, f"{name}/paddings")]
        return self.emit(OPS.PAD, inputs, output, OPTIONS.PadOptions, schema.PadOptionsT())

    def copy_operator(
        self, op: model_editor.Operator, activations: list[Tensor], shape: Sequence[int], name: str
    ) -> Tensor:
        """``op`` on new activation inputs (its constants kept), writing a new tensor of
        ``shape`` quantized like its output; convolutions switch to VALID padding because
        their windows arrive padded already."""
        options = copy.copy(op._fb.builtinOptions)
        if hasattr(options, "padding"):
            options.padding = schema.Padding.VALID
        inputs = [*activations, *op.inputs[len(activations) :]]
        output = self.activation(op.outputs[0], shape, name)
        return self.emit(op.opcode, inputs, output, op._fb.builtinOptionsType, options)

    def concatenate(
        self, parts: list[Tensor], axis: int, name: str, output: Tensor | None = None
    ) -> Tensor:
        """``parts`` joined along ``axis`` into ``output`` (a new tensor when None), as a
        tree of CONCATENATIONs of at most MAX_CONCAT_INPUTS inputs each. A single part
        without a given output is returned as it is."""
        if len(parts) == 1 and output is None:
            return parts[0]
        level = 0
        while len(parts) > MAX_CONCAT_INPUTS:
            groups = -(-len(parts) // MAX_CONCAT_INPUTS)
            bounds = [i * len(parts) // groups for i in range(groups + 1)]
            parts = [
                self.concatenate(parts[a:b], axis, f"{name}/level{level}_{i}")
                for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))
            ]
            level += 1
        if output is None:
            shape = list(parts[0].shape)
            shape[axis] = sum(int(p.shape[axis]) for p in parts)
            output = self.activation(parts[0], shape, name)
        options = schema.ConcatenationOptionsT()
        options.axis = axis
        return self.emit(OPS.CONCATENATION, parts, output, OPTIONS.ConcatenationOptions, options)
