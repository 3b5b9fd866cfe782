"""The model chain every pipeline shares:
train -> prune -> quantize -> patch -> evaluate -> gate -> track -> release.

A pipeline is a data front that produces an :class:`~components.artifacts.ExampleSet`, then
one call of :func:`run`. The chain reads like a linear driver over generic artifacts; it
knows no task (the example set carries its shape, labels and preprocessing) and does no ML
itself. Pruning and release (a signed bundle per device that passed, promoted in the device
registry) are off unless their config sections enable them.

Stages from the data front to ``evaluate`` are cached (:class:`Stages`, over
``components.stage_cache``): each is keyed by its inputs' keys, its own config section and
the code version, so an unchanged stage is skipped, an interrupted run resumes after the
last finished stage (and training after its last finished epoch), and ``force`` recomputes
a stage and every stage after it. ``gate``, ``track`` and ``release`` always run: they are
cheap, and what they depend on lives in services (the production baseline and the device
registry move between runs), while the MLflow run and model version are what each run is
for. Stage wall times are kept so the benchmarks and MLflow show where a run spends its
time, and the MLflow run records which stages were reused.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from components import evaluate, gate, patch, prune, quantize, train
from components.artifacts import (
    Evaluation,
    ExampleSet,
    GateReport,
    QuantizedModel,
    TrainedModel,
)
from components.release import stage as release
from components.stage_cache import StageCache, code_version, files_fingerprint, fingerprint
from components.tracking import track
from pipelines.config import ChainConfig
from pipelines.errors import PipelineError

log = logging.getLogger(__name__)

T = TypeVar("T")
STAGES = ("train", "prune", "quantize", "patch", "evaluate")  # the cached ones, in order
FORCE_ALL = "all"  # ``force``: recompute every stage


@dataclass
class Stages:
    """One run's cached stages: the cache, which stages ``force`` recomputes, each stage's
    wall time and key, and which were reused or computed."""

    cache: StageCache
    forced: frozenset[str] = frozenset()
    timings: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # for the cache's pruning

    @classmethod
    def open(
        cls,
        config: ChainConfig,
        order: Sequence[str],
        force: str | None,
        timings: dict[str, float] | None = None,
    ) -> Stages:
        """The stages of a pipeline whose cached stages run in ``order``, cached under the
        work dir's ``stages/``; ``force`` is None, :data:`FORCE_ALL` or a stage name (that
        stage and every later one), checked here before any work starts."""
        if force is not None and force != FORCE_ALL and force not in order:
            raise PipelineError(f"--force {force}: no such stage; one of {', '.join(order)}")
        first = len(order) if force is None else 0 if force == FORCE_ALL else order.index(force)
        cache = StageCache(config.work_dir / "stages")
        return cls(cache, frozenset(order[first:]), {} if timings is None else timings)

    def key(self, stage: str, inputs: Sequence[object]) -> str:
        """The stage's key: its name, the code version and its inputs (upstream keys and
        its own config section)."""
        return fingerprint(stage, code_version(), *inputs)

    def run(
        self, stage: str, inputs: Sequence[object], build: Callable[[Path], T]
    ) -> tuple[T, str]:
        """(artifact, key): the cached artifact, or ``build(folder)``'s, published."""
        key = self.key(stage, inputs)
        with timed(self.timings, stage):
            artifact, reused = self.cache.compute(stage, key, build, force=stage in self.forced)
        self.record(stage, key, reused)
        return artifact, key

    def source(
        self,
        stage: str,
        read: Callable[[], T],
        files: Callable[[T], Iterable[str]],
        *,
        generated: Path | None = None,
        complete: Callable[[], bool] = lambda: False,
    ) -> tuple[T, str]:
        """(index, key) of a data stage whose files stay outside the cache: a generated set
        in ``generated`` (kept by its generator under its own spec key: reused when
        ``complete()``, regenerated when forced) or the user's folder, listed by ``read``.
        The key is the index and the ``files`` it names by size and modification time, so
        rewritten inputs are seen; the lock keeps two runs from generating at once."""
        with timed(self.timings, stage), self.cache.lock(stage, "source"):
            if generated is not None and stage in self.forced and complete():
                shutil.rmtree(generated)
            reused = generated is not None and complete()
            index = read()
            key = fingerprint(stage, code_version(), index, files_fingerprint(files(index)))
        self.record(stage, key, reused)
        return index, key

    def scratch(self, stage: str, inputs: Sequence[object]) -> Path:
        """The folder a killed build of this stage resumes from (training's backup)."""
        return self.cache.scratch(stage, self.key(stage, inputs))

    def record(self, stage: str, key: str, reused: bool) -> None:
        self.keys[stage] = key
        (self.reused if reused else self.computed).append(stage)
        self.cache.record_run(self.run_id, self.keys)
        log.info("stage %s %s (key %s)", stage, "reused" if reused else "computed", key)

    def tags(self) -> dict[str, str]:
        """``stages.reused`` / ``stages.computed`` (comma-separated, in run order) and each
        stage's key as ``stages.<stage>.key``."""
        keys = {f"stages.{stage}.key": key for stage, key in self.keys.items()}
        return {"stages.reused": ",".join(self.reused),
                "stages.computed": ",".join(self.computed), **keys}  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """``stage_reused.<stage>``: 1 when the stage was taken from the cache, else 0."""
        return {f"stage_reused.{s}": float(s in self.reused) for s in self.keys}


