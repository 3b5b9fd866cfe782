"""Choose the patch stages of an int8 model: which operators run tile by tile or streamed row
by row, on which grid.

Called by ``tflm_ext.patching`` (for the patch component and ``tflm-pipelines patch``)
before ``tflm_ext.rewrite.rewrite_stage``, which fuses each chosen stage into one
TFLM_EXT_PATCH_STAGE operator; then both models are measured and ``keep_if_smaller``
(``plan_report``) drops a plan that does not lower the measured arena. The spec and plan
types live in ``plan_types``, what each stage option costs in ``plan_options``; this module
re-exports what callers use.

The memory model (``memory_profile``): an operator outside any stage keeps the live bytes it
had; a fused stage's step holds its working set (``stage_rules``: input + output + scratch)
plus whatever else is alive across it (a skip tensor from before it). The live peak of a plan
is the largest of these. Each stage runs in one of the spec's executions: tiles on a grid
(scratch: tile windows; extra MACs: recomputed halos) or streaming rows in column strips
(scratch: ring buffers and pool sums; extra MACs: 0 on one strip, the strips' overlap
otherwise); a stage option is an execution with its grid. The search is exact over that
model:
- For a peak limit P, a dynamic programme over operators finds the cheapest set of at most
  ``max_stages`` disjoint stages (each on its cheapest option whose step fits P) covering
  every operator above P; stages covering nothing above P are never needed.
- Binary search finds the smallest P coverable within the extra MAC budget. TFLM's greedy
  planner can fragment, so the plans at that P and at the next few larger limits are each
  simulated as TFLM plans them, and then the plans at every further limit below the smallest
  head found so far (a plan's head is never below its live peak, so no larger limit can
  win; the cheapest plan at a limit may fragment where a dearer one at a nearby limit does
  not); the smallest arena head wins (then fewer extra MACs, then live peak: MACs that do
  not lower the head buy nothing), provided it is below the model's own.
  ``ranked_plans`` gives the runners-up too, in that order, so that ``tflm_ext.patching``
  can keep the one whose TFLM total arena (head + the tail no model here sees) is smallest.
- With stage slots left over, stretches no stage covers are fused too, as streamed stages
  on one strip (no extra MAC), when that raises neither the live peak nor the simulated
  head: each fused operator's TFLM persistent data (node, op data, per-channel
  requantization arrays) leaves the arena's tail, which no model of the head sees. The
  longest such stage in the earliest stretch goes first.
Stages may start anywhere; the model is refused ("nothing patchable") only when no valid
stage can start at operator 0, which is where MCUNetV2's per-patch stage sits.

The analytic bound of a plan is its live peak (``planned_peak``): the larger of each stage's
working set on its option (plus tensors alive across it) and the peak of the rest of the
network. TFLM's measured head can only exceed it through fragmentation. The floor of a split
(``split_floor``) is the same peak with every chosen stage on its smallest option ignoring
the MAC budget (tiles: one output pixel per tile; streaming: any strip count of the spec):
what no option of those stages can beat.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace

from tflm_ext import memory_profile as mp
from tflm_ext import plan_options as po
from tflm_ext import stage_rules
from tflm_ext.errors import NothingPatchableError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.model_graph import read_graph
from tflm_ext.plan_report import grid_text, keep_if_smaller, plan_table
from tflm_ext.plan_types import (
    DEFAULT_GRIDS,
    DEFAULT_STRIPS,
    STREAM,
    TILES,
    PatchPlan,
    PlannerSpec,
    StagePlan,
)

log = logging.getLogger(__name__)

_ALTERNATIVES = 8  # leading stages reported besides the chosen one
_HEAD_CHECKS = 16  # peak limits tried when TFLM's greedy plan does not shrink
_MORE_HEAD_CHECKS = 256  # further limits tried while they stay below the best head found
__all__ = [
    "DEFAULT_GRIDS",
    "DEFAULT_STRIPS",
    "STREAM",
    "TILES",
    "PatchPlan",
    "PlannerSpec",
    "StagePlan",
    "grid_text",
    "keep_if_smaller",
    "plan",
    "plan_table",
    "ranked_plans",
    "supported_ops_table",
]


def plan(model_bytes: bytes, spec: PlannerSpec) -> PatchPlan:
    """Choose stages and grids that lower TFLM's simulated arena head most within the MAC
    budget.

    Raises TflmExtError when no stage can start at operator 0 ("nothing patchable").
    """
    return ranked_plans(model_bytes, spec, 1)[0]


def ranked_plans(model_bytes: bytes, spec: PlannerSpec, count: int) -> tuple[PatchPlan, ...]:
    """Up to ``count`` of the plans the search weighed, each below the model's own head,
    best simulated head first (the first is ``plan``'s): ``tflm_ext.patching`` measures
    their TFLM tail to keep the smallest total arena, which no model of the head sees. One
    plan without stages, saying why, when none lowers the head.

    Raises TflmExtError when no stage can start at operator 0 ("nothing patchable").
    """
    graph = read_graph(model_bytes)
    base = mp.schedule(graph)
    search = po.Search(
        graph,
        base,
        [size for size, _ in mp.live_per_step(base)],
        mp.lifetimes(base),
        stage_rules.operator_problems(model_bytes, graph),
        spec,
        int(spec.max_extra_mac_fraction * graph_stats(model_bytes).total_macs),
    )
    leading, why = [], ""
    for execution in spec.executions:
        ends, why_not = stage_rules.stage_ends(graph, search.problems, 0, execution)
        leading, why = leading + ends, why or why_not
    if not leading:
        raise NothingPatchableError(f"model has nothing patchable: {why}")
    ranked, why_not = _ranked(search)
    if STREAM in spec.executions and (TILES in spec.executions or set(spec.strips) != {1}):
        ranked, why_not = _with_whole_streams(search, ranked, why_not)
    if not ranked:
        return (_result(search, (), why_not),)
    absorbed: dict[tuple[po.Option, ...], None] = {}  # distinct plans, in rank order
    for chosen in ranked:
        absorbed.setdefault(_absorb(search, chosen))
        if len(absorbed) == count:
            break
    return tuple(_result(search, chosen, "") for chosen in absorbed)


def _with_whole_streams(
    search: po.Search, ranked: list[tuple[po.Option, ...]], why_not: str
) -> tuple[list[tuple[po.Option, ...]], str]:
    """``ranked`` with the best plan of whole-width streams only: first if TFLM's simulated
    head of that is smaller (then, or if equal, cheaper) than the first's, else second: a
    plan of lower live peak can fragment more, and the search only weighs a few limits, so
    the wider choice must not lose to it."""
    narrow = replace(search, spec=replace(search.spec, executions=(STREAM,), strips=(1,)))
    narrow.ends, narrow.options = {}, {}
    streams, why_streams = _ranked(narrow)
    if not streams:
        return ranked, why_not
    if not ranked:
        return streams[:1], why_streams

    def rank(plan: tuple[po.Option, ...]) -> tuple[int, int]:
        return mp.planned_head(po.fused(search, plan)), sum(o.cost.extra_macs for o in plan)

    first, rest = ranked[0], [c for c in ranked[1:] if c != streams[0]]
    if rank(streams[0]) < rank(first):
        return [streams[0], first, *rest], ""
    return [first, *([] if streams[0] == first else [streams[0]]), *rest], ""


def supported_ops_table() -> str:
    """Markdown of every rule an operator and a stage must pass (their docstrings)."""
    return stage_rules.supported_ops_table()


def _ranked(search: po.Search) -> tuple[list[tuple[po.Option, ...]], str]:
    """The plans at the lowest coverable live peak, the next few limits above it and the
    simulated heads those reach (the cheapest plan whose live peak fits a head found may
    plan smaller: fragmentation) whose simulated TFLM plan (the arena head) is below the
    model's, smallest head first (then fewer extra MACs, then lower live peak); none, and
    why, when no plan gets below it."""
    original_peak, original_head = max(search.live), mp.planned_head(search.base)
    if _cover(search, original_peak - 1, search.budget) is None:
        return [], _why_uncoverable(search, original_peak)
    low, high = 0, original_peak - 1
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if _cover(search, middle, search.budget) else (middle + 1, high)
    limits = sorted({o.step_bytes for opts in search.options.values() for o in opts} | {low})
    limits = [p for p in limits if low <= p < original_peak]
    plans: dict[tuple[po.Option, ...], tuple[int, int]] = {}
    for limit in limits[:_HEAD_CHECKS]:
        _weigh(search, limit, plans)
    for limit in limits[_HEAD_CHECKS : _HEAD_CHECKS + _MORE_HEAD_CHECKS]:
        if not plans or limit >= min(head for head, _ in plans.values()):
            break  # a plan's head is at least its live peak: no larger limit can win
        _weigh(search, limit, plans)
    for head in sorted({head for head, _ in plans.values() if low <= head < original_peak}):
        _weigh(search, head, plans)
    ranked = sorted(
        plans, key=lambda c: (plans[c][0], sum(o.cost.extra_macs for o in c), plans[c][1])
    )
    if plans[ranked[0]][0] < original_head:
        return [c for c in ranked if plans[c][0] < original_head], ""
    return [], (
        f"stages lower the live peak to {low} B, but TFLM's greedy plan of the fused model "
        f"stays at {plans[ranked[0]][0]} B or more (fragmentation), not below {original_head} B"
    )


def _weigh(search: po.Search, limit: int, plans: dict) -> None:
    """Add the cheapest plan at ``limit`` with its simulated head and live peak."""
    chosen = _cover(search, limit, search.budget)
    if chosen and chosen not in plans:
        plans[chosen] = (mp.planned_head(po.fused(search, chosen)), po.peak_with(search, chosen))


def _absorb(search: po.Search, chosen: tuple[po.Option, ...]) -> tuple[po.Option, ...]:
    """``chosen`` plus zero-MAC streamed stages over uncovered stretches, while stage slots
    remain, each the longest whose step fits the plan's live peak and that leaves TFLM's
    simulated head where it was."""
    if STREAM not in search.spec.executions:
        return chosen
    peak, head = po.peak_with(search, chosen), mp.planned_head(po.fused(search, chosen))
    while len(chosen) < search.spec.max_stages:
        added = next(
            (
                option
                for first, stop in _gaps(search, chosen)
                for option in _fitting_streams(search, first, stop, peak)
                if mp.planned_head(po.fused(search, (*chosen, option))) <= head
            ),
            None,
        )
        if added is None:
            return chosen
        chosen = tuple(sorted((*chosen, added), key=lambda o: o.first))
    return chosen


def _gaps(search: po.Search, chosen: tuple[po.Option, ...]) -> list[tuple[int, int]]:
    """The [first, stop) operator ranges no chosen stage covers, longest first."""
    bounds = [(o.first, o.last + 1) for o in sorted(chosen, key=lambda o: o.first)]
    edges = [0, *(b for pair in bounds for b in pair), len(search.live)]
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a > 1]
    return sorted(gaps, key=lambda g: g[0] - g[1])


def _fitting_streams(search: po.Search, first: int, stop: int, peak: int):
    """For each start in [first, stop): the longest zero-MAC streamed stage inside the
    range whose step fits ``peak``, if it holds at least two operators."""
    for start in range(first, stop - 1):
        ends = [e for e in po.valid_ends(search, start, STREAM) if start < e < stop]
        for last in reversed(ends):
            if po.floor_bytes(search, start, last) > peak:
                continue
            option = next(
                (o for o in po.stage_options(search, start, last) if o.execution == STREAM),
                None,
            )
            if option is not None and option.grid == (1, 1) and option.step_bytes <= peak:
                yield option
                break


def _cover(search: po.Search, limit: int, budget: int) -> tuple[po.Option, ...] | None:
    """Cheapest (fewest extra MACs) disjoint stages, at most max_stages, whose steps fit
    ``limit`` and that cover every operator whose live bytes exceed it; None if none do."""
    count = len(search.live)
    hot = [size > limit for size in search.live]
    hot_before = list(itertools.accumulate(hot, initial=0))
    best: list[dict[int, tuple[int, tuple[po.Option, ...]]]] = [{} for _ in range(count + 1)]
    best[0][0] = (0, ())
    for first in range(count):
        for stages, (macs, chosen) in list(best[first].items()):
            if not hot[first]:
                _keep_cheaper(best[first + 1], stages, macs, chosen)
            if stages == search.spec.max_stages:
                continue
            for last in po.valid_ends(search, first):
                if hot_before[last + 1] == hot_before[first]:
                    continue  # covers nothing above the limit
                option = po.cheapest(search, first, last, limit, budget - macs)
                if option is not None:
                    total = macs + option.cost.extra_macs
                    _keep_cheaper(best[last + 1], stages + 1, total, (*chosen, option))
    finals = best[count].values()
    return min(finals, key=lambda f: (f[0], len(f[1])))[1] if finals else None


def _keep_cheaper(
    slot: dict[int, tuple[int, tuple[po.Option, ...]]],
    stages: int,
    macs: int,
    chosen: tuple[po.Option, ...],
) -> None:
    if stages not in slot or macs < slot[stages][0]:
        slot[stages] = (macs, chosen)


def _why_uncoverable(search: po.Search, peak: int) -> str:
    peak_ops = [op for op, size in enumerate(search.live) if size == peak]
    if _cover(search, peak - 1, budget=10**18) is None:
        return f"no supported stage covers the peak of {peak} B at operators {peak_ops} with less"
    return (
        f"every stage that covers the peak of {peak} B at operators {peak_ops} needs more "
        f"than the budget of {search.budget} extra MACs"
    )


def _alternatives(search: po.Search, chosen: tuple[po.Option, ...]) -> tuple[StagePlan, ...]:
    """For each valid leading stage (operator 0 to each end) that alone lowers the peak: its
    best grid within budget, best first."""
    found = []
    for last in po.valid_ends(search, 0):
        options = [
            o for o in po.stage_options(search, 0, last) if o.cost.extra_macs <= search.budget
        ]
        if options:
            best = min(options, key=lambda o: (po.peak_with(search, (o,)), o.cost.extra_macs))
            peak = po.peak_with(search, (best,))
            if best not in chosen and peak < max(search.live):
                found.append(_stage_plan(best, peak))
    return tuple(sorted(found, key=lambda s: (s.peak_bytes, s.extra_macs))[:_ALTERNATIVES])


def _split_floor(search: po.Search, chosen: tuple[po.Option, ...]) -> int:
    """Peak with every chosen stage on its smallest option, budget aside: tiles on the
    finest grid (one output pixel per tile) or streaming on any strip count of the spec."""
    return po.peak_with(search, tuple(po.smallest(search, option) for option in chosen))


def _stage_plan(option: po.Option, peak: int) -> StagePlan:
    return StagePlan(
        option.first,
        option.last,
        option.grid,
        peak,
        option.cost.extra_macs,
        option.cost.working_set_bytes,
        execution=option.execution,
        row_reader=option.row_reader,
    )


def _result(search: po.Search, chosen: tuple[po.Option, ...], why_not: str) -> PatchPlan:
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
        _stage_plan(o, po.peak_with(search, chosen[: i + 1])) for i, o in enumerate(chosen)
    )
    peak, head = po.peak_with(search, chosen), mp.planned_head(po.fused(search, chosen))
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
