"""The stage cache on its own: fingerprints, the code version, atomic entries that are reused,
forced, rebuilt when damaged, built once by two processes at once, and artifacts that come
back from JSON equal to what was saved."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import time
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from components.artifacts import (
    Evaluation,
    ExampleSet,
    Preprocessing,
    QuantizedModel,
    SkippedItem,
    TrainedModel,
)
from components.errors import ComponentError
from components.patch import PatchResult
from components.prune import PruneResult
from components.pruning.budgets import Figures
from components.stage_cache import (
    ARTIFACT_FILE,
    StageCache,
    code_version,
    files_fingerprint,
    fingerprint,
    load_artifact,
    save_artifact,
)
from components.train import TrainSpec


def test_fingerprint_is_of_the_value_not_its_spelling():
    assert fingerprint({"a": 1, "b": (2, 3)}) == fingerprint({"b": [2, 3], "a": 1})
    assert fingerprint(TrainSpec(epochs=3)) == fingerprint(TrainSpec(epochs=3))
    assert fingerprint(TrainSpec(epochs=3)) != fingerprint(TrainSpec(epochs=4))
    assert fingerprint("train", "k1") != fingerprint("prune", "k1")
    assert fingerprint(types.MappingProxyType({"x": 1.5})) == fingerprint({"x": 1.5})
    assert len(fingerprint(Path("/a"))) == 16


def test_fingerprint_refuses_what_it_cannot_read():
    with pytest.raises(ComponentError, match="cannot fingerprint"):
        fingerprint(object())


def test_files_fingerprint_sees_a_rewritten_or_missing_file(tmp_path):
    clip = tmp_path / "yes.wav"
    clip.write_bytes(b"1234")
    before = files_fingerprint([clip, str(clip)])
    assert files_fingerprint([clip]) == before
    clip.write_bytes(b"123456")
    assert files_fingerprint([clip]) != before
    clip.unlink()
    assert files_fingerprint([clip]) not in {before, files_fingerprint([])}


def test_code_version_follows_sources_and_kernels_only(tmp_path):
    version = code_version.__wrapped__  # uncached, so each call reads the tree again
    kernels = tmp_path / "pkg" / "kernels"
    kernels.mkdir(parents=True)
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    (kernels / "op.cc").write_text("int f() { return 1; }\n")
    first = version(tmp_path, ("pkg",))
    (tmp_path / "pkg" / "notes.txt").write_text("not a source")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "mod.py").write_text("cached")
    assert version(tmp_path, ("pkg",)) == first
    (kernels / "op.cc").write_text("int f() { return 2; }\n")
    assert version(tmp_path, ("pkg",)) != first
    assert code_version() == code_version()  # the project's own, computed once


def _write_model(out: Path, text: str = "weights") -> TrainedModel:
    (out / "model.keras").write_text(text)
    return TrainedModel(out / "model.keras", ("a", "b"), (4, 1), {"loss": (0.5, 0.25)}, 7)


def test_compute_builds_once_then_reuses_the_entry(tmp_path):
    cache, calls = StageCache(tmp_path / "stages"), []

    def build(out: Path) -> TrainedModel:
        calls.append(out)
        return _write_model(out)

    built, reused = cache.compute("train", "k1", build)
    again, reused_again = cache.compute("train", "k1", build)
    assert (reused, reused_again) == (False, True) and len(calls) == 1
    assert again == built and built.path == cache.entry("train", "k1") / "model.keras"
    assert built.path.read_text() == "weights"
    assert not calls[0].exists(), "the temporary folder is gone once published"
    forced, reused_forced = cache.compute("train", "k1", build, force=True)
    assert not reused_forced and len(calls) == 2 and forced == built


def test_a_failed_build_leaves_no_entry(tmp_path):
    cache = StageCache(tmp_path / "stages")

    def fail(out: Path):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.compute("train", "k1", fail)
    assert cache.load("train", "k1") is None
    assert sorted(p.name for p in (tmp_path / "stages" / "train").iterdir()) == ["k1.lock"]


@pytest.mark.parametrize("damage", ["bad json", "changed file", "missing file", "format"])
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path, damage):
    cache = StageCache(tmp_path / "stages")
    cache.compute("train", "k1", _write_model)
    entry = cache.entry("train", "k1")
    if damage == "bad json":
        (entry / ARTIFACT_FILE).write_text('{"format": 1, "key": "k1", "artif')
    elif damage == "changed file":
        (entry / "model.keras").write_text("weightz")
    elif damage == "missing file":
        (entry / "model.keras").unlink()
    else:
        record = json.loads((entry / ARTIFACT_FILE).read_text())
        (entry / ARTIFACT_FILE).write_text(json.dumps({**record, "format": 0}))
    stale = entry.with_name(".k1.tmp-killed")  # what a killed build leaves behind
    stale.mkdir()
    assert cache.load("train", "k1") is None
    rebuilt, reused = cache.compute("train", "k1", lambda out: _write_model(out, "fresh"))
    assert not reused and rebuilt.path.read_text() == "fresh"
    assert cache.load("train", "k1") == rebuilt and not stale.exists()


def test_an_entry_naming_a_vanished_input_is_rebuilt(tmp_path):
    cache = StageCache(tmp_path / "stages")
    trained, _ = cache.compute("train", "k1", _write_model)
    pruned, _ = cache.compute("prune", "k2", lambda out: PruneResult(trained, "disabled"))
    assert pruned.trained.path == trained.path
    trained.path.unlink()
    assert cache.load("prune", "k2") is None


def _slow_build(args: tuple[str, str]) -> tuple[str, bool]:
    """Run in a child process: count the builds in a file, take a while."""
    root, counter = args

    def build(out: Path) -> TrainedModel:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return _write_model(out)

    artifact, reused = StageCache(Path(root)).compute("train", "k1", build)
    return artifact.path.read_text(), reused


def test_two_processes_build_the_same_entry_once(tmp_path):
    counter = tmp_path / "builds.txt"
    context = multiprocessing.get_context("fork")  # this module imports no TensorFlow
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        results = list(pool.map(_slow_build, [(str(tmp_path / "stages"), str(counter))] * 2))
    assert len(counter.read_text().split()) == 1
    assert sorted(reused for _, reused in results) == [False, True]
    assert {text for text, _ in results} == {"weights"}


def _artifacts(folder: Path, outside: Path) -> tuple:
    (folder / "train-00000-of-00001.tfrecord").write_bytes(b"records")
    (folder / "model_int8.tflite").write_bytes(b"tflite")
    audio = Preprocessing(kind="audio", frontend="mfcc")
    examples = ExampleSet(
        folder, ("_silence_", "yes"), (49, 10, 1), audio,
        types.MappingProxyType({"train": 3, "test": 1}),
        (SkippedItem(str(outside / "bad.wav"), "empty"),),
    )  # fmt: skip
    image = Preprocessing(kind="image", image_size=(96, 96), channels=3)
    quantized = QuantizedModel(folder / "model_int8.tflite", ("a", "b"), (96, 96, 3), image)
    patched = PatchResult(
        quantized, "1 stage(s) patched", ((0, 9, (1, 1), "stream"),), 24160, 10744,
        report_files=(folder / "model_int8.tflite", outside / "plan.md"),
    )  # fmt: skip
    trained = TrainedModel(outside / "model.keras", ("a", "b"), (96, 96, 3), {"loss": (1.0,)})
    figures = Figures(macs=10, params=3, flash_bytes=100, arena_total=64)
    pruned = PruneResult(trained, "removed", 0.5, figures, figures, 0.9, None, 0.8)
    evaluation = Evaluation(
        0.75, None, ((1, 0), (1, 2)), ("a", "b"), 100, 20, 120, 120, 5000, 12345, 2.8,
        {"rpi_pico": 119.8}, 4,
    )  # fmt: skip
    return examples, patched, pruned, (evaluation, evaluation)


def test_artifacts_come_back_equal_and_follow_their_folder(tmp_path):
    anchor, outside = tmp_path / "stages", tmp_path / "elsewhere"
    folder = anchor / "stage" / ".key.tmp-1"
    folder.mkdir(parents=True)
    saved = _artifacts(folder, outside)
    save_artifact(saved, folder, anchor, key="key")
    assert load_artifact(folder) == saved
    moved = anchor / "stage" / "key"
    os.replace(folder, moved)
    examples, patched, pruned, _ = loaded = load_artifact(moved)
    assert loaded == _artifacts(moved, outside), "paths inside the cache follow the entry"
    assert examples.files("train") == [moved / "train-00000-of-00001.tfrecord"]
    assert pruned.trained.path == outside / "model.keras", "paths outside stay as they were"
    assert patched.stages == ((0, 9, (1, 1), "stream"),) and examples.counts["train"] == 3
    record = json.loads((moved / ARTIFACT_FILE).read_text())
    assert set(record["files"]) == {"train-00000-of-00001.tfrecord", "model_int8.tflite"}


def test_only_the_projects_classes_are_read_back(tmp_path):
    cache = StageCache(tmp_path / "stages")
    cache.compute("train", "k1", _write_model)
    path = cache.entry("train", "k1") / ARTIFACT_FILE
    record = json.loads(path.read_text())
    record["artifact"]["__dataclass__"] = "subprocess:Popen"
    path.write_text(json.dumps(record))
    with pytest.raises(ComponentError, match="not one of the project's artifact classes"):
        load_artifact(path.parent)
    assert cache.load("train", "k1") is None


def _two_runs(cache: StageCache) -> None:
    """An older run that used train k1 and quantize q1, then one that used k1 and q2; and
    the leftovers of a killed build of q3 (a temporary folder and a resume folder)."""
    cache.compute("train", "k1", _write_model)
    for key in ("q1", "q2"):
        cache.compute("quantize", key, _write_model)
    cache.record_run("old", {"train": "k1", "quantize": "q1"})
    cache.record_run("new", {"train": "k1", "quantize": "q2"})
    (cache.entry("quantize", "q1").parent / ".q3.tmp-dead").mkdir()
    cache.scratch("quantize", "q3").mkdir()
    (cache.scratch("quantize", "q3") / "backup").write_bytes(b"x" * 1000)


def _age(cache: StageCache, stage: str, key: str, days: float) -> None:
    then = time.time() - days * 86_400
    for folder in cache._folders(stage, key):
        os.utime(folder, (then, then))


def test_pruning_keeps_what_the_latest_run_used_and_removes_the_rest(tmp_path):
    cache = StageCache(tmp_path / "stages")
    _two_runs(cache)
    assert [r["run"] for r in cache.recent_runs()] == ["new", "old"]
    listed = {(e.stage, e.key): e for e in cache.entries()}
    assert set(listed) == {("train", "k1"), ("quantize", "q1"), ("quantize", "q2"),
                           ("quantize", "q3")}  # fmt: skip
    assert not listed["quantize", "q3"].published and listed["quantize", "q3"].size_bytes == 1000

    removed, kept = cache.prune(dry_run=True)
    assert {e.key for e in removed} == {"q1", "q3"} and cache.entry("quantize", "q1").is_dir()
    removed, kept = cache.prune()
    assert {e.key for e in removed} == {"q1", "q3"} and {e.key for e in kept} == {"k1", "q2"}
    assert sorted(p.name for p in (tmp_path / "stages" / "quantize").iterdir()
                  if p.is_dir()) == ["q2"]  # fmt: skip
    assert cache.compute("quantize", "q2", _write_model)[1], "the kept entry is reused"


def test_pruning_can_keep_more_runs_and_what_was_read_lately(tmp_path):
    cache = StageCache(tmp_path / "stages")
    _two_runs(cache)
    assert {e.key for e in cache.prune(keep_runs=2, dry_run=True)[0]} == {"q3"}
    for key in ("q1", "q3"):
        _age(cache, "quantize", key, days=3)
    assert cache.load("quantize", "q1") is not None  # read: used just now
    removed, kept = cache.prune(unused_for_s=86_400)
    assert {e.key for e in removed} == {"q3"} and "q1" in {e.key for e in kept}


def test_pruning_leaves_an_entry_another_process_holds(tmp_path):
    cache = StageCache(tmp_path / "stages")
    _two_runs(cache)
    with open(tmp_path / "stages" / "quantize" / "q1.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a run building or reading q1 would
        removed, kept = cache.prune()
    assert {e.key for e in removed} == {"q3"} and cache.entry("quantize", "q1").is_dir()
