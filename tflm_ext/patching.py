"""Patch a model end to end: plan, rewrite every stage, verify bit-exact, keep only a gain.

The one driver both the ``patch`` component and ``tflm-pipelines patch`` call, so the rule
"never return a model that is not verified identical and measurably smaller" lives in one
place: a mismatch raises with the first differing output, and a rewrite whose measured
arena is not smaller is dropped with the reason (``PatchOutcome.model_bytes`` is None).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from tflm_ext.errors import TflmExtError
from tflm_ext.planner import PatchPlan, PlannerSpec, keep_if_smaller, plan
from tflm_ext.rewrite import VerifyReport, rewrite_stage, verify

log = logging.getLogger(__name__)

Mode = Literal["custom", "builtin"]


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

    In builtin mode a plan that does not shrink the arena is retried with one stage on
    coarse grids: the planner models the custom op, and every tile the builtin split adds
    costs persistent arena it does not see, so fine grids can lose what the head gains.

    Raises NothingPatchableError when the model has nothing patchable and TflmExtError
    when a rewrite is not bit-exact; returns an outcome without a model when patching
    would not lower the measured arena.
    """
    outcome = _attempt(model_bytes, spec, mode, inputs, seed)
    coarse = replace(spec, grids=tuple(g for g in spec.grids if g <= 3) or (2,), max_stages=1)
    if mode == "builtin" and not outcome.applied and coarse != spec:
        log.info("builtin split did not shrink the arena; retrying with %s", coarse)
        retry = _attempt(model_bytes, coarse, mode, inputs, seed)
        outcome = retry if retry.applied else outcome
    return outcome


def _attempt(model_bytes: bytes, spec: PlannerSpec, mode: Mode, inputs, seed: int):
    chosen = plan(model_bytes, spec)
    if not chosen.stages:
        log.info("not patched: %s", chosen.reason)
        return PatchOutcome(plan=chosen, mode=mode)
    rewritten = model_bytes
    for stage in sorted(chosen.stages, key=lambda s: s.first_op, reverse=True):
        rewritten = _rewrite(rewritten, stage.first_op, stage.last_op, stage.grid, mode)
    report = verify(model_bytes, rewritten, inputs, seed=seed)
    if not report.identical:
        raise TflmExtError(f"the patched model differs from the original: {report.first_mismatch}")
    kept = keep_if_smaller(chosen, report.arena_before, report.arena_after)
    return PatchOutcome(
        plan=kept, mode=mode, report=report, model_bytes=rewritten if kept.stages else None
    )


def _rewrite(model_bytes: bytes, first: int, last: int, grid: tuple[int, int], mode: Mode):
    if mode == "custom":
        return rewrite_stage(model_bytes, first, last, grid)
    return rewrite_stage(model_bytes, first, last, grid, mode=mode)
