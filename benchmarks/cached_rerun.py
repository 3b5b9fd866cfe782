"""Benchmark a cached re-run of the default keyword-spotting job against a cold run.

    python benchmarks/cached_rerun.py [configs/kws.yaml] [--set key=value ...]

Runs the job cold into a throw-away work dir (so nothing is cached, not even the generated
clips) and tracking store, then runs the same config again in this process, which reuses
every cached stage and only gates, tracks and releases, and once more as a scheduler would,
a fresh ``tflm-pipelines run`` process that also pays for importing TensorFlow and MLflow.
Prints a table: cold seconds, cached seconds, the fraction (target under 10%), the stages
each run reused, and the stage times of the rerun.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.10
EXIT_GATE_FAILED = 3  # pipelines.cli's: the run finished and was logged, a gate failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "kws.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)

    sys.path.insert(0, str(REPO))
    from benchmarks.chain_report import print_table, run_timed
    from pipelines import config, kws

    with tempfile.TemporaryDirectory(prefix="cached-rerun-") as work:
        overrides = [*args.overrides, f"work_dir={work}"]
        cfg = config.load(args.config, overrides)
        cold, cold_seconds = run_timed(kws, cfg)
        cached, cached_seconds = run_timed(kws, cfg)
        process_seconds = _rerun_in_a_new_process(args.config, overrides)
    fraction, process_fraction = cached_seconds / cold_seconds, process_seconds / cold_seconds
    verdict = "met" if fraction < TARGET else "NOT met"
    rows = [
        ("cold run", f"{cold_seconds:.1f} s (computed: {', '.join(cold.computed)})"),
        ("cached rerun", f"{cached_seconds:.1f} s (reused: {', '.join(cached.reused) or 'none'})"),
        ("cached / cold", f"{fraction:.1%} (target under {TARGET:.0%}: {verdict})"),
        ("cached rerun, new process", f"{process_seconds:.1f} s ({process_fraction:.1%} of cold)"),
        *((f"rerun stage {name}", f"{seconds:.2f} s") for name, seconds in cached.timings.items()),
        ("same evaluation both runs", str(cached.evaluation == cold.evaluation)),
    ]
    print_table(rows)
    return 0


def _rerun_in_a_new_process(config: str, overrides: list[str]) -> float:
    """Seconds of ``tflm-pipelines run`` on the cached work dir, tracked into its own store."""
    store = next(o for o in overrides if o.startswith("work_dir=")).removeprefix("work_dir=")
    sets = [part for o in overrides for part in ("--set", o)]
    command = [sys.executable, "-m", "pipelines.cli", "run", config, *sets, "--no-progress",
               "--tracking-uri", f"sqlite:///{store}/rerun-mlflow.db"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, EXIT_GATE_FAILED):  # a failed gate is a finished run
        raise SystemExit(f"the rerun failed with exit status {done.returncode}")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
