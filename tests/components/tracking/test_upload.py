"""A tracking server that is down from the start, or dies between two logging calls, loses
nothing: the run stays in its local folder, the error names the server, what was being logged
and the upload command, and that command (run after the server is back) completes the run,
its registered version and aliases. Real ``mlflow server`` processes, killed with SIGKILL.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from components.errors import ComponentError
from components.tracking import replay, track
from pipelines import cli
from tests.components.tracking.test_tflm_flavor import make_tiny_kws_tflite, noise_clips
from tests.components.tracking.test_track import _candidate
from tests.components.tracking.tracking_server import TrackingServer, free_port, run_record

MODEL = "kws-upload"
# Fail fast: one retry, no backoff, a short timeout (the defaults ride out a minute).
FAST = {"server_max_retries": 1, "server_backoff_factor": 0, "server_timeout_s": 5}


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_kws_tflite(tmp_path_factory.mktemp("tiny") / "kws.tflite")


def _track(url: str, root: Path, tflite: Path) -> track.TrackingResult:
    return track.run(
        track.TrackSpec(experiment="upload", registered_model_name=MODEL, **FAST),
        tracking_uri=url, aliases=("production",), local_dir=root / "kept",
        **_candidate(root / "candidate", tflite, accuracy=0.8, gate_passed=True),
    )  # fmt: skip


def _kept_folder(root: Path) -> Path:
    (folder,) = (root / "kept").iterdir()
    return folder


def _local_record(folder: Path) -> dict:
    client = MlflowClient(replay.local_uri(folder))
    (run,) = client.search_runs([client.get_experiment_by_name("upload").experiment_id])
    return run_record(client, run.info.run_id)


def _remote_runs(url: str) -> list:
    client = MlflowClient(url)
    return client.search_runs([client.get_experiment_by_name("upload").experiment_id])


def _assert_error_keeps_the_run(error: ComponentError, url: str, root: Path, what: str) -> Path:
    folder = _kept_folder(root)
    message = str(error)
    assert url in message and f"while logging {what} of run" in message
    assert f"tflm-pipelines upload {folder} --tracking-uri {url}" in message
    assert "\n" not in message, "the CLI prints it as one line"
    kept = _local_record(folder)
    assert kept["status"] == "FINISHED" and kept["aliases"] == ["production"]
    assert {"firmware/kws.tflite", "reports/gate_report.json"} <= set(kept["artifacts"])
    return folder


def _assert_same(remote: dict, local: dict) -> None:
    for key, value in local.items():
        assert remote[key] == value, key


def _upload(folder: Path, url: str, capsys) -> None:
    assert cli.main(["upload", str(folder), "--tracking-uri", url]) == 0
    assert f"uploaded to {url}: MLflow run" in capsys.readouterr().out


def test_unreachable_server_keeps_the_run_and_upload_completes_it(tmp_path, tiny_tflite, capsys):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    before = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",)}
    with pytest.raises(ComponentError) as error:
        _track(url, tmp_path, tiny_tflite)
    assert {k: os.environ.get(k) for k in before} == before, "retry settings are restored"
    folder = _assert_error_keeps_the_run(error.value, url, tmp_path, "the experiment")
    server = TrackingServer(tmp_path / "server", port)
    (tmp_path / "server").mkdir()
    server.start()
    try:
        _upload(folder, url, capsys)
        (remote,) = _remote_runs(url)
        _assert_same(run_record(MlflowClient(url), remote.info.run_id), _local_record(folder))
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(url)
        try:
            model = mlflow.pyfunc.load_model(f"models:/{MODEL}@production")
        finally:
            mlflow.set_tracking_uri(previous)
        assert len(model.predict(list(noise_clips(2)))) == 2
    finally:
        server.stop()


class _KillAt(logging.Handler):
    """Kills the server when the upload announces ``step``: between two logging calls."""

    def __init__(self, server: TrackingServer, step: str) -> None:
        super().__init__()
        self.server, self.step = server, step

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(f"uploading {self.step} of run"):
            self.server.kill()


def test_server_killed_between_logging_calls_loses_nothing(mlflow_server, tmp_path, tiny_tflite,
                                                           capsys):  # fmt: skip
    url, root = mlflow_server.url, tmp_path / "client"
    killer = _KillAt(mlflow_server, "metrics")
    logger = logging.getLogger(replay.__name__)
    logger.addHandler(killer)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(ComponentError) as error:
            _track(url, root, tiny_tflite)
    finally:
        logger.removeHandler(killer)
    folder = _assert_error_keeps_the_run(error.value, url, root, "metrics")
    mlflow_server.start()
    (partial,) = _remote_runs(url)
    assert partial.info.status == "RUNNING" and partial.data.params and not partial.data.metrics
    _upload(folder, url, capsys)
    _upload(folder, url, capsys)  # a second upload finds the copy complete: no duplicates
    (remote,) = _remote_runs(url)
    assert remote.info.run_id == partial.info.run_id
    _assert_same(run_record(MlflowClient(url), remote.info.run_id), _local_record(folder))
    assert len(MlflowClient(url).search_model_versions(f"name='{MODEL}'")) == 1


def test_tags_after_the_run_survive_a_server_that_died_since(mlflow_server, tmp_path,
                                                            tiny_tflite, capsys):  # fmt: skip
    """The release stage tags a run after it was uploaded: with the server gone by then,
    the tags land in the kept copy, the error names the upload command, and the upload
    puts them on the server's run."""
    url, root = mlflow_server.url, tmp_path / "client"
    result = _track(url, root, tiny_tflite)
    assert result.kept == _kept_folder(root)
    mlflow_server.kill()
    spec = track.TrackSpec(**FAST)
    with pytest.raises(ComponentError) as error:
        track.tag_run(url, result.run_id, {"release.devices": "board_a"}, kept=result.kept,
                      spec=spec)  # fmt: skip
    assert "while logging tags of run" in str(error.value)
    assert f"tflm-pipelines upload {result.kept} --tracking-uri {url}" in str(error.value)
    assert _local_record(result.kept)["tags"]["release.devices"] == "board_a"
    mlflow_server.start()
    _upload(result.kept, url, capsys)
    assert MlflowClient(url).get_run(result.run_id).data.tags["release.devices"] == "board_a"


def test_upload_refuses_a_folder_that_holds_no_run(tmp_path, capsys):
    assert cli.main(["upload", str(tmp_path), "--tracking-uri", "http://127.0.0.1:1"]) == 1
    assert f"{tmp_path}: not a run kept for upload" in capsys.readouterr().err


def test_retry_settings_come_from_the_track_section():
    with pytest.raises(ValueError, match="server_max_retries"):
        track.TrackSpec(server_max_retries=-1)
    with replay.retrying(3, 1, 7):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
        assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
