"""What MCUNet's receptive-field redistribution buys against MobileNetV2 (issue 8).

    python benchmarks/mcunet.py [--mbv2-alpha 0.25] [--budgets 0 2.5 5 10 20 40]
                                [--epochs 10] [--inputs 8] [--work-dir DIR]
                                [--skip-training | --skip-patching] [--set key=value ...]

Compares ``components.models.mcunet`` (alpha 0.5) with ``components.models.mobilenet_v2`` at
``--mbv2-alpha`` (default 0.25: 6.6M MACs against MCUNet's 4.7M, the closest width to it
that MobileNetV2's rounding of channels to multiples of 8 allows; the project's default 0.35
has 10.7M), both for 96x96x3 images and 2 classes, in three parts, each timed:

1. Shapes: MACs, parameters (Keras' count, batch norm included), flash (the int8 .tflite's
   size), the unpatched TFLM arena (bisected minimum: TFLM's total; and its head, the
   activation plan) and the first stage's receptive field (``first_stage_receptive_field``:
   the stem and the blocks up to output stride 8, what a patch-based plan tiles).
2. Patching: the planner's extra-MAC budget swept over ``--budgets`` (percent of the model's
   MACs), each model patched by ``tflm_ext.patching.patch_model`` (what ``tflm-pipelines
   patch`` runs: it verifies the rewrite bit-exact on the TFLM interpreter, raising if not,
   and keeps only a measured gain) in two executions: "tiles", MCUNetV2's patch-based
   inference (each tile recomputes its halo, which grows with the receptive field), and
   "custom", the planner's default (tiles or streamed rows, whichever is smaller). Then, at
   each head MCUNet reached (its default-budget plan, 20%, marked), the fewest extra MACs
   MobileNetV2 needs to reach a head as small, or that no budget of the sweep gets it there.
   Heads are compared, not totals: the tail is TFLM's per-operator persistent data, set by
   the operator count rather than the receptive field. Weights are random (seeded), the
   softmax dropped (with random weights its input scale can be degenerate, which aborts
   TFLM); memory and MACs depend on the shapes only.
3. Accuracy: both trained through the VWW pipeline (``configs/vww.yaml``, generated scenes,
   ``--set train.architecture=...``) for ``--epochs`` epochs, sharing one work dir so that
   the stage cache generates and preprocesses the scenes once (a stage's key is its inputs
   and its own config section, so the two trainings keep apart); held-out int8 accuracy on
   TFLM and float accuracy, and the trained int8 model's arena before and after the chain's
   own patch stage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.chain_report import print_table, run_timed  # noqa: E402
from benchmarks.models import _keras, convert_int8  # noqa: E402
from tflm_ext.arena import ArenaMeasurement, measure_arena  # noqa: E402
from tflm_ext.errors import NothingPatchableError  # noqa: E402
from tflm_ext.graph_stats import graph_stats  # noqa: E402
from tflm_ext.isolation import run_isolated  # noqa: E402
from tflm_ext.patching import patch_model  # noqa: E402
from tflm_ext.planner import STREAM, TILES, PlannerSpec, grid_text  # noqa: E402

SIZE = 96
MCUNET_ALPHA = 0.5
DEFAULT_BUDGET = PlannerSpec().max_extra_mac_fraction
EXECUTIONS = {"tiles": (TILES,), "custom": (TILES, STREAM)}
CONFIG = REPO / "configs" / "vww.yaml"


@dataclass(frozen=True)
class Network:
    """A benchmarked network: its name, builder and width, its int8 model and its shapes."""

    name: str
    architecture: str
    alpha: float
    model_bytes: bytes = b""
    macs: int = 0
    params: int = 0
    receptive_field: int = 0
    arena: ArenaMeasurement | None = None


@dataclass(frozen=True)
class Point:
    """One patched model of the sweep: its budget, execution, measured arena and cost."""

    execution: str
    budget: float
    head: int
    total: int
    extra_macs: int
    stages: str
    exact: str


def main() -> int:
    args = _parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING)
    mbv2 = f"MobileNetV2 {args.mbv2_alpha}"
    specs = [("MCUNet 0.5", "mcunet", MCUNET_ALPHA), (mbv2, "mobilenet_v2", args.mbv2_alpha)]
    start = time.perf_counter()
    networks = [measure(Network(*spec)) for spec in specs]
    part_times = {"1 shapes": time.perf_counter() - start}
    print_shapes(networks)

    if not args.skip_patching:
        start = time.perf_counter()
        sweeps = {n.name: sweep(n, args.budgets, args.inputs) for n in networks}
        part_times["2 patching"] = time.perf_counter() - start
        print_sweep(networks, sweeps)
        print_same_arena(networks, sweeps)

    if not args.skip_training:
        start = time.perf_counter()
        results = {n.name: train(n, args.epochs, args.work_dir, args.overrides) for n in networks}
        part_times["3 accuracy"] = time.perf_counter() - start
        print_accuracy(networks, results, args.epochs)
    print("\n## Wall time per part\n")
    print_table([(f"part {part}", f"{seconds:.1f} s") for part, seconds in part_times.items()])
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbv2-alpha", type=float, default=0.25, help="MobileNetV2's width")
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[0, 2.5, 5, 10, 20, 40],
        help="planner extra-MAC budgets, percent of the model's MACs",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per model")
    parser.add_argument("--inputs", type=int, default=8, help="random inputs verifying a patch")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "bench_mcunet")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[],
        help="a VWW config override for the trainings of part 3, e.g. data.synth.train=16000",
    )  # fmt: skip
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-training", action="store_true", help="parts 1 and 2 only")
    skip.add_argument("--skip-patching", action="store_true", help="parts 1 and 3 only")
    args = parser.parse_args()
    if args.epochs < 1 or args.inputs < 1 or min(args.budgets) < 0:
        parser.error("--epochs and --inputs must be at least 1 and --budgets at least 0")
    if DEFAULT_BUDGET * 100 not in args.budgets:
        args.budgets = sorted({*args.budgets, DEFAULT_BUDGET * 100})
    return args


# ----------------------------------------------------------------------------- part 1


def measure(network: Network) -> Network:
    """The network as a random-weight int8 model without softmax, with its shapes."""
    from components import models

    keras = _keras()
    options = {"alpha": network.alpha}
    model = models.build(network.architecture, (SIZE, SIZE, 3), 2, options)
    model.layers[-1].activation = keras.activations.linear
    model_bytes = convert_int8(model, (SIZE, SIZE, 3))
    module = importlib.import_module(models.ARCHITECTURES[network.architecture])
    field = module.first_stage_receptive_field(models.options(network.architecture, options))
    return replace(
        network,
        model_bytes=model_bytes,
        macs=graph_stats(model_bytes).total_macs,
        params=model.count_params(),
        receptive_field=field,
        arena=run_isolated(measure_arena, model_bytes),
    )


def print_shapes(networks: list[Network]) -> None:
    print(f"\n## Shapes ({SIZE}x{SIZE}x3, 2 classes, int8, unpatched)\n")
    rows = [
        ("MACs", lambda n: f"{n.macs:,}"),
        ("parameters", lambda n: f"{n.params:,}"),
        ("flash (int8 .tflite)", lambda n: f"{len(n.model_bytes):,} B"),
        ("TFLM arena total (bisected minimum)", lambda n: f"{n.arena.bisected_min:,} B"),
        ("TFLM arena head / tail", lambda n: f"{n.arena.head:,} / {n.arena.tail:,} B"),
        ("first-stage receptive field (to stride 8)", lambda n: f"{n.receptive_field} px"),
    ]
    _print_grid(["figure", *(n.name for n in networks)],
                [[name, *(cell(n) for n in networks)] for name, cell in rows])  # fmt: skip


# ----------------------------------------------------------------------------- part 2


def sweep(network: Network, budgets: list[float], inputs: int) -> list[Point]:
    """The network patched at every budget in each execution (unpatched figures where the
    planner kept the model)."""
    points = []
    for execution, executions in EXECUTIONS.items():
        for budget in budgets:
            spec = PlannerSpec(max_extra_mac_fraction=budget / 100, executions=executions)
            points.append(_patched(network, spec, execution, budget, inputs))
            print(f"{network.name} {execution} {budget}%: {points[-1]}", flush=True)
    return points


def _patched(network: Network, spec: PlannerSpec, execution: str, budget: float, inputs: int):
    """One patch: patch_model raises unless the rewrite is bit-exact on TFLM."""
    arena = network.arena
    try:
        outcome = patch_model(network.model_bytes, spec, inputs=inputs)
    except NothingPatchableError as e:
        return Point(execution, budget, arena.head, arena.bisected_min, 0, f"kept: {e}", "-")
    exact = "yes" if outcome.report and outcome.report.identical else "-"
    if not outcome.applied:
        reason = outcome.plan.reason.split(";")[0]
        return Point(execution, budget, arena.head, arena.bisected_min, 0, reason, exact)
    after = outcome.report.arena_after
    stages = ", ".join(f"{s.first_op}..{s.last_op}@{grid_text(s)}" for s in outcome.plan.stages)
    return Point(
        execution, budget, after.head, after.bisected_min, outcome.plan.extra_macs, stages, exact
    )


def print_sweep(networks: list[Network], sweeps: dict[str, list[Point]]) -> None:
    print("\n## Patched arena against the planner's extra-MAC budget (random weights; every")
    print("patched model verified bit-exact on TFLM by patch_model)\n")
    header = ["model", "execution", "budget", "extra MACs", "arena head", "arena total",
              "stages (ops@grid)", "bit-exact"]  # fmt: skip
    rows = [_sweep_row(n, p) for n in networks for p in sweeps[n.name]]
    _print_grid(header, rows)


def _sweep_row(network: Network, p: Point) -> list[str]:
    return [network.name, p.execution, f"{p.budget:g}%", _macs(p.extra_macs, network.macs),
            f"{p.head:,} B", f"{p.total:,} B", p.stages, p.exact]  # fmt: skip


def print_same_arena(networks: list[Network], sweeps: dict[str, list[Point]]) -> None:
    """At each head MCUNet's sweep reached: the fewest extra MACs each network needs to get
    its head that low (within the sweep), or the smallest head the other reached."""
    mcunet, other = networks
    print("\n## Extra MACs to reach the same patched arena head\n")
    header = ["execution", "arena head level", f"{mcunet.name} extra MACs",
              f"{other.name} extra MACs"]  # fmt: skip
    rows = []
    for execution in EXECUTIONS:
        mine = [p for p in sweeps[mcunet.name] if p.execution == execution]
        theirs = [p for p in sweeps[other.name] if p.execution == execution]
        levels = sorted({p.head for p in mine if p.head < mcunet.arena.head}, reverse=True)
        default = next((p.head for p in mine if p.budget == DEFAULT_BUDGET * 100), None)
        for level in levels:
            mark = f" (MCUNet at {DEFAULT_BUDGET:.0%})" if level == default else ""
            rows.append([execution, f"{level:,} B{mark}", _cheapest(mine, level, mcunet.macs),
                         _cheapest(theirs, level, other.macs)])  # fmt: skip
    _print_grid(header, rows)


def _cheapest(points: list[Point], level: int, macs: int) -> str:
    reaching = [p for p in points if p.head <= level]
    if reaching:
        return _macs(min(p.extra_macs for p in reaching), macs)
    best = min(points, key=lambda p: (p.head, p.extra_macs))
    return f"cannot: smallest head {best.head:,} B, at {_macs(best.extra_macs, macs)}"


def _macs(extra: int, macs: int) -> str:
    return f"{extra:,} ({100 * extra / macs:.1f}%)"


# ----------------------------------------------------------------------------- part 3


def train(network: Network, epochs: int, work_dir: Path, extra: list[str]):
    """The default VWW run with this architecture and width, ``epochs`` epochs, and the
    ``--set`` overrides ``extra``."""
    from pipelines import config, vww

    overrides = [
        f"work_dir={work_dir}",
        f"train.architecture={network.architecture}",
        f"train.model={{alpha: {network.alpha}}}",  # not the default's own options
        f"train.epochs={epochs}",
        *extra,
    ]
    print(f"training {network.name}: --set {' --set '.join(overrides)}", flush=True)
    return run_timed(vww, config.load(CONFIG, overrides))


def print_accuracy(networks: list[Network], results: dict, epochs: int) -> None:
    first = results[networks[0].name][0].evaluation
    print(f"\n## Accuracy (default VWW generated scenes, {epochs} epochs each, held-out "
          f"{first.test_examples} scenes; int8 on TFLM)\n")  # fmt: skip

    def figures(result, seconds):
        ev, patched = result.evaluation, result.patch
        after = f"{patched.arena_after:,} B" if patched.patched else f"kept: {patched.reason}"
        return [
            f"{ev.int8_accuracy:.4f}", f"{ev.float_accuracy:.4f}",
            f"{result.timings.get('train', 0):.0f} s", f"{seconds:.0f} s",
            f"{patched.arena_before:,} B", after,
        ]  # fmt: skip

    names = ["int8 accuracy (held-out)", "float accuracy (same scenes)", "train time",
             "whole run", "trained int8 arena, unpatched",
             "after the chain's patch stage"]  # fmt: skip
    columns = [figures(*results[n.name]) for n in networks]
    rows = [[name, *(c[i] for c in columns)] for i, name in enumerate(names)]
    accuracies = [results[n.name][0].evaluation for n in networks]
    gap = accuracies[0].int8_accuracy - accuracies[1].int8_accuracy
    rows.append(["int8 gap (MCUNet - MobileNetV2)", f"{100 * gap:+.1f} points", ""])
    _print_grid(["figure", *(n.name for n in networks)], rows)


def _print_grid(header: list[str], rows: list[list[str]]) -> None:
    """A markdown table (``chain_report.print_table`` has two columns only)."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
