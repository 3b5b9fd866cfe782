"""A real SQLite-backed MLflow store with three versions of the tracking tests' tiny keyword
model, logged by ``components.tracking.track.run`` exactly as a pipeline run logs them.

Shared by the release component tests and the release CLI tests and built once per test
session (``track.run`` takes seconds), so its aliases are shared too: a test asserts only
what its own last action set. The runs' gate reports are for ``nucleo-f746zg`` (failed for
the "failed" run) and ``other`` (passed for every run).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from components.device import DeviceSpec
from components.tracking import track
from tests.components.tracking.test_track import DEVICE as TRACKED_DEVICE
from tests.components.tracking.test_track import _candidate, make_tiny_kws_tflite

MODEL_NAME = track.TrackSpec().registered_model_name  # "kws-ds-cnn"
# run name -> (int8 accuracy, gate passed on TRACKED_DEVICE)
RUNS = {"good": (0.9, True), "worse": (0.8, True), "failed": (0.4, False)}
_STORES: dict[str, TrackedStore] = {}


@dataclass(frozen=True)
class TrackedStore:
    """The store's URI, its root folder, and the registered version of each run name."""

    uri: str
    root: Path
    versions: dict[str, str]


def tracked_store(tmp_path_factory: pytest.TempPathFactory) -> TrackedStore:
    if "store" not in _STORES:
        root = tmp_path_factory.mktemp("mlflow-store")
        tflite = make_tiny_kws_tflite(root / "kws.tflite")
        uri = track.default_tracking_uri(root)
        versions = {}
        for name, (accuracy, passed) in RUNS.items():
            result = track.run(
                track.TrackSpec(run_name=name),
                tracking_uri=uri,
                **_candidate(root / name, tflite, accuracy, passed),
            )
            versions[name] = result.model_version
        _STORES["store"] = TrackedStore(uri, root, versions)
    return _STORES["store"]


def tracked_device(name: str = TRACKED_DEVICE, **changes) -> DeviceSpec:
    """A board with the gated device's name (the runs' gate reports are for it)."""
    base = DeviceSpec(
        name=name,
        board="NUCLEO-F746ZG",
        mcu="STM32F746ZG",
        core="cortex-m7",
        clock_mhz=216,
        sram_bytes=327680,
        flash_bytes=1048576,
    )
    return DeviceSpec(**{**{f.name: getattr(base, f.name) for f in fields(base)}, **changes})
