"""Ablation of the KWS training data: which augmentation raises real-speaker accuracy.

    python benchmarks/kws_ablation.py [configs/kws.yaml] [--epochs 20] [--only NAME ...]
                                      [--set key=value ...]

A reduced variant of ``benchmarks/kws_pipeline.py``: it generates (or reuses) the config's
data once, then for each row extracts features with that row's augmentation and trains the
float model for ``--epochs`` (fewer than the default run), and prints a table of the float
accuracy on the held-out generated voices and on the real speakers' ten keywords in
``../shared/data/speech_commands``. No quantization, patching or TFLM: those do not change
which augmentation helps (the full benchmark gives the int8 figures of the chosen default).
Rows are cumulative: each adds one change to the row above it, except the front-end row,
which swaps MLPerf Tiny's ``mfcc`` for TFLM's ``micro`` front end on that row alone. Rows
that share a feature spec share one extraction. The baseline drops the config's Flite
voices; the row that adds them back needs CMU Flite (``apt-get install flite``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_CLIPS = REPO.parent / "shared" / "data" / "speech_commands"

# The baseline: the augmentation before issue 12 (one copy, time shift, noise by volume).
NO_EFFECTS = {
    "reverb_probability": 0.0,
    "colour_probability": 0.0,
    "clip_probability": 0.0,
    "speed_probability": 0.0,
    "noise_snr_db": None,
}
# name -> the change it adds: features.augment fields, features fields, SpecAugment on,
# extra training voices. Cumulative: each row keeps every change above it, but a change
# marked "alone" applies to its own row only.
ROWS: dict[str, dict] = {
    "baseline (noise by volume, shift)": {},
    "+ reverberation": {"augment": {"reverb_probability": 0.5}},
    "+ colouring, speed, clipping": {
        "augment": {"colour_probability": 0.5, "speed_probability": 0.5, "clip_probability": 0.1}
    },
    "+ noise at 0-25 dB SNR": {"augment": {"noise_snr_db": (0.0, 25.0)}},
    "+ 2 augmented copies": {"features": {"augment_copies": 2}},
    "+ Flite voices (needs flite)": {"voices": "flite"},
    "front end: TFLM's micro (98x40) instead of mfcc, this row only": {
        "features": {"frontend": "micro"},
        "alone": True,
    },
    "+ SpecAugment": {"spec_augment": True},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "kws.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", action="append", default=[], help="row name prefix to run")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "kws_ablation")
    parser.add_argument("--real-clips", type=Path, default=REAL_CLIPS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))
    from benchmarks.chain_report import print_table
    from pipelines import config

    cfg = config.load(args.config, args.overrides)
    real = args.real_clips if args.real_clips.is_dir() else None
    rows, extracted, indexes = [], {}, {}
    for name, synth, features, train_spec in _cumulative(cfg):
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        started = time.perf_counter()
        if synth not in indexes:
            indexes[synth] = _index(cfg, synth, args.work_dir / f"synth{len(indexes)}")
        if (synth, features) not in extracted:
            out = args.work_dir / f"features{len(extracted)}"
            extracted[synth, features] = _extract(features, indexes[synth], out)
        examples = extracted[synth, features]
        spec = dataclasses.replace(train_spec, epochs=args.epochs)
        real_set = _real_keywords(real, features.frontend) if real else None
        held_out, real_acc = _train_and_score(spec, examples, real_set, args.work_dir / "model")
        minutes = (time.perf_counter() - started) / 60
        rows.append((name, f"{held_out:.3f} | {real_acc} | {minutes:.1f} min"))
        print(f"{name}: {rows[-1][1]}", flush=True)
    print(f"\nfloat accuracy after {args.epochs} epochs: held-out voices | real keywords | time")
    print_table(rows)
    return 0


def _cumulative(cfg):
    """(row name, training voices, FeatureSpec, TrainSpec) per row, each adding its change."""
    from components.audio import flite
    from components.train import SpecAugmentSpec

    augment = dataclasses.replace(cfg.features.augment, **NO_EFFECTS)
    features = dataclasses.replace(cfg.features, augment=augment, augment_copies=1)
    train_spec = dataclasses.replace(cfg.train, spec_augment=None)
    voices = tuple(v for v in cfg.data.synth.train_voices if not flite.is_flite(v))
    for name, change in ROWS.items():
        augment = dataclasses.replace(features.augment, **change.get("augment", {}))
        row = dataclasses.replace(features, augment=augment, **change.get("features", {}))
        if change.get("spec_augment"):
            train_spec = dataclasses.replace(train_spec, spec_augment=SpecAugmentSpec())
        if change.get("voices") == "flite":
            voices += flite.VOICES
        yield name, voices, row, train_spec
        if not change.get("alone"):
            features = row


def _index(cfg, voices: tuple[str, ...], out_dir: Path):
    """The clip index of the config's data; a generated set is spoken by ``voices`` in
    training (written to ``out_dir``, reused there when unchanged)."""
    from components.artifacts import SpeechDataset
    from components.audio import speech_commands, synth_speech

    if cfg.data.source != "synth":
        dataset = SpeechDataset(root=Path(cfg.data.path))
    else:
        spec = dataclasses.replace(cfg.data.synth, train_voices=voices)
        dataset = synth_speech.run(spec, out_dir, False)
    return speech_commands.run(cfg.data.reader, dataset)


def _extract(features, index, out_dir: Path):
    from components.audio import extract_features

    return extract_features.run(features, index, out_dir)


@functools.cache
def _real_keywords(root: Path, frontend: str):
    """``frontend`` features and labels of the real speakers' ten keywords (all clips)."""
    import numpy as np

    from components import preprocessing
    from components.artifacts import KEYWORDS, Preprocessing
    from components.audio.speech_commands import LABELS

    paths = [p for word in KEYWORDS for p in sorted((root / word).glob("*.wav"))]
    prep = Preprocessing(kind="audio", frontend=frontend)
    x = preprocessing.prepare(prep, [str(p) for p in paths])
    labels = list(LABELS)
    return x, np.array([labels.index(p.parent.name) for p in paths])


def _train_and_score(spec, examples, real, out_dir: Path):
    import keras
    import numpy as np

    from components import example_records, train

    trained = train.run(spec, examples, out_dir, progress=False)
    model = keras.models.load_model(trained.path)
    x, y = example_records.load_split(examples, "test")
    held_out = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))
    if real is None:
        return held_out, "no real clips"
    predicted = model.predict(real[0], verbose=0).argmax(axis=1)
    return held_out, f"{np.mean(predicted == real[1]):.3f}"


if __name__ == "__main__":
    sys.exit(main())
