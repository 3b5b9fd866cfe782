"""Choose the stage and grid of a builtin-only split by measuring TFLM's arena.

Called by ``patching.patch_model`` in builtin mode instead of ``planner.plan``. The custom
op's memory model does not fit the builtin split: every tile adds operators, and each costs
persistent arena (the tail) whose size depends on its kernel (a convolution's per-channel
data, a slice's parameters) and on the TFLM build, while the joined output is held twice.
Those costs are easier to measure than to model, and the candidates are few: one stage from
operator 0 to each valid end, on each square grid of the spec up to ``MAX_GRID`` within the
MAC budget. Each is rewritten and its arena read from TFLM's own allocation record (one
interpreter per candidate, all in one child process); the smallest total arena wins. Only a
leading stage is split: a second builtin split doubles another output as well, and the
candidates would multiply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tflm_ext import memory_profile as mp
from tflm_ext import receptive_field as rf
from tflm_ext import stage_rules
from tflm_ext.arena import recorded_allocations
from tflm_ext.errors import NothingPatchableError, TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.interpreter import default_arena_size, make_interpreter
from tflm_ext.isolation import run_isolated
from tflm_ext.model_graph import read_graph
from tflm_ext.planner import PatchPlan, PlannerSpec, StagePlan
from tflm_ext.rewrite import rewrite_stage

log = logging.getLogger(__name__)

MAX_GRID = 4  # beyond 4x4 tiles the added operators' tail outweighs what the head saves


@dataclass(frozen=True)
class BuiltinChoice:
    """The plan (its stage's ``arena_bytes`` is the measured total) and the rewritten model;
    ``model_bytes`` is None when no candidate has a smaller arena than the original."""

    plan: PatchPlan
    model_bytes: bytes | None


def plan_builtin(model_bytes: bytes, spec: PlannerSpec) -> BuiltinChoice:
    """Measure every candidate split and keep the one with the smallest total arena.

    Raises NothingPatchableError when no stage can start at operator 0.
    """
    graph = read_graph(model_bytes)
    problems = stage_rules.operator_problems(model_bytes, graph)
    ends, why = stage_rules.stage_ends(graph, problems, 0, stage_rules.BUILTIN)
    if not ends:
        raise NothingPatchableError(f"model has nothing patchable: {why}")
    budget = int(spec.max_extra_mac_fraction * graph_stats(model_bytes).total_macs)
    candidates = [
        (last, grid, cost.extra_macs)
        for last in ends
        for grid, cost in _grid_costs(graph, last, spec)
        if cost.extra_macs <= budget
    ]
    rewritten = [
        rewrite_stage(model_bytes, 0, last, grid, mode="builtin") for last, grid, _ in candidates
    ]
    totals = run_isolated(recorded_totals, [model_bytes, *rewritten])
    original_total = totals[0]
    if original_total is None:
        raise TflmExtError("the original model does not build on TFLM's interpreter")
    measured = sorted(
        (
            _measured(last, grid, extra, model, total)
            for (last, grid, extra), model, total in zip(
                candidates, rewritten, totals[1:], strict=True
            )
            if total is not None
        ),
        key=lambda m: (m[0].arena_bytes, m[0].extra_macs),
    )
    stages = [stage for stage, _, _ in measured]
    original = mp.schedule(graph)
    original_peak = max(size for size, _ in mp.live_per_step(original))
    original_head = mp.planned_head(original)
    if not stages or stages[0].arena_bytes >= original_total:
        best = f"; the best, {stages[0].arena_bytes} B" if stages else ""
        reason = (
            f"model kept as it is: none of {len(candidates)} builtin splits within the budget of "
            f"{budget} extra MACs measured below the original's {original_total} B of arena{best}"
        )
        plan = PatchPlan((), original_peak, original_peak, original_peak, 0, tuple(stages[:8]),
                         reason, original_head, original_head)  # fmt: skip
        return BuiltinChoice(plan, None)
    chosen, model, head = measured[0]
    reason = (
        f"builtin split of operators 0..{chosen.last_op} on {chosen.grid[0]}x{chosen.grid[1]} "
        f"tiles: {chosen.arena_bytes} B of arena against the original's {original_total} B, "
        f"the smallest of {len(stages)} splits measured, for {chosen.extra_macs} extra MACs "
        f"(budget {budget})"
    )
    log.info(reason)
    plan = PatchPlan((chosen,), original_peak, chosen.peak_bytes, chosen.peak_bytes,
                     chosen.extra_macs, tuple(stages[1:9]), reason,
                     original_head, head)  # fmt: skip
    return BuiltinChoice(plan, model)


def recorded_totals(models: list[bytes]) -> list[int | None]:
    """TFLM's recorded total arena of each model (None where the interpreter refuses it).
    Runs in a child process: TFLM aborts on some models."""
    totals = []
    for model in models:
        try:
            interpreter = make_interpreter(model, default_arena_size(model))
            totals.append(recorded_allocations(interpreter)["total"])
        except TflmExtError as error:
            log.warning("a builtin split does not build: %s", error)
            totals.append(None)
    return totals


def _grid_costs(graph, last: int, spec: PlannerSpec) -> list[tuple[tuple[int, int], rf.GridCost]]:
    chain = stage_rules.stage_chain(graph, 0, last)
    grids = rf.square_grids(chain, [n for n in spec.grids if n <= MAX_GRID])
    return [(grid, rf.grid_cost(chain, grid)) for grid in grids]


def _measured(
    last: int, grid: tuple[int, int], extra_macs: int, model: bytes, total: int
) -> tuple[StagePlan, bytes, int]:
    """A measured candidate: its stage plan, the rewritten model and its simulated head."""
    profile = mp.profile(model, measure=False)
    stage = StagePlan(0, last, grid, profile.peak_bytes, extra_macs, profile.peak_bytes, total)
    return stage, model, profile.planned_head
