"""Patch component: rewrite an int8 model for patch-based inference when that lowers its arena.

Called by the model chain after ``quantize``. Verification runs the original and the
patched model on real test-split features (quantized as the firmware would feed them) and
requires identical outputs. A model with nothing patchable, or whose measured arena would
not shrink, is not an error here: the result says why and the pipeline keeps the original.

With ``row_reader`` the first stage may read the input rows from the application's
callback (``tflm_ext.row_reader``): the image leaves the arena and the model's input tensor
becomes one row. Verification, evaluation and the ``tflm`` flavor still feed whole
examples (the host's reader serves them); the firmware must register the callback.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import Field

from components.artifacts import ExampleSet, QuantizedModel
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class PatchSpec:
    """Planner budget, rewrite mode, whether the input may come from the row reader, and
    how many test examples verify the rewrite."""

    enabled: bool = True
    mode: Literal["custom", "stream", "builtin"] = "custom"
    max_extra_mac_fraction: Annotated[float, Field(ge=0)] = 0.2
    grids: tuple[Annotated[int, Field(gt=1)], ...] = (2, 3, 4, 5, 6, 8, 12, 16)
    max_stages: Annotated[int, Field(gt=0)] = 3
    verify_examples: Annotated[int, Field(gt=0)] = 16
    row_reader: bool = False

    @pydantic.model_validator(mode="after")
    def _reader_needs_the_custom_op(self) -> PatchSpec:
        """The row reader is a mode of the custom op, which builtin mode does not use."""
        if self.row_reader and self.mode == "builtin":
            raise ValueError("row_reader: true needs mode custom or stream, not builtin")
        return self


@dataclass(frozen=True)
class PatchResult:
    """The patched model if one was kept, and in any case the reason, the figures (arena
    bisected on TFLM; the plan's analytic bound and its split's 1-pixel floor, 0 when there
    was no plan) and the report files: the plan table and memory-per-layer plots of both
    models, for tracking."""

    patched: QuantizedModel | None
    reason: str
    stages: tuple[tuple[int, int, tuple[int, int], str], ...] = ()  # first, last, grid, execution
    row_reader: bool = False  # the kept model's input comes row by row from the application
    arena_before: int = 0
    arena_after: int = 0
    extra_macs: int = 0
    bound_bytes: int = 0
    floor_bytes: int = 0
    report_files: tuple[Path, ...] = ()

    def metrics(self) -> dict[str, float]:
        """The figures as ``patch.*`` metrics (none when patching did not run)."""
        if not self.arena_before:
            return {}
        names = ("arena_before", "arena_after", "extra_macs", "bound_bytes", "floor_bytes")
        return {f"patch.{n}": float(getattr(self, n)) for n in names}


def run(
    spec: PatchSpec, quantized: QuantizedModel, examples: ExampleSet, out_dir: Path
) -> PatchResult:
    """Plan, rewrite and verify; ``patched`` is None when the model stays as it is."""
    import tflm_ext
    from components import example_records
    from tflm_ext.errors import NothingPatchableError
    from tflm_ext.inference import input_details, quantize
    from tflm_ext.patching import patch_model

    if not spec.enabled:
        return PatchResult(patched=None, reason="patching disabled in the config")
    model_bytes = quantized.read_bytes()
    x, _ = example_records.load_split(examples, "test", limit=spec.verify_examples)
    examples = quantize(x, input_details(model_bytes))
    planner = tflm_ext.PlannerSpec(
        spec.max_extra_mac_fraction, spec.grids, spec.max_stages, row_reader=spec.row_reader
    )
    try:
        outcome = patch_model(model_bytes, planner, mode=spec.mode, inputs=examples)
    except NothingPatchableError as e:
        log.info("%s stays unpatched: %s", quantized.path, e)
        return PatchResult(patched=None, reason=str(e))
    except tflm_ext.TflmExtError as e:
        raise ComponentError(f"patching {quantized.path} failed: {e}") from e
    return _result(outcome, quantized, out_dir)


def _result(outcome, quantized: QuantizedModel, out_dir: Path) -> PatchResult:
    stages = tuple((s.first_op, s.last_op, s.grid, s.execution) for s in outcome.plan.stages)
    report = outcome.report
    figures = {
        "arena_before": report.arena_before.bisected_min if report else 0,
        "arena_after": report.arena_after.bisected_min if report else 0,
        "extra_macs": outcome.plan.extra_macs,
        "bound_bytes": outcome.plan.planned_peak,
        "floor_bytes": outcome.plan.split_floor,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [_write_plan(outcome, out_dir / "patch_plan.md")]
    files.append(_write_memory_plot(quantized.read_bytes(), out_dir / "memory_unpatched.png"))
    if not outcome.applied:
        return PatchResult(None, outcome.plan.reason, report_files=tuple(files), **figures)
    path = out_dir / f"model_int8_patched_{outcome.mode}.tflite"
    path.write_bytes(outcome.model_bytes)
    files.append(_write_memory_plot(outcome.model_bytes, out_dir / "memory_patched.png"))
    reader = any(s.row_reader for s in outcome.plan.stages)
    reason = f"{len(stages)} stage(s) patched ({outcome.mode} mode), verified bit-exact" + (
        "; the input is read row by row from the application's row reader, not held in the arena"
        if reader
        else ""
    )
    log.info("%s: arena %d -> %d B", reason, figures["arena_before"], figures["arena_after"])
    patched = dataclasses.replace(quantized, path=path)
    return PatchResult(patched, reason, stages, reader, report_files=tuple(files), **figures)


def _write_plan(outcome, path: Path) -> Path:
    from tflm_ext.planner import plan_table

    path.write_text(f"# Patch plan ({outcome.mode} mode)\n\n{plan_table(outcome.plan)}\n")
    return path


def _write_memory_plot(model_bytes: bytes, path: Path) -> Path:
    """Memory per layer as planned (no interpreter: both models were measured already)."""
    import tflm_ext
    from components.tracking import plots

    plots.memory_per_layer(tflm_ext.profile(model_bytes, measure=False)).savefig(path, dpi=100)
    return path
