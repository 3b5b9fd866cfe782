"""Fit-to-device search: candidates over width, resolution, prune ratio and patch mode, each
built by the project's own stages, measured on TFLM and gated against every device.

:func:`run` plans the grid (:mod:`.space`), fans the units out as one Apache Beam pipeline
(:mod:`.search_transforms`) on any runner (DirectRunner with worker processes by default,
DaskRunner against a ``dask.distributed`` scheduler, or Flink, Spark, Dataflow with a
shared store folder), then reads every candidate back from the store (a
:class:`~components.stage_cache.StageCache`) and decides (:mod:`.outcome`). Units already
in the store are reused, so an interrupted search picks up where it stopped and a repeated
one costs only the candidates that changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from components.artifacts import ExampleSet
from components.device import DeviceSpec
from components.errors import ComponentError
from components.evaluate import EvaluateSpec
from components.gate import GateSpec
from components.patch import PatchSpec
from components.prune import PruneSpec
from components.quantize import QuantizeSpec
from components.search import outcome, space, units
from components.search.space import SearchSpec
from components.stage_cache import StageCache, fingerprint
from components.train import TrainSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStages:
    """The chain's sections a candidate is built with (its own grid point aside)."""

    train: TrainSpec
    prune: PruneSpec
    quantize: QuantizeSpec
    patch: PatchSpec
    evaluate: EvaluateSpec
    gate: GateSpec


def run(
    spec: SearchSpec,
    stages: ModelStages,
    examples: Mapping[int | None, ExampleSet],
    data_keys: Mapping[int | None, str],
    devices: Sequence[DeviceSpec],
    store: Path,
    *,
    default_resolution: int | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
    force: bool = False,
) -> outcome.SearchOutcome:
    """Search, measure and decide; ``examples`` and ``data_keys`` are by resolution;
    ``force`` rebuilds every unit instead of reusing what the store holds."""
    from components import beam_stage

    candidates = space.grid(spec, stages.train, default_resolution)
    measure_key = fingerprint("measure", stages.quantize, stages.patch, stages.evaluate, devices)
    try:
        parents = space.plan(
            spec, candidates, train=stages.train, prune=stages.prune,
            data_keys=dict(data_keys), measure_key=measure_key,
        )  # fmt: skip
    except ValueError as e:
        raise ComponentError(f"search: {e}") from e
    jobs = [(p, v, c) for p in parents for v in p.variants for c in v.candidates]
    deadline = time.time() + spec.max_wall_seconds if spec.max_wall_seconds else None
    ctx = units.SearchContext(
        Path(store).resolve(), dict(examples), stages.quantize, stages.patch,
        stages.evaluate, tuple(devices), deadline, force,
    )  # fmt: skip
    cache = ctx.cache()
    stored = (
        set() if force else {c.key for *_, c in jobs if cache.load("candidate", c.key) is not None}
    )
    log.info("search: %d candidates, %d already measured", len(jobs), len(stored))
    if len(stored) < len(jobs):
        args = _runner_args(spec, pipeline_args, len(jobs))
        since = time.time() if force else None  # under --force, old entries do not count
        with _StoreProgress(cache, [c.key for *_, c in jobs], progress, since):
            beam_stage.run_pipeline(
                spec.runner, args,
                lambda p: _build(p, parents, ctx), "the fit-to-device search",
            )  # fmt: skip
    measured = [_measured(cache, p, v, c, c.key in stored) for p, v, c in jobs]
    return outcome.decide(measured, stages.gate, devices)


def _build(pipeline, parents, ctx) -> None:
    from components.search import search_transforms

    search_transforms.build(pipeline, parents, ctx)


def _runner_args(spec: SearchSpec, pipeline_args: Sequence[str], units_count: int) -> list[str]:
    """Spread units over workers unless the user said how: worker processes on the
    DirectRunner, one Dask bag partition per candidate on the DaskRunner."""
    args = list(pipeline_args)
    given = {a.split("=")[0] for a in args}
    if spec.runner == "DirectRunner" and "--direct_num_workers" not in given:
        args += [f"--direct_num_workers={spec.num_workers}"]
        if "--direct_running_mode" not in given:
            args += ["--direct_running_mode=multi_processing"]
    if "--default_sdk_harness_log_level" not in given:  # the workers' own INFO chatter
        args += ["--default_sdk_harness_log_level=WARNING"]
    if spec.runner == "DaskRunner" and not {"--dask_npartitions", "--dask_partition_size"} & given:
        args += [f"--dask_npartitions={units_count}"]
    return args


def _measured(cache: StageCache, parent, variant, job, reused: bool) -> outcome.Measured:
    """The candidate's result; when it has none, an ancestor's failure explains why."""
    result = cache.load("candidate", job.key)
    if result is None:
        for kind, key in (("variant", variant.key), ("parent", parent.key)):
            if isinstance(found := cache.load(kind, key), units.UnitFailure):
                result = units.UnitFailure(f"{kind} failed: {found.error}")
                break
    return outcome.Measured(job.candidate, job.key, result, reused=reused)


class _StoreProgress:
    """A bar over the candidates, advanced by polling the store: it works whichever
    runner (and whichever machine) measures them."""

    def __init__(
        self, cache: StageCache, keys: list[str], enabled: bool, since: float | None = None
    ) -> None:
        self.cache, self.keys, self.enabled, self.since = cache, keys, enabled, since
        self.stop = threading.Event()

    def _count(self) -> int:
        """Candidates in the store (published after ``since``, when given)."""
        return sum(self._done(self.cache.entry("candidate", k)) for k in self.keys)

    def _done(self, entry: Path) -> bool:
        try:
            published = entry.stat().st_mtime
        except FileNotFoundError:
            return False
        return self.since is None or published >= self.since

    def _poll(self, bar) -> None:
        while not self.stop.wait(2.0):
            bar.n = self._count()
            bar.refresh()

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.keys), initial=self._count(), desc="search",
                            unit="candidate", disable=None)  # fmt: skip
            self.thread = threading.Thread(target=self._poll, args=(self.bar,), daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.bar.n = self._count()
            self.bar.close()
