"""Eight processes promoting and rolling back on one registry at once (a real SQLite file).

Each worker is a separate interpreter (spawn) with its own DeviceRegistry on the same folder;
all start together behind a barrier and mix forced promotions of four bundles with
rollbacks, on the production and staging slots of one device. Afterwards the history must
hold exactly the actions the workers saw succeed, each slot exactly one current version,
every action must name as previous the one before it on its slot (no lost update), and
every rollback must have restored what the stack of promotions says it should.
"""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

from components.errors import ComponentError
from components.release.backend import PROMOTE, ROLLBACK, STAGES
from components.release.manifest import ModelRef
from components.release.promotion_rules import RegistrySpec
from components.release.registry import DeviceRegistry, deployment_stack
from tests.components.release.conftest import DEVICE, MODEL, with_manifest

WORKERS = 8
OPERATIONS = 8  # per worker
EXPECTED_REFUSALS = ("is already at", "nothing to roll back")


def _worker(root: str, bundle_ids: list[str], seed: int, barrier, results) -> None:
    """Run OPERATIONS random actions; always report (an unexpected error included)."""
    done, refused, errors = [], 0, []
    try:
        registry = DeviceRegistry.local(Path(root), spec=RegistrySpec(max_attempts=2000))
        rng = random.Random(seed)
        barrier.wait(timeout=120)
        for _ in range(OPERATIONS):
            try:
                done.append(_act(registry, rng, bundle_ids, seed).id)
            except ComponentError as e:
                if not any(text in str(e) for text in EXPECTED_REFUSALS):
                    raise
                refused += 1
    except Exception as e:  # reported to the test, which fails on it
        errors.append(f"{type(e).__name__}: {e}")
    results.put((seed, done, refused, errors))


def _act(registry: DeviceRegistry, rng: random.Random, bundle_ids: list[str], seed: int):
    stage = rng.choice(STAGES)
    if rng.random() < 0.6:
        return registry.promote(
            rng.choice(bundle_ids), stage, actor=f"worker-{seed}", force=True, reason="load test"
        )
    return registry.rollback(MODEL, DEVICE.name, stage, actor=f"worker-{seed}")


def test_concurrent_promotions_and_rollbacks_leave_a_consistent_registry(bundles, tmp_path):
    root = tmp_path / "registry"
    registry = DeviceRegistry.local(root)
    folders = [bundles["1"].folder, bundles["2"].folder]
    for version in ("7", "8"):
        folders.append(
            with_manifest(bundles["2"], tmp_path / version, model=ModelRef(MODEL, version))
        )
    bundle_ids = [registry.add(folder).bundle_id for folder in folders]
    assert len(set(bundle_ids)) == 4

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(str(root), bundle_ids, seed, barrier, results))
        for seed in range(WORKERS)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0

    succeeded = sorted(i for _, done, _, _ in outcomes for i in done)
    assert [e for *_, errors in outcomes for e in errors] == []
    assert sum(len(d) + r for _, d, r, _ in outcomes) == WORKERS * OPERATIONS
    history = registry.history()
    assert [a.id for a in history] == succeeded, "an action was lost or invented"
    assert len(history) == len(set(succeeded)) > WORKERS
    heads = registry.placements()
    assert sorted(h.stage for h in heads) == sorted({a.stage for a in history}), (
        "one current version per slot"
    )
    for stage in {a.stage for a in history}:
        _check_slot(
            registry.history(MODEL, DEVICE.name, stage), registry.current(MODEL, DEVICE.name, stage)
        )


def _check_slot(history, head) -> None:
    """Every action follows the one before it on its slot; rollbacks restore the stack."""
    previous = None
    for n, action in enumerate(history):
        assert action.previous_bundle_id == (previous.bundle_id if previous else None), action
        if action.kind == ROLLBACK:
            assert action.bundle_id == deployment_stack(history[:n])[-2][0], action
        else:
            assert action.kind == PROMOTE and action.forced and action.reason == "load test"
        previous = action
    assert head == history[-1]
    assert head.bundle_id == deployment_stack(history)[-1][0]
