"""Fixtures of the tracking tests: a real ``mlflow server`` (see ``tracking_server``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.tracking.tracking_server import TrackingServer


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A started server with a fresh store, stopped after the test."""
    server = TrackingServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
