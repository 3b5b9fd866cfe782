"""Benchmark the default person-detection run: time each stage and print the figures.

    python benchmarks/vww_pipeline.py [configs/vww.yaml] [--set key=value ...]

Runs the whole pipeline as ``tflm-pipelines run`` does (tracking into the benchmark's own
SQLite store), then prints a table of stage times and of what was measured on TFLM: accuracy
on the generated held-out scenes, arena before and after patching, flash, MACs, latency.
When ``../shared/data/vww_coco`` (real COCO photos, VWW-labelled) is present it evaluates the
int8 model on those photos, however low, with each class's hits out of its photos, and, when
``../shared/models/vww_96_int8.tflite`` is there too, MLPerf Tiny's reference person
detector through ``tflm-pipelines evaluate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_PHOTOS = SHARED / "data" / "vww_coco"
REFERENCE = SHARED / "models" / "vww_96_int8.tflite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "vww.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--real-photos", type=Path, default=REAL_PHOTOS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)

    sys.path.insert(0, str(REPO))
    from benchmarks.chain_report import measurement_rows, print_table, run_timed, stage_rows
    from pipelines import config, vww

    result, total = run_timed(vww, config.load(args.config, args.overrides))
    rows = stage_rows(result, total) + _accuracy_rows(result) + measurement_rows(result)
    if args.real_photos.is_dir():
        rows.append(_evaluate("int8 accuracy, real COCO photos", result.quantized.path, args))
        if REFERENCE.is_file():
            rows.append(_evaluate("MLPerf Tiny reference VWW, real photos", REFERENCE, args))
    else:
        rows.append(("real COCO photos", f"skipped: {args.real_photos} not found"))
    print_table(rows)
    return 0


def _accuracy_rows(result) -> list[tuple[str, str]]:
    ev, patched = result.evaluation, result.patch
    before_after = (
        f"{patched.arena_before:,} -> {patched.arena_after:,} B"
        if patched.arena_before
        else f"not patched: {patched.reason}"
    )
    return [
        ("int8 accuracy (held-out scenes)", f"{ev.int8_accuracy:.4f} on {ev.test_examples}"),
        ("float accuracy, same scenes", f"{ev.float_accuracy:.4f}"),
        ("arena before -> after patching", before_after),
        ("patch", patched.reason),
    ]


def _evaluate(name: str, model: Path, args) -> tuple[str, str]:
    """``tflm-pipelines evaluate`` on the real photos, as a user would run it."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pipelines.cli", "evaluate", str(model),
                   "--data", str(args.real_photos), "--json", str(report)]  # fmt: skip
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        figures = json.loads(report.read_text())
    per_class = ", ".join(
        f"{label} {row[k]}/{sum(row)}"
        for k, (label, row) in enumerate(zip(figures["labels"], figures["confusion"], strict=True))
    )
    return name, f"{figures['accuracy']:.4f} on {figures['examples']} photos ({per_class})"


if __name__ == "__main__":
    sys.exit(main())
