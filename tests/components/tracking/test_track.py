"""Tests for components.tracking.track against real MLflow stores: an embedded SQLite file, and once
a real ``mlflow server`` subprocess on a loopback port (``conftest.mlflow_server``).

The candidate is the tiny int8 model of ``test_tflm_flavor`` with hand-built artifacts;
nothing is mocked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from components.artifacts import (
    Evaluation,
    ExampleSet,
    GateReport,
    QuantizedModel,
    RuleResult,
    SkippedItem,
    TrainedModel,
)
from components.errors import ComponentError
from components.tracking import track
from tests.components.tracking.test_tflm_flavor import (
    LABELS,
    PREPROCESSING,
    make_tiny_kws_tflite,
    noise_clips,
)

HISTORY = {"loss": (1.0, 0.7, 0.5), "val_loss": (1.1, 0.8, 0.6), "accuracy": (0.3, 0.5, 0.7)}
PARAMS = {"train": {"epochs": 3, "lr": 0.001}, "quantize": {"representative_examples": 8}}
DEVICE = "nucleo-f746zg"


def _candidate(root: Path, tflite: Path, accuracy: float, gate_passed: bool | None) -> dict:
    """Keyword arguments of ``track.run`` for one hand-built candidate."""
    root.mkdir(parents=True, exist_ok=True)
    keras_path = root / "model.keras"
    keras_path.write_bytes(b"not read by track")
    feature_set = ExampleSet(
        directory=root, labels=LABELS, example_shape=(49, 10, 1), preprocessing=PREPROCESSING,
        counts={"train": 30, "validation": 5, "test": 6},
        skipped=(SkippedItem("bad/clip.wav", "empty WAV"),),
    )  # fmt: skip
    evaluation = Evaluation(
        int8_accuracy=accuracy, float_accuracy=accuracy + 0.01,
        confusion=((2, 0, 0), (1, 1, 0), (0, 0, 2)), labels=LABELS,
        arena_head=4000, arena_tail=1200, arena_total=5200, arena_bisected=5192,
        flash_bytes=tflite.stat().st_size, macs=12345, host_latency_ms=0.2,
        estimated_latency_ms=MappingProxyType({DEVICE: 1.5}), test_examples=6,
    )  # fmt: skip
    gates = ()
    if gate_passed is not None:
        rules = (
            RuleResult("accuracy", accuracy, 0.5, gate_passed, "detail a"),
            RuleResult("arena_bytes", 5200, 100_000, True, "detail b"),
        )
        other = (RuleResult("arena_bytes", 5200, 100_000, True, "detail c"),)
        gates = (GateReport(device=DEVICE, rules=rules), GateReport(device="other", rules=other))
    return {
        "params": PARAMS,
        "examples": feature_set,
        "trained": TrainedModel(keras_path, LABELS, (49, 10, 1), HISTORY, params=321),
        "quantized": QuantizedModel(tflite, LABELS, (49, 10, 1), PREPROCESSING),
        "evaluation": evaluation,
        "gates": gates,
        "timings": {"train": 12.5},
    }


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_kws_tflite(tmp_path_factory.mktemp("tiny") / "kws.tflite")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def failed_run(store: Path, tiny_tflite: Path) -> track.TrackingResult:
    """One tracked candidate whose gate failed, run from inside the store directory so a
    stray ``./mlruns`` would be seen."""
    extra = store / "notes.txt"
    extra.write_text("hello")
    cwd = Path.cwd()
    os.chdir(store)
    try:
        return track.run(
            track.TrackSpec(run_name="first"),
            tracking_uri=track.default_tracking_uri(store),
            extra_artifacts=[extra],
            **_candidate(store, tiny_tflite, accuracy=0.4, gate_passed=False),
        )
    finally:
        os.chdir(cwd)


def _client(store: Path) -> MlflowClient:
    return MlflowClient(track.default_tracking_uri(store))


def test_default_tracking_uri_is_sqlite_under_work_dir(tmp_path: Path):
    assert track.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_flatten_params_dots_nested_keys_and_keeps_lists_whole():
    flat = track.flatten_params({"a": {"b": {"c": 1}}, "devices": ["x", "y"], "n": None})
    assert flat == {"a.b.c": "1", "devices": "['x', 'y']", "n": "None"}


def test_run_logs_params_metrics_and_history(failed_run, store: Path):
    run = _client(store).get_run(failed_run.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.params["train.epochs"] == "3"
    assert run.data.params["quantize.representative_examples"] == "8"
    metrics = run.data.metrics
    assert metrics["int8_accuracy"] == pytest.approx(0.4)
    assert metrics["arena_total"] == 5200 and metrics["skipped_inputs"] == 1
    assert metrics[f"estimated_latency_ms.{DEVICE}"] == pytest.approx(1.5)
    assert metrics["examples.train"] == 30 and metrics["model_parameters"] == 321
    assert metrics["stage_seconds.train"] == pytest.approx(12.5)
    history = _client(store).get_metric_history(failed_run.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.1), (1, 0.8), (2, 0.6)]


def test_run_logs_firmware_plots_and_reports(failed_run, store: Path):
    client = _client(store)
    local = Path(mlflow.artifacts.download_artifacts(
        run_id=failed_run.run_id, artifact_path="", dst_path=str(store / "dl"),
        tracking_uri=track.default_tracking_uri(store),
    ))  # fmt: skip
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {
        "firmware/kws.tflite", "firmware/model_data.cc", "firmware/model_data.h",
        "plots/training_curves.png", "plots/confusion_matrix.png",
        "reports/gate_report.json", "reports/gate_report.md",
        "reports/skipped_inputs.json", "reports/evaluation.json", "extra/notes.txt",
    } <= files  # fmt: skip
    report = json.loads((local / "reports/gate_report.json").read_text())
    assert [(g["device"], g["passed"]) for g in report] == [(DEVICE, False), ("other", True)]
    assert [r["name"] for r in report[0]["rules"]] == ["accuracy", "arena_bytes"]
    assert "FAIL" in (local / "reports/gate_report.md").read_text()
    assert "g_model[]" in (local / "firmware/model_data.cc").read_text()
    evaluation = json.loads((local / "reports/evaluation.json").read_text())
    assert evaluation["estimated_latency_ms"] == {DEVICE: 1.5}
    assert evaluation["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    skipped = json.loads((local / "reports/skipped_inputs.json").read_text())
    assert skipped == [{"path": "bad/clip.wav", "reason": "empty WAV"}]
    assert client.get_run(failed_run.run_id).info.artifact_uri.startswith((store / "").as_uri())
    assert not (store / "mlruns").exists(), "artifacts must not land in the current directory"


def test_failed_gate_is_tagged_and_model_still_registered(failed_run, store: Path):
    client = _client(store)
    tags = client.get_run(failed_run.run_id).data.tags
    assert tags["gate.passed"] == "false" and tags["gate.devices"] == f"{DEVICE},other"
    assert tags[f"gate.{DEVICE}.passed"] == "false" and tags["gate.other.passed"] == "true"
    assert tags["gate.failed_rules"] == f"{DEVICE}:accuracy"
    assert failed_run.model_version == "1"
    version = client.get_model_version("kws-ds-cnn", failed_run.model_version)
    assert version.run_id == failed_run.run_id
    assert version.tags["gate.passed"] == "false" and version.tags["gate.devices"]


def test_logged_model_serves_from_its_uri(failed_run, store: Path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(track.default_tracking_uri(store))
    try:
        model = mlflow.pyfunc.load_model(failed_run.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    frame = model.predict(list(noise_clips(2)))
    assert len(frame) == 2 and set(frame["label"]) <= set(LABELS)


def test_baseline_appears_only_after_promote(failed_run, store: Path, tiny_tflite: Path):
    uri = track.default_tracking_uri(store)
    assert track.production_baseline(uri, "kws-ds-cnn") is None
    assert track.production_baseline(uri, "no-such-model") is None
    track.promote(uri, "kws-ds-cnn", failed_run.model_version)
    baseline = track.production_baseline(uri, "kws-ds-cnn")
    assert baseline["int8_accuracy"] == pytest.approx(0.4)
    second = track.run(
        track.TrackSpec(), tracking_uri=uri,
        **_candidate(store / "second", tiny_tflite, accuracy=0.9, gate_passed=True),
    )  # fmt: skip
    assert second.model_version == "2"
    version = _client(store).get_model_version("kws-ds-cnn", "2")
    assert version.tags["gate.passed"] == "true"
    assert track.production_baseline(uri, "kws-ds-cnn")["int8_accuracy"] == pytest.approx(0.4)
    with pytest.raises(ComponentError, match="version 99"):
        track.promote(uri, "kws-ds-cnn", "99")


def test_run_without_gate_has_no_gate_tags(store: Path, tmp_path: Path, tiny_tflite: Path):
    uri = track.default_tracking_uri(store)
    before = mlflow.get_tracking_uri()
    result = track.run(
        track.TrackSpec(experiment="other", registered_model_name="other-model"),
        tracking_uri=uri, **_candidate(tmp_path, tiny_tflite, accuracy=0.5, gate_passed=None),
    )  # fmt: skip
    assert mlflow.get_tracking_uri() == before, "the process-wide URI must be restored"
    tags = MlflowClient(uri).get_run(result.run_id).data.tags
    assert not any(key.startswith("gate.") for key in tags)
    assert result.model_version == "1"


def test_run_that_cannot_log_is_marked_failed(store: Path, tmp_path: Path, tiny_tflite: Path):
    uri = track.default_tracking_uri(store)
    candidate = _candidate(tmp_path, tiny_tflite, accuracy=0.5, gate_passed=True)
    missing = tmp_path / "gone.tflite"
    candidate["quantized"] = QuantizedModel(missing, LABELS, (49, 10, 1), PREPROCESSING)
    with pytest.raises(ComponentError, match="gone.tflite"):
        track.run(
            track.TrackSpec(experiment="broken", run_name="broken"), tracking_uri=uri, **candidate
        )
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert run.info.status == "FAILED" and run.info.run_name == "broken"


def test_run_against_a_tracking_server(mlflow_server, tmp_path: Path, tiny_tflite: Path):
    url = mlflow_server.url
    result = track.run(
        track.TrackSpec(), tracking_uri=url, local_dir=tmp_path / "kept",
        **_candidate(tmp_path, tiny_tflite, accuracy=0.8, gate_passed=True),
    )  # fmt: skip
    client = MlflowClient(url)
    assert client.get_run(result.run_id).data.tags["gate.passed"] == "true"
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "firmware")}
    assert "firmware/model_data.cc" in artifacts
    assert track.production_baseline(url, "kws-ds-cnn") is None
    track.promote(url, "kws-ds-cnn", result.model_version)
    baseline = track.production_baseline(url, "kws-ds-cnn")
    assert baseline["int8_accuracy"] == pytest.approx(0.8)
    assert np.isclose(baseline[f"estimated_latency_ms.{DEVICE}"], 1.5)
