"""The patch planner's search state and stage options: what each stage costs in each execution.

Used by ``tflm_ext.planner`` (the search over these options). A stage option is a stage
(operators first..last) on one execution and grid (tiles n x n; streaming (1, strips),
possibly from the row reader), with its cost (``stage_rules.stage_cost``) and its step's
live bytes: the working set plus the tensors alive across it. ``fused`` is the model's
schedule with chosen options fused, as TFLM will plan it; ``peak_with`` its live peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tflm_ext import memory_profile as mp
from tflm_ext import receptive_field as rf
from tflm_ext import stage_rules, streaming
from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import ARENA_ALIGNMENT, align_up
from tflm_ext.model_graph import ModelGraph
from tflm_ext.plan_types import STREAM, TILES, PlannerSpec


@dataclass(frozen=True)
class Option:
    """A stage on one execution and grid (and whether it reads rows from the row reader),
    and its step's live bytes (working set + tensors across it)."""

    first: int
    last: int
    grid: tuple[int, int]
    cost: stage_rules.StageCost
    step_bytes: int
    execution: str = TILES
    row_reader: bool = False


@dataclass
class Search:
    """The model as the search sees it, and caches of what it has computed."""

    graph: ModelGraph
    base: mp.Schedule
    live: list[int]
    spans: dict[int, tuple[int, int]]
    problems: list[str | None]
    spec: PlannerSpec
    budget: int
    ends: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    options: dict[tuple[int, int], list[Option]] = field(default_factory=dict)


def valid_ends(search: Search, first: int, execution: str | None = None) -> list[int]:
    """Valid last operators of a stage from ``first`` in one execution, or in any."""
    if execution is None:
        return sorted(
            {last for e in search.spec.executions for last in valid_ends(search, first, e)}
        )
    if (first, execution) not in search.ends:
        found = stage_rules.stage_ends(search.graph, search.problems, first, execution)[0]
        search.ends[(first, execution)] = found
    return search.ends[(first, execution)]


def cheapest(search: Search, first: int, last: int, limit: int, budget: int) -> Option | None:
    """The stage's cheapest grid whose step fits ``limit`` and whose MACs fit ``budget``."""
    if floor_bytes(search, first, last) > limit:
        return None  # even without scratch the step is too big: skip the tiling work
    fitting = [
        o
        for o in stage_options(search, first, last)
        if o.step_bytes <= limit and o.cost.extra_macs <= budget
    ]
    return min(fitting, key=lambda o: (o.cost.extra_macs, o.step_bytes), default=None)


def stage_options(search: Search, first: int, last: int) -> list[Option]:
    """The stage on every grid of the spec, in every execution it may use (cached)."""
    if (first, last) not in search.options:
        chain = stage_rules.stage_chain(search.graph, first, last)
        found, executions = [], search.spec.executions
        if TILES in executions and last in valid_ends(search, first, TILES):
            grids = rf.square_grids(chain, search.spec.grids)
            found += [make_option(search, first, last, g, chain) for g in grids]
        if STREAM in executions and last in valid_ends(search, first, STREAM):
            found += stream_options(search, first, last, chain)
        search.options[(first, last)] = found
    return search.options[(first, last)]


def stream_options(search: Search, first: int, last: int, chain: tuple) -> list[Option]:
    """The stage streamed over each strip count it can run (a strip must read every
    intermediate tensor), and on each of them from the row reader too where the spec and
    the stage allow (each strip reads the image's rows again: the rings narrow while the
    image stays out of the arena)."""
    sources = [(False, streaming.ring_rows(chain))]
    if search.spec.row_reader and stage_rules.can_read_rows(search.graph, first, last):
        sources.append((True, streaming.ring_rows(chain, reader=True)))
    options = []
    for strips in streaming.strip_counts(chain, search.spec.strips):
        for reader, heights in sources:
            try:
                options.append(
                    make_option(search, first, last, (1, strips), chain, STREAM, heights, reader)
                )
            except TflmExtError:
                break  # the strips do not fit this stage, from either source
    return options


def make_option(
    search: Search,
    first: int,
    last: int,
    grid: tuple[int, int],
    chain: tuple,
    execution: str = TILES,
    heights: tuple[int, ...] | None = None,
    row_reader: bool = False,
) -> Option:
    graph = search.graph
    cost = stage_rules.stage_cost(graph, first, last, grid, chain, execution, heights, row_reader)
    step = cost.working_set_bytes + across_bytes(search, first, last)
    return Option(first, last, grid, cost, step, execution, row_reader)


def floor_bytes(search: Search, first: int, last: int) -> int:
    """The step's bytes with no scratch at all: stage input (one row when the row reader
    may deliver it) + output + tensors across."""
    graph = search.graph
    source, target = graph.activation_inputs(first)[0], graph.ops[last].outputs[0]
    source_bytes = search.base.sizes.get(source, 0)
    if search.spec.row_reader and stage_rules.can_read_rows(graph, first, last):
        source_bytes = align_up(stage_rules.reader_input_bytes(graph, source), ARENA_ALIGNMENT)
    return source_bytes + search.base.sizes.get(target, 0) + across_bytes(search, first, last)


def across_bytes(search: Search, first: int, last: int) -> int:
    """Bytes of planned tensors alive before the stage and read after it (not its input),
    which stay alive during the fused step. Operator i runs in TFLM's scope i + 1."""
    source = search.graph.activation_inputs(first)[0]
    spans = search.spans
    return sum(
        size
        for t, size in search.base.sizes.items()
        if t != source and spans[t][0] <= first and spans[t][1] >= last + 2
    )


def fused(search: Search, chosen: tuple[Option, ...]) -> mp.Schedule:
    """The schedule with each stage fused into one step (last first, so earlier indices
    stay valid), the stage's one scratch request on it."""
    fused = search.base
    for option in sorted(chosen, key=lambda o: -o.first):
        step = mp.Step(
            (option.cost.input_tensor,),
            (option.cost.output_tensor,),
            (option.cost.scratch_bytes,),
        )
        fused = fused.replaced(option.first, option.last, step)
        if option.row_reader:  # the model input shrinks to one row
            source = option.cost.input_tensor
            row = stage_rules.reader_input_bytes(search.graph, source)
            fused = replace(fused, sizes={**fused.sizes, source: align_up(row, ARENA_ALIGNMENT)})
    return fused


def peak_with(search: Search, chosen: tuple[Option, ...]) -> int:
    """Live peak with the stages fused: uncovered operators as they were, stage steps."""
    covered = {op for o in chosen for op in range(o.first, o.last + 1)}
    rest = [size for op, size in enumerate(search.live) if op not in covered]
    return max([*rest, *(o.step_bytes for o in chosen)], default=0)


def smallest(search: Search, option: Option) -> Option:
    first, last = option.first, option.last
    candidates = [o for o in stage_options(search, first, last) if o.execution == STREAM]
    if TILES in search.spec.executions and last in valid_ends(search, first, TILES):
        chain = stage_rules.stage_chain(search.graph, first, last)
        whole = rf.full_region(chain)
        candidates.append(
            make_option(search, first, last, (len(whole.rows), len(whole.cols)), chain)
        )
    return min(candidates, key=lambda o: o.step_bytes, default=option)
