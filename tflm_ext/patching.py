"""Patch a model end to end: plan, rewrite every stage, verify bit-exact, keep only a gain.

The one driver both the ``patch`` component and ``tflm-pipelines patch`` call, so the rule
"never return a model that is not verified identical and measurably smaller" lives in one
place: a mismatch raises with the first differing output, and a rewrite whose measured
arena is not smaller is dropped with the reason (``PatchOutcome.model_bytes`` is None).

The custom-op modes keep, of the few plans of smallest simulated head the planner weighed
(``planner.ranked_plans``), the one whose rewrite TFLM plans in the smallest total arena:
head (simulated exactly) plus tail (TFLM's persistent structures: per-operator nodes and
kernel data, per-tensor records), which falls as stages absorb operators and which no
model of the head sees. The firmware reserves the total, so that is what the choice
minimises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from tflm_ext.arena import recorded_totals
from tflm_ext.builtin_planner import plan_builtin
from tflm_ext.errors import TflmExtError
from tflm_ext.isolation import run_isolated
from tflm_ext.planner import (
    STREAM,
    TILES,
    PatchPlan,
    PlannerSpec,
    keep_if_smaller,
    ranked_plans,
)
from tflm_ext.rewrite import VerifyReport, rewrite_stage, verify

log = logging.getLogger(__name__)

Mode = Literal["custom", "stream", "builtin"]
MODES = ("custom", "stream", "builtin")
TOTAL_CHECKS = 4  # plans of smallest simulated head whose TFLM total arena is weighed


@dataclass(frozen=True)
class PatchOutcome:
    """The plan as kept, the verification of the rewrite, and the rewritten model if kept."""

    plan: PatchPlan
    mode: Mode
    report: VerifyReport | None = None
    model_bytes: bytes | None = None

    @property
    def applied(self) -> bool:
        return self.model_bytes is not None


def patch_model(
    model_bytes: bytes,
    spec: PlannerSpec = PlannerSpec(),  # noqa: B008 - frozen, so a shared default is safe
    *,
    mode: Mode = "custom",
    inputs: np.ndarray | int = 8,
    seed: int = 0,
) -> PatchOutcome:
    """Plan, rewrite (last stage first, so earlier op indices stay valid) and verify.

    Custom mode plans with the memory model of the custom op (``planner.ranked_plans``),
    each stage on the spec's executions (by default tiles or streaming), and keeps the plan
    of smallest TFLM total arena within the MAC budget. Stream mode streams every stage on
    one strip: nothing is recomputed. With ``spec.row_reader`` a stage streaming from
    operator 0 may read the image through the application's row reader (both custom-op
    modes; verification feeds it whole images); in custom mode on column strips too, each
    strip reading the rows again, while stream mode reads each row once. Builtin mode
    measures its candidate splits instead (``builtin_planner.plan_builtin``): each tile's
    operators cost persistent arena the custom op's model does not see.

    Raises NothingPatchableError when the model has nothing patchable and TflmExtError
    when a rewrite is not bit-exact or builtin mode is asked for the row reader; returns an
    outcome without a model when patching would not lower the measured arena.
    """
    if mode not in MODES:
        raise TflmExtError(f"patch mode {mode!r} is not one of {MODES}")
    if mode == "builtin" and spec.row_reader:
        raise TflmExtError("the row reader runs in the custom op: use mode custom or stream")
    chosen, rewritten = choose(model_bytes, spec, mode)
    if rewritten is None:
        log.info("not patched: %s", chosen.reason)
        return PatchOutcome(plan=chosen, mode=mode)
    report = verify(model_bytes, rewritten, inputs, seed=seed)
    if not report.identical:
        raise TflmExtError(f"the patched model differs from the original: {report.first_mismatch}")
    kept = keep_if_smaller(chosen, report.arena_before, report.arena_after)
    return PatchOutcome(
        plan=kept, mode=mode, report=report, model_bytes=rewritten if kept.stages else None
    )


def choose(model_bytes: bytes, spec: PlannerSpec, mode: str) -> tuple[PatchPlan, bytes | None]:
    """The plan a mode keeps and the model rewritten by it (None when the plan has no
    stage), not yet verified: the builtin search's measured choice, or of the custom-op
    plans of smallest simulated head the one of smallest TFLM total arena (then fewer
    extra MACs)."""
    if mode == "builtin":
        choice = plan_builtin(model_bytes, replace(spec, executions=(TILES,)))
        return choice.plan, choice.model_bytes
    candidates = ranked_plans(model_bytes, stage_spec(spec, mode), TOTAL_CHECKS)
    if not candidates[0].stages:
        return candidates[0], None
    rewritten = [rewrite_all(model_bytes, candidate) for candidate in candidates]
    if len(candidates) == 1:
        return candidates[0], rewritten[0]
    totals = run_isolated(recorded_totals, rewritten)
    best = min(range(len(candidates)), key=lambda i: (totals[i], candidates[i].extra_macs))
    chosen = candidates[best]
    reason = (
        f"{chosen.reason}; TFLM total arena {totals[best]} B, the smallest of the "
        f"{len(candidates)} plans of smallest head ({', '.join(map(str, sorted(totals)))} B)"
    )
    log.info(reason)
    return replace(chosen, planned_arena=totals[best], reason=reason), rewritten[best]


def stage_spec(spec: PlannerSpec, mode: str) -> PlannerSpec:
    """The planner spec a custom-op mode plans with: "stream" streams whole stages only;
    any other mode plans with ``spec`` as it is."""
    return replace(spec, executions=(STREAM,), strips=(1,)) if mode == "stream" else spec


def rewrite_all(model_bytes: bytes, chosen: PatchPlan) -> bytes:
    """Fuse every planned stage in its own execution, last first so that the earlier
    stages' operator indices stay valid."""
    rewritten = model_bytes
    for stage in sorted(chosen.stages, key=lambda s: s.first_op, reverse=True):
        rewritten = rewrite_stage(
            rewritten, stage.first_op, stage.last_op, stage.grid, mode=stage.rewrite_mode
        )
    return rewritten
