"""Benchmark the fit-to-device search: per model family and device, the chosen candidate
beside the unpruned, unpatched baseline, and the pruning curve (accuracy against MACs).

    python benchmarks/search.py [--family kws|vww|both] [--epochs N] [--work DIR]
                                [--set key=value ...]

Runs ``tflm-pipelines search`` on ``configs/kws.yaml`` and/or ``configs/vww.yaml`` with the
grid below (prune ratios 0, 0.25, 0.5, 0.75; patch modes off and custom) against every
board in ``configs/devices/``, into ``--work`` (default a folder under /tmp, kept, so a
second run reuses every candidate), and prints for each family:

- a table per device: the chosen candidate's int8 accuracy, arena, flash, MACs and estimated
  latency beside the baseline's (width and resolution of the config, no pruning, no patch);
- the pruning curve: int8 and float accuracy, MACs and arena per prune ratio (patch off),
  written as ``pruning_curve_<family>.png`` beside the search.

``--epochs`` sets the parents' training (default: the config's); fine-tuning takes the
config's ``prune.fine_tune_epochs``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = ["search.prune_ratios=[0.0, 0.25, 0.5, 0.75]", "search.patch_modes=[off, custom]"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("kws", "vww", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflm-search-benchmark"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))
    from pipelines import config
    from pipelines import search as search_pipeline

    devices = sorted(str(p) for p in (REPO / "configs" / "devices").glob("*.yaml"))
    families = ("kws", "vww") if args.family == "both" else (args.family,)
    for family in families:
        work = args.work / family
        overrides = [*GRID, f"work_dir={work}", *args.overrides]
        if args.epochs:
            overrides.append(f"search.epochs={args.epochs}")
        cfg = config.load(REPO / "configs" / f"{family}.yaml", overrides)
        cfg = cfg.model_copy(update={"devices": tuple(map(config.load_device, devices))})
        start = time.perf_counter()
        found = search_pipeline.run(cfg, tracking_uri=f"sqlite:///{work}/mlflow.db")
        seconds = time.perf_counter() - start
        print(f"\n## {family}: {len(found.outcome.done)} candidates measured in {seconds:.0f} s "
              f"({sum(m.reused for m in found.outcome.done)} reused)\n")  # fmt: skip
        _print_choices(found.outcome, cfg)
        _print_curve(found.outcome, work / f"pruning_curve_{family}.png")
    return 0


def _baseline(result):
    """The config's own width and resolution, unpruned and unpatched."""
    done = [
        m for m in result.done if m.candidate.prune_ratio == 0 and m.candidate.patch_mode == "off"
    ]
    return done[0] if done else None


def _cells(m, device: str) -> list[str]:
    if m is None:
        return ["-"] * 6
    ev = m.result.evaluation
    latency = ev.estimated_latency_ms.get(device, float("nan"))
    return [m.candidate.name, f"{ev.int8_accuracy:.4f}", f"{ev.arena_total:,}",
            f"{ev.flash_bytes:,}", f"{ev.macs:,}", f"{latency:.1f}"]  # fmt: skip


def _print_choices(result, cfg) -> None:
    baseline = _baseline(result)
    head = ["device (SRAM budget)", "chosen", "int8 acc", "arena B", "flash B", "MACs",
            "latency ms", "baseline int8 acc", "baseline arena B", "baseline flash B",
            "baseline MACs", "baseline latency ms"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    budgets = {d.name: d.sram_budget_bytes for d in cfg.devices}
    for choice in result.choices:
        chosen = choice.best or choice.best_fitting
        mark = "" if choice.best else " (fits, fails accuracy)" if chosen else ""
        row = _cells(chosen, choice.device)
        row[0] += mark
        base = _cells(baseline, choice.device)[1:]
        device = f"{choice.device} ({budgets[choice.device]:,} B)"
        print("| " + " | ".join([device, *row, *base]) + " |")
    print()
    for choice in result.choices:
        print(f"- {choice.answer}")


def _print_curve(result, figure_path: Path) -> None:
    """Accuracy against MACs per prune ratio (patch off), and the plot."""
    from components.tracking import plots

    rows = sorted((m for m in result.done if m.candidate.patch_mode == "off"),
                  key=lambda m: m.candidate.prune_ratio)  # fmt: skip
    print("\n| prune ratio | int8 acc | float acc | MACs | arena B | flash B |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in rows:
        ev = m.result.evaluation
        print(f"| {m.candidate.prune_ratio:g} | {ev.int8_accuracy:.4f} | "
              f"{ev.float_accuracy:.4f} | {ev.macs:,} | {ev.arena_total:,} | "
              f"{ev.flash_bytes:,} |")  # fmt: skip
    points = [(m.result.evaluation.macs, m.result.evaluation.int8_accuracy,
               f"prune {m.candidate.prune_ratio:g}") for m in rows]  # fmt: skip
    figure = plots.accuracy_curve("MACs", points)
    figure.savefig(figure_path)
    print(f"\npruning curve: {figure_path}")


if __name__ == "__main__":
    raise SystemExit(main())
