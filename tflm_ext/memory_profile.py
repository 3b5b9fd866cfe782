"""Per-operator activation memory of an int8 .tflite under TFLM's memory planning.

Called by the patch planner (original and rewritten schedules), by ``components.tracking.plots``
(MCUNetV2-style per-layer bars) and by ``benchmarks/memory_profile.py``.

The model of TFLM's planner (``micro_allocation_info.cc``, ``greedy_memory_planner.cc``):
- Every non-constant, non-variable tensor of non-zero size is planned in the arena head,
  its size rounded up to 16 B (``MicroArenaBufferAlignment``).
- Lifetimes are counted in scopes: graph inputs are created at scope 0, operator ``i``
  runs in scope ``i + 1``. A tensor lives from the scope that creates it (graph input or
  producing op) to the last scope that reads it; graph outputs live to the last scope. A
  tensor nothing reads or writes keeps TFLM's uninitialised lifetime -1 and is still
  planned (an orphan): it overlaps only other orphans, but takes space in the plan.
- A kernel's scratch request lives exactly during its operator's scope.
So the tensors alive at an operator are its inputs, its outputs and everything created
before and read after it; ``live_bytes`` is their aligned sum plus the op's scratch. The
greedy planner places buffers largest first at the lowest offset that does not collide
with a buffer alive at the same time; its result (``planned_head``) can exceed the live
peak through fragmentation, and is what TFLM reports as the arena head.

Kernel scratch (``DEFAULT_SCRATCH``), checked against heads measured on the pinned wheel:
the reference CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD and AVERAGE/MAX_POOL_2D
request none; an int8 MEAN/SUM requests its int32 sums (4 B per output element) and two
index arrays (4 B per input dimension, 4 B per reduced axis); the project's
TFLM_EXT_PATCH_STAGE requests its tile scratch (``receptive_field.grid_cost``) or its rings
and pool sums (``streaming.stream_cost``), read from its options, and nothing when that is
0 B. Other ops are assumed to request none unless a
``scratch`` estimator is passed by operator name. CMSIS-NN builds request scratch for
convolutions that this host profile does not show.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tflm_ext import patch_op, receptive_field, streaming
from tflm_ext.arena import ArenaMeasurement, measure_arena
from tflm_ext.graph_stats import graph_stats
from tflm_ext.interpreter import ARENA_ALIGNMENT, align_up
from tflm_ext.isolation import run_isolated
from tflm_ext.model_graph import ModelGraph, OpView, read_graph

log = logging.getLogger(__name__)

ORPHAN_SCOPE = -1  # TFLM's kUninitializedLifetime
ScratchEstimator = Callable[[ModelGraph, OpView], Sequence[int]]


@dataclass(frozen=True)
class OpMemory:
    """One operator: the planned tensors alive while it runs and their aligned bytes
    (plus its scratch), its MACs and first output's shape."""

    index: int
    op: str
    live_bytes: int
    live_tensors: tuple[int, ...]
    macs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class MemoryProfile:
    """Per-operator live memory, the peak and the first operator that reaches it, the
    greedy plan's head as TFLM would compute it, and the measured arena (None when not
    measured). ``orphan_bytes``: planned tensors no operator touches."""

    ops: tuple[OpMemory, ...]
    peak_bytes: int
    peak_op: int
    arena: ArenaMeasurement | None
    planned_head: int = 0
    orphan_bytes: int = 0


@dataclass(frozen=True)
class Step:
    """An operator as the planner sees it: tensors read and written, scratch requests."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    scratch: tuple[int, ...] = ()


@dataclass(frozen=True)
class Schedule:
    """What TFLM plans: the steps in order, the planned tensors' aligned sizes (by tensor
    index, in index order as TFLM adds them), and the graph's inputs and outputs."""

    steps: tuple[Step, ...]
    sizes: Mapping[int, int]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def replaced(self, first: int, last: int, step: Step) -> Schedule:
        """Steps first..last replaced by one step; tensors no step or graph I/O touches
        any more are dropped, as a correct rewrite removes them."""
        steps = (*self.steps[:first], step, *self.steps[last + 1 :])
        used = {t for s in steps for t in (*s.inputs, *s.outputs)}
        used |= {*self.inputs, *self.outputs}
        sizes = {t: size for t, size in self.sizes.items() if t in used}
        return Schedule(steps, sizes, self.inputs, self.outputs)


def profile(
    model_bytes: bytes,
    measure: bool = True,
    scratch: Mapping[str, ScratchEstimator] | None = None,
) -> MemoryProfile:
    """Live activation memory per operator; with ``measure`` also the real arena, measured
    in a child process (TFLM aborts on some models)."""
    graph = read_graph(model_bytes)
    if graph.subgraph_count > 1:
        log.warning("only subgraph 0 of %d is profiled", graph.subgraph_count)
    plan = schedule(graph, scratch)
    live = live_per_step(plan)
    stats = graph_stats(model_bytes).ops
    ops = tuple(
        OpMemory(
            op.index, op.name, size, tensors, stats[op.index].macs, stats[op.index].output_shape
        )
        for op, (size, tensors) in zip(graph.ops, live, strict=True)
    )
    orphans = orphan_bytes(plan)
    if orphans:
        log.warning("%d B of planned tensors are read and written by no operator", orphans)
    peak = max(ops, key=lambda o: o.live_bytes, default=None)
    arena = run_isolated(measure_arena, bytes(model_bytes)) if measure else None
    return MemoryProfile(
        ops=ops,
        peak_bytes=peak.live_bytes if peak else 0,
        peak_op=peak.index if peak else -1,
        arena=arena,
        planned_head=planned_head(plan),
        orphan_bytes=orphans,
    )


