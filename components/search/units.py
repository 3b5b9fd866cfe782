"""The three units of a search's work, each run by a Beam worker, each stored by fingerprint.

``train_parent`` trains a parent briefly; ``make_variant`` prunes it to a ratio (or keeps it),
fine-tunes and quantizes; ``measure_candidate`` patches the variant in a mode (or keeps it)
and measures it on TFLM. Each is the project's own stage (``components.train``,
``prune``, ``quantize``, ``patch``, ``evaluate``), so a searched candidate is exactly what a
pipeline run with the same config would build.

A unit's result lives in ``<store>/<kind>/<fingerprint>/`` beside the files it made (a
:class:`~components.stage_cache.StageCache` entry, published atomically) and is reused
whenever the same fingerprint comes again: by another worker, by the next search, or by a
search resumed after an interruption. A unit that failed (a prune ratio the model cannot
take, a model TFLM refuses) stores its error, so a resumed search does not retry what
cannot succeed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from components import evaluate, patch, prune, quantize, train
from components.artifacts import Evaluation, ExampleSet, QuantizedModel, TrainedModel
from components.device import DeviceSpec
from components.errors import ComponentError
from components.evaluate import EvaluateSpec
from components.patch import PatchSpec
from components.quantize import QuantizeSpec
from components.search.space import CandidateJob, ParentJob, VariantJob
from components.stage_cache import StageCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchContext:
    """What every unit of one search shares; travels to the workers with each element."""

    store: Path
    examples: Mapping[int | None, ExampleSet]  # by resolution
    quantize: QuantizeSpec
    patch: PatchSpec
    evaluate: EvaluateSpec
    devices: tuple[DeviceSpec, ...]
    deadline: float | None  # time.time() after which no new unit starts
    force: bool = False  # rebuild every unit instead of reusing the stored ones

    def cache(self) -> StageCache:
        return StageCache(self.store)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline


@dataclass(frozen=True)
class UnitFailure:
    """Why a unit could not produce its artifact; stored like a result."""

    error: str


@dataclass(frozen=True)
class VariantResult:
    """A pruned (or kept) and fine-tuned model, quantized."""

    trained: TrainedModel
    quantized: QuantizedModel
    channel_ratio: float
    reason: str


@dataclass(frozen=True)
class CandidateResult:
    """One measured candidate: its model, TFLM's figures, and what patching did."""

    quantized: QuantizedModel
    evaluation: Evaluation
    patched: bool
    patch_reason: str
    parameters: int


def train_parent(job: ParentJob, ctx: SearchContext) -> TrainedModel | UnitFailure | None:
    """The parent of ``job``: stored, trained now, or None when the search is out of time."""

    def build(out: Path) -> TrainedModel:
        return train.run(job.train, ctx.examples[job.resolution], out, progress=False)

    return _unit(ctx, "parent", job.key, build)


def make_variant(
    job: VariantJob, parent: TrainedModel, resolution: int | None, ctx: SearchContext
) -> VariantResult | UnitFailure | None:
    examples = ctx.examples[resolution]

    def build(out: Path) -> VariantResult:
        pruned = prune.run(job.prune, parent, examples, out, progress=False)
        quantized = quantize.run(ctx.quantize, pruned.trained, examples, out)
        return VariantResult(pruned.trained, quantized, pruned.channel_ratio, pruned.reason)

    return _unit(ctx, "variant", job.key, build)


def measure_candidate(
    job: CandidateJob, variant: VariantResult, resolution: int | None, ctx: SearchContext
) -> CandidateResult | UnitFailure | None:
    examples = ctx.examples[resolution]

    def build(out: Path) -> CandidateResult:
        model, patched, reason = variant.quantized, False, "patching off for this candidate"
        if job.candidate.patch_mode != "off":
            spec = dataclasses.replace(ctx.patch, enabled=True, mode=job.candidate.patch_mode)
            result = patch.run(spec, variant.quantized, examples, out)
            model, patched, reason = result.patched or model, bool(result.patched), result.reason
        evaluation = evaluate.run(
            ctx.evaluate, model, variant.trained, examples, ctx.devices, progress=False
        )
        return CandidateResult(model, evaluation, patched, reason, variant.trained.params)

    return _unit(ctx, "candidate", job.key, build)


def _unit(ctx: SearchContext, kind: str, key: str, build):
    """The stored result of (kind, key), else ``build`` it (under the key's lock, so two
    workers never build one unit twice), else None when the search is out of time. A
    failure of the project's stages is stored as a :class:`UnitFailure`."""
    cache = ctx.cache()
    if not ctx.force and (found := cache.load(kind, key)) is not None:
        log.info("search: %s %s reused", kind, key)
        return found
    if ctx.out_of_time():
        log.info("search: %s %s not started: the search's wall-clock budget is spent", kind, key)
        return None

    def build_or_fail(out: Path):
        try:
            return build(out)
        except (ComponentError, ValueError) as e:
            log.warning("search: %s %s failed: %s", kind, key, e)
            return UnitFailure(f"{type(e).__name__}: {e}")

    return cache.compute(kind, key, build_or_fail, force=ctx.force)[0]
