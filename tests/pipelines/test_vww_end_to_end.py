"""The whole person-detection pipeline through the CLI on tiny data: generated scenes or an
image folder with bad files in it, real Beam (DirectRunner), real Keras training, real TFLM,
a real MLflow store and registry; then ``tflm-pipelines evaluate`` on the registered model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from pipelines import cli

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "pipeline": "vww",
    "data": {"synth": {"image_size": 48, "train": 24, "validation": 8, "test": 8}},
    "images": {"image_size": [32, 32], "num_shards": 1},
    "train": {"epochs": 1, "batch_size": 8, "step_epochs": []},
    "quantize": {"representative_examples": 8},
    "patch": {"verify_examples": 2},
    "devices": [str(REPO / "configs/devices/nucleo_l4r5zi.yaml")],
    "gate": {"min_accuracy": 0.0, "max_latency_ms": 1000},
    "track": {"experiment": "vww-e2e", "registered_model_name": "vww-e2e"},
    "release": {"enabled": True},
}


def _run(root: Path, data: dict | None = None, *extra: str) -> tuple[int, str]:
    config = root / "vww.yaml"
    body = {**TINY, "work_dir": str(root / "work")}
    if data is not None:
        body["data"] = data
    config.write_text(yaml.safe_dump(body))
    uri = f"sqlite:///{root}/mlflow.db"
    return cli.main(["run", str(config), "--tracking-uri", uri, "--no-progress", *extra]), uri


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("vww")
    status, uri = _run(root)
    return root, uri, status


def test_generated_run_trains_patches_gates_and_registers(generated):
    root, uri, status = generated
    assert status == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vww-e2e")
    (run,) = client.search_runs([experiment.experiment_id])
    m, tags = run.data.metrics, run.data.tags
    assert 0.0 <= m["int8_accuracy"] <= 1.0 and m["examples.train"] == 24
    assert m["arena_head"] + m["arena_tail"] == m["arena_total"] > 0
    assert tags["preprocessing.kind"] == "image" and tags["preprocessing.image_size"] == "[32, 32]"
    assert tags["patch.reason"] and run.data.params["train.architecture"] == "mobilenet_v1"
    assert str(client.get_registered_model("vww-e2e").latest_versions[0].version) == "1"


def test_generated_run_ends_by_promoting_to_staging(generated):
    from components.release.registry import DeviceRegistry

    root, uri, _ = generated
    registry = DeviceRegistry.local(root / "work" / "registry")
    staged = registry.current("vww-e2e", "nucleo_l4r5zi", "staging")
    assert staged is not None and staged.version == "1"
    assert registry.current("vww-e2e", "nucleo_l4r5zi", "production") is None
    client = MlflowClient(uri)
    staged_version = client.get_model_version_by_alias("vww-e2e", "nucleo_l4r5zi-staging")
    assert str(staged_version.version) == "1"
    (run,) = client.search_runs([client.get_experiment_by_name("vww-e2e").experiment_id])
    assert run.data.tags["release.nucleo_l4r5zi"].startswith("promoted staging (bundle ")


def test_registered_model_predicts_image_files_and_arrays(generated):
    root, uri, _ = generated
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model("models:/vww-e2e/1")
    finally:
        mlflow.set_tracking_uri(None)
    photos = sorted((root / "work/data/scenes/test/person").glob("*.jpg"))[:3]
    by_path = model.predict([str(p) for p in photos])
    by_array = model.predict([np.asarray(Image.open(p).convert("RGB")) for p in photos])
    np.testing.assert_array_equal(by_path.to_numpy(), by_array.to_numpy())
    assert set(by_path["label"]) <= {"non_person", "person"}


def test_evaluate_command_on_the_generated_test_folder(generated, tmp_path, capsys):
    root, *_ = generated
    (model,) = (root / "work/stages/quantize").glob("*/model_int8.tflite")
    report = tmp_path / "report.json"
    data = root / "work/data/scenes/test"
    assert cli.main(["evaluate", str(model), "--data", str(data), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| accuracy (int8, TFLM) |" in out and "confusion" in out
    figures = json.loads(report.read_text())
    assert figures["examples"] == 8 and 0 <= figures["accuracy"] <= 1
    assert figures["arena_total"] > 0 and figures["flash_bytes"] == model.stat().st_size
    assert figures["labels"] == ["non_person", "person"]


def test_folder_run_reports_and_skips_bad_images(generated, tmp_path):
    root, *_ = generated
    folder = tmp_path / "photos"
    shutil.copytree(root / "work/data/scenes/train", folder)
    (folder / "person" / "notes.png").write_text("not an image")
    jpeg = next((folder / "person").glob("*.jpg")).read_bytes()
    (folder / "non_person" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    data = {"source": "folder", "path": str(folder), "folder": {"test_percent": 25.0}}
    status, uri = _run(tmp_path, data, "--set", "images.max_bad_fraction=0.2")
    assert status == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vww-e2e").experiment_id])
    assert run.data.metrics["skipped_inputs"] == 2
    local = Path(client.download_artifacts(run.info.run_id, "reports/skipped_inputs.json"))
    assert sorted(Path(s["path"]).name for s in json.loads(local.read_text())) == [
        "cut.jpg", "notes.png",
    ]  # fmt: skip


def test_too_many_bad_images_are_refused_naming_the_cause(tmp_path, capsys):
    folder = tmp_path / "photos"
    for label in ("person", "non_person"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_text("not an image")
        Image.new("RGB", (40, 40)).save(folder / label / "ok.png")
    status, _ = _run(tmp_path, {"source": "folder", "path": str(folder)})
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "6 of 8 images could not be decoded" in err and "max_bad_fraction" in err


def test_pruned_run_is_smaller_and_logs_the_prune_figures(tmp_path):
    status, uri = _run(
        tmp_path, None, "--set", "prune.enabled=true", "--set", "prune.channel_ratio=0.5",
        "--set", "prune.fine_tune_epochs=1", "--set", "patch.enabled=false",
    )  # fmt: skip
    assert status == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vww-e2e").experiment_id])
    m = run.data.metrics
    for figure in ("macs", "params", "flash_bytes", "arena_total"):
        assert m[f"prune.{figure}_after"] < m[f"prune.{figure}_before"], figure
    assert m["macs"] == m["prune.macs_after"]  # the chain went on with the pruned model
    assert "accuracy" in " ".join(k for k in m if k.startswith("prune.accuracy"))


def test_runner_flag_picks_the_runner_of_the_data_stage(tmp_path, capsys):
    status, _ = _run(tmp_path, None, "--runner", "NoSuchRunner")
    assert status == cli.EXIT_ERROR
    assert "image preprocessing failed on runner NoSuchRunner" in capsys.readouterr().err
