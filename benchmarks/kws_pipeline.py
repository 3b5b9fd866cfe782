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

    sys.path.insert(0, str(REPO))
    from benchmarks.chain_report import measurement_rows, print_table, run_timed, stage_rows
    from pipelines import config, kws

    result, total = run_timed(kws, config.load(args.config, args.overrides))
    ev = result.evaluation
    rows = stage_rows(result, total) + [
        ("int8 accuracy (held-out voices)", f"{ev.int8_accuracy:.4f} on {ev.test_examples} clips"),
        ("float accuracy", f"{ev.float_accuracy:.4f}"),
    ]
    rows += measurement_rows(result)
    if args.real_clips.is_dir():
        rows.append(_real_speaker_accuracy(result.quantized, args.real_clips))
    else:
        rows.append(("real Speech Commands keywords", f"skipped: {args.real_clips} not found"))
    print_table(rows)
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


if __name__ == "__main__":
    sys.exit(main())
