"""Measure what patch-based inference saves: arena before and after, cost, and bit-exactness.

    python benchmarks/patch_memory.py [--models NAME ...] [--inputs N] [--tflite PATH ...]
                                      [--cache DIR] [--max-stages K] [--modes MODE ...]

For each model (``benchmarks/models.py``: Keras MobileNetV2 0.35@96, 0.35@144, 1.0@224,
MobileNetV1 0.25@96, the project's DS-CNN on 49x10 MFCCs and on 98x40 micro-frontend
features; here: ``large-kernel-96``, an inverted-residual network whose first stage has
7x7 and 5x5 depthwise kernels, and ``vww-ref``, MLPerf Tiny's person detector from the
shared folder, verified on the shared real photos; plus any ``--tflite`` file): plan with
the default ``PlannerSpec`` (``--max-stages`` changes its stage limit) in each mode, fuse
the planned stages (last first, so the other stages' operator indices stay valid), run
original and rewritten model on N random inputs on the wheel's interpreter and compare bit
for bit, measure both arenas (bisected minimum, TFLM's head), and time both
(``paired_latency_ratio``: median over alternating rounds in one child).

Four modes, each chosen as ``tflm_ext.patching.choose`` does for ``tflm-pipelines patch``:
"custom" lets the planner run each stage tile by tile or streamed row by row (of the plans
of smallest simulated head, the one of smallest TFLM total arena within the MAC budget);
"stream" streams every stage on one strip (no recomputation); "builtin" splits the leading
stage that ``builtin_planner.plan_builtin`` chose by measuring its candidates into builtin
ops (a model none of whose splits shrinks the arena is reported with the reason);
"reader" is "custom" with the row reader allowed (``PlannerSpec.row_reader``): the first
stage may pull the image's rows from the application, also on column strips (each strip
reading the rows again), so the image leaves the arena and the model input becomes one row
(verified and timed on whole images through the host's reader). Extra MACs: the plan's
recomputed overlaps for the custom op (which counts no MACs in ``graph_stats``); counted
from the rewritten graph in builtin mode. The bound is the
plan's analytic bound (``planned_peak``: the larger of each stage's working set and the
peak of the rest); the floor is the split's ``split_floor`` (every stage on its smallest
option, what none can beat; for a builtin split, its own peak). The targets are printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402  (after the path fix, like every import below)

from benchmarks.latency import paired_latency_ratio  # noqa: E402
from benchmarks.models import BENCHMARK_MODELS, convert_int8  # noqa: E402
from tflm_ext.arena import ArenaMeasurement, measure_arena  # noqa: E402
from tflm_ext.errors import NothingPatchableError, TflmExtError  # noqa: E402
from tflm_ext.graph_stats import graph_stats  # noqa: E402
from tflm_ext.isolation import run_isolated  # noqa: E402
from tflm_ext.patching import choose  # noqa: E402
from tflm_ext.planner import STREAM, PatchPlan, PlannerSpec, grid_text  # noqa: E402
from tflm_ext.rewrite import verify  # noqa: E402

MODES = ("custom", "stream", "builtin", "reader")
BOUND_SLACK = 1.05  # custom-op head within 5% of the analytic bound
STREAM_LATENCY_LIMIT = 1.05
MBV2_144_TOTAL_LIMIT = 140_000
MBV2_224_HEAD_FACTOR = 6.5
MBV2_224_READER_HEAD_FACTOR = 12.0
MBV2_224_EXTRA_MACS = 0.20
LARGE_KERNEL_HEAD_FACTOR = 1.8
SHARED = Path(os.environ.get("TFLM_PIPELINES_SHARED", REPO.parent / "shared"))
VWW_MODEL = SHARED / "models" / "vww_96_int8.tflite"
VWW_PHOTOS = SHARED / "data" / "vww_coco"


def large_kernel(size: int = 96) -> bytes:
    """An inverted-residual network (MobileNetV2's blocks) whose first, high-resolution
    stage has 7x7 and 5x5 depthwise kernels, where tiles recompute wide halos."""
    from benchmarks.models import _keras
    from components.models import mobilenet_v2 as blocks

    keras = _keras()
    inputs = keras.Input((size, size, 3))
    x = keras.layers.ReLU(6.0)(blocks.conv_bn(inputs, 16, 3, 2, None))
    table = ((1, 7, 8, 1), (4, 5, 16, 2), (4, 7, 16, 1), (4, 5, 24, 2), (4, 5, 24, 1),
             (6, 7, 40, 2), (4, 5, 40, 1), (6, 5, 48, 1), (6, 7, 96, 2), (4, 5, 96, 1),
             (6, 3, 160, 1))  # fmt: skip
    for expansion, kernel, filters, stride in table:
        x = blocks.inverted_residual(x, expansion, kernel, filters, stride, None)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return convert_int8(keras.Model(inputs, outputs), (size, size, 3))


def ds_cnn(input_shape: tuple[int, int]) -> bytes:
    """The project's DS-CNN (``components.models``), 12 classes, as the KWS pipeline trains."""
    from benchmarks.models import _keras
    from components import models

    _keras()
    network = models.build("ds_cnn", (*input_shape, 1), 12)
    return convert_int8(network, (*input_shape, 1))


MODELS = {
    **BENCHMARK_MODELS,
    "ds-cnn": lambda: ds_cnn((49, 10)),
    "ds-cnn-micro": lambda: ds_cnn((98, 40)),
    "large-kernel-96": large_kernel,
    **({"vww-ref": VWW_MODEL.read_bytes} if VWW_MODEL.exists() else {}),
}


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
    """A model, its original arena, the inputs it was verified on, and one result per mode
    (a string where a mode kept the model or refused it: why)."""

    name: str
    macs: int
    op_count: int
    before: ArenaMeasurement
    inputs: str = ""
    modes: dict[str, ModeResult | str] = field(default_factory=dict)
    seconds: float = 0.0


def main() -> int:
    args = _parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    results = []
    spec = PlannerSpec(max_stages=args.max_stages)
    for name, load in _selected(args):
        model_start = time.perf_counter()
        result = benchmark(name, load(), args.inputs, spec, args.modes)
        result.seconds = time.perf_counter() - model_start
        print(f"{name}: done in {result.seconds:.1f} s", flush=True)
        results.append(result)
    print()
    print_table(results)
    print_notes(results)
    print_targets(results)
    print(
        f"\ntotal runtime {time.perf_counter() - start:.1f} s ({args.inputs} inputs per model, "
        f"planner max_stages {args.max_stages})"
    )
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), metavar="NAME")
    parser.add_argument("--inputs", type=int, default=8, help="random inputs per model")
    parser.add_argument("--tflite", nargs="+", type=Path, default=[], help="more int8 models")
    parser.add_argument("--cache", type=Path, help="keep built models here and reuse them")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--max-stages", type=int, default=PlannerSpec().max_stages, help="planner's stage limit"
    )
    args = parser.parse_args()
    if args.inputs < 1:
        parser.error(f"--inputs {args.inputs} must be at least 1")
    if args.models is None:
        args.models = [] if args.tflite else list(MODELS)
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
    model_bytes = MODELS[name]()
    if cached:
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(model_bytes)
    return model_bytes


