"""Measure what patch-based inference saves: arena before and after, cost, and bit-exactness.

    python benchmarks/patch_memory.py [--models NAME ...] [--inputs N] [--tflite PATH ...]
                                      [--cache DIR] [--max-stages K]

For each model (``benchmarks/models.py``: Keras MobileNetV2 0.35@96, 0.35@144, 1.0@224,
MobileNetV1 0.25@96, the project's DS-CNN on 49x10 MFCCs and on 98x40 micro-frontend
features; plus any ``--tflite`` file, e.g. a model the KWS pipeline trained): plan with the
default ``PlannerSpec`` (``--max-stages`` changes its stage limit), fuse the planned stages
(last stage first, so the other stages' operator indices stay valid), run original and
rewritten model on N random inputs on the wheel's interpreter and compare bit for bit,
measure both arenas (bisected minimum, TFLM's head), and time both with ``run_batch``
(median invoke, each model in its own child).

Two modes: "custom" fuses each planned stage into one TFLM_EXT_PATCH_STAGE op; "builtin"
splits the leading stage that ``builtin_planner.plan_builtin`` chose by measuring its
candidates into builtin ops (a model none of whose splits shrinks the arena is reported
with the reason). Extra MACs: the plan's recomputed overlaps in custom mode (the custom op
counts no MACs in ``graph_stats``); counted from the rewritten graph in builtin mode. The
bound is the plan's analytic bound (``planned_peak``: the larger of each stage's working set
on its grid and the peak of the rest); the floor is the split's ``split_floor`` (every stage
at one output pixel per tile, what no grid can beat; for a builtin split, its own peak). A
model the planner cannot or will not patch is reported with the planner's reason. The targets
are printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402  (after the path fix, like every import below)

from benchmarks.latency import paired_latency_ratio  # noqa: E402
from benchmarks.models import BENCHMARK_MODELS  # noqa: E402
from tflm_ext.arena import ArenaMeasurement, measure_arena  # noqa: E402
from tflm_ext.builtin_planner import plan_builtin  # noqa: E402
from tflm_ext.errors import TflmExtError  # noqa: E402
from tflm_ext.graph_stats import graph_stats  # noqa: E402
from tflm_ext.isolation import run_isolated  # noqa: E402
from tflm_ext.planner import PatchPlan, PlannerSpec, plan  # noqa: E402
from tflm_ext.rewrite import rewrite_stage, verify  # noqa: E402

MODES = ("custom", "builtin")
BOUND_SLACK = 1.05  # custom-op head within 5% of the analytic bound
MBV2_144_TOTAL_LIMIT = 210_000
MBV2_224_HEAD_FACTOR = 5.0
MBV2_224_EXTRA_MACS = 0.20


@dataclass(frozen=True)
class ModeResult:
    """One mode's plan and rewrite: its arena, extra MACs and latency next to the
    original's, and whether it matched bit for bit; ``error`` when the mode failed."""

    mode: str
    plan: PatchPlan | None = None
    identical: bool = False
    after: ArenaMeasurement | None = None
    extra_macs: int = 0
    latency_ratio: float = float("nan")
    op_count: int = 0
    error: str = ""


@dataclass
class ModelResult:
    """A model, its plan (None if the planner refused), its original arena, and one result
    per mode (a string where a mode kept the model: why)."""

    name: str
    macs: int
    op_count: int
    before: ArenaMeasurement
    plan: PatchPlan | None = None
    reason: str = ""
    modes: dict[str, ModeResult | str] = field(default_factory=dict)
    seconds: float = 0.0


def main() -> int:
    args = _parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    results = []
    for name, load in _selected(args):
        model_start = time.perf_counter()
        result = benchmark(name, load(), args.inputs, PlannerSpec(max_stages=args.max_stages))
        result.seconds = time.perf_counter() - model_start
        print(f"{name}: done in {result.seconds:.1f} s", flush=True)
        results.append(result)
    print()
    print_table(results)
    print_notes(results)
    print_reasons(results)
    print_targets(results)
    print(
        f"\ntotal runtime {time.perf_counter() - start:.1f} s ({args.inputs} inputs per model, "
        f"planner max_stages {args.max_stages})"
    )
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(BENCHMARK_MODELS), metavar="NAME")
    parser.add_argument("--inputs", type=int, default=8, help="random inputs per model")
    parser.add_argument("--tflite", nargs="+", type=Path, default=[], help="more int8 models")
    parser.add_argument("--cache", type=Path, help="keep built models here and reuse them")
    parser.add_argument(
        "--max-stages", type=int, default=PlannerSpec().max_stages, help="planner's stage limit"
    )
    args = parser.parse_args()
    if args.inputs < 1:
        parser.error(f"--inputs {args.inputs} must be at least 1")
    if args.models is None:
        args.models = [] if args.tflite else list(BENCHMARK_MODELS)
    return args


