"""Fixtures of the release tests: bundles of the suite's tiny int8 model, built once.

Each bundle is a real one (``bundle.build`` runs the firmware export and measures the arena
on TFLM); tests that alter one work on a copy. The candidates differ in version, accuracy and
gate verdict so that every promotion rule can be met or broken.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import MappingProxyType

import pytest

from components.artifacts import Evaluation, GateReport, Preprocessing, RuleResult
from components.device import DeviceSpec
from components.release.bundle import Bundle, BundleSpec, ReleaseCandidate, build
from components.release.manifest import ModelRef

MODEL = "tiny-classifier"
DEVICE = DeviceSpec(
    name="board_a",
    board="Board A",
    mcu="mcu-a",
    core="cortex-m4f",
    clock_mhz=100,
    sram_bytes=256 * 1024,
    flash_bytes=1024 * 1024,
)
OTHER_DEVICE = DeviceSpec(
    name="board_b",
    board="Board B",
    mcu="mcu-b",
    core="cortex-m0plus",
    clock_mhz=50,
    sram_bytes=128 * 1024,
    flash_bytes=512 * 1024,
)
LABELS = ("a", "b", "c")
PREPROCESSING = Preprocessing(kind="image", image_size=(16, 16), channels=1)
CREATED_AT = "2026-11-30T12:00:00.000000Z"
# version -> (int8 accuracy, gate passed on board_a)
VERSIONS = {
    "1": (0.90, True),
    "2": (0.92, True),
    "3": (0.80, True),  # passes its gate but regresses from 1 and 2
    "4": (0.95, False),  # the gate failed on board_a
}


def evaluation(accuracy: float) -> Evaluation:
    return Evaluation(
        int8_accuracy=accuracy,
        float_accuracy=accuracy + 0.01,
        confusion=((3, 0, 0), (0, 3, 0), (1, 0, 2)),
        labels=LABELS,
        arena_head=800,
        arena_tail=2000,
        arena_total=2800,
        arena_bisected=2808,
        flash_bytes=5000,
        macs=6680,
        host_latency_ms=0.05,
        estimated_latency_ms=MappingProxyType({DEVICE.name: 0.13}),
        test_examples=9,
    )


def gates(accuracy: float, passed: bool) -> tuple[GateReport, ...]:
    rules = (
        RuleResult("accuracy", accuracy, 0.5, passed, "accuracy detail"),
        RuleResult("arena_bytes", 2808, 131072, True, "arena detail"),
    )
    other = (RuleResult("arena_bytes", 2808, 65536, True, "fits"),)
    return (GateReport(DEVICE.name, rules), GateReport(OTHER_DEVICE.name, other))


def candidate(model_bytes: bytes, version: str, accuracy: float, passed: bool):
    return ReleaseCandidate(
        model_bytes=model_bytes,
        model=ModelRef(MODEL, version, run_id=f"run-{version}"),
        evaluation=evaluation(accuracy),
        preprocessing=PREPROCESSING,
        gates=gates(accuracy, passed),
    )


@pytest.fixture(scope="session")
def patched_model(tiny_int8_model: bytes) -> bytes:
    from tflm_ext.rewrite import rewrite_stage

    return rewrite_stage(tiny_int8_model, 0, 2, (2, 2))


@pytest.fixture(scope="session")
def bundles(tiny_int8_model, tmp_path_factory) -> dict[str, Bundle]:
    """One bundle per entry of VERSIONS, for board_a (read-only: copy before altering)."""
    root = tmp_path_factory.mktemp("bundles")
    spec = BundleSpec(created_by="builder")
    built = {}
    for version, (accuracy, passed) in VERSIONS.items():
        c = candidate(tiny_int8_model, version, accuracy, passed)
        built[version] = build(spec, c, DEVICE, root / f"v{version}", created_at=CREATED_AT)
    return built


@pytest.fixture(scope="session")
def patched_bundle(patched_model, tmp_path_factory) -> Bundle:
    """Version 5, which runs TFLM_EXT_PATCH_STAGE (its arena is measured with the project's
    host build of the kernel)."""
    folder = tmp_path_factory.mktemp("patched") / "v5"
    c = candidate(patched_model, "5", 0.93, True)
    return build(BundleSpec(created_by="builder"), c, DEVICE, folder, created_at=CREATED_AT)


def with_manifest(bundle: Bundle, to_dir: Path, **changes) -> Path:
    """A copy of ``bundle`` whose manifest has ``changes`` (fields of Manifest), rewritten
    canonically: a consistent bundle with other content, as a builder could have made it."""
    from dataclasses import replace

    from components.release.manifest import MANIFEST_NAME, dumps

    copy_bundle(bundle, to_dir)
    (to_dir / MANIFEST_NAME).write_bytes(dumps(replace(bundle.manifest, **changes)))
    return to_dir


def copy_bundle(bundle: Bundle, to_dir: Path) -> Path:
    shutil.copytree(bundle.folder, to_dir)
    return to_dir