def schedule(graph: ModelGraph, scratch: Mapping[str, ScratchEstimator] | None = None) -> Schedule:
    """The graph as TFLM's planner sees it."""
    scratch = {**DEFAULT_SCRATCH, **(scratch or {})}
    steps = tuple(
        Step(
            tuple(t for t in op.inputs if t >= 0),
            op.outputs,
            tuple(scratch[op.name](graph, op)) if op.name in scratch else (),
        )
        for op in graph.ops
    )
    sizes = {
        t.index: align_up(t.nbytes, ARENA_ALIGNMENT)
        for t in graph.tensors
        if not t.is_constant and not t.is_variable and t.nbytes > 0
    }
    return Schedule(steps, sizes, graph.inputs, graph.outputs)


def lifetimes(plan: Schedule) -> dict[int, tuple[int, int]]:
    """(first, last) scope of every planned tensor, as AllocationInfoBuilder marks them."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in (*plan.inputs, *plan.outputs):
        first[t] = last[t] = 0
    for scope, step in enumerate(plan.steps, start=1):
        for t in step.outputs:
            first[t] = last[t] = scope
        for t in (*step.inputs, *step.outputs):
            last[t] = scope
    for t in plan.outputs:
        last[t] = len(plan.steps)
    return {t: (first.get(t, ORPHAN_SCOPE), last.get(t, ORPHAN_SCOPE)) for t in plan.sizes}


def live_per_step(plan: Schedule) -> list[tuple[int, tuple[int, ...]]]:
    """For each step: (aligned bytes alive, including its scratch; the tensors alive)."""
    spans = lifetimes(plan)
    result = []
    for scope, step in enumerate(plan.steps, start=1):
        alive = tuple(t for t, (a, b) in spans.items() if a <= scope <= b)
        scratch = sum(align_up(s, ARENA_ALIGNMENT) for s in step.scratch)
        result.append((sum(plan.sizes[t] for t in alive) + scratch, alive))
    return result


def peak(plan: Schedule) -> tuple[int, int]:
    """(live bytes, step index) of the first step with the most live bytes."""
    live = [size for size, _ in live_per_step(plan)]
    best = max(range(len(live)), key=live.__getitem__, default=-1)
    return (live[best] if live else 0), best


def orphan_bytes(plan: Schedule) -> int:
    """Planned bytes of tensors that no step reads or writes and that are no graph I/O."""
    return sum(plan.sizes[t] for t, span in lifetimes(plan).items() if span[0] == ORPHAN_SCOPE)


def planned_head(plan: Schedule) -> int:
    """The arena head TFLM's GreedyMemoryPlanner computes for this schedule."""
    spans = lifetimes(plan)
    buffers = [(plan.sizes[t], *spans[t]) for t in sorted(plan.sizes)]
    for scope, step in enumerate(plan.steps, start=1):
        buffers += [(align_up(s, ARENA_ALIGNMENT), scope, scope) for s in step.scratch]
    return greedy_plan_size(buffers)


def greedy_plan_size(buffers: Sequence[tuple[int, int, int]]) -> int:
    """Size of the greedy plan of (size, first scope, last scope) buffers.

    In the order TFLM uses, each buffer goes into the first gap, in offset order, between
    buffers alive at the same time that fits it. The order: largest first; TFLM lists the
    buffers backwards before its stable sort, so of equal sizes the last added goes first.
    """
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last) by offset
    for size, first, last in sorted(reversed(buffers), key=lambda b: -b[0]):
        offset = 0
        for other_offset, other_size, other_first, other_last in placed:
            if other_first > last or first > other_last:
                continue
            if other_offset - offset >= size:
                break
            offset = max(offset, other_offset + other_size)
        keys = [p[0] for p in placed]
        placed.insert(bisect.bisect_right(keys, offset), (offset, size, first, last))
    return max((o + s for o, s, _, _ in placed), default=0)


def reduce_scratch(graph: ModelGraph, op: OpView) -> tuple[int, ...]:
    """MEAN/SUM on quantized inputs: int32 sums per output element, then index arrays for
    the input's dimensions and the reduced axes (measured: 32 B beyond the sums for a 4-D
    input reduced over two axes)."""
    source, axes = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    if source.dtype not in ("INT8", "UINT8", "INT16"):
        return ()
    outputs = math.prod(graph.shape(op.outputs[0]))
    return (4 * outputs, 4 * len(source.shape), 4 * math.prod(axes.shape))


def patch_stage_scratch(graph: ModelGraph, op: OpView) -> tuple[int, ...]:
    """TFLM_EXT_PATCH_STAGE's one request, from its own options (none when empty)."""
    stage = patch_op.decode_options(op.custom_options)
    chain = receptive_field.chain_from_stage(stage)
    if stage.execution == patch_op.Execution.STREAM:
        reader = stage.input_source == patch_op.InputSource.ROW_READER
        channels = stage.input_shape[2] if reader else 0
        scratch = streaming.stream_cost(
            chain, stage.grid[1], reader_channels=channels
        ).scratch_bytes
    else:
        scratch = receptive_field.grid_cost(chain, stage.grid).scratch_bytes
    return (scratch,) if scratch else ()


DEFAULT_SCRATCH: Mapping[str, ScratchEstimator] = {
    "MEAN": reduce_scratch,
    "SUM": reduce_scratch,
    patch_op.OP_NAME: patch_stage_scratch,
}