def _selected(args: argparse.Namespace):
    """(name, loader) for every chosen model; built models are cached if --cache is set."""
    for name in args.models:
        yield name, lambda name=name: _build(name, args.cache)
    for path in args.tflite:
        yield path.stem, path.read_bytes


def _build(name: str, cache: Path | None) -> bytes:
    cached = cache / f"{name}.tflite" if cache else None
    if cached and cached.exists():
        return cached.read_bytes()
    model_bytes = BENCHMARK_MODELS[name]()
    if cached:
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(model_bytes)
    return model_bytes


def benchmark(name: str, model_bytes: bytes, inputs: int, spec: PlannerSpec) -> ModelResult:
    """Plan, then for each mode rewrite, verify, measure and time against the original."""
    features = _features(model_bytes, inputs)
    stats = graph_stats(model_bytes)
    result = ModelResult(
        name,
        stats.total_macs,
        len(stats.ops),
        run_isolated(measure_arena, model_bytes),
    )
    try:
        result.plan = plan(model_bytes, spec)
    except TflmExtError as e:
        result.reason = str(e)
        return result
    result.reason = result.plan.reason
    for mode in MODES:
        if mode == "custom" and not result.plan.stages:
            result.modes[mode] = result.plan.reason  # the planner's own words: kept
        else:
            result.modes[mode] = _run_mode(mode, model_bytes, result, features, spec)
    return result


def _run_mode(
    mode: str, model_bytes: bytes, result: ModelResult, features: np.ndarray, spec: PlannerSpec
) -> ModeResult | str:
    """The mode's measurements, why it kept the model, or its error if it failed."""
    try:
        if mode == "custom":
            mode_plan, rewritten = result.plan, rewrite_all(model_bytes, result.plan)
        else:
            choice = plan_builtin(model_bytes, spec)
            mode_plan, rewritten = choice.plan, choice.model_bytes
            if rewritten is None:
                return choice.plan.reason
        report = verify(model_bytes, rewritten, inputs=len(features))
        stats = graph_stats(rewritten)
        extra = mode_plan.extra_macs if mode == "custom" else stats.total_macs - result.macs
        ratio = run_isolated(paired_latency_ratio, model_bytes, rewritten, features)
    except TflmExtError as e:
        return ModeResult(mode, error=str(e).splitlines()[0])
    return ModeResult(
        mode, mode_plan, report.identical, report.arena_after, extra, ratio, len(stats.ops)
    )


def rewrite_all(model_bytes: bytes, patch_plan: PatchPlan) -> bytes:
    """Fuse every planned stage, last first so the earlier stages' indices stay valid."""
    for stage in sorted(patch_plan.stages, key=lambda s: -s.first_op):
        model_bytes = rewrite_stage(model_bytes, stage.first_op, stage.last_op, stage.grid)
    return model_bytes


def _features(model_bytes: bytes, count: int) -> np.ndarray:
    """Uniform float features in [-1, 1], shaped like the model's first input."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    shape = tuple(int(d) for d in model_editor.read(model_bytes).subgraphs[0].inputs[0].shape)
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, (count, *shape[1:])).astype(np.float32)


# ----------------------------------------------------------------------------- report


def print_table(results: list[ModelResult]) -> None:
    """One row per model and mode: arena (minimum and head), bound, MACs, latency, exact."""
    header = (
        "model", "mode", "stages", "ops", "arena min before -> after", "head before -> after",
        "bound", "head/bound", "floor", "head/floor", "extra MACs", "latency x", "bit-exact",
    )  # fmt: skip
    rows = [header]
    for result in results:
        rows += _rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * width for width in widths))


def _rows(result: ModelResult) -> list[tuple[str, ...]]:
    before = result.before
    unpatched = f"{before.bisected_min:,}", f"{before.head:,}"
    rows = []
    for mode, outcome in result.modes.items() or [("none", "")]:
        if isinstance(outcome, str) or outcome.error:
            status = "kept" if isinstance(outcome, str) else "failed"
            rows.append((result.name, mode, "-", str(result.op_count), *unpatched,
                         *("-",) * 6, status))  # fmt: skip
            continue
        plan, after = outcome.plan, outcome.after
        stages = ", ".join(f"{s.first_op}..{s.last_op}@{s.grid[0]}x{s.grid[1]}"
                           for s in plan.stages)  # fmt: skip
        percent = 100 * outcome.extra_macs / max(result.macs, 1)
        rows.append(
            (
                result.name, mode, stages, f"{result.op_count} -> {outcome.op_count}",
                f"{before.bisected_min:,} -> {after.bisected_min:,}",
                f"{before.head:,} -> {after.head:,}",
                f"{plan.planned_peak:,}",
                f"{after.head / max(plan.planned_peak, 1):.3f}",
                f"{plan.split_floor:,}",
                f"{after.head / max(plan.split_floor, 1):.3f}",
                f"{outcome.extra_macs:,} ({percent:.1f}%)",
                f"{outcome.latency_ratio:.2f}",
                "yes" if outcome.identical else "NO",
            )
        )  # fmt: skip
    return rows


def print_notes(results: list[ModelResult]) -> None:
    """Why a mode kept the model or failed, in full."""
    notes = [
        f"  {r.name} {mode}: {o if isinstance(o, str) else o.error}"
        for r in results
        for mode, o in r.modes.items()
        if isinstance(o, str) or o.error
    ]
    if notes:
        print("\nmodes that kept the model or failed:")
        print("\n".join(notes))


def print_reasons(results: list[ModelResult]) -> None:
    """The planner's own words for every model, patched or not."""
    print("\nplanner:")
    for result in results:
        print(f"  {result.name} ({result.macs:,} MACs): {result.reason}")