def benchmark(
    name: str, model_bytes: bytes, inputs: int, spec: PlannerSpec, modes=MODES
) -> ModelResult:
    """For each mode: plan, rewrite, verify, measure and time against the original."""
    features, verified_on = _features(name, model_bytes, inputs)
    stats = graph_stats(model_bytes)
    result = ModelResult(
        name, stats.total_macs, len(stats.ops), run_isolated(measure_arena, model_bytes)
    )
    result.inputs = verified_on
    for mode in modes:
        result.modes[mode] = _run_mode(mode, model_bytes, result, features, spec)
    return result


def _run_mode(
    mode: str, model_bytes: bytes, result: ModelResult, features: np.ndarray, spec: PlannerSpec
) -> ModeResult | str:
    """The mode's measurements, why it kept the model, or its error if it failed."""
    try:
        mode_spec = replace(spec, row_reader=True) if mode == "reader" else spec
        mode_plan, rewritten = choose(
            model_bytes, mode_spec, "custom" if mode == "reader" else mode
        )
        if rewritten is None:
            return mode_plan.reason
        report = verify(model_bytes, rewritten, inputs=_quantized(model_bytes, features))
        stats = graph_stats(rewritten)
        extra = stats.total_macs - result.macs if mode == "builtin" else mode_plan.extra_macs
        ratio = run_isolated(paired_latency_ratio, model_bytes, rewritten, features[:8])
    except NothingPatchableError as e:
        return str(e)
    except TflmExtError as e:
        return ModeResult(mode, error=str(e).splitlines()[0])
    return ModeResult(
        mode, mode_plan, report.identical, report.arena_after, extra, ratio, len(stats.ops)
    )


