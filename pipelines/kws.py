"""The keyword-spotting pipeline: data, features, train, quantize, evaluate, gate, track.

Only wiring: each stage is one component call on the previous stage's artifacts. Stage
wall times are kept so the benchmark and MLflow can show where a run spends its time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from components import (
    evaluate,
    extract_features,
    gate,
    patch,
    quantize,
    speech_commands,
    synth_speech,
    track,
    train,
)
from components.artifacts import Evaluation, GateReport, QuantizedModel, SpeechDataset
from pipelines.config import KwsConfig

log = logging.getLogger(__name__)


@dataclass
class KwsResult:
    """What a run produced: measurements, gate verdicts, where MLflow keeps it, stage times."""

    quantized: QuantizedModel
    patch: patch.PatchResult
    evaluation: Evaluation
    gates: tuple[GateReport, ...]
    tracking: track.TrackingResult
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def run(
    config: KwsConfig,
    *,
    tracking_uri: str | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
) -> KwsResult:
    """Run every stage of ``config``; returns even when the gate fails (see ``passed``)."""
    timings: dict[str, float] = {}
    work = config.work_dir
    with _timed(timings, "data"):
        dataset = _dataset(config, progress)
        index = speech_commands.run(config.data.reader, dataset)
    with _timed(timings, "features"):
        features = extract_features.run(config.features, index, work / "features", pipeline_args)
    with _timed(timings, "train"):
        trained = train.run(config.train, features, work / "model", progress=progress)
    with _timed(timings, "quantize"):
        quantized = quantize.run(config.quantize, trained, features, work / "model")
    with _timed(timings, "patch"):
        patched = patch.run(config.patch, quantized, features, work / "model")
    with _timed(timings, "evaluate"):
        evaluations = [
            evaluate.run(config.evaluate, model, trained, features, config.devices, progress)
            for model in filter(None, (quantized, patched.patched))
        ]
    # The gate, the registry and the headline metrics get the patched model when one was
    # kept (verified bit-exact, smaller measured arena); the unpatched figures ride along.
    candidate, evaluation = patched.patched or quantized, evaluations[-1]
    extra_metrics = _prefixed("unpatched", evaluations[0]) if patched.patched else {}
    extra_metrics |= patched.metrics()
    uri = tracking_uri or track.default_tracking_uri(work)
    with _timed(timings, "gate"):
        baseline = track.production_baseline(
            uri, config.track.registered_model_name, config.gate.baseline_alias
        )
        gates = tuple(gate.run(config.gate, evaluation, d, baseline) for d in config.devices)
    with _timed(timings, "track"):
        tracking = track.run(
            config.track,
            tracking_uri=uri,
            params=config.model_dump(mode="json"),
            features=features,
            trained=trained,
            quantized=candidate,
            evaluation=evaluation,
            gates=gates,
            timings=timings,
            extra_metrics=extra_metrics,
            extra_artifacts=patched.report_files,
            extra_tags={
                "patch.applied": str(patched.patched is not None).lower(),
                "patch.reason": patched.reason[:5000],
            },
            sram_budget_bytes=config.devices[0].sram_budget_bytes,
        )
        if config.track.promote_on_pass and all(g.passed for g in gates):
            track.promote(
                uri,
                config.track.registered_model_name,
                tracking.model_version,
                config.gate.baseline_alias,
            )
    return KwsResult(
        quantized=candidate,
        patch=patched,
        evaluation=evaluation,
        gates=gates,
        tracking=tracking,
        timings=timings,
    )


def _prefixed(prefix: str, evaluation: Evaluation) -> dict[str, float]:
    names = (
        "int8_accuracy", "arena_total", "arena_head", "arena_tail", "arena_bisected",
        "flash_bytes", "macs", "host_latency_ms",
    )  # fmt: skip
    return {f"{prefix}.{n}": float(getattr(evaluation, n)) for n in names}


def _dataset(config: KwsConfig, progress: bool) -> SpeechDataset:
    if config.data.source == "synth":
        return synth_speech.run(config.data.synth, config.work_dir / "data" / "synth", progress)
    return SpeechDataset(root=Path(config.data.path))


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    log.info("stage %s ...", stage)
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("stage %s done in %.1f s", stage, timings[stage])