def print_targets(results: list[ModelResult]) -> None:
    print("\ntargets:")
    for name, verdict, detail in targets(results):
        print(f"  [{verdict}] {name}: {detail}")


def targets(results: list[ModelResult]) -> list[tuple[str, str, str]]:
    """(target, PASS/FAIL/not run, detail) for each target of the patch work."""
    by_name = {r.name: r for r in results}
    return [
        _bound_target(results),
        _mbv2_144_target(by_name.get("mbv2-0.35-144")),
        _mbv2_224_target(by_name.get("mbv2-1.0-224")),
        _exact_target(results),
    ]


def _ran(result: ModelResult | None, mode: str = "custom") -> ModeResult | None:
    outcome = result.modes.get(mode) if result else None
    return outcome if isinstance(outcome, ModeResult) and not outcome.error else None


def _verdict(checks: list[bool]) -> str:
    return "not run" if not checks else ("PASS" if all(checks) else "FAIL")


def _bound_target(results: list[ModelResult]) -> tuple[str, str, str]:
    name = f"custom-op head within {BOUND_SLACK - 1:.0%} of the analytic bound"
    pairs = [(r, _ran(r)) for r in results if _ran(r)]
    checks = [m.after.head <= BOUND_SLACK * m.plan.planned_peak for _, m in pairs]
    detail = ", ".join(f"{r.name} {m.after.head:,} / {m.plan.planned_peak:,} B" for r, m in pairs)
    return name, _verdict(checks), detail or "no model was patched"


def _mbv2_144_target(result: ModelResult | None) -> tuple[str, str, str]:
    name = f"MobileNetV2 0.35@144 total arena <= {MBV2_144_TOTAL_LIMIT:,} B (custom op)"
    mode = _ran(result)
    if mode is None:
        return name, "not run", _why_not(result)
    ok = mode.after.bisected_min <= MBV2_144_TOTAL_LIMIT
    detail = f"minimum arena {mode.after.bisected_min:,} B (TFLM total {mode.after.total:,} B)"
    return name, _verdict([ok]), detail


def _mbv2_224_target(result: ModelResult | None) -> tuple[str, str, str]:
    name = (
        f"MobileNetV2 1.0@224 head >= {MBV2_224_HEAD_FACTOR:.0f}x lower with "
        f"<= {MBV2_224_EXTRA_MACS:.0%} extra MACs (custom op)"
    )
    mode = _ran(result)
    if mode is None:
        return name, "not run", _why_not(result)
    factor = result.before.head / mode.after.head
    fraction = mode.extra_macs / result.macs
    ok = factor >= MBV2_224_HEAD_FACTOR and fraction <= MBV2_224_EXTRA_MACS
    return name, _verdict([ok]), f"head {factor:.2f}x lower, {fraction:.1%} extra MACs"


def _exact_target(results: list[ModelResult]) -> tuple[str, str, str]:
    name = "bit-exact on every patched model, every mode that ran"
    runs = [(r.name, m) for r in results for m in r.modes.values() if isinstance(m, ModeResult)]
    checks = [m.identical and not m.error for _, m in runs]
    failed = [
        f"{n} ({m.mode}: {m.error or 'outputs differ'})"
        for n, m in runs
        if m.error or not m.identical
    ]
    detail = f"{len(runs) - len(failed)} of {len(runs)} runs exact" + (
        f"; not: {', '.join(failed)}" if failed else ""
    )
    return name, _verdict(checks), detail


def _why_not(result: ModelResult | None) -> str:
    if result is None:
        return "model not selected"
    mode = result.modes.get("custom")
    if isinstance(mode, ModeResult) and mode.error:
        return f"custom mode failed: {mode.error}"
    return f"not patched: {result.reason}"


if __name__ == "__main__":
    sys.exit(main())
