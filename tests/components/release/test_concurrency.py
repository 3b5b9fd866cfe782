"""Eight processes promoting and rolling back on one registry at once (a real SQLite file).

Each worker is a separate interpreter (spawn) with its own DeviceRegistry on the same folder;
all start together behind a barrier and mix forced promotions of four bundles with
rollbacks, on the production and staging slots of one device. Afterwards the history must
hold exactly the actions the workers saw succeed, each slot exactly one current version,
every action must name as previous the one before it on its slot (no lost update), and
every rollback must have restored what the stack of promotions says it should.
"""

from __future__ import annotations

from components.release import load_test
from components.release.backend import PROMOTE, ROLLBACK
from components.release.manifest import ModelRef
from components.release.registry import DeviceRegistry, deployment_stack
from tests.components.release.conftest import DEVICE, MODEL, with_manifest

WORKERS = 8
ACTIONS = 8  # successful ones, per worker


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

    outcomes = load_test.concurrent_actions(
        root, bundle_ids, MODEL, DEVICE.name, WORKERS, ACTIONS, timeout_s=120
    )
    assert [o.error for o in outcomes if o.error] == []
    succeeded = sorted(i for o in outcomes for i in o.action_ids)
    assert len(succeeded) == WORKERS * ACTIONS
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
