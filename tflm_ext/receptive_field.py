"""Receptive-field geometry of spatial operators and the backward pass over a tile chain.

Called by the patch planner (per-tile buffer sizes, recomputed MACs) and by whoever encodes
a patch stage for the kernel (each op's input window and border padding per tile).

Conventions: NHWC tensors; ``rows`` is height (axis 1), ``cols`` width (axis 2); spans are
half-open ``[start, stop)``. Padding is TF/TFLite's: VALID pads nothing and gives
``out = (in - k) // s + 1``; SAME gives ``out = ceil(in / s)`` and pads
``total = max((out - 1) * s + k - in, 0)`` with ``before = total // 2`` (the odd row or
column goes after), which is what TFLM's ``ComputePaddingHeightWidth`` does. A dilated
kernel counts as its reach ``(k - 1) * d + 1``: only the window's extent matters here.

A *chain* is a stage of operators in execution order. Its tensors are numbered: 0 is the
stage input, ``k + 1`` the output of chain op ``k``, so the last op writes the stage output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.graph_stats import macs_per_output
from tflm_ext.model_graph import ModelGraph
from tflm_ext.patch_op import InnerOp, OpKind, PatchStage

_CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class Span:
    """Half-open range of rows or columns; empty when stop <= start."""

    start: int
    stop: int

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def union(self, other: Span) -> Span:
        """Smallest span covering both (an empty span adds nothing)."""
        if not len(other):
            return self
        if not len(self):
            return other
        return Span(min(self.start, other.start), max(self.stop, other.stop))


@dataclass(frozen=True)
class Region:
    """A rectangle of a feature map: rows x cols."""

    rows: Span
    cols: Span

    @property
    def area(self) -> int:
        return len(self.rows) * len(self.cols)

    def union(self, other: Region) -> Region:
        """Bounding box of both regions."""
        if not other.area:
            return self
        if not self.area:
            return other
        return Region(self.rows.union(other.rows), self.cols.union(other.cols))


EMPTY = Region(Span(0, 0), Span(0, 0))


@dataclass(frozen=True)
class Axis:
    """One spatial axis of an operator: window extent (a dilated kernel's reach), step,
    padding before the first row or column, input and output sizes."""

    kernel: int
    stride: int
    pad_before: int
    in_size: int
    out_size: int


@dataclass(frozen=True)
class Geometry:
    """Both spatial axes of an operator."""

    rows: Axis
    cols: Axis


@dataclass(frozen=True)
class AxisWindow:
    """The input span an output span reads, clipped to the input, and how many of the
    window's positions fall outside the input before and after it (zero padding)."""

    span: Span
    pad_before: int
    pad_after: int


@dataclass(frozen=True)
class Window:
    """Input region (clipped) and padding (top, bottom, left, right) for an output region."""

    region: Region
    pad: tuple[int, int, int, int]


def reach(kernel: int, dilation: int) -> int:
    """How many input positions a dilated kernel's window spans."""
    return (kernel - 1) * dilation + 1


def tf_padding(in_size: int, kernel: int, stride: int, same: bool) -> tuple[int, int]:
    """TF's output size along an axis and the total padding it implies (the module's
    formulas; ``kernel`` is the window's reach). VALID's total is always 0."""
    out_size = -(-in_size // stride) if same else (in_size - kernel) // stride + 1
    return out_size, max((out_size - 1) * stride + kernel - in_size, 0)


def same_axis(in_size: int, kernel: int, stride: int) -> Axis:
    """TF SAME padding: output ceil(in / stride), the odd padding row after."""
    out_size, total = tf_padding(in_size, kernel, stride, same=True)
    return Axis(kernel, stride, total // 2, in_size, out_size)


def valid_axis(in_size: int, kernel: int, stride: int) -> Axis:
    """TF VALID padding: only windows entirely inside the input."""
    if kernel > in_size:
        raise TflmExtError(f"VALID window of {kernel} does not fit an input of {in_size}")
    out_size, _ = tf_padding(in_size, kernel, stride, same=False)
    return Axis(kernel, stride, 0, in_size, out_size)


def explicit_axis(in_size: int, before: int, after: int) -> Axis:
    """An explicit PAD: every output position copies one input position or is padding."""
    return Axis(1, 1, before, in_size, in_size + before + after)


def identity_axis(size: int) -> Axis:
    """Elementwise operators (ADD): output position i reads input position i."""
    return Axis(1, 1, 0, size, size)


def axis_window(axis: Axis, out: Span) -> AxisWindow:
    """Input positions that output positions ``out`` read, clipped, with border padding."""
    if not len(out):
        return AxisWindow(Span(0, 0), 0, 0)
    start = out.start * axis.stride - axis.pad_before
    stop = (out.stop - 1) * axis.stride - axis.pad_before + axis.kernel
    low = min(max(start, 0), axis.in_size)
    high = max(min(stop, axis.in_size), low)
    pad_before = min(max(-start, 0), stop - start)
    return AxisWindow(Span(low, high), pad_before, (stop - start) - pad_before - (high - low))


def input_window(geometry: Geometry, out: Region) -> Window:
    """The input window an output region of an operator reads."""
    rows, cols = axis_window(geometry.rows, out.rows), axis_window(geometry.cols, out.cols)
    return Window(
        Region(rows.span, cols.span),
        (rows.pad_before, rows.pad_after, cols.pad_before, cols.pad_after),
    )


@dataclass(frozen=True)
class ChainOp:
    """One operator of a tile chain: its geometry, the chain tensors it reads (0 is the
    stage input, k + 1 the output of op k), its output channels and MACs per output pixel;
    ``reduces`` marks a global pool (its window is the whole input), which only a streamed
    stage runs, summing its input row by row (``streaming``)."""

    geometry: Geometry
    inputs: tuple[int, ...]
    out_channels: int
    macs_per_pixel: int = 0
    reduces: bool = False


def axis_spans(chain: Sequence[ChainOp], axis: str, out: Span) -> tuple[Span, ...]:
    """Along one axis ("rows" or "cols"): the span of every chain tensor (0..n) needed to
    produce span ``out`` of the stage output, the union of what its consumers read. The
    bounding box of rectangles is the product of their spans' unions, so the two axes are
    independent and a grid of R x C tiles needs only R + C walks."""
    spans = [Span(0, 0)] * len(chain) + [out]
    for k in range(len(chain) - 1, -1, -1):
        window = axis_window(getattr(chain[k].geometry, axis), spans[k + 1]).span
        for tensor in chain[k].inputs:
            spans[tensor] = spans[tensor].union(window)
    return tuple(spans)


def tile_regions(chain: Sequence[ChainOp], out: Region) -> tuple[Region, ...]:
    """Region of every chain tensor (0..n) needed to produce region ``out`` of the stage
    output: the bounding box of what all its consumers inside the chain read."""
    rows, cols = axis_spans(chain, "rows", out.rows), axis_spans(chain, "cols", out.cols)
    return tuple(Region(r, c) for r, c in zip(rows, cols, strict=True))


def split_span(size: int, parts: int) -> tuple[Span, ...]:
    """``parts`` contiguous spans covering ``range(size)``, lengths differing by at most 1:
    part i is ``[i * size // parts, (i + 1) * size // parts)``, never empty. The one split of
    a stage output into tiles: the planner's, both rewrite passes' and the kernel's."""
    if not 1 <= parts <= size:
        raise TflmExtError(f"cannot cut an axis of {size} into {parts} tiles")
    return tuple(Span(i * size // parts, (i + 1) * size // parts) for i in range(parts))


def grid_tiles(out_rows: int, out_cols: int, grid: tuple[int, int]) -> tuple[Region, ...]:
    """The stage output split into a grid of (rows, cols) tiles, row-major."""
    return tuple(
        Region(rows, cols)
        for rows in split_span(out_rows, grid[0])
        for cols in split_span(out_cols, grid[1])
    )


def chain_macs(chain: Sequence[ChainOp], regions: Sequence[Region]) -> int:
    """MACs of computing each chain op on its region of output (regions from tile_regions)."""
    return sum(op.macs_per_pixel * regions[k + 1].area for k, op in enumerate(chain))


def full_region(chain: Sequence[ChainOp]) -> Region:
    """The whole stage output."""
    last = chain[-1].geometry
    return Region(Span(0, last.rows.out_size), Span(0, last.cols.out_size))


def square_grids(chain: Sequence[ChainOp], sizes: Sequence[int]) -> list[tuple[int, int]]:
    """The n x n grids for each n of ``sizes``, clipped to the stage output (a 3-row output
    takes at most 3 tile rows), without duplicates or the trivial 1 x 1, smallest first."""
    whole = full_region(chain)
    rows, cols = len(whole.rows), len(whole.cols)
    return sorted({(min(n, rows), min(n, cols)) for n in sizes} - {(1, 1)})


@dataclass(frozen=True)
class GridCost:
    """What tiling a chain over a grid costs: MACs beyond computing it once, the largest
    window (bytes, int8) of every chain tensor over all tiles (0 for the stage input and
    output, which the kernel reads and writes in place) and the stage's one scratch
    request, which holds those windows at the offsets of ``scratch_layout``."""

    extra_macs: int
    window_bytes: tuple[int, ...]
    scratch_bytes: int


def grid_cost(chain: Sequence[ChainOp], grid: tuple[int, int]) -> GridCost:
    """Walk the grid's tile rows and tile columns once each. Per chain tensor, the tiles'
    total area is (sum of row span lengths) x (sum of column span lengths) and the largest
    area is (longest row span) x (longest column span)."""
    whole = full_region(chain)
    rows = [axis_spans(chain, "rows", p) for p in split_span(len(whole.rows), grid[0])]
    cols = [axis_spans(chain, "cols", p) for p in split_span(len(whole.cols), grid[1])]
    tiled = 0
    windows = [0] * (len(chain) + 1)
    for k, op in enumerate(chain):
        tiled += (
            op.macs_per_pixel * sum(len(r[k + 1]) for r in rows) * sum(len(c[k + 1]) for c in cols)
        )
        if k:
            longest = max(len(r[k]) for r in rows) * max(len(c[k]) for c in cols)
            windows[k] = longest * chain[k - 1].out_channels
    _, scratch = scratch_layout(chain, windows)
    extra = tiled - chain_macs(chain, tile_regions(chain, whole))
    return GridCost(extra, tuple(windows), scratch)


def extra_macs(chain: Sequence[ChainOp], grid: tuple[int, int]) -> int:
    """MACs computed tile by tile over ``grid`` beyond computing the chain once: the
    overlapping receptive fields of neighbouring tiles are computed more than once."""
    return grid_cost(chain, grid).extra_macs


def lifetimes(chain: Sequence[ChainOp]) -> dict[int, tuple[int, int]]:
    """For every intermediate chain tensor: the op that writes it and the last op that
    reads it. Both ends count, since an op's inputs and output are alive together."""
    last_use = {t: k for k, op in enumerate(chain) for t in op.inputs}
    return {t: (t - 1, last_use.get(t, t - 1)) for t in range(1, len(chain))}


def scratch_layout(
    chain: Sequence[ChainOp], window_bytes: Sequence[int]
) -> tuple[tuple[int | None, ...], int]:
    """Where each intermediate tensor's window lives in the stage's scratch, and the scratch
    size. Windows are placed one by one, each at the lowest offset that overlaps no placed
    window alive at the same time, in two orders: largest first (as TFLM's greedy planner
    places tensors) and in op order; the smaller layout wins (ties: largest first). Neither
    order is optimal alone: op order fits a chain exactly, largest first avoids gaps when
    big windows come late. The kernel (``PlanScratch`` in kernels/patch_stage.cc) computes
    the same layout; ``tests/tflm_ext/test_rewrite.py`` checks the two agree."""
    spans = lifetimes(chain)
    by_size = _first_fit(spans, window_bytes, sorted(spans, key=lambda t: (-window_bytes[t], t)))
    by_op = _first_fit(spans, window_bytes, sorted(spans))
    return by_op if by_op[1] < by_size[1] else by_size


def _first_fit(
    spans: dict[int, tuple[int, int]], window_bytes: Sequence[int], order: Sequence[int]
) -> tuple[tuple[int | None, ...], int]:
    offsets: list[int | None] = [None] * len(window_bytes)
    placed: list[int] = []
    for t in order:
        size = window_bytes[t]
        rivals = [u for u in placed if spans[u][0] <= spans[t][1] and spans[t][0] <= spans[u][1]]
        for start in sorted({0, *(offsets[u] + window_bytes[u] for u in rivals)}):
            if all(start + size <= offsets[u] or offsets[u] + window_bytes[u] <= start
                   for u in rivals):  # fmt: skip
                offsets[t] = start
                break
        placed.append(t)
    end = max((offsets[t] + window_bytes[t] for t in placed), default=0)
    return tuple(offsets), end


def op_geometry(graph: ModelGraph, op: int) -> Geometry:
    """Geometry of a CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D, PAD, ADD or MEAN
    operator (MEAN: a window over the whole input, whatever axes it reduces)."""
    view = graph.ops[op]
    _, in_rows, in_cols, _ = _nhwc(graph, graph.activation_inputs(op)[0], op)
    if view.name == "ADD":
        return Geometry(identity_axis(in_rows), identity_axis(in_cols))
    if view.name == "MEAN":
        return Geometry(valid_axis(in_rows, in_rows, 1), valid_axis(in_cols, in_cols, 1))
    if view.name == "PAD":
        (top, bottom), (left, right) = _pad_amounts(graph, op)
        return Geometry(explicit_axis(in_rows, top, bottom), explicit_axis(in_cols, left, right))
    kernel, options = _kernel_size(graph, op), view.options
    if options is None:
        raise TflmExtError(f"operator {op} ({view.name}) has no options to read its geometry")
    dilation = (
        max(getattr(options, "dilationHFactor", 1), 1),
        max(getattr(options, "dilationWFactor", 1), 1),
    )
    extent = [reach(k, d) for k, d in zip(kernel, dilation, strict=True)]
    make = same_axis if options.padding == schema.Padding.SAME else valid_axis
    return Geometry(
        make(in_rows, extent[0], options.strideH), make(in_cols, extent[1], options.strideW)
    )


def chain_from_stage(stage: PatchStage) -> tuple[ChainOp, ...]:
    """The chain a TFLM_EXT_PATCH_STAGE operator's decoded options describe (MACs left 0)."""
    shapes = [stage.input_shape] + [op.output_shape for op in stage.ops]
    return tuple(_inner_chain_op(op, shapes[op.input]) for op in stage.ops)


def _inner_chain_op(op: InnerOp, in_shape: tuple[int, int, int]) -> ChainOp:
    out_rows, out_cols, channels = op.output_shape
    top, left = op.padding[0], op.padding[1]
    if op.kind == OpKind.ADD:
        geometry = Geometry(identity_axis(out_rows), identity_axis(out_cols))
        return ChainOp(geometry, (op.input, op.input_b), channels)
    if op.kind == OpKind.PAD:
        rows, cols = Axis(1, 1, top, in_shape[0], out_rows), Axis(1, 1, left, in_shape[1], out_cols)
        return ChainOp(Geometry(rows, cols), (op.input,), channels)
    if op.kind in (OpKind.GLOBAL_AVERAGE_POOL, OpKind.MEAN):
        rows, cols = (
            valid_axis(in_shape[0], in_shape[0], 1),
            valid_axis(in_shape[1], in_shape[1], 1),
        )
        return ChainOp(Geometry(rows, cols), (op.input,), channels, reduces=True)
    extent = [reach(k, d) for k, d in zip(op.kernel, op.dilation, strict=True)]
    rows = Axis(extent[0], op.stride[0], top, in_shape[0], out_rows)
    cols = Axis(extent[1], op.stride[1], left, in_shape[1], out_cols)
    return ChainOp(Geometry(rows, cols), (op.input,), channels)


def macs_per_pixel(graph: ModelGraph, op: int) -> int:
    """MACs per output pixel: ``graph_stats.macs_per_output`` times the output channels, so
    counted as ``graph_stats`` counts them (0 for non-conv ops)."""
    view = graph.ops[op]
    if view.name not in _CONVOLUTIONS:
        return 0
    per_output = macs_per_output(view.name, graph.shape(view.inputs[1]))
    return per_output * graph.shape(view.outputs[0])[-1]


def _kernel_size(graph: ModelGraph, op: int) -> tuple[int, int]:
    view = graph.ops[op]
    if view.name in _CONVOLUTIONS:
        _, kh, kw, _ = graph.shape(view.inputs[1])
        return kh, kw
    if view.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return view.options.filterHeight, view.options.filterWidth
    raise TflmExtError(f"operator {op} ({view.name}) has no receptive-field geometry here")


def _pad_amounts(graph: ModelGraph, op: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, bottom), (left, right) of a PAD whose paddings are a constant [4, 2] tensor."""
    paddings = graph.tensors[graph.ops[op].inputs[1]].data
    if paddings is None or paddings.shape != (4, 2):
        raise TflmExtError(f"PAD operator {op} has no constant [4, 2] paddings")
    return (int(paddings[1, 0]), int(paddings[1, 1])), (int(paddings[2, 0]), int(paddings[2, 1]))


def _nhwc(graph: ModelGraph, tensor: int, op: int) -> tuple[int, int, int, int]:
    shape = graph.shape(tensor)
    if len(shape) != 4:
        raise TflmExtError(f"operator {op} reads tensor {tensor} of shape {shape}, not NHWC")
    return shape  # type: ignore[return-value]
