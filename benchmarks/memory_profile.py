"""Print an int8 model's memory per operator, TFLM's measured arena, and (optionally) a patch plan.

    python benchmarks/memory_profile.py [model.tflite] [--plan] [--rewrite] [--figure out.png]

Without a model it builds MobileNetV2 (alpha 0.35, 144x144, random weights, no softmax, full
int8 calibrated on random images; ``--alpha``/``--size`` change it, ``--save`` keeps it).
The table lists each operator's live activation bytes under TFLM's planning and MACs; then
the live peak, TFLM's plan as simulated, and the arena the wheel's interpreter measures
(head and tail). ``--plan`` runs the patch planner; ``--rewrite`` also fuses the planned
stages, checks the result bit-exact on random inputs and measures its arena.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="an int8 .tflite (default: build)")
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--save", type=Path, help="write the built model here")
    parser.add_argument("--plan", action="store_true", help="run the patch planner")
    parser.add_argument("--rewrite", action="store_true", help="fuse the plan and measure it")
    parser.add_argument("--mac-budget", type=float, default=0.2, help="extra MAC fraction")
    parser.add_argument("--max-stages", type=int, default=2)
    parser.add_argument("--budget", type=int, help="SRAM budget line for --figure, bytes")
    parser.add_argument("--figure", type=Path, help="write the per-layer bar chart (PNG)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(REPO))

    from benchmarks.models import mobilenet_v2
    from tflm_ext.memory_profile import profile

    model_bytes = args.model.read_bytes() if args.model else mobilenet_v2(args.alpha, args.size)
    if args.save:
        args.save.write_bytes(model_bytes)
    start = time.perf_counter()
    result = profile(model_bytes)
    print(f"profiled and measured in {time.perf_counter() - start:.1f} s\n")
    _print_profile(result)
    if args.figure:
        _save_figure(result, args.budget, args.figure)
    if args.plan or args.rewrite:
        _plan(model_bytes, args)
    return 0


def _print_profile(result) -> None:
    print(f"{'op':>4}  {'operator':<22}{'output shape':<22}{'MACs':>12}{'live B':>10}")
    for op in result.ops:
        marker = "  <- peak" if op.index == result.peak_op else ""
        shape = "x".join(str(d) for d in op.output_shape)
        print(f"{op.index:>4}  {op.op:<22}{shape:<22}{op.macs:>12,}{op.live_bytes:>10,}{marker}")
    rows = [
        ("live peak", f"{result.peak_bytes:,} B at operator {result.peak_op}"),
        ("TFLM plan (simulated head)", f"{result.planned_head:,} B"),
    ]
    if result.arena is not None:
        arena = result.arena
        rows += [
            ("measured arena head / tail", f"{arena.head:,} / {arena.tail:,} B"),
            ("measured arena total (minimum)", f"{arena.total:,} B ({arena.bisected_min:,} B)"),
        ]
    _print_rows(rows)


def _plan(model_bytes: bytes, args) -> None:
    from tflm_ext.planner import PlannerSpec, plan

    spec = PlannerSpec(max_extra_mac_fraction=args.mac_budget, max_stages=args.max_stages)
    start = time.perf_counter()
    patch_plan = plan(model_bytes, spec)
    rows = [("planner time", f"{time.perf_counter() - start:.2f} s")]
    rows += [(f"stage {s.first_op}..{s.last_op}", _describe_stage(s)) for s in patch_plan.stages]
    before_after = {
        "live peak before / after": (patch_plan.original_peak, patch_plan.planned_peak),
        "TFLM plan before / after": (patch_plan.original_head, patch_plan.planned_head),
    }
    rows += [(name, f"{a:,} / {b:,} B") for name, (a, b) in before_after.items()]
    rows += [
        ("split floor (1-pixel tiles)", f"{patch_plan.split_floor:,} B"),
        ("reason", patch_plan.reason),
    ]
    rows += [
        (f"alternative {a.first_op}..{a.last_op}", _describe_stage(a))
        for a in patch_plan.alternatives
    ]
    print()
    _print_rows(rows)
    if args.rewrite and patch_plan.stages:
        _rewrite(model_bytes, patch_plan)


def _describe_stage(stage) -> str:
    return (
        f"grid {stage.grid[0]}x{stage.grid[1]}, working set {stage.working_set_bytes:,} B, "
        f"{stage.extra_macs:,} extra MACs, peak {stage.peak_bytes:,} B"
    )


def _rewrite(model_bytes: bytes, patch_plan) -> None:
    from tflm_ext.patching import rewrite_all
    from tflm_ext.planner import keep_if_smaller
    from tflm_ext.rewrite import verify

    rewritten = rewrite_all(model_bytes, patch_plan)
    report = verify(model_bytes, rewritten, inputs=4)
    kept = keep_if_smaller(patch_plan, report.arena_before, report.arena_after)
    before, after = report.arena_before, report.arena_after
    print()
    _print_rows(
        [
            ("bit-exact on random inputs", f"{report.identical} ({report.examples} examples)"),
            ("arena head before / after", f"{before.head:,} / {after.head:,} B"),
            ("arena tail before / after", f"{before.tail:,} / {after.tail:,} B"),
            ("arena minimum before / after", f"{before.bisected_min:,} / {after.bisected_min:,} B"),
            ("kept", "patched model" if kept.stages else kept.reason),
        ]
    )


def _save_figure(result, budget: int | None, path: Path) -> None:
    from components.tracking.plots import memory_per_layer

    memory_per_layer(result, budget).savefig(path, dpi=150)
    print(f"wrote {path}")


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
