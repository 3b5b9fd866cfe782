"""Choose the patch stages of an int8 model: which operators run tile by tile, on which grid.

Called by the patch component before ``tflm_ext.rewrite.rewrite_stage``, which fuses each
chosen stage into one TFLM_EXT_PATCH_STAGE operator; the component then measures both models
and calls ``keep_if_smaller``, so a plan that does not lower the measured arena is dropped.

The memory model (``memory_profile``): an operator outside any stage keeps the live bytes it
had; a fused stage's step holds its working set (``stage_rules``: input + output + scratch)
plus whatever else is alive across it (a skip tensor from before it). The live peak of a plan
is the largest of these. The search is exact over that model:
- For a peak limit P, a dynamic programme over operators finds the cheapest set of at most
  ``max_stages`` disjoint stages (each on its cheapest grid whose step fits P) covering every
  operator above P; stages covering nothing above P are never needed.
- Binary search finds the smallest P coverable within the extra MAC budget. TFLM's greedy
  planner can fragment, so the plans at that P and at the next few larger limits are each
  simulated as TFLM plans them; the smallest arena head wins (then fewer extra MACs, then live
  peak: MACs that do not lower the head buy nothing), provided it is below the model's own.
Stages may start anywhere; the model is refused ("nothing patchable") only when no valid
stage can start at operator 0, which is where MCUNetV2's per-patch stage sits.

The analytic bound of a plan is its live peak (``planned_peak``): the larger of each stage's
working set on its grid (plus tensors alive across it) and the peak of the rest of the
network. TFLM's measured head can only exceed it through fragmentation. The floor of a split
(``split_floor``) is the same peak with every chosen stage at the finest grid, one output
pixel per tile: what no grid of those stages can beat.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace

from tflm_ext import memory_profile as mp
from tflm_ext import receptive_field as rf
from tflm_ext import stage_rules
from tflm_ext.arena import ArenaMeasurement
from tflm_ext.errors import NothingPatchableError, TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.model_graph import ModelGraph, read_graph

log = logging.getLogger(__name__)

_ALTERNATIVES = 8  # leading stages reported besides the chosen one
# Finer grids only win when the MAC budget pays for their overlaps; trying them is cheap.
DEFAULT_GRIDS = (2, 3, 4, 5, 6, 8, 12, 16)
_HEAD_CHECKS = 16  # peak limits tried when TFLM's greedy plan does not shrink


@dataclass(frozen=True)
class PlannerSpec:
    """Extra MACs allowed for recomputed overlaps, as a fraction of the model's MACs; the
    square grids (n x n, clipped to the stage output) to try; the most stages to fuse."""

    max_extra_mac_fraction: float = 0.2
    grids: tuple[int, ...] = DEFAULT_GRIDS
    max_stages: int = 3

    def __post_init__(self) -> None:
        if self.max_extra_mac_fraction < 0:
            raise TflmExtError(f"max_extra_mac_fraction {self.max_extra_mac_fraction} < 0")
        if not self.grids or min(self.grids) < 2:
            raise TflmExtError(f"grids {self.grids} must be non-empty and each at least 2")
        if self.max_stages < 1:
            raise TflmExtError(f"max_stages {self.max_stages} must be at least 1")


@dataclass(frozen=True)
class StagePlan:
    """Operators first..last fused and tiled over grid (rows, cols); the whole graph's live
    peak once this stage and the ones before it are fused; the stage's extra MACs and
    working set (custom op: input + output + scratch; builtin split: the rewritten model's
    live peak); the rewritten model's measured total arena where one was measured (the
    builtin search measures every candidate), else 0."""

    first_op: int
    last_op: int
    grid: tuple[int, int]
    peak_bytes: int
    extra_macs: int
    working_set_bytes: int
    arena_bytes: int = 0


@dataclass(frozen=True)
class PatchPlan:
    """The stages to fuse, in operator order (empty: keep the model as it is, ``reason``
    says why); live peaks before and after (after: the plan's analytic bound); the split's
    floor (finest grids); its extra MACs; other leading stages considered (each alone);
    TFLM's arena head, simulated, before and after. Fuse the stages last first, so the
    operator indices of the others stay valid."""

    stages: tuple[StagePlan, ...]
    original_peak: int
    planned_peak: int
    split_floor: int
    extra_macs: int
    alternatives: tuple[StagePlan, ...]
    reason: str
    original_head: int = 0
    planned_head: int = 0


@dataclass(frozen=True)
class _Option:
    """A stage on one grid, and its step's live bytes (working set + tensors across it)."""

    first: int
    last: int
    grid: tuple[int, int]
    cost: stage_rules.StageCost
    step_bytes: int


@dataclass
class _Search:
    """The model as the search sees it, and caches of what it has computed."""

    graph: ModelGraph
    base: mp.Schedule
    live: list[int]
    spans: dict[int, tuple[int, int]]
    problems: list[str | None]
    spec: PlannerSpec
    budget: int
    ends: dict[int, list[int]] = field(default_factory=dict)
    options: dict[tuple[int, int], list[_Option]] = field(default_factory=dict)


def plan(model_bytes: bytes, spec: PlannerSpec) -> PatchPlan:
    """Choose stages and grids that lower the model's peak most within the MAC budget.

    Raises TflmExtError when no stage can start at operator 0 ("nothing patchable").
    """
    graph = read_graph(model_bytes)
    base = mp.schedule(graph)
    search = _Search(
        graph,
        base,
        [size for size, _ in mp.live_per_step(base)],
        mp.lifetimes(base),
        stage_rules.operator_problems(model_bytes, graph),
        spec,
        int(spec.max_extra_mac_fraction * graph_stats(model_bytes).total_macs),
    )
    leading, why = stage_rules.stage_ends(graph, search.problems, 0)
    if not leading:
        raise NothingPatchableError(f"model has nothing patchable: {why}")
    chosen, why_not = _best_plan(search)
    return _result(search, chosen, why_not)


def supported_ops_table() -> str:
    """Markdown of every rule an operator and a stage must pass (their docstrings)."""
    return stage_rules.supported_ops_table()


def _best_plan(search: _Search) -> tuple[tuple[_Option, ...], str]:
    """Of the plans at the lowest coverable live peak and the next few limits above it,
    the one whose simulated TFLM plan (the arena head) is smallest, if below the model's."""
    original_peak, original_head = max(search.live), mp.planned_head(search.base)
    if _cover(search, original_peak - 1, search.budget) is None:
        return (), _why_uncoverable(search, original_peak)
    low, high = 0, original_peak - 1
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if _cover(search, middle, search.budget) else (middle + 1, high)
    limits = sorted({o.step_bytes for opts in search.options.values() for o in opts} | {low})
    plans = {}
    for limit in [p for p in limits if low <= p < original_peak][:_HEAD_CHECKS]:
        chosen = _cover(search, limit, search.budget)
        if chosen and chosen not in plans:
            plans[chosen] = (mp.planned_head(_fused(search, chosen)), _peak_with(search, chosen))
    best = min(plans, key=lambda c: (plans[c][0], sum(o.cost.extra_macs for o in c), plans[c][1]))
    if plans[best][0] < original_head:
        return best, ""
    return (), (
        f"stages lower the live peak to {low} B, but TFLM's greedy plan of the fused model "
        f"stays at {plans[best][0]} B or more (fragmentation), not below {original_head} B"
    )


def _cover(search: _Search, limit: int, budget: int) -> tuple[_Option, ...] | None:
    """Cheapest (fewest extra MACs) disjoint stages, at most max_stages, whose steps fit
    ``limit`` and that cover every operator whose live bytes exceed it; None if none do."""
    count = len(search.live)
    hot = [size > limit for size in search.live]
    hot_before = list(itertools.accumulate(hot, initial=0))
    best: list[dict[int, tuple[int, tuple[_Option, ...]]]] = [{} for _ in range(count + 1)]
    best[0][0] = (0, ())
    for first in range(count):
        for stages, (macs, chosen) in list(best[first].items()):
            if not hot[first]:
                _keep_cheaper(best[first + 1], stages, macs, chosen)
            if stages == search.spec.max_stages:
                continue
            for last in _ends(search, first):
                if hot_before[last + 1] == hot_before[first]:
                    continue  # covers nothing above the limit
                option = _cheapest(search, first, last, limit, budget - macs)
                if option is not None:
                    total = macs + option.cost.extra_macs
                    _keep_cheaper(best[last + 1], stages + 1, total, (*chosen, option))
    finals = best[count].values()
    return min(finals, key=lambda f: (f[0], len(f[1])))[1] if finals else None


def _keep_cheaper(
    slot: dict[int, tuple[int, tuple[_Option, ...]]],
    stages: int,
    macs: int,
    chosen: tuple[_Option, ...],
) -> None:
    if stages not in slot or macs < slot[stages][0]:
        slot[stages] = (macs, chosen)


def _ends(search: _Search, first: int) -> list[int]:
    if first not in search.ends:
        search.ends[first] = stage_rules.stage_ends(search.graph, search.problems, first)[0]
    return search.ends[first]


def _cheapest(search: _Search, first: int, last: int, limit: int, budget: int) -> _Option | None:
    """The stage's cheapest grid whose step fits ``limit`` and whose MACs fit ``budget``."""
    if _floor(search, first, last) > limit:
        return None  # even without scratch the step is too big: skip the tiling work
    fitting = [
        o
        for o in _options(search, first, last)
        if o.step_bytes <= limit and o.cost.extra_macs <= budget
    ]
    return min(fitting, key=lambda o: (o.cost.extra_macs, o.step_bytes), default=None)


def _options(search: _Search, first: int, last: int) -> list[_Option]:
    """The stage on every grid of the spec (cached)."""
    if (first, last) not in search.options:
        chain = stage_rules.stage_chain(search.graph, first, last)
        grids = rf.square_grids(chain, search.spec.grids)
        search.options[(first, last)] = [_option(search, first, last, g, chain) for g in grids]
    return search.options[(first, last)]


def _option(search: _Search, first: int, last: int, grid: tuple[int, int], chain: tuple) -> _Option:
    cost = stage_rules.stage_cost(search.graph, first, last, grid, chain)
    return _Option(first, last, grid, cost, cost.working_set_bytes + _across(search, first, last))


def _floor(search: _Search, first: int, last: int) -> int:
    """The step's bytes with no scratch at all: stage input + output + tensors across."""
    graph = search.graph
    ends = (graph.activation_inputs(first)[0], graph.ops[last].outputs[0])
    return sum(search.base.sizes.get(t, 0) for t in ends) + _across(search, first, last)


def _across(search: _Search, first: int, last: int) -> int:
    """Bytes of planned tensors alive before the stage and read after it (not its input),
    which stay alive during the fused step. Operator i runs in TFLM's scope i + 1."""
    source = search.graph.activation_inputs(first)[0]
    spans = search.spans
    return sum(
        size
        for t, size in search.base.sizes.items()
        if t != source and spans[t][0] <= first and spans[t][1] >= last + 2
    )


def _fused(search: _Search, chosen: tuple[_Option, ...]) -> mp.Schedule:
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
    return fused


def _peak_with(search: _Search, chosen: tuple[_Option, ...]) -> int:
    """Live peak with the stages fused: uncovered operators as they were, stage steps."""
    covered = {op for o in chosen for op in range(o.first, o.last + 1)}
    rest = [size for op, size in enumerate(search.live) if op not in covered]
    return max([*rest, *(o.step_bytes for o in chosen)], default=0)


def _why_uncoverable(search: _Search, peak: int) -> str:
    peak_ops = [op for op, size in enumerate(search.live) if size == peak]
    if _cover(search, peak - 1, budget=10**18) is None:
        return f"no supported stage covers the peak of {peak} B at operators {peak_ops} with less"
    return (
        f"every stage that covers the peak of {peak} B at operators {peak_ops} needs more "
        f"than the budget of {search.budget} extra MACs"
    )


def _alternatives(search: _Search, chosen: tuple[_Option, ...]) -> tuple[StagePlan, ...]:
    """For each valid leading stage (operator 0 to each end) that alone lowers the peak: its
    best grid within budget, best first."""
    found = []
    for last in _ends(search, 0):
        options = [o for o in _options(search, 0, last) if o.cost.extra_macs <= search.budget]
        if options:
            best = min(options, key=lambda o: (_peak_with(search, (o,)), o.cost.extra_macs))
            peak = _peak_with(search, (best,))
            if best not in chosen and peak < max(search.live):
                found.append(_stage_plan(best, peak))
    return tuple(sorted(found, key=lambda s: (s.peak_bytes, s.extra_macs))[:_ALTERNATIVES])


def _split_floor(search: _Search, chosen: tuple[_Option, ...]) -> int:
    """Peak with every chosen stage at its finest grid (one output pixel per tile)."""
    finest = []
    for option in chosen:
        chain = stage_rules.stage_chain(search.graph, option.first, option.last)
        whole = rf.full_region(chain)
        grid = (len(whole.rows), len(whole.cols))
        finest.append(_option(search, option.first, option.last, grid, chain))
    return _peak_with(search, tuple(finest))


def _stage_plan(option: _Option, peak: int) -> StagePlan:
    return StagePlan(
        option.first,
        option.last,
        option.grid,
        peak,
        option.cost.extra_macs,
        option.cost.working_set_bytes,
    )


def _result(search: _Search, chosen: tuple[_Option, ...], why_not: str) -> PatchPlan:
    original_peak, original_head = max(search.live), mp.planned_head(search.base)
    alternatives = _alternatives(search, chosen)
    if not chosen:
        reason = f"model kept as it is: {why_not}"
        log.info(reason)
        return PatchPlan(
            (), original_peak, original_peak, original_peak, 0, alternatives, reason,
            original_head, original_head,
        )  # fmt: skip
    chosen = tuple(sorted(chosen, key=lambda o: o.first))
    stages = tuple(
        _stage_plan(o, _peak_with(search, chosen[: i + 1])) for i, o in enumerate(chosen)
    )
    peak, head = _peak_with(search, chosen), mp.planned_head(_fused(search, chosen))
    extra = sum(s.extra_macs for s in stages)
    reason = (
        f"{len(stages)} stage(s) lower the live peak from {original_peak} B to {peak} B "
        f"(TFLM plan {original_head} B -> {head} B) for {extra} extra MACs "
        f"(budget {search.budget})"
    )
    log.info(reason)
    return PatchPlan(
        stages, original_peak, peak, _split_floor(search, chosen), extra, alternatives, reason,
        original_head, head,
    )  # fmt: skip


def plan_table(plan: PatchPlan) -> str:
    """Markdown: the stages weighed (chosen first; measured arena where the builtin search
    measured it), then the plan's peak, bound, floor, extra MACs and reason."""
    rows = [
        "| chosen | ops | grid | live peak B | measured arena B | extra MACs |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for chosen, stage in [(True, s) for s in plan.stages] + [(False, s) for s in plan.alternatives]:
        grid = f"{stage.grid[0]}x{stage.grid[1]}"
        arena = f"{stage.arena_bytes:,}" if stage.arena_bytes else "-"
        rows.append(
            f"| {'yes' if chosen else ''} | {stage.first_op}..{stage.last_op} | {grid} | "
            f"{stage.peak_bytes:,} | {arena} | {stage.extra_macs:,} |"
        )
    floor = (
        f" (this split's floor on 1-pixel tiles {plan.split_floor:,} B)"
        if plan.split_floor != plan.planned_peak
        else ""
    )
    rows.append(
        f"\npeak {plan.original_peak:,} B -> analytic bound {plan.planned_peak:,} B{floor}, "
        f"extra MACs {plan.extra_macs:,}; {plan.reason}"
    )
    return "\n".join(rows)


def keep_if_smaller(
    patch_plan: PatchPlan, original: ArenaMeasurement, patched: ArenaMeasurement
) -> PatchPlan:
    """The plan if the rewritten model's measured arena is smaller, else an empty plan
    saying so: the planner's promise is never to make the measured arena larger."""
    if not patch_plan.stages or patched.bisected_min < original.bisected_min:
        return patch_plan
    reason = (
        f"model kept as it is: the patched model needs {patched.bisected_min} B of arena, "
        f"not less than the original's {original.bisected_min} B"
    )
    log.warning(reason)
    return replace(
        patch_plan,
        stages=(),
        planned_peak=patch_plan.original_peak,
        extra_macs=0,
        reason=reason,
        planned_head=patch_plan.original_head,
    )
