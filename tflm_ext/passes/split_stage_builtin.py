"""Pass: split operators first..last of the main subgraph into per-tile builtin operators.

Called by ``tflm_ext.rewrite.rewrite_stage(..., mode="builtin")``, followed by the cleanup
passes (the stage's original intermediates are left for ``remove_dead_tensors``). It is the
rewrite for firmware that cannot add custom kernels: only STRIDED_SLICE, PAD, the stage's
own CONV_2D / DEPTHWISE_CONV_2D / MAX_POOL_2D / ADD / PAD and CONCATENATION, so any TFLM
build runs it, and the result is bit-exact with the original (a max pool that pads the
image border is refused: PAD's zero-point fill would take part in its maximum).

Per tile of the stage output, in execution order: slice the tile's window out of the stage
input, then for each stage operator slice what it reads out of the tile's earlier windows,
pad the image borders a SAME convolution would have padded (interior windows need none), and
run the operator with VALID padding on exactly its window. Each row of tiles is joined along
the width as soon as it is done, and the rows along the height into the stage's original
output tensor, so every consumer downstream is untouched. TFLM's CONCATENATION takes at most
10 inputs, so wider joins become trees.

The tile windows are the custom op's: the stage is described with ``stage_ops.translate``
(what ``fuse_patch_stage`` encodes) and walked with ``receptive_field.tile_regions`` over
the same grid split (``receptive_field.split_span``).

It saves less than the custom op: every finished tile stays alive until its row is joined,
every row until the last join, and the joined copy is alive beside them, so the stage's
output is held twice at the end; and each tile adds its own operators (with their
persistent per-operator structs in the arena's tail).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext import receptive_field as rf
from tflm_ext.errors import TflmExtError
from tflm_ext.passes import stage_boundary, stage_ops
from tflm_ext.passes.new_tensors import append_new_tensors
from tflm_ext.passes.tile_builder import HEIGHT, WIDTH, Held, TileBuilder
from tflm_ext.patch_op import PatchStage

log = logging.getLogger(__name__)

OPS = schema.BuiltinOperator


@dataclass(frozen=True)
class TiledStage:
    """The stage's operators, its input, and its chain (tensor 0 is the input, k + 1 the
    output of operator k) with the custom op's geometry."""

    ops: tuple[model_editor.Operator, ...]
    source: model_editor.Tensor
    chain: tuple[rf.ChainOp, ...]


def split_stage_into_tiles(
    model: model_editor.Model, first_op: int, last_op: int, grid: tuple[int, int]
) -> None:
    """Replace ops[first_op..last_op] (inclusive) by builtin operators computing the stage
    tile by tile over a (rows, cols) grid and joining the tiles into its output."""
    subgraph = model.subgraphs[0]
    stage = describe_stage(subgraph, first_op, last_op)
    row_spans, col_spans = _grid_spans(stage, grid)
    builder = TileBuilder()
    output = stage.ops[-1].outputs[0]
    rows = []
    for r, row_span in enumerate(row_spans):
        tiles = [
            _emit_tile(builder, stage, rf.Region(row_span, col_span), f"tile{r}_{c}")
            for c, col_span in enumerate(col_spans)
        ]
        joined = output if len(row_spans) == 1 else None
        rows.append(builder.concatenate(tiles, WIDTH, f"{output.name}/row{r}", joined))
    if len(row_spans) > 1:
        builder.concatenate(rows, HEIGHT, f"{output.name}/rows", output)
    subgraph.operators[first_op : last_op + 1] = builder.operators
    append_new_tensors(model, builder.tensors)
    log.info(
        "split operators %d..%d into %d builtin operators over a %dx%d grid",
        first_op,
        last_op,
        len(builder.operators),
        *grid,
    )


def describe_stage(subgraph: model_editor.Subgraph, first_op: int, last_op: int) -> TiledStage:
    """Check the stage as ``fuse_patch_stage`` does and describe it as its custom op would."""
    ops = stage_boundary.stage_operators(subgraph, first_op, last_op)
    source = stage_boundary.checked_stage_input(subgraph, ops, first_op)
    buffers = {id(source): 0}
    inner = []
    for index, op in enumerate(ops):
        inner.append(stage_ops.translate(op, buffers, weights_input=0).inner)
        buffers[id(op.outputs[0])] = index + 1
    input_shape = tuple(int(d) for d in source.shape[1:])
    chain = rf.chain_from_stage(PatchStage(grid=(1, 1), input_shape=input_shape, ops=tuple(inner)))
    return TiledStage(tuple(ops), source, chain)


def _emit_tile(
    builder: TileBuilder, stage: TiledStage, out: rf.Region, tag: str
) -> model_editor.Tensor:
    """Append the operators computing region ``out`` of the stage output; return the
    tensor holding it."""
    regions = rf.tile_regions(stage.chain, out)
    _, height, width, _ = (int(d) for d in stage.source.shape)
    held = [Held(stage.source, rf.Region(rf.Span(0, height), rf.Span(0, width)))]
    for k, (op, link) in enumerate(zip(stage.ops, stage.chain, strict=True)):
        region = regions[k + 1]
        window = rf.input_window(link.geometry, region)
        name = f"{op.outputs[0].name}/{tag}"
        inputs = [
            builder.crop(held[t], window.region, f"{name}/input{i}")
            for i, t in enumerate(link.inputs)
        ]
        shape = (1, len(region.rows), len(region.cols), link.out_channels)
        if op.opcode == OPS.PAD:
            tensor = builder.pad(inputs[0], window.pad, name)
        elif op.opcode == OPS.ADD:
            tensor = builder.copy_operator(op, inputs, shape, name)
        else:
            if op.opcode == OPS.MAX_POOL_2D and any(window.pad):
                raise TflmExtError(
                    f"builtin mode cannot tile {op.opcode_name} {op.outputs[0].name!r}: it pads "
                    "the image border, and PAD fills with the zero point, which a max pool must "
                    "not see; use mode custom"
                )
            padded = builder.pad(inputs[0], window.pad, name)
            tensor = builder.copy_operator(op, [padded], shape, name)
        held.append(Held(tensor, region))
    return held[-1].tensor


def _grid_spans(
    stage: TiledStage, grid: tuple[int, int]
) -> tuple[tuple[rf.Span, ...], tuple[rf.Span, ...]]:
    """The custom op's split of the stage output into rows and columns of tiles."""
    whole = rf.full_region(stage.chain)
    rows = rf.split_span(len(whole.rows), grid[0])  # raises when the grid does not fit
    cols = rf.split_span(len(whole.cols), grid[1])
    if len(rows) * len(cols) == 1:
        raise TflmExtError(
            "a (1, 1) grid splits nothing into tiles; keep the stage's operators as they are"
        )
    return rows, cols
