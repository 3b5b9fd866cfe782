"""What the patch planner is asked and what it answers: its spec, and the plan with its stages.

Shared by ``tflm_ext.planner`` (the search), ``tflm_ext.plan_report`` (the plan table and the
measured-arena check) and ``tflm_ext.builtin_planner``; everyone else imports them from
``tflm_ext.planner``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tflm_ext import stage_rules
from tflm_ext.errors import TflmExtError

# Finer grids only win when the MAC budget pays for their overlaps; trying them is cheap.
DEFAULT_GRIDS = (2, 3, 4, 5, 6, 8, 12, 16)
DEFAULT_STRIPS = (1, 2, 3, 4, 6)  # column strips of a streamed stage (1: no recomputation)
TILES, STREAM = stage_rules.TILES, stage_rules.STREAM


@dataclass(frozen=True)
class PlannerSpec:
    """Extra MACs allowed for recomputed overlaps, as a fraction of the model's MACs; the
    square grids (n x n, clipped to the stage output) to try for tiles; the most stages to
    fuse; the executions a stage may use ("tiles", "stream"); the column strip counts to try
    for streaming (clipped to the stage output's width); whether a stage streaming from
    operator 0 may read the model's input image from the application's row reader
    (``tflm_ext.row_reader``: the image leaves the arena, the model input becomes one row,
    so the application must supply rows, once per column strip of that stage: off by
    default)."""

    max_extra_mac_fraction: float = 0.2
    grids: tuple[int, ...] = DEFAULT_GRIDS
    max_stages: int = 3
    executions: tuple[str, ...] = stage_rules.EXECUTIONS
    strips: tuple[int, ...] = DEFAULT_STRIPS
    row_reader: bool = False

    def __post_init__(self) -> None:
        if self.max_extra_mac_fraction < 0:
            raise TflmExtError(f"max_extra_mac_fraction {self.max_extra_mac_fraction} < 0")
        if not self.grids or min(self.grids) < 2:
            raise TflmExtError(f"grids {self.grids} must be non-empty and each at least 2")
        if self.max_stages < 1:
            raise TflmExtError(f"max_stages {self.max_stages} must be at least 1")
        if not self.executions or set(self.executions) - set(stage_rules.EXECUTIONS):
            raise TflmExtError(
                f"executions {self.executions} must be some of {stage_rules.EXECUTIONS}"
            )
        if not self.strips or min(self.strips) < 1:
            raise TflmExtError(f"strips {self.strips} must be non-empty and each at least 1")


@dataclass(frozen=True)
class StagePlan:
    """Operators first..last fused and run over grid (rows, cols): tiles, or with execution
    "stream" rows streamed in (1, column strips), from the application's row reader when
    ``row_reader``; the whole graph's live peak once this
    stage and the ones before it are fused; the stage's extra MACs and working set (custom
    op: input + output + scratch; builtin split: the rewritten model's live peak); the
    rewritten model's measured total arena where one was measured (the builtin search
    measures every candidate), else 0."""

    first_op: int
    last_op: int
    grid: tuple[int, int]
    peak_bytes: int
    extra_macs: int
    working_set_bytes: int
    arena_bytes: int = 0
    execution: str = TILES
    row_reader: bool = False

    @property
    def rewrite_mode(self) -> str:
        """The ``rewrite.rewrite_stage`` mode that builds this stage's operator."""
        if self.row_reader:
            return "reader"
        return "stream" if self.execution == STREAM else "custom"


@dataclass(frozen=True)
class PatchPlan:
    """The stages to fuse, in operator order (empty: keep the model as it is, ``reason``
    says why); live peaks before and after (after: the plan's analytic bound); the split's
    floor (finest grids); its extra MACs; other leading stages considered (each alone);
    TFLM's arena head, simulated, before and after; TFLM's total arena (head + tail) of
    the rewrite where the driver weighed plans by it (``patching.choose``), else 0. Fuse
    the stages last first, so the operator indices of the others stay valid."""

    stages: tuple[StagePlan, ...]
    original_peak: int
    planned_peak: int
    split_floor: int
    extra_macs: int
    alternatives: tuple[StagePlan, ...]
    reason: str
    original_head: int = 0
    planned_head: int = 0
    planned_arena: int = 0
