"""The TFLM_EXT_PATCH_STAGE custom operator: its name, and its versioned options, defined once.

Used by the rewrite pass that builds the operator (``passes.fuse_patch_stage``), by the host
build (the name) and by anyone reading a rewritten model. The C++ kernel
(``kernels/patch_stage.h``) reads the same layout; ``tests/tflm_ext/test_patch_op.py``
compiles a program against that header and checks every constant against this module.

Layout: little-endian int32 words, a header then one record per inner op. Version 1 (tiles
only) has ``HEADER_FIELDS_V1`` and ``OP_FIELDS_V1``; version 2 appends the fields after them
(``HEADER_FIELDS``, ``OP_FIELDS``): the execution (tiles or streaming), the input source and
MEAN's requantization. A tile stage without version-2 op kinds is written as version 1, so
firmware built with an older kernel still runs it; every other stage is version 2. A change
to either layout is a new version. Stage buffers are numbered 0 (the stage input) and i + 1
(the output of inner op i); the last inner op's output is the custom operator's output.
Operator inputs: the stage input, then for each CONV/DEPTHWISE inner op in order its filter,
bias, per-channel multipliers and per-channel shifts (``InnerOp.weights_input`` points at
the filter).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import asdict, dataclass, field

from tflm_ext.errors import TflmExtError

OP_NAME = "TFLM_EXT_PATCH_STAGE"
OPTIONS_VERSION = 2  # the newest version; the kernel reads 1 and 2
TILE_OPTIONS_VERSION = 1
MAX_OPS = 128  # inner ops per streamed stage (bounds the kernel's per-buffer bookkeeping)
MAX_TILE_OPS = 32  # inner ops per tiled stage (the kernel's tile planner keeps them on its stack)
INPUTS_PER_WEIGHTED_OP = 4  # filter, bias, multipliers, shifts

HEADER_FIELDS_V1 = (
    "version",
    "header_words",
    "op_words",
    "op_count",
    "grid_rows",
    "grid_cols",
    "input_height",
    "input_width",
    "input_channels",
)
HEADER_FIELDS = (*HEADER_FIELDS_V1, "execution", "input_source")

OP_FIELDS_V1 = (
    "kind",
    "input",
    "input_b",
    "weights_input",
    "output_height",
    "output_width",
    "output_channels",
    "kernel_height",
    "kernel_width",
    "stride_height",
    "stride_width",
    "dilation_height",
    "dilation_width",
    "pad_top",
    "pad_left",
    "pad_bottom",
    "pad_right",
    "depth_multiplier",
    "input_zero_point",
    "input_b_zero_point",
    "output_zero_point",
    "activation_min",
    "activation_max",
    "add_left_shift",
    "add_input_multiplier",
    "add_input_shift",
    "add_input_b_multiplier",
    "add_input_b_shift",
    "add_output_multiplier",
    "add_output_shift",
)
OP_FIELDS = (*OP_FIELDS_V1, "requant_multiplier", "requant_shift")
_LAYOUTS = {
    TILE_OPTIONS_VERSION: (HEADER_FIELDS_V1, OP_FIELDS_V1),
    OPTIONS_VERSION: (HEADER_FIELDS, OP_FIELDS),
}


class OpKind(enum.IntEnum):
    """Inner op kinds; the values are the C enum's."""

    CONV = 1
    DEPTHWISE = 2
    ADD = 3
    PAD = 4
    GLOBAL_AVERAGE_POOL = 5  # version 2, streamed, last op: AVERAGE_POOL_2D over the map
    MEAN = 6  # version 2, streamed, last op: MEAN over height and width
    MAX_POOL = 7  # version 2: MAX_POOL_2D over a window (tiles or streamed)


class Execution(enum.IntEnum):
    """How the kernel walks the stage output; the values are the C enum's."""

    TILES = 1  # tile by tile on the grid, recomputing overlapping windows
    STREAM = 2  # row by row in column strips, through ring buffers


