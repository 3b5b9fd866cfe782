"""A real ``mlflow server`` for the tracking tests, and what a tracked run holds.

The server has the production shape: a SQL backend store (a SQLite file here; a PostgreSQL
URI works the same) and proxied artifacts under one folder, on loopback on a free port. A
test can kill it (SIGKILL, as a crash) and start it again on the same store and port, as an
operator restarting it would. :func:`run_record` reads back everything a run logged and
registered, so two stores can be compared.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

START_S = 240  # importing the server takes half a minute on 2 loaded cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """One ``mlflow server`` process over the store in ``root``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> TrackingServer:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root}/server.db",
            "--artifacts-destination", str(self.root / "server-artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with (self.root / "server.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                command, cwd=self.root, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        log = (self.root / "server.log").read_text()[-1500:]
        pytest.fail(f"mlflow server did not answer within {START_S} s:\n{log}")

    def kill(self) -> None:
        """Die at once, as a crashed server does (no clean shutdown)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_record(client, run_id: str, values: bool = True) -> dict:
    """Tags, params, metric histories, artifact files, the logged model and its registered
    version with aliases; with ``values=False`` only what must not vary between two runs of
    one config (names, steps, params), not measured values or generated names."""
    from components.tracking.replay import SOURCE_TAG

    run = client.get_run(run_id)
    unstable = {SOURCE_TAG, "mlflow.runName"} if not values else {SOURCE_TAG}
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    (version,) = client.search_model_versions(f"run_id='{run_id}'")
    aliases = client.get_registered_model(version.name).aliases
    return {
        "status": run.info.status,
        "tags": _pick({k: v for k, v in run.data.tags.items() if k not in unstable}, values),
        "params": run.data.params,
        "metrics": {
            key: [(m.step, m.value if values else None) for m in _history(client, run_id, key)]
            for key in run.data.metrics
        },
        "artifacts": _artifact_files(client, run_id),
        "model": (model.name, model.status, _pick(model.tags, values), model.params),
        "model_metrics": sorted(m.key for m in model.metrics or []),
        "version": (version.name, str(version.version), _pick(version.tags, values)),
        "aliases": sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
    }


def _pick(tags: dict, values: bool) -> dict:
    tags = {k: v for k, v in tags.items() if k != "tflm.upload.source"}
    return tags if values else dict.fromkeys(tags)


def _history(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def _artifact_files(client, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for item in client.list_artifacts(run_id, path):
        files += _artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(files)
