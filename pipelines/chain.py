"""The model chain every pipeline shares:
train -> prune -> quantize -> patch -> evaluate -> gate -> track -> release.

A pipeline is a data front that produces an :class:`~components.artifacts.ExampleSet`, then
one call of :func:`run`. The chain reads like a linear driver over generic artifacts; it
knows no task (the example set carries its shape, labels and preprocessing) and does no ML
itself. Pruning and release (a signed bundle per device that passed, promoted in the device
registry) are off unless their config sections enable them.
Stage wall times are kept so the benchmarks and MLflow show where a run spends its time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from components import evaluate, gate, patch, prune, quantize, train
from components.artifacts import (
    Evaluation,
    ExampleSet,
    GateReport,
    QuantizedModel,
    TrainedModel,
)
from components.release import stage as release
from components.tracking import track
from pipelines.config import ChainConfig

log = logging.getLogger(__name__)


@dataclass
class ChainResult:
    """What a run produced: the candidate and its measurements, gate verdicts, where MLflow
    keeps it, and the wall time of every stage (data stages included)."""

    trained: TrainedModel
    prune: prune.PruneResult
    quantized: QuantizedModel
    patch: patch.PatchResult
    evaluation: Evaluation
    gates: tuple[GateReport, ...]
    tracking: track.TrackingResult
    release: release.ReleaseResult
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def run(
    config: ChainConfig,
    examples: ExampleSet,
    *,
    tracking_uri: str | None = None,
    timings: dict[str, float] | None = None,
    progress: bool = True,
) -> ChainResult:
    """Run the chain on ``examples``; returns even when the gate fails (see ``passed``)."""
    timings = timings if timings is not None else {}
    models = config.work_dir / "model"
    with timed(timings, "train"):
        trained = train.run(config.train, examples, models, progress=progress)
    with timed(timings, "prune"):
        pruned = prune.run(config.prune, trained, examples, models, progress=progress)
        trained = pruned.trained
    with timed(timings, "quantize"):
        quantized = quantize.run(config.quantize, trained, examples, models)
    with timed(timings, "patch"):
        patched = patch.run(config.patch, quantized, examples, models)
    with timed(timings, "evaluate"):
        evaluations = [
            evaluate.run(config.evaluate, model, trained, examples, config.devices, progress)
            for model in filter(None, (quantized, patched.patched))
        ]
    # The gate, the registry and the headline metrics get the patched model when one was
    # kept (verified bit-exact, smaller measured arena); the unpatched figures ride along.
    candidate, evaluation = patched.patched or quantized, evaluations[-1]
    uri = tracking_uri or track.default_tracking_uri(config.work_dir)
    with timed(timings, "gate"):
        gates = _gate(config, evaluation, uri)
    with timed(timings, "track"):
        tracking = _track(config, uri, examples, trained, candidate, evaluations,
                          (pruned, patched), gates, timings)  # fmt: skip
    with timed(timings, "release"):
        released = release.run(
            config.release, tracking_uri=uri, model_name=config.track.registered_model_name,
            version=tracking.model_version, devices=config.devices, gates=gates,
            work_dir=config.work_dir,
        )  # fmt: skip
        track.tag_run(uri, tracking.run_id, released.tags())
    return ChainResult(trained, pruned, candidate, patched, evaluation, gates, tracking,
                       released, timings)  # fmt: skip


def _gate(config: ChainConfig, evaluation: Evaluation, uri: str) -> tuple[GateReport, ...]:
    baseline = track.production_baseline(
        uri, config.track.registered_model_name, config.gate.baseline_alias
    )
    return tuple(gate.run(config.gate, evaluation, d, baseline) for d in config.devices)


def _track(config, uri, examples, trained, candidate, evaluations, rewrites, gates, timings):
    pruned, patched = rewrites
    unpatched = evaluations[0].scalars() if patched.patched else {}
    extra = {f"unpatched.{k}": v for k, v in unpatched.items()}
    tracking = track.run(
        config.track,
        tracking_uri=uri,
        params=config.model_dump(mode="json"),
        examples=examples,
        trained=trained,
        quantized=candidate,
        evaluation=evaluations[-1],
        gates=gates,
        timings=timings,
        extra_metrics=extra | patched.metrics() | pruned.metrics(),
        extra_artifacts=patched.report_files,
        extra_tags={
            "patch.applied": str(patched.patched is not None).lower(),
            "patch.reason": patched.reason[:5000],
            "prune.reason": pruned.reason[:5000],
        },
        sram_budget_bytes=config.devices[0].sram_budget_bytes,
    )
    if config.track.promote_on_pass and all(g.passed for g in gates):
        track.promote(
            uri, config.track.registered_model_name, tracking.model_version,
            config.gate.baseline_alias,
        )  # fmt: skip
    return tracking


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the wall time of ``stage`` in ``timings``, logging its start and end."""
    log.info("stage %s ...", stage)
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("stage %s done in %.1f s", stage, timings[stage])
