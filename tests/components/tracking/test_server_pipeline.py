"""The KWS pipeline (tiny config, through the CLI) against a real ``mlflow server``: it logs,
registers and releases exactly as with the embedded store, and a server killed just before
the track stage loses nothing (the run is kept on disk and ``tflm-pipelines upload``
completes it once the server is back on the same store)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from components.tracking import replay
from pipelines import cli
from tests.components.tracking.test_upload import FAST
from tests.components.tracking.tracking_server import TrackingServer, run_record
from tests.pipelines.test_kws_end_to_end import TINY

MODEL = TINY["track"]["registered_model_name"]


def _run(config: Path, uri: str, registry: str) -> int:
    return cli.main(["run", str(config), "--tracking-uri", uri, "--no-progress",
                     "--set", f"release.registry={registry}"])  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One run into the embedded store, one into a server; the server stays up."""
    root = tmp_path_factory.mktemp("server-e2e")
    config = root / "kws.yaml"
    track = {**TINY["track"], **FAST}
    settings = {
        **TINY,
        "work_dir": str(root / "work"),
        "track": track,
        "release": {"enabled": True},
    }
    config.write_text(yaml.safe_dump(settings))
    (root / "server").mkdir()
    server = TrackingServer(root / "server").start()
    embedded = f"sqlite:///{root}/embedded.db"
    try:
        statuses = (
            _run(config, embedded, "registry-embedded"),
            _run(config, server.url, "registry-server"),
        )
        yield config, embedded, server, statuses
    finally:
        server.stop()


def _only_run(uri: str, index: int = 0):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(TINY["track"]["experiment"])
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    return client, runs[index].info.run_id


def test_a_server_run_logs_registers_and_releases_as_the_embedded_store(stores):
    _, embedded, server, statuses = stores
    assert statuses == (0, 0)
    local = run_record(*_only_run(embedded), values=False)
    remote = run_record(*_only_run(server.url), values=False)
    for record in local, remote:  # each run has a device registry of its own
        record["params"].pop("release.registry")
    for key, value in local.items():
        assert remote[key] == value, key
    assert remote["version"][:2] == (MODEL, "1") and "production" in remote["aliases"]
    assert any(alias.endswith("-staging") for alias in remote["aliases"]), "release mirrored"
    assert "firmware/model_data.cc" in remote["artifacts"] and remote["metrics"]["loss"]


class _KillBefore(logging.Handler):
    """Kills the server as the chain starts ``stage``."""

    def __init__(self, server: TrackingServer, stage: str) -> None:
        super().__init__()
        self.server, self.stage = server, stage

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == f"stage {self.stage} ...":
            self.server.kill()


def test_server_killed_before_the_track_stage_loses_nothing(stores, capsys):
    config, _, server, _ = stores
    capsys.readouterr()
    killer, chain_log = _KillBefore(server, "track"), logging.getLogger("pipelines.chain")
    chain_log.addHandler(killer)
    try:
        status = _run(config, server.url, "registry-killed")
    finally:
        chain_log.removeHandler(killer)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == cli.EXIT_ERROR and server.url in error
    match = re.search(r"tflm-pipelines upload (\S+) --tracking-uri (\S+)$", error)
    assert match and match.group(2) == server.url, error
    folder = Path(match.group(1))
    assert folder.parent == config.parent / "work" / "tracking"
    kept_client = MlflowClient(replay.local_uri(folder))
    (kept,) = kept_client.search_runs([kept_client.get_experiment_by_name("e2e").experiment_id])
    server.start()
    assert cli.main(["upload", str(folder), "--tracking-uri", server.url]) == 0
    client, run_id = _only_run(server.url, index=1)
    remote, local = run_record(client, run_id), run_record(kept_client, kept.info.run_id)
    for key in local.keys() - {"model", "version"}:
        assert remote[key] == local[key], key
    # The server numbers the version (its second of the model); all else is the kept run's.
    assert remote["status"] == "FINISHED" and remote["version"] == (MODEL, "2", local["version"][2])
    assert _unnumbered(remote["model"]) == _unnumbered(local["model"])


def _unnumbered(model: tuple) -> tuple:
    name, status, tags, params = model
    return name, status, {k: v for k, v in tags.items() if k != "mlflow.modelVersions"}, params
