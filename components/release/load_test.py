"""Many processes promoting and rolling back on one registry store at once.

A shared registry (a SQLite file on a team's disk) must lose no action when several
pipelines and people act on it together. :func:`concurrent_actions` starts ``writers``
spawned interpreters, each with its own :class:`DeviceRegistry` on the same folder, behind
one barrier; each performs ``actions`` successful random actions (forced promotions of the
given bundles, 60%, and rollbacks, on every stage of one device), retrying the refusals
that concurrency makes legitimate. The registry test checks what it left; the registry
benchmark times it.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from dataclasses import dataclass
from pathlib import Path

from components.errors import ComponentError
from components.release.backend import STAGES
from components.release.promotion_rules import RegistrySpec
from components.release.registry import DeviceRegistry

#: Refusals a racing writer may meet: another got there first.
EXPECTED_REFUSALS = ("is already at", "nothing to roll back")


@dataclass(frozen=True)
class WriterOutcome:
    """One writer's successful action ids, when it started and ended (monotonic seconds),
    how many refusals it retried, and the unexpected error that stopped it, if any."""

    action_ids: tuple[str, ...]
    start: float
    end: float
    refused: int
    error: str


def concurrent_actions(
    root: Path, bundle_ids: list[str], model: str, device: str, writers: int, actions: int,
    timeout_s: float = 600.0,
) -> list[WriterOutcome]:  # fmt: skip
    """Run the writers to completion and return their outcomes, in no particular order."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer,
            args=(str(root), bundle_ids, model, device, seed, actions, barrier, results),
        )
        for seed in range(writers)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=timeout_s) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return outcomes


def _writer(root, bundle_ids, model, device, seed, actions, barrier, results) -> None:
    """``actions`` successful random actions; always reports, an unexpected error included."""
    done, refused, error, start = [], 0, "", time.monotonic()
    try:
        registry = DeviceRegistry.local(Path(root), spec=RegistrySpec(max_attempts=2000))
        rng = random.Random(seed)
        barrier.wait(timeout=300)
        start = time.monotonic()
        while len(done) < actions:
            try:
                done.append(_act(registry, rng, bundle_ids, model, device, seed).id)
            except ComponentError as e:
                if not any(text in str(e) for text in EXPECTED_REFUSALS):
                    raise
                refused += 1
    except Exception as e:  # reported to the caller, which fails on it
        error = f"{type(e).__name__}: {e}"
    results.put(WriterOutcome(tuple(done), start, time.monotonic(), refused, error))


def _act(registry, rng: random.Random, bundle_ids, model: str, device: str, seed: int):
    stage = rng.choice(STAGES)
    actor = f"writer-{seed}"
    if rng.random() < 0.6:
        return registry.promote(
            rng.choice(bundle_ids), stage, actor=actor, force=True, reason="load test"
        )
    return registry.rollback(model, device, stage, actor=actor)
