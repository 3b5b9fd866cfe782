"""Benchmark pruning's fine-tuning recipes: one parent pruned to half its MACs, several ways.

    python benchmarks/pruning.py [--family kws|vww] [--recipes a,b,...]
                                 [--parent ENTRY --examples ENTRY] [--work DIR]
                                 [--set key=value ...] [--force]

Issue 9's target: pruning MobileNetV1-0.25 and the DS-CNN to half their MACs costs at most 2
points after fine-tuning. One parent (the config's ``train`` section on its data) is pruned
with ``prune.macs_ratio: 0.5`` by each recipe of :data:`RECIPES` (overrides of the config's
``prune:`` section), then quantized to int8 and evaluated on TFLM with the project's own
stages (``prune``, ``quantize``, ``evaluate``) on the test split. The table: recipe, MACs,
parameters, int8 and float accuracy, the int8 drop against the parent in points, and the
recipe's wall time (pruning, fine-tuning, figures).

The parent and its examples: ``--parent`` and ``--examples`` name finished stage-cache
entries (folders holding ``artifact.json``; a ``train`` and a ``features`` or ``images``
entry of a run's ``stages/``, or a search's ``store/parent`` entry), so a parent trained
once is reused across code changes (a stage's cache key includes the code version).
Without them the config's data front and ``train`` stage run, cached in its ``work_dir``.
Each recipe's row is kept under ``--work`` keyed by the parent, the examples and the recipe's
spec, so a rerun measures only new recipes (``--force``: every one).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KD = {"distill": {"temperature": 4.0, "alpha": 0.7}}  # soft targets from the parent
LABELS_ONLY = {"distill": None}
SHORT = {"fine_tune_epochs": 5, "early_stopping_patience": 3}  # the earlier default
MEDIUM = {"fine_tune_epochs": 15, "early_stopping_patience": 3}
LONG = {"fine_tune_epochs": 30, "early_stopping_patience": 8}
# name -> overrides of the config's prune section (prune.macs_ratio 0.5 on top of each),
# each recipe spelled out so that a change of the config's defaults leaves its row valid.
RECIPES = {
    "ft5-constant": {**SHORT, "fine_tune_schedule": "constant", **LABELS_ONLY},
    "ft15-cosine-kd": {**MEDIUM, "fine_tune_schedule": "cosine", **KD},
    "ft15-cosine": {**MEDIUM, "fine_tune_schedule": "cosine", **LABELS_ONLY},
    "ft30-cosine-kd": {**LONG, "fine_tune_schedule": "cosine", **KD},
    "ft15-cosine-kd-3steps": {**MEDIUM, "fine_tune_schedule": "cosine", **KD, "steps": 3},
    "ft30-cosine": {**LONG, "fine_tune_schedule": "cosine", **LABELS_ONLY},
    "ft5-cosine-kd": {**SHORT, "fine_tune_schedule": "cosine", **KD},
    "ft30-cosine-kd-bn_gamma": {
        **LONG,
        "fine_tune_schedule": "cosine",
        **KD,
        "criterion": "bn_gamma",
    },
    "ft30-cosine-kd-a0.9": {
        **LONG,
        "fine_tune_schedule": "cosine",
        "distill": {"temperature": 4.0, "alpha": 0.9},
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("kws", "vww"), default="kws")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names")
    parser.add_argument("--parent", type=Path, help="a finished train stage-cache entry")
    parser.add_argument("--examples", type=Path, help="its example set's stage-cache entry")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflm-pruning-benchmark"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--force", action="store_true", help="measure every recipe again")
    args = parser.parse_args()
    names = [n for n in args.recipes.split(",") if n]
    if unknown := [n for n in names if n not in RECIPES]:
        parser.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    if (args.parent is None) != (args.examples is None):
        parser.error("--parent and --examples go together")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))
    from pipelines import config

    cfg = config.load(REPO / "configs" / f"{args.family}.yaml", args.overrides)
    specs = {name: _recipe_spec(cfg, name) for name in names}  # refused before any work
    trained, examples = _parent(cfg, args.parent, args.examples)
    work = args.work / args.family
    parent_row = _measured(cfg, work, "parent", None, trained, examples, args.force)
    rows = [_measured(cfg, work, n, specs[n], trained, examples, args.force) for n in names]
    _print_table(parent_row, rows)
    return 0


def _recipe_spec(cfg, name: str):
    """The config's prune section with the recipe's overrides, at half the MACs."""
    from components.prune import TARGETS, PruneSpec

    fields = {**dataclasses.asdict(cfg.prune), **dict.fromkeys(TARGETS), "enabled": True,
              "macs_ratio": 0.5, **RECIPES[name]}  # fmt: skip
    return PruneSpec(**fields)


def _parent(cfg, parent_entry: Path | None, examples_entry: Path | None):
    """(trained parent, example set): the named entries, else the config's own stages."""
    from components.stage_cache import load_artifact
    from pipelines import chain
    from pipelines.config import PIPELINES

    if parent_entry is not None:
        return load_artifact(parent_entry), load_artifact(examples_entry)
    module, section = PIPELINES[cfg.pipeline]
    front = importlib.import_module(module)
    stages = chain.Stages.open(cfg, front.STAGES, None)
    examples = front.data_front(cfg, stages=stages)
    trained, _ = chain.train_stage(cfg, examples, stages.keys[section], stages)
    return trained, examples


def _measured(cfg, work: Path, name: str, spec, trained, examples, force: bool) -> dict:
    """The recipe's row (the parent's when ``spec`` is None), kept in ``work``."""
    from components.stage_cache import files_fingerprint, fingerprint

    key = fingerprint(name, spec, cfg.quantize, files_fingerprint([trained.path]),
                      files_fingerprint(examples.directory.glob("*.tfrecord")))  # fmt: skip
    kept = work / "rows" / f"{key}.json"
    if kept.is_file() and not force:
        return json.loads(kept.read_text())
    row = _measure(cfg, work / "models" / key, name, spec, trained, examples)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(row, indent=1))
    return row


def _measure(cfg, out: Path, name: str, spec, trained, examples) -> dict:
    from components import evaluate, prune, quantize

    start = time.perf_counter()
    pruned = trained if spec is None else prune.run(spec, trained, examples, out).trained
    seconds = time.perf_counter() - start
    quantized = quantize.run(cfg.quantize, pruned, examples, out)
    ev = evaluate.run(cfg.evaluate, quantized, pruned, examples, progress=False)
    row = {"recipe": name, "macs": ev.macs, "params": pruned.params,
           "int8": ev.int8_accuracy, "float": ev.float_accuracy,
           "epochs": len(pruned.history.get("loss", ())) if spec else 0,
           "seconds": seconds if spec else None}  # fmt: skip
    print(f"{name}: int8 {ev.int8_accuracy:.4f}, {ev.macs:,} MACs, {seconds:.0f} s", flush=True)
    return row


def _print_table(parent: dict, rows: list[dict]) -> None:
    head = ["recipe", "MACs", "params", "int8 acc", "float acc", "drop (points)",
            "epochs run", "prune + fine-tune s"]  # fmt: skip
    print("\n| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in [parent, *rows]:
        drop = 100 * (parent["int8"] - row["int8"])
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.0f}"
        print(f"| {row['recipe']} | {row['macs']:,} | {row['params']:,} | {row['int8']:.4f} | "
              f"{row['float']:.4f} | {drop:.1f} | {row['epochs']} | {seconds} |")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