def _features(name: str, model_bytes: bytes, count: int) -> tuple[np.ndarray, str]:
    """The real photos (scaled to [0, 1]) for the person detector when the shared folder
    holds them, else uniform float features in [-1, 1] shaped like the first input."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    shape = tuple(int(d) for d in model_editor.read(model_bytes).subgraphs[0].inputs[0].shape)
    if name == "vww-ref" and VWW_PHOTOS.is_dir():
        from components import preprocessing
        from components.artifacts import Preprocessing
        from components.vision import image_folder

        index = image_folder.run(image_folder.ImageFolderSpec(), VWW_PHOTOS)
        prep = Preprocessing(kind="image", image_size=shape[1:3], channels=shape[3])
        photos = preprocessing.prepare(prep, [item.path for item in index.items])
        return photos, f"{len(photos)} real photos"
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, (count, *shape[1:])).astype(np.float32), f"{count} random"


def _quantized(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    from tflm_ext.inference import input_details, quantize

    return quantize(features, run_isolated(input_details, model_bytes))


# ----------------------------------------------------------------------------- report


def print_table(results: list[ModelResult]) -> None:
    """One row per model and mode: arena (minimum and head), bound, MACs, latency, exact."""
    header = (
        "model", "mode", "stages", "streamed", "ops", "arena min before -> after",
        "head before -> after", "bound", "head/bound", "floor", "extra MACs", "latency x",
        "bit-exact",
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
    for mode, outcome in result.modes.items():
        if isinstance(outcome, str) or outcome.error:
            status = "kept" if isinstance(outcome, str) else "failed"
            rows.append((result.name, mode, "-", "-", str(result.op_count), *unpatched,
                         *("-",) * 5, status))  # fmt: skip
            continue
        plan_, after = outcome.plan, outcome.after
        stages = ", ".join(f"{s.first_op}..{s.last_op}@{grid_text(s)}" for s in plan_.stages)
        streamed = sum(s.execution == STREAM for s in plan_.stages)
        stages += " (row reader)" if any(s.row_reader for s in plan_.stages) else ""
        percent = 100 * outcome.extra_macs / max(result.macs, 1)
        rows.append(
            (
                result.name, mode, stages, f"{streamed}/{len(plan_.stages)}",
                f"{result.op_count} -> {outcome.op_count}",
                f"{before.bisected_min:,} -> {after.bisected_min:,}",
                f"{before.head:,} -> {after.head:,} ({before.head / after.head:.2f}x)",
                f"{plan_.planned_peak:,}",
                f"{after.head / max(plan_.planned_peak, 1):.3f}",
                f"{plan_.split_floor:,}",
                f"{outcome.extra_macs:,} ({percent:.1f}%)",
                f"{outcome.latency_ratio:.2f}",
                "yes" if outcome.identical else "NO",
            )
        )  # fmt: skip
    return rows


def print_notes(results: list[ModelResult]) -> None:
    """The inputs each model was verified on, and why a mode kept a model or failed."""
    print("\nverified on: " + ", ".join(f"{r.name} {r.inputs}" for r in results))
    notes = [
        f"  {r.name} {mode}: {o if isinstance(o, str) else o.error}"
        for r in results
        for mode, o in r.modes.items()
        if isinstance(o, str) or o.error
    ]
    if notes:
        print("modes that kept the model or failed:")
        print("\n".join(notes))


def print_targets(results: list[ModelResult]) -> None:
    print("\ntargets:")
    for name, verdict, detail in targets(results):
        print(f"  [{verdict}] {name}: {detail}")


def targets(results: list[ModelResult]) -> list[tuple[str, str, str]]:
    """(target, PASS/FAIL/not run, detail) for each target of the patch work."""
    by_name = {r.name: r for r in results}
    return [
        _bound_target(results),
        _simulated_target(results),
        _stream_target(results),
        _mbv2_144_target(by_name.get("mbv2-0.35-144")),
        _mbv2_224_target(by_name.get("mbv2-1.0-224")),
        _mbv2_224_reader_target(by_name.get("mbv2-1.0-224")),
        _large_kernel_target(by_name.get("large-kernel-96")),
        _vww_target(by_name.get("vww-ref")),
        _exact_target(results),
    ]


def _ran(result: ModelResult | None, mode: str = "custom") -> ModeResult | None:
    outcome = result.modes.get(mode) if result else None
    return outcome if isinstance(outcome, ModeResult) and not outcome.error else None


def _verdict(checks: list[bool]) -> str:
    return "not run" if not checks else ("PASS" if all(checks) else "FAIL")


def _bound_target(results: list[ModelResult]) -> tuple[str, str, str]:
    name = f"custom-op head within {BOUND_SLACK - 1:.0%} of the analytic bound (custom, stream)"
    runs = [(r, m) for r in results for mode in ("custom", "stream") if (m := _ran(r, mode))]
    checks = [m.after.head <= BOUND_SLACK * m.plan.planned_peak for _, m in runs]
    worst = max((m.after.head / m.plan.planned_peak for _, m in runs), default=0)
    return name, _verdict(checks), f"{len(runs)} runs, worst head/bound {worst:.3f}"


def _simulated_target(results: list[ModelResult]) -> tuple[str, str, str]:
    name = "TFLM's measured head is the planner's simulated head, byte for byte (custom-op modes)"
    modes = ("custom", "stream", "reader")
    runs = [(r, m) for r in results for mode in modes if (m := _ran(r, mode))]
    off = [f"{r.name} {m.mode} {m.after.head} != {m.plan.planned_head}" for r, m in runs
           if m.after.head != m.plan.planned_head]  # fmt: skip
    detail = f"{len(runs) - len(off)} of {len(runs)} runs equal" + (f"; {off}" if off else "")
    return name, _verdict([not off] if runs else []), detail


def _stream_target(results: list[ModelResult]) -> tuple[str, str, str]:
    name = f"stream mode: 0 extra MACs, latency <= {STREAM_LATENCY_LIMIT}x the unpatched model"
    runs = [(r, m) for r in results if (m := _ran(r, "stream"))]
    checks = [m.extra_macs == 0 and m.latency_ratio <= STREAM_LATENCY_LIMIT for _, m in runs]
    detail = ", ".join(f"{r.name} x{m.latency_ratio:.2f}" for r, m in runs)
    return name, _verdict(checks), detail or "no model was streamed"


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
        f"MobileNetV2 1.0@224 head >= {MBV2_224_HEAD_FACTOR}x lower with "
        f"<= {MBV2_224_EXTRA_MACS:.0%} extra MACs (custom op)"
    )
    mode = _ran(result)
    if mode is None:
        return name, "not run", _why_not(result)
    factor = result.before.head / mode.after.head
    fraction = mode.extra_macs / result.macs
    ok = factor >= MBV2_224_HEAD_FACTOR and fraction <= MBV2_224_EXTRA_MACS
    return name, _verdict([ok]), f"head {factor:.2f}x lower, {fraction:.1%} extra MACs"


def _mbv2_224_reader_target(result: ModelResult | None) -> tuple[str, str, str]:
    name = f"MobileNetV2 1.0@224 head >= {MBV2_224_READER_HEAD_FACTOR}x lower with the row reader"
    mode = _ran(result, "reader")
    if mode is None:
        return name, "not run", _why_not(result, "reader")
    factor = result.before.head / mode.after.head
    ok = factor >= MBV2_224_READER_HEAD_FACTOR
    return name, _verdict([ok]), f"head {factor:.2f}x lower, {mode.after.head:,} B"


def _large_kernel_target(result: ModelResult | None) -> tuple[str, str, str]:
    name = f"7x7/5x5-kernel first stage: head >= {LARGE_KERNEL_HEAD_FACTOR}x lower at 0 extra MACs"
    mode = _ran(result, "stream")
    if mode is None:
        return name, "not run", _why_not(result, "stream")
    factor = result.before.head / mode.after.head
    ok = factor >= LARGE_KERNEL_HEAD_FACTOR and mode.extra_macs == 0
    return name, _verdict([ok]), f"stream mode: head {factor:.2f}x lower, {mode.extra_macs} MACs"


def _vww_target(result: ModelResult | None) -> tuple[str, str, str]:
    name = "MLPerf Tiny person detector smaller in every mode, identical on the real photos"
    if result is None:
        return name, "not run", f"model not selected or {VWW_MODEL} missing"
    runs = {mode: _ran(result, mode) for mode in result.modes}
    checks = [
        bool(m) and m.identical and m.after.bisected_min < result.before.bisected_min
        for m in runs.values()
    ]
    detail = ", ".join(
        f"{mode} {m.after.bisected_min:,} B" if m else f"{mode} not patched"
        for mode, m in runs.items()
    )
    return name, _verdict(checks), f"{result.before.bisected_min:,} B -> {detail} ({result.inputs})"


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


def _why_not(result: ModelResult | None, mode: str = "custom") -> str:
    if result is None:
        return "model not selected"
    outcome = result.modes.get(mode)
    if isinstance(outcome, ModeResult) and outcome.error:
        return f"{mode} mode failed: {outcome.error}"
    return f"not patched: {outcome}"


if __name__ == "__main__":
    sys.exit(main())
