"""The fit-to-device search through the CLI on tiny generated person-detection data: real
Beam (DirectRunner with worker processes, and DaskRunner against a dask.distributed
scheduler and two workers started here on loopback), real Keras, real TFLM, a real MLflow
store. A search killed mid-way resumes without redoing what it finished; both runners
measure the same candidates identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipelines import cli

REPO = Path(__file__).resolve().parents[2]
DEVICES = [str(REPO / "configs/devices/nucleo_l4r5zi.yaml"),
           str(REPO / "configs/devices/stm32f411_blackpill.yaml")]  # fmt: skip
TINY = {
    "pipeline": "vww",
    "data": {"synth": {"image_size": 48, "train": 24, "validation": 8, "test": 8}},
    "images": {"image_size": [32, 32], "num_shards": 1},
    "train": {"epochs": 1, "batch_size": 8, "step_epochs": []},
    "quantize": {"representative_examples": 8},
    "patch": {"verify_examples": 2},
    "devices": DEVICES,
    "gate": {"min_accuracy": 0.0, "max_latency_ms": 1000},
    "track": {"experiment": "vww-search", "registered_model_name": "vww-search"},
    "search": {"widths": [0.25], "prune_ratios": [0.0], "patch_modes": ["off", "custom"]},
}
FIGURES = ("int8_accuracy", "float_accuracy", "arena_total", "flash_bytes", "macs")


def _config(root: Path, **search) -> Path:
    body = {**TINY, "work_dir": str(root / "work"), "search": {**TINY["search"], **search}}
    path = root / "vww.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _search(config: Path, uri: str, *extra: str) -> int:
    return cli.main(["search", str(config), "--tracking-uri", uri, "--no-progress", *extra])


def _records(root: Path) -> dict[str, dict]:
    rows = json.loads((root / "work/search/candidates.json").read_text())
    return {r["name"]: r for r in rows}


def _results(root: Path, kind: str) -> dict[Path, float]:
    return {
        p: p.stat().st_mtime_ns for p in (root / "work/search/store" / kind).glob("*/artifact.json")
    }


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A search killed once its parent is trained, then run again to the end."""
    root = tmp_path_factory.mktemp("search")
    config, uri = _config(root), f"sqlite:///{root}/mlflow.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "search", str(config), "--tracking-uri", uri,
         "--no-progress"],
        cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not _results(root, "parent") and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    before = {k: _results(root, k) for k in ("parent", "variant", "candidate")}
    status = _search(config, uri)
    return root, uri, status, before


def test_search_measures_every_candidate_and_answers_per_device(resumed):
    root, uri, status, _ = resumed
    assert status == 0  # the nucleo and the Nano 33 IoT both got a candidate
    records = _records(root)
    assert set(records) == {"w0.25-r32-p0-off", "w0.25-r32-p0-custom"}
    off, custom = records["w0.25-r32-p0-off"], records["w0.25-r32-p0-custom"]
    assert not off["patched"] and custom["patched"]
    assert custom["evaluation"]["arena_total"] < off["evaluation"]["arena_total"]
    assert custom["evaluation"]["macs"] >= off["evaluation"]["macs"]  # same model, patched
    table = (root / "work/search/search.md").read_text()
    assert "- nucleo_l4r5zi: w0.25-r32-p0-" in table and "- stm32f411_blackpill:" in table


def test_search_is_one_mlflow_parent_with_a_child_run_per_candidate(resumed):
    root, uri, *_ = resumed
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vww-search")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("search") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {c.info.run_name for c in children} == set(_records(root))
    assert parent.data.metrics["search.measured"] == 2 and parent.data.metrics["search.failed"] == 0
    for child in children:
        assert child.data.metrics["arena_total"] > 0
        assert child.data.tags["gate.nucleo_l4r5zi.passed"] in ("true", "false")
        assert child.data.params["candidate.width"] == "0.25"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/pareto_fronts.png" in artifacts
    assert parent.data.tags["search.stm32f411_blackpill.answer"].startswith(
        "stm32f411_blackpill: w0.25"
    )


def test_resumed_search_reuses_what_finished_before_the_kill(resumed):
    root, _, _, before = resumed
    assert before["parent"], "the killed search had trained its parent"
    after = {k: _results(root, k) for k in before}
    for kind, finished in before.items():
        for path, mtime in finished.items():
            assert after[kind][path] == mtime, f"{kind} {path.parent.name} was redone"
    assert len(after["candidate"]) == 2
    reused = {n for n, r in _records(root).items() if r["status"] == "reused"}
    assert len(reused) == len(before["candidate"])


def test_second_search_reuses_every_candidate(resumed, tmp_path):
    root, uri, *_ = resumed
    mtimes = _results(root, "candidate")
    assert _search(root / "vww.yaml", uri) == 0
    assert _results(root, "candidate") == mtimes
    assert {r["status"] for r in _records(root).values()} == {"reused"}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A dask.distributed scheduler and two single-threaded workers on loopback."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--scheduler-file", str(scheduler_file), "--no-dashboard"]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", *common], cwd=folder, stderr=subprocess.DEVNULL,
    )]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1",
                 "--local-directory", str(folder / f"worker{i}"), *common],
                cwd=REPO, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def test_dask_cluster_measures_the_same_candidates(resumed, dask_cluster, tmp_path):
    root = resumed[0]
    config, uri = _config(tmp_path), f"sqlite:///{tmp_path}/mlflow.db"
    address = f"--dask_client_address={dask_cluster}"
    assert _search(config, uri, "--runner", "DaskRunner", address) == 0
    direct, dask = _records(root), _records(tmp_path)
    assert set(dask) == set(direct)
    for name, row in dask.items():
        assert row["status"] == "measured"
        for figure in FIGURES:
            assert row["evaluation"][figure] == direct[name]["evaluation"][figure], (name, figure)


def test_spent_wall_clock_budget_reports_what_it_did_not_cover(tmp_path, capsys):
    config, uri = _config(tmp_path, max_wall_seconds=0.001), f"sqlite:///{tmp_path}/mlflow.db"
    assert _search(config, uri) == cli.EXIT_GATE_FAILED
    out = capsys.readouterr().out
    assert "2 candidate(s) not covered" in out
    assert "nothing fits: no candidate was measured" in out
    assert {r["status"] for r in _records(tmp_path).values()} == {"not covered"}


def test_resolutions_on_an_audio_pipeline_are_refused_before_any_work(tmp_path, capsys):
    config = tmp_path / "kws.yaml"
    config.write_text(yaml.safe_dump({"devices": DEVICES[:1], "work_dir": str(tmp_path / "w"),
                                      "search": {"resolutions": [64]}}))  # fmt: skip
    assert cli.main(["search", str(config), "--no-progress"]) == cli.EXIT_ERROR
    assert "only an image pipeline" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
