"""Cached stages of the KWS pipeline on a tiny generated set, for real (eSpeak NG, Beam,
Keras, TFLM, MLflow): an unchanged rerun reuses every stage and leaves its files alone; a
changed section recomputes that stage and what follows; ``--force``; a damaged entry; a run
killed during training resumes mid-training; two runs of one config at once."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from components.stage_cache import RUNS_FILE, code_version
from pipelines import cli, config, kws
from tests.pipelines.test_kws_end_to_end import TINY

pytest.importorskip("espeakng_loader", reason="the synthetic data needs the [synth] extra")

REPO = Path(__file__).resolve().parents[2]
BODY = {**TINY, "track": {"experiment": "cache", "registered_model_name": "kws-cache"}}
CHAIN = ("train", "prune", "quantize", "patch", "evaluate")


def _write_config(root: Path, **sections) -> Path:
    path = root / "kws.yaml"
    path.write_text(yaml.safe_dump({**BODY, **sections, "work_dir": str(root / "work")}))
    return path


def _files(work: Path) -> dict[str, int]:
    """Every file of the stage cache's entries and when it was last written (not the
    locks, nor the list of the runs that used them)."""
    stages = work / "stages"
    return {str(p.relative_to(stages)): p.stat().st_mtime_ns for p in stages.rglob("*")
            if p.is_file() and p.suffix != ".lock" and p.name != RUNS_FILE}  # fmt: skip


def _last_run(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cache")
    (last, *_) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    )
    return last


def _cli(path: Path, uri: str, *extra: str) -> int:
    return cli.main(["run", str(path), "--tracking-uri", uri, "--no-progress", *extra])


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    path, uri = _write_config(root), f"sqlite:///{root}/mlflow.db"
    result = kws.run(config.load(path), tracking_uri=uri, progress=False)
    return root, path, uri, result


def test_cold_run_computes_every_stage(cold):
    *_, result = cold
    assert result.computed == kws.STAGES and result.reused == ()


def test_unchanged_rerun_reuses_every_stage_and_touches_no_file(cold):
    root, path, uri, first = cold
    before = _files(root / "work")
    again = kws.run(config.load(path), tracking_uri=uri, progress=False)
    assert again.reused == kws.STAGES and again.computed == ()
    assert _files(root / "work") == before, "a reused stage must not rewrite its outputs"
    for name in ("trained", "prune", "quantized", "patch", "evaluation"):
        assert getattr(again, name) == getattr(first, name), name
    assert again.tracking.run_id != first.tracking.run_id, "every run is tracked"
    run = _last_run(uri)
    assert run.data.tags["stages.reused"] == ",".join(kws.STAGES)
    assert run.data.tags["stages.computed"] == ""
    assert run.data.tags["stages.train.key"] == first.trained.path.parent.name
    assert run.data.metrics["stage_reused.train"] == 1.0


def test_a_changed_section_recomputes_that_stage_and_the_later_ones(cold):
    root, path, uri, first = cold
    changed = config.load(path, ["quantize.representative_examples=10"])
    result = kws.run(changed, tracking_uri=uri, progress=False)
    assert result.reused == ("data", "features", "train", "prune")
    assert result.computed == ("quantize", "patch", "evaluate")
    assert result.trained == first.trained
    assert result.quantized.path != first.quantized.path and first.quantized.path.is_file()


def test_force_recomputes_the_stage_and_every_later_one(cold):
    root, path, uri, _ = cold
    assert _cli(path, uri, "--force", "patch") == 0
    tags = _last_run(uri).data.tags
    assert tags["stages.computed"] == "patch,evaluate"
    assert tags["stages.reused"] == "data,features,train,prune,quantize"
    assert _cli(path, uri, "--force") == 0
    tags = _last_run(uri).data.tags
    assert tags["stages.computed"] == ",".join(kws.STAGES) and tags["stages.reused"] == ""


def test_force_of_an_unknown_stage_is_refused_before_any_work(cold, capsys):
    root, path, uri, _ = cold
    runs = _last_run(uri).info.run_id
    assert _cli(path, uri, "--force", "images") == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "--force images: no such stage" in err and "features" in err
    assert _last_run(uri).info.run_id == runs


def test_a_damaged_entry_is_recomputed_and_the_rest_reused(cold):
    root, path, uri, _ = cold
    keys, stages = _last_run(uri).data.tags, root / "work" / "stages"
    quantize_entry = stages / "quantize" / keys["stages.quantize.key"]
    (quantize_entry / "artifact.json").write_text("{ half written")
    plan = stages / "patch" / keys["stages.patch.key"] / "patch_plan.md"
    plan.write_text("changed")
    result = kws.run(config.load(path), tracking_uri=uri, progress=False)
    assert result.computed == ("quantize", "patch")
    assert result.reused == ("data", "features", "train", "prune", "evaluate")
    assert json.loads((quantize_entry / "artifact.json").read_text())["key"] == quantize_entry.name
    assert plan.read_text().startswith("# Patch plan")


def test_cache_prune_removes_what_the_latest_run_did_not_use(cold, capsys):
    root, path, uri, _ = cold
    stages = root / "work" / "stages"
    entries = lambda stage: {p.name for p in (stages / stage).iterdir() if p.is_dir()}  # noqa: E731
    cached = ("features", *CHAIN)
    before = {stage: entries(stage) for stage in cached}
    # the changed quantize section and the forced regeneration of the data left older ones
    assert len(before["quantize"]) > len(before["train"]) > 1
    keys = _last_run(uri).data.tags
    assert cli.main(["cache", str(path)]) == 0
    listing = capsys.readouterr().out
    assert f"| quantize | {len(before['quantize'])} | 1 |" in listing
    assert cli.main(["cache", str(path), "--prune"]) == 0
    report = capsys.readouterr().out
    assert f"removed {sum(len(e) - 1 for e in before.values())} entries" in report
    assert f"| train | {len(before['train'])} | 1 | {len(before['train']) - 1} |" in report
    for stage in cached:
        assert entries(stage) == {keys[f"stages.{stage}.key"]}, stage
    again = kws.run(config.load(path), tracking_uri=uri, progress=False)
    assert again.reused == kws.STAGES, "what the latest run used is still cached"


def _wait_for(predicate, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "training never wrote a backup"
        time.sleep(0.05)


def test_a_run_killed_during_training_resumes_mid_training(cold, caplog):
    root, path, uri, _ = cold
    epochs = ["--set", "train.epochs=12", "--set", "train.early_stopping_patience=12"]
    command = [sys.executable, "-m", "pipelines.cli", "run", str(path), "--tracking-uri", uri,
               "--no-progress", *epochs]  # fmt: skip
    train_dir = root / "work" / "stages" / "train"
    backups = lambda: list(train_dir.glob("*.resume/training_metadata.json"))  # noqa: E731
    with open(root / "killed.log", "w") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_for(backups, process, 300)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    (backup,) = backups()
    key = backup.parent.name.removesuffix(".resume")
    assert not (train_dir / key).exists(), "nothing published for the killed training"
    code_version.cache_clear()  # read the sources again, as the killed process did: others
    # may have edited the checkout since this process started
    with caplog.at_level(logging.INFO, logger="components.train"):
        result = kws.run(config.load(path, [e for e in epochs if e != "--set"]),
                         tracking_uri=uri, progress=False)  # fmt: skip
    assert result.reused == ("data", "features") and result.computed == CHAIN
    resumed = [r.getMessage() for r in caplog.records if "resuming training" in r.getMessage()]
    assert resumed, "training started again from the first epoch"
    assert result.trained.path.parent.name == key and not backup.parent.exists()
    assert len(result.trained.history["loss"]) == 12, "the whole history survives the restart"
    history = MlflowClient(uri).get_metric_history(result.tracking.run_id, "loss")
    assert [h.step for h in history] == list(range(12))


def test_two_runs_of_one_config_at_once_both_succeed_and_build_each_stage_once(tmp_path):
    path, uri = _write_config(tmp_path), f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "pipelines.cli", "run", str(path), "--tracking-uri", uri,
               "--no-progress"]  # fmt: skip
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cache")
    tracked = client.search_runs([experiment.experiment_id])
    assert len(tracked) == 2
    computed = [set(filter(None, r.data.tags["stages.computed"].split(","))) for r in tracked]
    cached = set(kws.STAGES) - {"data"}  # the data stage lists what the generator left
    assert computed[0] & computed[1] & cached == set(), "a stage was built twice"
    assert (computed[0] | computed[1]) >= cached
    for stage in cached:
        assert len([p for p in (tmp_path / "work/stages" / stage).iterdir() if p.is_dir()]) == 1
    metrics = [r.data.metrics for r in tracked]
    assert metrics[0]["int8_accuracy"] == metrics[1]["int8_accuracy"]
    assert metrics[0]["flash_bytes"] == metrics[1]["flash_bytes"]
