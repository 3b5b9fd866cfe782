"""Pass: replace operators first..last of the main subgraph by one TFLM_EXT_PATCH_STAGE op.

Called by ``tflm_ext.rewrite.rewrite_stage`` (``fuse_patch_stage`` for tiles,
``stream_patch_stage`` for row streaming over ``grid = (1, column strips)``,
``read_rows_patch_stage`` for streaming from the application's row reader), followed by
the cleanup passes (the replaced ops' intermediate tensors are left for
``remove_dead_tensors``). The stage must be
self-contained: one activation enters it (the stage input), only the last op's output leaves
it, and every op passes ``stage_ops``' support rules. The custom op reads the stage input
plus each CONV/DEPTHWISE op's filter, bias, multipliers and shifts, and writes the last op's
original output tensor, so every consumer downstream is untouched.
"""

from __future__ import annotations

import logging

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import receptive_field as rf
from tflm_ext import streaming
from tflm_ext.errors import TflmExtError
from tflm_ext.passes import stage_boundary, stage_ops
from tflm_ext.passes.new_tensors import append_new_tensors
from tflm_ext.patch_op import (
    MAX_OPS,
    MAX_TILE_OPS,
    OP_NAME,
    Execution,
    InputSource,
    PatchStage,
    encode_options,
)

log = logging.getLogger(__name__)


def fuse_patch_stage(
    model: model_editor.Model,
    first_op: int,
    last_op: int,
    grid: tuple[int, int],
    execution: Execution = Execution.TILES,
    input_source: InputSource = InputSource.TENSOR,
) -> None:
    """Fuse ops[first_op..last_op] (inclusive) into one patch-stage op over a rows x cols grid."""
    subgraph = model.subgraphs[0]
    streamed = execution == Execution.STREAM
    ops = _stage_ops(subgraph, first_op, last_op, MAX_OPS if streamed else MAX_TILE_OPS)
    source = stage_boundary.checked_stage_input(subgraph, ops, first_op, streamed=streamed)
    stage, constants = _describe(ops, source, grid, execution, input_source)
    if input_source == InputSource.ROW_READER:
        _shrink_to_one_row(subgraph, source, ops)
    custom = model_editor.Operator(
        opcode=schema.BuiltinOperator.CUSTOM,
        custom_code=OP_NAME,
        inputs=[source, *constants],
        outputs=[ops[-1].outputs[0]],
    )
    custom._fb.customOptions = list(encode_options(stage))
    custom._fb.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    append_new_tensors(model, constants)
    subgraph.operators[first_op : last_op + 1] = [custom]
    log.info(
        "fused operators %d..%d into %s (%s, %dx%d)",
        first_op,
        last_op,
        OP_NAME,
        execution.name.lower(),
        *grid,
    )


def stream_patch_stage(
    model: model_editor.Model, first_op: int, last_op: int, grid: tuple[int, int]
) -> None:
    """Fuse ops[first_op..last_op] into one patch-stage op that streams rows in
    ``grid[1]`` column strips (``grid[0]`` must be 1)."""
    if grid[0] != 1:
        raise TflmExtError(f"a streamed stage runs in one row of strips, not a {grid} grid")
    fuse_patch_stage(model, first_op, last_op, grid, Execution.STREAM)


def read_rows_patch_stage(
    model: model_editor.Model, first_op: int, last_op: int, grid: tuple[int, int]
) -> None:
    """Fuse ops[first_op..last_op] into one patch-stage op that streams rows in ``grid[1]``
    column strips (``grid[0]`` must be 1) and reads the model's input image row by row from
    the application's row reader, once per strip; the model input, which only this stage
    may read, shrinks to one row (1, 1, width, channels) that describes it."""
    if grid[0] != 1:
        raise TflmExtError(f"a row reader feeds a stage streamed in one row of strips, not {grid}")
    fuse_patch_stage(model, first_op, last_op, grid, Execution.STREAM, InputSource.ROW_READER)


def _shrink_to_one_row(
    subgraph: model_editor.Subgraph,
    source: model_editor.Tensor,
    ops: list[model_editor.Operator],
) -> None:
    """The reader's stage input must be a model input that nothing but the stage reads."""
    if not any(t is source for t in subgraph.inputs):
        raise TflmExtError(f"a row reader feeds a model input, not tensor {source.name!r}")
    inside = {id(op) for op in ops}
    readers = [op for op in subgraph.operators if any(t is source for t in op.inputs)]
    if any(id(op) not in inside for op in readers):
        raise TflmExtError(f"model input {source.name!r} is read outside the stage")
    _, _, width, channels = (int(d) for d in source.shape)
    source.shape = (1, 1, width, channels)
    if source._fb.shapeSignature is not None:
        source._fb.shapeSignature = [1, 1, width, channels]


def _stage_ops(
    subgraph: model_editor.Subgraph, first_op: int, last_op: int, most: int
) -> list[model_editor.Operator]:
    ops = stage_boundary.stage_operators(subgraph, first_op, last_op)
    if len(ops) > most:
        raise TflmExtError(f"stage {first_op}..{last_op} holds more than {most} operators")
    return ops


def _describe(
    ops: list[model_editor.Operator],
    source: model_editor.Tensor,
    grid: tuple[int, int],
    execution: Execution,
    input_source: InputSource,
) -> tuple[PatchStage, list[model_editor.Tensor]]:
    """The stage's options and the custom op's constant inputs, in the kernel's order."""
    buffers = {id(source): 0}
    inner, constants = [], []
    for index, op in enumerate(ops):
        translated = stage_ops.translate(op, buffers, weights_input=1 + len(constants))
        buffers[id(op.outputs[0])] = index + 1
        inner.append(translated.inner)
        constants.extend(translated.constants)
    out_h, out_w, _ = inner[-1].output_shape
    rf.split_span(out_h, grid[0])  # raises when the grid does not fit the stage output
    rf.split_span(out_w, grid[1])
    input_shape = tuple(int(d) for d in source.shape[1:])
    stage = PatchStage(tuple(grid), input_shape, tuple(inner), execution, input_source)
    if execution == Execution.STREAM:
        reader = input_shape[2] if input_source == InputSource.ROW_READER else 0
        chain = rf.chain_from_stage(stage)
        streaming.stream_cost(chain, grid[1], reader_channels=reader)  # raises if it cannot run
    return stage, constants
