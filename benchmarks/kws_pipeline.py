"""Benchmark the default keyword-spotting run: time each stage and print the figures.

    python benchmarks/kws_pipeline.py [configs/kws.yaml] [--set key=value ...]

Runs the whole pipeline as ``tflm-pipelines run`` does (tracking into the benchmark's own
SQLite store), then prints a table of stage times and of what was measured on TFLM. When
``../shared`` is present it also prints the int8 model's accuracy, however low, on real
Speech Commands speakers (the 12-class task, and the ten keywords alone) and on MLPerf
Tiny's KWS test clips, beside MLPerf Tiny's reference DS-CNN fed the project's ``mfcc``
features of the same clips.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_CLIPS = SHARED / "data" / "speech_commands"
MLPERF_CLIPS = SHARED / "data" / "mlperf_tiny_kws"
REFERENCE_MODEL = SHARED / "models" / "kws_ref_model.tflite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "kws.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--real-clips", type=Path, default=REAL_CLIPS)
    parser.add_argument("--mlperf-clips", type=Path, default=MLPERF_CLIPS)
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
    rows += _real_data_rows(result.quantized, args.real_clips, args.mlperf_clips)
    print_table(rows)
    return 0


def _real_data_rows(quantized, real_clips: Path, mlperf_clips: Path) -> list[tuple[str, str]]:
    """The model's int8 accuracy on real recordings, and MLPerf Tiny's reference model's
    through the project's front end on the same clips (a compatibility check)."""
    from components import evaluate_files
    from components.audio import mlperf_kws

    reference = REFERENCE_MODEL if REFERENCE_MODEL.is_file() else None
    ref_name = "MLPerf Tiny reference DS-CNN, same clips, project's mfcc"
    rows = []
    if real_clips.is_dir():
        # The 12-class task as `tflm-pipelines evaluate` reads the folder: every keyword clip,
        # the other words as unknown and background-noise windows as silence (10% each).
        ours = evaluate_files.run(quantized.path, real_clips, quantized.labels, progress=False)
        rows.append(("int8 accuracy, real Speech Commands (keywords, unknown, silence)",
                     _share(ours.evaluation)))  # fmt: skip
        rows.append(_keyword_accuracy(quantized, real_clips))
        if reference:
            labels = mlperf_kws.REFERENCE_LABELS
            ref = evaluate_files.run(reference, real_clips, labels, progress=False)
            rows.append((ref_name, _share(ref.evaluation)))
    else:
        rows.append(("real Speech Commands", f"skipped: {real_clips} not found"))
    if mlperf_clips.is_dir():
        vectors = mlperf_kws.read(mlperf_clips)
        model, prep = quantized.read_bytes(), quantized.preprocessing
        ours = _clip_accuracy(model, prep, vectors.clips, vectors.labels(), quantized.labels)
        rows.append(("int8 accuracy, MLPerf Tiny's KWS test clips", ours))
        if reference:
            ref = _clip_accuracy(reference.read_bytes(), prep, vectors.clips, vectors.labels(),
                                 mlperf_kws.REFERENCE_LABELS)  # fmt: skip
            rows.append((ref_name, ref))
    else:
        rows.append(("MLPerf Tiny's KWS test clips", f"skipped: {mlperf_clips} not found"))
    return rows


def _share(evaluation) -> str:
    return f"{evaluation.int8_accuracy:.4f} on {evaluation.test_examples} clips"


def _clip_accuracy(model: bytes, prep, clips, truth, labels) -> str:
    """int8 accuracy of ``model`` on raw ``clips`` through the ``prep`` front end."""
    import numpy as np

    import tflm_ext
    from components import preprocessing

    x = preprocessing.prepare(prep, list(clips))
    scores = tflm_ext.run_isolated(tflm_ext.run_batch, model, x).scores
    index = np.array([list(labels).index(t) for t in truth])
    return f"{float(np.mean(scores.argmax(axis=1) == index)):.4f} on {len(index)} clips"


def _keyword_accuracy(quantized, root: Path) -> tuple[str, str]:
    """int8 accuracy on the ten keywords of real Speech Commands clips (all splits)."""
    from components.artifacts import KEYWORDS

    paths = [p for word in KEYWORDS for p in sorted((root / word).glob("*.wav"))]
    accuracy = _clip_accuracy(quantized.read_bytes(), quantized.preprocessing,
                              [str(p) for p in paths], [p.parent.name for p in paths],
                              quantized.labels)  # fmt: skip
    return ("int8 accuracy, real speakers' ten keywords only", accuracy)


if __name__ == "__main__":
    sys.exit(main())