class InputSource(enum.IntEnum):
    """Where the stage reads its input rows; the values are the C enum's."""

    TENSOR = 0  # the operator's input tensor
    ROW_READER = 1  # reserved: rows pulled from an application callback


_VERSION_2_KINDS = (OpKind.GLOBAL_AVERAGE_POOL, OpKind.MEAN, OpKind.MAX_POOL)


@dataclass(frozen=True)
class AddParams:
    """ADD's fixed-point rescaling, as TFLM's Prepare computes it (left shift 20 for int8)."""

    left_shift: int = 20
    input_multiplier: int = 0
    input_shift: int = 0
    input_b_multiplier: int = 0
    input_b_shift: int = 0
    output_multiplier: int = 0
    output_shift: int = 0


@dataclass(frozen=True)
class InnerOp:
    """One op of the stage. Geometry tuples are (height, width); padding is
    (top, left, bottom, right): for CONV/DEPTHWISE TFLM's computed padding (top/left are the
    pad-before), for PAD the rows/columns added."""

    kind: OpKind
    input: int
    output_shape: tuple[int, int, int]
    input_b: int = -1
    weights_input: int = -1
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    depth_multiplier: int = 1
    input_zero_point: int = 0
    input_b_zero_point: int = 0
    output_zero_point: int = 0
    activation: tuple[int, int] = (-128, 127)
    add: AddParams = field(default_factory=AddParams)
    requant: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class PatchStage:
    """A stage: the grid (rows, cols) over its output (streaming: (1, column strips)), the
    stage input's (height, width, channels), its inner ops in execution order, how the
    kernel walks it and where its input comes from."""

    grid: tuple[int, int]
    input_shape: tuple[int, int, int]
    ops: tuple[InnerOp, ...]
    execution: Execution = Execution.TILES
    input_source: InputSource = InputSource.TENSOR

    @property
    def options_version(self) -> int:
        """1 for what version 1 can say (tiles, input tensor, its op kinds), else 2."""
        plain = self.execution == Execution.TILES and self.input_source == InputSource.TENSOR
        if plain and not any(op.kind in _VERSION_2_KINDS for op in self.ops):
            return TILE_OPTIONS_VERSION
        return OPTIONS_VERSION


def encode_options(stage: PatchStage) -> bytes:
    """The custom_options bytes the kernel's Init reads."""
    most = MAX_TILE_OPS if stage.execution == Execution.TILES else MAX_OPS
    if not 1 <= len(stage.ops) <= most:
        raise TflmExtError(f"a patch stage holds 1..{most} ops, not {len(stage.ops)}")
    version = stage.options_version
    header_fields, op_fields = _LAYOUTS[version]
    header = {
        "version": version,
        "header_words": len(header_fields),
        "op_words": len(op_fields),
        "op_count": len(stage.ops),
        "grid_rows": stage.grid[0],
        "grid_cols": stage.grid[1],
        "input_height": stage.input_shape[0],
        "input_width": stage.input_shape[1],
        "input_channels": stage.input_shape[2],
        "execution": int(stage.execution),
        "input_source": int(stage.input_source),
    }
    words = [header[name] for name in header_fields]
    for op in stage.ops:
        record = _op_words(op)
        words.extend(record[name] for name in op_fields)
    try:
        return struct.pack(f"<{len(words)}i", *words)
    except struct.error as e:
        raise TflmExtError(f"patch stage options do not fit int32 words: {e}") from e


