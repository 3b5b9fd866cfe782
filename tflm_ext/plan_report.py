"""The patch plan for people and the measured-arena promise: the plan table, and dropping a
plan whose rewrite does not lower TFLM's measured arena.

Called by the patch component, ``tflm-pipelines patch`` and ``tflm_ext.patching`` (through
``tflm_ext.planner``, which re-exports both).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from tflm_ext.arena import ArenaMeasurement
from tflm_ext.plan_types import STREAM, PatchPlan, StagePlan

log = logging.getLogger(__name__)


def plan_table(plan: PatchPlan) -> str:
    """Markdown: the stages weighed (chosen first; measured arena where the builtin search
    measured it; each stage's mode, tiles or stream, last), then the plan's peak, bound,
    floor, simulated head, TFLM total arena where weighed, extra MACs and reason."""
    rows = [
        "| chosen | ops | grid | live peak B | measured arena B | extra MACs | mode |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for chosen, stage in [(True, s) for s in plan.stages] + [(False, s) for s in plan.alternatives]:
        arena = f"{stage.arena_bytes:,}" if stage.arena_bytes else "-"
        rows.append(
            f"| {'yes' if chosen else ''} | {stage.first_op}..{stage.last_op} | "
            f"{grid_text(stage)} | {stage.peak_bytes:,} | {arena} | {stage.extra_macs:,} | "
            f"{stage.execution}{' (row reader)' if stage.row_reader else ''} |"
        )
    floor = (
        f" (this split's floor, each stage on its smallest option, {plan.split_floor:,} B)"
        if plan.split_floor != plan.planned_peak
        else ""
    )
    total = f", TFLM total arena {plan.planned_arena:,} B" if plan.planned_arena else ""
    rows.append(
        f"\npeak {plan.original_peak:,} B -> analytic bound {plan.planned_peak:,} B{floor}, "
        f"simulated head {plan.planned_head:,} B{total}, extra MACs {plan.extra_macs:,}; "
        f"{plan.reason}"
    )
    return "\n".join(rows)


def grid_text(stage: StagePlan) -> str:
    """The grid as the plan table shows it: "8x8" tiles, or streaming "whole" (one strip)
    or "4 strips"."""
    if stage.execution == STREAM:
        return "whole" if stage.grid[1] == 1 else f"{stage.grid[1]} strips"
    return f"{stage.grid[0]}x{stage.grid[1]}"


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
        planned_arena=0,
    )
