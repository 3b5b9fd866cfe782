"""Patch component: rewrite an int8 model for patch-based inference when that lowers its arena.

Called by the KWS pipeline after ``quantize``. Verification runs the original and the
patched model on real test-split features (quantized as the firmware would feed them) and
requires identical outputs. A model with nothing patchable, or whose measured arena would
not shrink, is not an error here: the result says why and the pipeline keeps the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from components.artifacts import FeatureSet, QuantizedModel
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class PatchSpec:
    """Planner budget, rewrite mode and how many test examples verify the rewrite."""

    enabled: bool = True
    mode: Literal["custom", "builtin"] = "custom"
    max_extra_mac_fraction: Annotated[float, Field(ge=0)] = 0.2
    grids: tuple[Annotated[int, Field(gt=0)], ...] = (2, 3, 4, 5, 6, 8)
    max_stages: Annotated[int, Field(gt=0)] = 3
    verify_examples: Annotated[int, Field(gt=0)] = 16


@dataclass(frozen=True)
class PatchResult:
    """The patched model if one was kept, and in any case the reason and the figures."""

    patched: QuantizedModel | None
    reason: str
    stages: tuple[tuple[int, int, tuple[int, int]], ...] = ()
    arena_before: int = 0
    arena_after: int = 0
    extra_macs: int = 0


def run(spec: PatchSpec, quantized: QuantizedModel, features: FeatureSet, out_dir: Path,
        ) -> PatchResult:
    """Plan, rewrite and verify; ``patched`` is None when the model stays as it is."""
    import tflm_ext
    from components import feature_records
    from tflm_ext.errors import NothingPatchableError
    from tflm_ext.inference import input_details, quantize
    from tflm_ext.patching import patch_model

    if not spec.enabled:
        return PatchResult(patched=None, reason="patching disabled in the config")
    model_bytes = quantized.read_bytes()
    x, _ = feature_records.load_split(features, "test", limit=spec.verify_examples)
    examples = quantize(x, input_details(model_bytes))
    planner = tflm_ext.PlannerSpec(spec.max_extra_mac_fraction, spec.grids, spec.max_stages)
    try:
        outcome = patch_model(model_bytes, planner, mode=spec.mode, inputs=examples)
    except NothingPatchableError as e:
        log.info("%s stays unpatched: %s", quantized.path, e)
        return PatchResult(patched=None, reason=str(e))
    except tflm_ext.TflmExtError as e:
        raise ComponentError(f"patching {quantized.path} failed: {e}") from e
    return _result(outcome, quantized, out_dir)


def _result(outcome, quantized: QuantizedModel, out_dir: Path) -> PatchResult:
    stages = tuple((s.first_op, s.last_op, s.grid) for s in outcome.plan.stages)
    report = outcome.report
    figures = {
        "arena_before": report.arena_before.bisected_min if report else 0,
        "arena_after": report.arena_after.bisected_min if report else 0,
        "extra_macs": outcome.plan.extra_macs,
    }
    if not outcome.applied:
        return PatchResult(patched=None, reason=outcome.plan.reason, **figures)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"model_int8_patched_{outcome.mode}.tflite"
    path.write_bytes(outcome.model_bytes)
    reason = f"{len(stages)} stage(s) patched ({outcome.mode} mode), verified bit-exact"
    log.info("%s: arena %d -> %d B", reason, figures["arena_before"], figures["arena_after"])
    patched = QuantizedModel(path=path, labels=quantized.labels,
                             input_shape=quantized.input_shape, frontend=quantized.frontend)
    return PatchResult(patched=patched, reason=reason, stages=stages, **figures)