def decode_options(options: bytes) -> PatchStage:
    """Inverse of encode_options; refuses other versions and layouts."""
    words = _words(options)
    if words[0] not in _LAYOUTS:
        raise TflmExtError(f"{OP_NAME} options version {words[0]} is not one of {sorted(_LAYOUTS)}")
    header_fields, op_fields = _LAYOUTS[words[0]]
    if len(words) < len(header_fields):
        raise TflmExtError(f"{OP_NAME} options of {len(words)} words hold no full header")
    header = dict(zip(header_fields, words, strict=False))
    if (header["header_words"], header["op_words"]) != (len(header_fields), len(op_fields)):
        raise TflmExtError(f"{OP_NAME} options layout {header} differs from this version's")
    expected = len(header_fields) + header["op_count"] * len(op_fields)
    if len(words) != expected:
        raise TflmExtError(f"{OP_NAME} options hold {len(words)} words, expected {expected}")
    body = words[len(header_fields) :]
    ops = tuple(
        _inner_op(
            {**_V1_DEFAULTS, **dict(zip(op_fields, body[i : i + len(op_fields)], strict=True))}
        )
        for i in range(0, len(body), len(op_fields))
    )
    return PatchStage(
        grid=(header["grid_rows"], header["grid_cols"]),
        input_shape=(header["input_height"], header["input_width"], header["input_channels"]),
        ops=ops,
        execution=_enum(Execution, header.get("execution", Execution.TILES), "execution"),
        input_source=_enum(InputSource, header.get("input_source", 0), "input source"),
    )


_V1_DEFAULTS = {"requant_multiplier": 0, "requant_shift": 0}


def _enum(kind: type[enum.IntEnum], value: int, what: str) -> enum.IntEnum:
    try:
        return kind(value)
    except ValueError as e:
        raise TflmExtError(f"{OP_NAME} options name an unknown {what} {value}") from e


def _words(options: bytes) -> tuple[int, ...]:
    if len(options) % 4 or len(options) < 4 * len(HEADER_FIELDS_V1):
        raise TflmExtError(f"{OP_NAME} options of {len(options)} B are not a header + records")
    return struct.unpack(f"<{len(options) // 4}i", options)


def _op_words(op: InnerOp) -> dict[str, int]:
    add = {f"add_{name}": value for name, value in asdict(op.add).items()}
    return {
        "kind": int(op.kind),
        "input": op.input,
        "input_b": op.input_b,
        "weights_input": op.weights_input,
        "output_height": op.output_shape[0],
        "output_width": op.output_shape[1],
        "output_channels": op.output_shape[2],
        "kernel_height": op.kernel[0],
        "kernel_width": op.kernel[1],
        "stride_height": op.stride[0],
        "stride_width": op.stride[1],
        "dilation_height": op.dilation[0],
        "dilation_width": op.dilation[1],
        "pad_top": op.padding[0],
        "pad_left": op.padding[1],
        "pad_bottom": op.padding[2],
        "pad_right": op.padding[3],
        "depth_multiplier": op.depth_multiplier,
        "input_zero_point": op.input_zero_point,
        "input_b_zero_point": op.input_b_zero_point,
        "output_zero_point": op.output_zero_point,
        "activation_min": op.activation[0],
        "activation_max": op.activation[1],
        **add,
        "requant_multiplier": op.requant[0],
        "requant_shift": op.requant[1],
    }


def _inner_op(w: dict[str, int]) -> InnerOp:
    try:
        kind = OpKind(w["kind"])
    except ValueError as e:
        raise TflmExtError(f"{OP_NAME} options name an unknown op kind {w['kind']}") from e
    return InnerOp(
        kind=kind,
        input=w["input"],
        input_b=w["input_b"],
        weights_input=w["weights_input"],
        output_shape=(w["output_height"], w["output_width"], w["output_channels"]),
        kernel=(w["kernel_height"], w["kernel_width"]),
        stride=(w["stride_height"], w["stride_width"]),
        dilation=(w["dilation_height"], w["dilation_width"]),
        padding=(w["pad_top"], w["pad_left"], w["pad_bottom"], w["pad_right"]),
        depth_multiplier=w["depth_multiplier"],
        input_zero_point=w["input_zero_point"],
        input_b_zero_point=w["input_b_zero_point"],
        output_zero_point=w["output_zero_point"],
        activation=(w["activation_min"], w["activation_max"]),
        add=AddParams(**{name: w[f"add_{name}"] for name in AddParams.__dataclass_fields__}),
        requant=(w["requant_multiplier"], w["requant_shift"]),
    )
