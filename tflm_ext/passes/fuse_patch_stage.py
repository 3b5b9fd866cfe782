"""Pass: replace operators first..last of the main subgraph by one TFLM_EXT_PATCH_STAGE op.

Called by ``tflm_ext.rewrite.rewrite_stage``, followed by the cleanup passes (the replaced
ops' intermediate tensors are left for ``remove_dead_tensors``). The stage must be
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
from tflm_ext.errors import TflmExtError
from tflm_ext.passes import stage_boundary, stage_ops
from tflm_ext.passes.new_tensors import append_new_tensors
from tflm_ext.patch_op import MAX_OPS, OP_NAME, PatchStage, encode_options

log = logging.getLogger(__name__)


def fuse_patch_stage(
    model: model_editor.Model, first_op: int, last_op: int, grid: tuple[int, int]
) -> None:
    """Fuse ops[first_op..last_op] (inclusive) into one patch-stage op over a rows x cols grid."""
    subgraph = model.subgraphs[0]
    ops = _stage_ops(subgraph, first_op, last_op)
    source = stage_boundary.checked_stage_input(subgraph, ops, first_op)
    stage, constants = _describe(ops, source, grid)
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
    log.info("fused operators %d..%d into %s with a %dx%d grid", first_op, last_op, OP_NAME, *grid)


def _stage_ops(
    subgraph: model_editor.Subgraph, first_op: int, last_op: int
) -> list[model_editor.Operator]:
    ops = stage_boundary.stage_operators(subgraph, first_op, last_op)
    if len(ops) > MAX_OPS:
        raise TflmExtError(f"stage {first_op}..{last_op} holds more than {MAX_OPS} operators")
    return ops


def _describe(
    ops: list[model_editor.Operator], source: model_editor.Tensor, grid: tuple[int, int]
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
    return PatchStage(grid=tuple(grid), input_shape=input_shape, ops=tuple(inner)), constants
