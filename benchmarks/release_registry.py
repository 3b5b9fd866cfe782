"""Benchmark the device registry: promotion and pull latency, and concurrent writers.

    python benchmarks/release_registry.py [--repeats N] [--writers P] [--actions K]
                                          [--no-mlflow]

Everything is real: bundles of the test suite's tiny int8 model are built by
``bundle.build`` (firmware export, arena measured on TFLM) and signed with a fresh Ed25519
key; the registry is ``DeviceRegistry.local`` (SQLite index, content-addressed folders)
trusting only that key, so every promotion and pull checks the signature and every file's
SHA-256. Promotion is timed twice: on the local store alone, and mirrored into a real
SQLite-backed MLflow Model Registry (aliases and tags moved on each action, as
``tflm-pipelines promote --tracking-uri`` does), to show what keeping MLflow in step costs.

Per repetition: build and sign version i, promote it to staging, then to production, then
roll production back to the baseline version (so every repetition starts from the same
state). Pull fetches the current production bundle into a new folder and verifies it.
Concurrent writers: P spawned processes, started together behind a barrier, each do K
successful forced promotions or rollbacks (a refused one, e.g. nothing to roll back, is
counted and retried) on one registry folder; afterwards the history must hold exactly P*K
actions, each slot must follow its own history (``test_concurrency``'s check), and SQLite's
integrity and foreign-key checks must pass. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE = "1"  # the version in production before each repetition (MLflow numbers from 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="latency repetitions (N)")
    parser.add_argument("--writers", type=int, default=8, help="concurrent processes (P)")
    parser.add_argument("--actions", type=int, default=16, help="actions per process (K)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow mirror")
    args = parser.parse_args()
    if min(args.repeats, args.writers, args.actions) < 1:
        parser.error("--repeats, --writers and --actions must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))

    with tempfile.TemporaryDirectory(prefix="release-registry-") as work:
        work = Path(work)
        bundles, build_s = _build_bundles(work, args.repeats + 1)
        promotions, registry = _promotion_rows(work / "local", bundles, None)
        rows = [
            (f"bundle build + sign (median / p95, n={args.repeats + 1})", _stats(build_s)),
            *promotions,
            _pull_row(registry, work / "pulled", args.repeats),
        ]
        if not args.no_mlflow:
            uri = _tracked_versions(work / "mlflow", bundles)
            rows += _promotion_rows(work / "mirrored", bundles, uri, " + MLflow mirror")[0]
        rows += _concurrency_rows(work / "concurrent", bundles, args.writers, args.actions)
    from benchmarks.chain_report import print_table

    print_table(rows)
    return 0


def _build_bundles(work: Path, count: int):
    """``count`` signed bundles, versions "1".."count" with rising accuracy (so promoting
    the next one is never a regression), and the seconds each build + sign took."""
    from components.release import signing
    from components.release.bundle import BundleSpec, build
    from tests.components.release.conftest import DEVICE, candidate
    from tests.conftest import tiny_int8_model

    model = tiny_int8_model.__wrapped__()  # the suite's fixture, built the same way here
    signing.generate_key_pair(work / "key.pem", work / "key.pub")
    bundles, seconds = [], []
    for n in range(1, count + 1):
        start = time.perf_counter()
        c = candidate(model, str(n), 0.80 + n * 0.001, True)
        bundle = build(BundleSpec(created_by="benchmark"), c, DEVICE, work / f"v{n}")
        signing.sign(bundle.folder, work / "key.pem")
        seconds.append(time.perf_counter() - start)
        bundles.append(bundle.folder)
    return bundles, seconds


def _registry(root: Path, tracking_uri: str | None = None):
    from components.release.registry import DeviceRegistry

    public_key = root.parent / "key.pub"
    return DeviceRegistry.local(root, tracking_uri=tracking_uri, public_key=public_key)


def _promotion_rows(root: Path, folders: list[Path], tracking_uri: str | None, label: str = ""):
    """Add every bundle, put the baseline in production, then time each repetition's
    staging and production promotions and the rollback; the rows and the registry."""
    from tests.components.release.conftest import DEVICE, MODEL

    registry = _registry(root, tracking_uri)
    ids = [registry.add(folder).bundle_id for folder in folders]
    registry.promote(ids[0], "production", reason="baseline")
    times: dict[str, list[float]] = {"staging": [], "production": [], "rollback": []}
    for bundle_id in ids[1:]:
        times["staging"].append(_timed(registry.promote, bundle_id, "staging"))
        times["production"].append(_timed(registry.promote, bundle_id, "production"))
        times["rollback"].append(_timed(registry.rollback, MODEL, DEVICE.name, "production"))
    assert registry.current(MODEL, DEVICE.name).version == BASELINE
    rows = [
        (f"promote to staging{label} (median / p95, n={len(ids) - 1})", _stats(times["staging"])),
        (f"promote to production{label}", _stats(times["production"])),
        (f"rollback production{label}", _stats(times["rollback"])),
    ]
    return rows, registry


def _pull_row(registry, to_dir: Path, repeats: int) -> tuple[str, str]:
    """``registry pull``: the production bundle copied to a new folder and verified (every
    file's SHA-256 and the signature by the trusted key), ``repeats`` times."""
    from tests.components.release.conftest import DEVICE

    pulls = [_timed(registry.pull, DEVICE.name, to_dir / str(n)) for n in range(repeats)]
    return ("pull production + verify hashes and signature", _stats(pulls))


def _tracked_versions(root: Path, folders: list[Path]) -> str:
    """A real SQLite MLflow store whose Model Registry knows versions "1".."len(folders)"
    of the model (the mirror refuses a version MLflow does not know)."""
    from mlflow import MlflowClient

    from components.tracking.track import default_tracking_uri
    from tests.components.release.conftest import MODEL

    root.mkdir()
    uri = default_tracking_uri(root)
    client = MlflowClient(uri)
    client.create_registered_model(MODEL)
    for folder in folders:
        client.create_model_version(MODEL, source=folder.resolve().as_uri())
    return uri


def _concurrency_rows(root: Path, folders: list[Path], writers: int, actions: int):
    from components.release import load_test
    from components.release.registry import DeviceRegistry
    from tests.components.release.conftest import DEVICE, MODEL
    from tests.components.release.test_concurrency import _check_slot

    registry = _registry(root)
    ids = [registry.add(folder).bundle_id for folder in folders[:4]]
    outcomes = load_test.concurrent_actions(root, ids, MODEL, DEVICE.name, writers, actions)
    errors = [o.error for o in outcomes if o.error]
    if errors:
        raise SystemExit(f"a writer failed: {errors[0]}")
    seconds = max(o.end for o in outcomes) - min(o.start for o in outcomes)
    done = sorted(i for o in outcomes for i in o.action_ids)
    history = DeviceRegistry.local(root).history()
    lost = len(done) != writers * actions or [a.id for a in history] != done
    for stage in {a.stage for a in history}:
        _check_slot(
            registry.history(MODEL, DEVICE.name, stage), registry.current(MODEL, DEVICE.name, stage)
        )  # raises AssertionError on any inconsistency
    with contextlib.closing(sqlite3.connect(root / "registry.db")) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        dangling = db.execute("PRAGMA foreign_key_check").fetchall()
    refused = sum(o.refused for o in outcomes)
    return [
        ("concurrent writers (P x K)", f"{writers} x {actions} on one local store"),
        ("concurrent actions per second", f"{len(done) / seconds:.1f} ({seconds:.2f} s)"),
        ("actions in history / expected", f"{len(history)} / {writers * actions}"),
        ("refused and retried (nothing to roll back, already there)", str(refused)),
        (
            "none lost, slots consistent, SQLite integrity",
            "yes" if not lost and integrity == "ok" and not dangling else "NO",
        ),
    ]


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _stats(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"{np.median(ms):.1f} / {np.percentile(ms, 95):.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
