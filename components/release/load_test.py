"""Many processes promoting and rolling back on one registry store at once.

A shared registry (a SQLite file on a team's disk) must lose no action when several
pipelines and people act on it together. :func:`concurrent_actions` starts ``writers``
fresh interpreters (``tflm_ext.isolation.run_isolated``, so any entry point may call it),
each with its own :class:`DeviceRegistry` on the same folder, behind one barrier (a file
per writer that is ready); each performs ``actions`` successful random actions (forced
promotions of the given bundles, 60%, and rollbacks, on every stage of one device),
retrying the refusals that concurrency makes legitimate. The registry test checks what it
left; the registry benchmark times it.
"""

from __future__ import annotations

import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    from tflm_ext.isolation import run_isolated

    with tempfile.TemporaryDirectory(prefix="registry_barrier_") as barrier:
        with ThreadPoolExecutor(writers) as pool:
            futures = [
                pool.submit(
                    run_isolated,
                    _writer,
                    str(root),
                    bundle_ids,
                    model,
                    device,
                    seed,
                    actions,
                    barrier,
                    writers,
                    timeout_s=timeout_s,
                )
                for seed in range(writers)
            ]
            return [f.result() for f in futures]


def _wait_for_all(barrier: str, seed: int, writers: int, timeout_s: float = 300.0) -> None:
    """Mark this writer ready, then wait until all ``writers`` are."""
    folder = Path(barrier)
    (folder / f"ready-{seed}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob("ready-*"))) < writers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only some of {writers} writers started within {timeout_s} s")
        time.sleep(0.005)


def _writer(root, bundle_ids, model, device, seed, actions, barrier, writers) -> WriterOutcome:
    """``actions`` successful random actions; always reports, an unexpected error included."""
    done, refused, error, start = [], 0, "", time.monotonic()
    try:
        registry = DeviceRegistry.local(Path(root), spec=RegistrySpec(max_attempts=2000))
        rng = random.Random(seed)
        _wait_for_all(barrier, seed, writers)
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
    return WriterOutcome(tuple(done), start, time.monotonic(), refused, error)


def _act(registry, rng: random.Random, bundle_ids, model: str, device: str, seed: int):
    stage = rng.choice(STAGES)
    actor = f"writer-{seed}"
    if rng.random() < 0.6:
        return registry.promote(
            rng.choice(bundle_ids), stage, actor=actor, force=True, reason="load test"
        )
    return registry.rollback(model, device, stage, actor=actor)
