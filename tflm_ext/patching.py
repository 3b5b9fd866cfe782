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

from tflm_ext.builtin_planner import plan_builtin
from tflm_ext.errors import TflmExtError
from tflm_ext.planner import STREAM, TILES, PatchPlan, PlannerSpec, keep_if_smaller, plan
from tflm_ext.rewrite import VerifyReport, rewrite_stage, verify

log = logging.getLogger(__name__)

Mode = Literal["custom", "stream", "builtin"]
MODES = ("custom", "stream", "builtin")


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

    Custom mode plans with the memory model of the custom op (``planner.plan``), each stage
    on the spec's executions (by default tiles or streaming, whichever lowers the arena
    more within the MAC budget). Stream mode streams every stage on one strip: nothing is
    recomputed. Builtin mode measures its candidate splits instead
    (``builtin_planner.plan_builtin``): each tile's operators cost persistent arena the
    custom op's model does not see.

    Raises NothingPatchableError when the model has nothing patchable and TflmExtError
    when a rewrite is not bit-exact; returns an outcome without a model when patching
    would not lower the measured arena.
    """
    if mode not in MODES:
        raise TflmExtError(f"patch mode {mode!r} is not one of {MODES}")
    if mode == "builtin":
        choice = plan_builtin(model_bytes, replace(spec, executions=(TILES,)))
        chosen, rewritten = choice.plan, choice.model_bytes
    else:
        chosen = plan(model_bytes, stage_spec(spec, mode))
        rewritten = rewrite_all(model_bytes, chosen) if chosen.stages else None
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
