"""The whole KWS pipeline through the CLI on a tiny generated set: real eSpeak NG data, real
Beam (DirectRunner), real Keras training, real TFLM, a real MLflow store and registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from components.audio.wav import load_clip
from pipelines import cli
from tests.shared_data import require

pytest.importorskip("espeakng_loader", reason="the synthetic data needs the [synth] extra")

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "data": {
        "synth": {
            "keywords": ["yes", "no"],
            "unknown_words": ["cat", "dog"],
            "train_voices": ["en-us+m1", "en+f2", "en-gb-x-rp+m7"],
            "validation_voices": ["en-us+m2"],
            "test_voices": ["en-us+m6"],
            "takes_per_voice": 4,
            "eval_takes_per_voice": 3,
            "noise_seconds": 5.0,
        },
        "reader": {"keywords": ["yes", "no"]},
    },
    "train": {"epochs": 2, "batch_size": 16},
    "quantize": {"representative_examples": 20},
    "devices": [
        str(REPO / "configs/devices/nucleo_l4r5zi.yaml"),
        str(REPO / "configs/devices/rpi_pico.yaml"),
    ],
    "gate": {"min_accuracy": 0.0, "max_latency_ms": 1000},
    "track": {"experiment": "e2e", "registered_model_name": "kws-e2e", "promote_on_pass": True},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on the same data: the first passes its gate and is promoted, the second is
    held to an impossible latency and fails."""
    root = tmp_path_factory.mktemp("e2e")
    config = root / "kws.yaml"
    config.write_text(yaml.safe_dump({**TINY, "work_dir": str(root / "work")}))
    uri = f"sqlite:///{root}/mlflow.db"
    common = [str(config), "--tracking-uri", uri, "--no-progress"]
    first = cli.main(["run", *common])
    second = cli.main(
        ["run", *common, "--set", "gate.max_latency_ms=0.0001", "--direct_num_workers=1"]
    )
    return root, uri, first, second


def test_gate_pass_and_fail_set_the_exit_status(runs):
    _, _, first, second = runs
    assert first == 0
    assert second == cli.EXIT_GATE_FAILED


def test_mlflow_holds_metrics_registered_versions_and_gate_tags(runs):
    _, uri, *_ = runs
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("e2e")
    finished = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert [r.info.status for r in finished] == ["FINISHED", "FINISHED"]
    passed, failed = finished
    assert passed.data.tags["gate.passed"] == "true"
    assert failed.data.tags["gate.passed"] == "false"
    assert "latency_ms" in failed.data.tags["gate.failed_rules"]
    assert passed.data.tags["patch.applied"] in {"true", "false"}
    assert passed.data.tags["patch.reason"]
    extra = {a.path for a in client.list_artifacts(passed.info.run_id, "extra")}
    assert {"extra/patch_plan.md", "extra/memory_unpatched.png"} <= extra
    for run in finished:
        m = run.data.metrics
        assert 0.0 <= m["int8_accuracy"] <= 1.0 and m["arena_total"] > 0
        assert m["arena_total"] == m["arena_bisected"], "TFLM's figure must be the true minimum"
        assert m["arena_head"] + m["arena_tail"] == m["arena_total"]
        assert m["flash_bytes"] > 10_000 and m["macs"] > 100_000
    versions = client.search_model_versions("name='kws-e2e'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert str(client.get_model_version_by_alias("kws-e2e", "production").version) == "1"
    history = client.get_metric_history(passed.info.run_id, "loss")
    assert [h.step for h in history] == [0, 1]


def test_registered_model_predicts_raw_clips_with_tflm(runs):
    root, uri, *_ = runs
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model("models:/kws-e2e@production")
    finally:
        mlflow.set_tracking_uri(None)
    clips = sorted((root / "work/data/synth/yes").glob("*.wav"))[:3]
    by_path = model.predict([str(p) for p in clips])
    by_array = model.predict([load_clip(p) for p in clips])
    assert list(by_path["label"]) == list(by_array["label"])
    assert set(by_path["label"]) <= {"_silence_", "_unknown_", "yes", "no"}
    assert np.all((by_path["score"] >= 0) & (by_path["score"] <= 1))


def test_bad_config_is_refused_before_any_work(tmp_path, capsys):
    config = tmp_path / "kws.yaml"
    config.write_text(yaml.safe_dump({**TINY, "work_dir": str(tmp_path / "work")}))
    status = cli.main(["run", str(config), "--set", "train.epochs=zero"])
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "key 'train.epochs'" in err and err.count("\n") == 1
    assert not (tmp_path / "work").exists()


def test_a_mix_of_generated_and_real_clips_trains_on_both(runs, tmp_path):
    """``data.source: mix`` with a generated and a real source: the training split holds
    clips of both (the real ones, from the shared Speech Commands sample, are named
    ``<speaker>_nohash_<n>.wav``)."""
    import tensorflow as tf

    real = require("data", "speech_commands")
    root, *_ = runs
    mix = [{"source": "synth"}, {"source": "speech_commands", "path": str(real)}]
    data = {**TINY["data"], "source": "mix", "mix": mix}
    work = tmp_path / "work"
    shutil.copytree(root / "work" / "data", work / "data")  # the generated clips, not redone
    config = tmp_path / "mix.yaml"
    body = {**TINY, "data": data, "work_dir": str(work), "train": {"epochs": 1, "batch_size": 16}}
    config.write_text(yaml.safe_dump(body))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert cli.main(["run", str(config), "--tracking-uri", uri, "--no-progress"]) in (0, 3)
    shards = sorted(map(str, (work / "stages" / "features").glob("*/train-*.tfrecord")))
    keys = [
        tf.train.Example.FromString(r.numpy()).features.feature["key"].bytes_list.value[0]
        for r in tf.data.TFRecordDataset(shards)
    ]
    real_clips = {k for k in keys if b"_nohash_" in k}  # Speech Commands' file names
    assert real_clips and len(real_clips) < len(keys)
