"""Benchmark the default keyword-spotting run: time each stage and print the figures.

    python benchmarks/kws_pipeline.py [configs/kws.yaml] [--set key=value ...]

Runs the whole pipeline as ``tflm-pipelines run`` does (tracking into the benchmark's own
SQLite store), then prints a table of stage times and of what was measured on TFLM. When
``../shared/data/speech_commands`` (real Speech Commands clips) is present it also runs the
int8 model on those real speakers' ten keywords and prints that accuracy, however low.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_CLIPS = REPO.parent / "shared" / "data" / "speech_commands"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "kws.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--real-clips", type=Path, default=REAL_CLIPS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)

    from pipelines import config, kws

    cfg = config.load(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as store:
        start = time.perf_counter()
        result = kws.run(cfg, tracking_uri=f"sqlite:///{store}/mlflow.db")
        total = time.perf_counter() - start
    rows = [(f"stage {name}", f"{seconds:.1f} s") for name, seconds in result.timings.items()]
    rows.append(("whole run", f"{total:.1f} s"))
    ev = result.evaluation
    rows += [
        ("int8 accuracy (held-out voices)", f"{ev.int8_accuracy:.4f} on {ev.test_examples} clips"),
        ("float accuracy", f"{ev.float_accuracy:.4f}"),
        (
            "arena total / head / tail",
            f"{ev.arena_total:,} / {ev.arena_head:,} / {ev.arena_tail:,} B",
        ),
        ("flash (model size)", f"{ev.flash_bytes:,} B"),
        ("MACs", f"{ev.macs:,}"),
        ("host latency (median)", f"{ev.host_latency_ms:.3f} ms"),
    ]
    rows += [
        (f"estimated latency {d}", f"{ms:.1f} ms") for d, ms in ev.estimated_latency_ms.items()
    ]
    rows += [(f"gate {g.device}", "pass" if g.passed else "FAIL") for g in result.gates]
    if args.real_clips.is_dir():
        rows.append(_real_speaker_accuracy(result.quantized, args.real_clips))
    else:
        rows.append(("real Speech Commands keywords", f"skipped: {args.real_clips} not found"))
    _print_table(rows)
    return 0


def _real_speaker_accuracy(quantized, root: Path) -> tuple[str, str]:
    """int8 accuracy on the ten keywords of real Speech Commands clips (all splits)."""
    import numpy as np

    import tflm_ext
    from components import preprocessing
    from components.artifacts import KEYWORDS

    labels = list(quantized.labels)
    paths = [p for word in KEYWORDS for p in sorted((root / word).glob("*.wav"))]
    truth = np.array([labels.index(p.parent.name) for p in paths])
    x = preprocessing.prepare(quantized.preprocessing, [str(p) for p in paths])
    scores = tflm_ext.run_isolated(tflm_ext.run_batch, quantized.read_bytes(), x).scores
    accuracy = float(np.mean(scores.argmax(axis=1) == truth))
    return ("int8 accuracy, real speakers' keywords", f"{accuracy:.4f} on {len(truth)} clips")


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"| {'figure':<{width}} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    sys.exit(main())