@dataclass
class ChainResult:
    """What a run produced: the candidate and its measurements, gate verdicts, where MLflow
    keeps it, the wall time of every stage (data stages included) and which cached stages
    were reused or computed, in run order."""

    trained: TrainedModel
    prune: prune.PruneResult
    quantized: QuantizedModel
    patch: patch.PatchResult
    evaluation: Evaluation
    gates: tuple[GateReport, ...]
    tracking: track.TrackingResult
    release: release.ReleaseResult
    timings: dict[str, float] = field(default_factory=dict)
    reused: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def train_stage(config: ChainConfig, examples: ExampleSet, examples_key: str, stages: Stages,
                progress: bool = True) -> tuple[TrainedModel, str]:  # fmt: skip
    """The cached train stage on ``examples`` (cached under ``examples_key``): the trained
    model and its key; a killed training resumes from its scratch folder."""
    inputs = (examples_key, config.train)
    return stages.run("train", inputs, lambda out: train.run(
        config.train, examples, out, progress=progress, resume_dir=stages.scratch("train", inputs),
    ))  # fmt: skip


def run(
    config: ChainConfig,
    examples: ExampleSet,
    *,
    examples_key: str | None = None,
    stages: Stages | None = None,
    tracking_uri: str | None = None,
    timings: dict[str, float] | None = None,
    progress: bool = True,
) -> ChainResult:
    """Run the chain on ``examples``; returns even when the gate fails (see ``passed``).

    ``examples_key`` is the key the data front cached ``examples`` under; without one the
    example files' sizes and times stand for them. ``stages`` carries the data front's
    cache, ``force`` and records into the chain (default: the config's cache, nothing
    forced, wall times into ``timings``)."""
    stages = stages or Stages.open(config, STAGES, None, timings)
    examples_key = examples_key or fingerprint(
        examples, files_fingerprint(p for p in examples.directory.rglob("*") if p.is_file())
    )
    trained, trained_key = train_stage(config, examples, examples_key, stages, progress)
    pruned, pruned_key = stages.run("prune", (trained_key, examples_key, config.prune),
        lambda out: prune.run(config.prune, trained, examples, out, progress=progress))  # fmt: skip
    trained = pruned.trained
    quantized, quantized_key = stages.run("quantize", (pruned_key, examples_key, config.quantize),
        lambda out: quantize.run(config.quantize, trained, examples, out))  # fmt: skip
    patched, patched_key = stages.run("patch", (quantized_key, examples_key, config.patch),
        lambda out: patch.run(config.patch, quantized, examples, out))  # fmt: skip
    evaluate_inputs = (patched_key, quantized_key, pruned_key, examples_key, config.evaluate,
                       config.devices)  # fmt: skip
    evaluations, _ = stages.run("evaluate", evaluate_inputs, lambda out: tuple(
        evaluate.run(config.evaluate, model, trained, examples, config.devices, progress)
        for model in filter(None, (quantized, patched.patched))
    ))  # fmt: skip
    # The gate, the registry and the headline metrics get the patched model when one was
    # kept (verified bit-exact, smaller measured arena); the unpatched figures ride along.
    candidate, evaluation = patched.patched or quantized, evaluations[-1]
    uri = tracking_uri or track.default_tracking_uri(config.work_dir)
    timings = stages.timings
    # Runs of one work dir take turns from here on: MLflow's embedded SQLite store cannot
    # create its schema twice at once, and a gate must see the baseline that the other run's
    # promotion left. These steps take seconds.
    with stages.cache.lock("track", "tracking"):
        with timed(timings, "gate"):
            gates = _gate(config, evaluation, uri)
        with timed(timings, "track"):
            tracking = _track(config, uri, examples, trained, candidate, evaluations,
                              (pruned, patched), gates, stages)  # fmt: skip
        with timed(timings, "release"):
            released = release.run(
                config.release, tracking_uri=uri, model_name=config.track.registered_model_name,
                version=tracking.model_version, devices=config.devices, gates=gates,
                work_dir=config.work_dir,
            )  # fmt: skip
            track.tag_run(uri, tracking.run_id, released.tags(), kept=tracking.kept,
                      spec=config.track)  # fmt: skip
    return ChainResult(trained, pruned, candidate, patched, evaluation, gates, tracking,
                       released, timings, tuple(stages.reused),
                       tuple(stages.computed))  # fmt: skip


def _gate(config: ChainConfig, evaluation: Evaluation, uri: str) -> tuple[GateReport, ...]:
    baseline = track.production_baseline(
        uri, config.track.registered_model_name, config.gate.baseline_alias
    )
    return tuple(gate.run(config.gate, evaluation, d, baseline) for d in config.devices)


def _track(config, uri, examples, trained, candidate, evaluations, rewrites, gates, stages):
    pruned, patched = rewrites
    promote = config.track.promote_on_pass and all(g.passed for g in gates)
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
        timings=stages.timings,
        extra_metrics=extra | patched.metrics() | pruned.metrics() | stages.metrics(),
        extra_artifacts=patched.report_files,
        extra_tags={
            "patch.applied": str(patched.patched is not None).lower(),
            "patch.reason": patched.reason[:5000],
            "prune.reason": pruned.reason[:5000],
            **stages.tags(),
        },
        sram_budget_bytes=config.devices[0].sram_budget_bytes,
        # The promotion goes with the run, so a run kept on disk when the server fails
        # carries it and `tflm-pipelines upload` restores it.
        aliases=(config.gate.baseline_alias,) if promote else (),
        local_dir=config.work_dir / "tracking",
    )
    return tracking


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the wall time of ``stage`` in ``timings``, logging its start and end."""
    log.info("stage %s ...", stage)
    start = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - start
    log.info("stage %s done in %.1f s", stage, timings[stage])
