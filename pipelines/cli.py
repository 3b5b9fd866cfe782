"""The ``tflm-pipelines`` command line.

Exit status: 0 success, 1 a stage or the config failed (one line on stderr says why),
2 bad command-line usage, 3 the run finished and was logged but the release gate failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pipelines import cache_cli, release_cli, search_cli
from pipelines.cli_args import add_config_args

EXIT_ERROR = 1
EXIT_GATE_FAILED = 3

log = logging.getLogger("tflm_pipelines")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflm-pipelines",
        description="Train, quantize, measure on real TFLite Micro, gate and register "
        "models for microcontrollers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a pipeline config end to end",
        description="Run a pipeline end to end. Unrecognised --options are passed to Apache "
        "Beam as pipeline options (e.g. --direct_num_workers=2, or a Flink/Spark/Dataflow "
        "runner's own flags).",
    )
    add_config_args(run)
    run.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: a SQLite file "
        "under the config's work_dir), e.g. http://127.0.0.1:5000",
    )
    run.add_argument(
        "--runner",
        help="Apache Beam runner for data stages (default: the "
        "config's features.runner, DirectRunner)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.add_argument(
        "--force",
        nargs="?",
        const="all",
        metavar="STAGE",
        help="recompute cached stages instead of reusing them: all of them, or STAGE and "
        "every stage after it (data, features or images, train, prune, quantize, patch, "
        "evaluate)",
    )

    check = sub.add_parser(
        "validate",
        help="check a config without running anything",
        description="Parse and validate a config, then print it resolved.",
    )
    add_config_args(check)

    _add_evaluate_parser(sub)
    _add_profile_parser(sub)
    _add_patch_parser(sub)
    _add_upload_parser(sub)
    release_cli.add_parsers(sub)
    search_cli.add_parser(sub)
    cache_cli.add_parser(sub)
    export = sub.add_parser(
        "export",
        help="write a firmware folder for a .tflite",
        description="Write the model as a C array, an op resolver listing exactly the ops it "
        "needs, the patch-stage kernel sources when it uses them, and a README with the arena "
        "to reserve (measured on TFLM).",
    )
    export.add_argument("model", help="an int8 .tflite (patched or not)")
    export.add_argument("--output", required=True, help="an empty or new folder")
    export.add_argument("--name", default="g_model", help="C name of the model array")
    sub.add_parser(
        "rules",
        help="print the release gate's rules",
        description="Print the release gate's rules as a markdown table.",
    )
    return parser


def _add_evaluate_parser(sub) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="accuracy, arena, flash and latency of any int8 classifier on a folder",
        description="Evaluate an int8 classification .tflite (the project's or your own) on "
        "an image folder (one folder per class) or a Speech Commands folder, with the same "
        "preprocessing as training, on the real TFLM interpreter.",
    )
    evaluate.add_argument("model", help="an int8 .tflite")
    evaluate.add_argument("--data", required=True, help="image folder or Speech Commands folder")
    evaluate.add_argument(
        "--labels",
        type=_label_list,
        metavar="A,B,...",
        help="the model's output labels in order (default: class folders sorted, or "
        "_silence_,_unknown_,<keywords> for Speech Commands)",
    )
    evaluate.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    evaluate.add_argument(
        "--device", action="append", default=[], help="device YAML for a latency estimate"
    )


def _label_list(text: str) -> tuple[str, ...]:
    labels = tuple(part.strip() for part in text.split(","))
    if not all(labels) or len(set(labels)) != len(labels):
        raise argparse.ArgumentTypeError(f"{text!r}: labels must be non-empty and distinct")
    return labels


def _add_profile_parser(sub) -> None:
    profile = sub.add_parser(
        "profile",
        help="memory per layer of a .tflite, measured on TFLM",
        description="Print the activation memory alive at each operator, the peak, MACs and "
        "TFLM's measured arena; write a per-layer chart and log it all to MLflow.",
    )
    profile.add_argument("model", help="an int8 .tflite")
    profile.add_argument("--device", help="device YAML: draws its SRAM budget for the model")
    profile.add_argument(
        "--output", help="folder for memory.md/.json/.png (default: MODEL.memory/ beside it)"
    )
    profile.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: a SQLite file in the output folder)"
    )


def _add_patch_parser(sub) -> None:
    patch = sub.add_parser(
        "patch",
        help="rewrite a .tflite for patch-based inference",
        description="Plan patch-based inference (MCUNetV2) for an int8 .tflite, rewrite it, "
        "verify the result bit-exact on the real TFLM interpreter and write it when its "
        "measured arena is smaller.",
    )
    patch.add_argument("model", help="an int8 .tflite")
    patch.add_argument(
        "--output", help="where to write the patched .tflite (default: MODEL_patched.tflite)"
    )
    patch.add_argument("--device", help="device YAML: reports whether the result fits")
    patch.add_argument(
        "--mode",
        choices=("custom", "stream", "builtin"),
        default="custom",
        help="custom: one TFLM_EXT_PATCH_STAGE op per stage, tiled or streamed, whichever "
        "gives the smaller arena within the MAC budget; stream: every stage streamed row by "
        "row, no recomputed MACs; builtin: slices, convs and concatenation only (no custom "
        "kernel)",
    )
    patch.add_argument(
        "--max-extra-macs",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="budget of recomputed MACs from overlapping tiles (default 0.2)",
    )
    patch.add_argument("--max-stages", type=int, default=3, help="disjoint stages (default 3)")
    patch.add_argument(
        "--row-reader",
        action="store_true",
        help="let the first stage read the image row by row from the application's callback "
        "(SetRowReader, see the export's README): the image never sits in the arena and the "
        "model input becomes one row (custom and stream modes)",
    )
    patch.add_argument(
        "--grids",
        type=_grid_list,
        default=None,
        metavar="N,N,...",
        help="square tile grids tiled stages may use, each at least 2 (default: the "
        "planner's, 2,3,4,5,6,8,12,16)",
    )
    patch.add_argument(
        "--verify-inputs",
        type=int,
        default=8,
        metavar="N",
        help="random inputs that must give identical outputs (default 8)",
    )


def _grid_list(text: str) -> tuple[int, ...]:
    """``--grids 2,4,8``: the n of each n x n grid, each at least 2."""
    try:
        grids = tuple(int(part) for part in text.split(","))
    except ValueError as error:
        message = f"{text!r} is not a comma-separated list of integers"
        raise argparse.ArgumentTypeError(message) from error
    if min(grids) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: every grid must be at least 2 (n x n tiles)")
    return grids


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in _BEAM_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _configure_logging(args.verbose)
    try:
        return _COMMANDS[args.command](args, extra)
    except Exception as e:  # one line for the user, the traceback in debug logs
        from components.errors import ComponentError
        from pipelines.errors import PipelineError
        from tflm_ext.errors import TflmExtError

        if not isinstance(e, PipelineError | ComponentError | TflmExtError):
            raise
        log.debug("failed", exc_info=True)
        print(f"tflm-pipelines: error: {e}", file=sys.stderr)
        return EXIT_ERROR


# The project's own loggers; everything else is third-party noise shown only with --verbose.
_PROJECT_LOGGERS = ("tflm_pipelines", "pipelines", "components", "tflm_ext")


def _configure_logging(verbose: bool) -> None:
    """INFO from the project, errors only from libraries (Beam's BigQuery and apitools
    notices, TensorFlow's start-up lines, Python warnings) unless ``--verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(not verbose)
    for name in _PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if not verbose:
        from pipelines.quiet_startup import quiet_tensorflow_startup

        quiet_tensorflow_startup()


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    import dataclasses
    import importlib

    from pipelines import config

    cfg = config.load(args.config, args.overrides)
    module, data_section = config.PIPELINES[cfg.pipeline]
    if args.runner:
        section = dataclasses.replace(getattr(cfg, data_section), runner=args.runner)
        cfg = cfg.model_copy(update={data_section: section})
    result = importlib.import_module(module).run(
        cfg,
        tracking_uri=args.tracking_uri,
        pipeline_args=extra,
        progress=not args.no_progress,
        force=args.force,
    )
    _print_summary(result)
    if not result.passed:
        failed = [
            f"{g.device}: {r.name} {r.detail}"
            for g in result.gates
            for r in g.rules
            if not r.passed
        ]
        print(f"tflm-pipelines: gate failed: {'; '.join(failed)}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def _print_summary(result) -> None:
    from components.gate import report_markdown

    ev = result.evaluation
    print(
        f"int8 accuracy {ev.int8_accuracy:.4f} (float {ev.float_accuracy:.4f}), "
        f"arena {ev.arena_total:,} B (head {ev.arena_head:,}, tail {ev.arena_tail:,}), "
        f"flash {ev.flash_bytes:,} B, {ev.macs:,} MACs, host {ev.host_latency_ms:.3f} ms"
    )
    for report in result.gates:
        print(report_markdown(report))
    print(
        f"MLflow run {result.tracking.run_id}, model {result.tracking.model_uri}"
        f" (version {result.tracking.model_version})"
    )


def _validate(args: argparse.Namespace, extra: list[str]) -> int:
    import yaml

    from pipelines import config

    cfg = config.load(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def _rules(args: argparse.Namespace, extra: list[str]) -> int:
    from components.gate import rules_table

    print(rules_table())
    return 0


def _evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    import json
    from pathlib import Path

    from components import evaluate_files
    from pipelines.config import load_device

    model = Path(args.model)
    _require_file(model)
    devices = [load_device(d) for d in args.device]
    result = evaluate_files.run(model, Path(args.data), args.labels, devices)
    report = result.report()
    print(_evaluation_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def _evaluation_table(result) -> str:
    ev = result.evaluation
    prep = ", ".join(f"{k}={v}" for k, v in result.preprocessing.describe().items())
    arena = f"{ev.arena_total:,} / {ev.arena_head:,} / {ev.arena_tail:,} B"
    rows = [
        ("accuracy (int8, TFLM)", f"{ev.int8_accuracy:.4f}"),
        ("examples (skipped)", f"{ev.test_examples} ({len(result.skipped)})"),
        ("preprocessing", prep),
        ("arena total / head / tail", arena),
        ("flash", f"{ev.flash_bytes:,} B"),
        ("MACs", f"{ev.macs:,}"),
        ("host latency (median)", f"{ev.host_latency_ms:.3f} ms"),
        *((f"estimated latency {d}", f"{ms:.1f} ms") for d, ms in ev.estimated_latency_ms.items()),
    ]  # fmt: skip
    lines = ["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    lines += [
        "",
        "confusion (rows: true, columns: predicted)",
        "",
        "| | " + " | ".join(ev.labels) + " |",
        "|---" * (len(ev.labels) + 1) + "|",
    ]
    lines += [f"| {label} | " + " | ".join(map(str, row)) + " |"
              for label, row in zip(ev.labels, ev.confusion, strict=True)]  # fmt: skip
    return "\n".join(lines)


def _profile(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from components.tracking import memory_report
    from pipelines.config import load_device

    model = Path(args.model)
    out_dir = Path(args.output) if args.output else model.with_suffix(".memory")
    budget = load_device(args.device).sram_budget_bytes if args.device else None
    _require_file(model)
    report = memory_report.run(model, out_dir, budget)
    uri = args.tracking_uri or f"sqlite:///{out_dir.resolve()}/mlflow.db"
    run_id = memory_report.log_to_mlflow(report, uri)
    print(report.table)
    print(f"wrote {', '.join(str(p) for p in report.files)}; MLflow run {run_id} at {uri}")
    return 0


def _patch(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    import tflm_ext
    from pipelines.config import load_device
    from tflm_ext.patching import patch_model
    from tflm_ext.planner import plan_table

    device = load_device(args.device) if args.device else None
    model = Path(args.model)
    _require_file(model)
    spec = tflm_ext.PlannerSpec(
        max_extra_mac_fraction=args.max_extra_macs,
        grids=args.grids or tflm_ext.PlannerSpec().grids,
        max_stages=args.max_stages,
        row_reader=args.row_reader,
    )
    outcome = patch_model(model.read_bytes(), spec, mode=args.mode, inputs=args.verify_inputs)
    print(plan_table(outcome.plan))
    if not outcome.applied:
        print(f"not written: {outcome.plan.reason}")
        return 0
    output = Path(args.output) if args.output else model.with_name(f"{model.stem}_patched.tflite")
    output.write_bytes(outcome.model_bytes)
    before, after = outcome.report.arena_before, outcome.report.arena_after
    print(
        f"verified bit-exact on {outcome.report.examples} inputs; arena {before.total:,} B "
        f"(head {before.head:,}) -> {after.total:,} B (head {after.head:,}); "
        f"wrote {output}"
    )
    if any(stage.row_reader for stage in outcome.plan.stages):
        print("its input is one row: the application supplies the image rows (SetRowReader)")
    if device:
        fits = after.bisected_min <= device.sram_budget_bytes
        print(
            f"{device.name}: {after.bisected_min:,} B of {device.sram_budget_bytes:,} B "
            f"budget: {'fits' if fits else 'does NOT fit'}"
        )
    return 0


def _export(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from tflm_ext.firmware_export import export_firmware

    model = Path(args.model)
    _require_file(model)
    bundle = export_firmware(model.read_bytes(), Path(args.output), args.name)
    ops = ", ".join([*bundle.builtin_ops, *bundle.custom_ops])
    print(
        f"wrote {bundle.folder}: {bundle.op_count} ops ({ops}); reserve an arena of "
        f"{bundle.arena.bisected_min:,} B; {len(bundle.kernel_files)} kernel source files"
    )
    return 0


def _add_upload_parser(sub) -> None:
    upload = sub.add_parser(
        "upload",
        help="copy a run kept on disk to a tracking server",
        description="Upload a run that was kept on disk because the tracking server failed "
        "(its error names the folder): params, metrics, artifacts, the logged model, its "
        "registered version and aliases. Safe to repeat: an interrupted upload is completed.",
    )
    upload.add_argument("folder", help="the run's folder, e.g. WORK_DIR/tracking/<run>")
    upload.add_argument("--tracking-uri", required=True, help="e.g. http://127.0.0.1:5000")


def _upload(args: argparse.Namespace, extra: list[str]) -> int:
    from components.tracking import track

    result = track.upload(args.folder, args.tracking_uri)
    print(
        f"uploaded to {args.tracking_uri}: MLflow run {result.run_id}, model "
        f"{result.model_uri} (version {result.model_version})"
    )
    return 0


def _require_file(path) -> None:
    from pipelines.errors import PipelineError

    if not path.is_file():
        raise PipelineError(f"{path}: model file not found")


_COMMANDS = {
    "run": _run,
    "validate": _validate,
    "evaluate": _evaluate,
    "profile": _profile,
    "patch": _patch,
    "export": _export,
    "upload": _upload,
    "rules": _rules,
    "search": search_cli.search,
    "cache": cache_cli.cache,
    **release_cli.COMMANDS,
}
# Commands that pass unrecognised --options through to Apache Beam.
_BEAM_COMMANDS = ("run", "search")

if __name__ == "__main__":
    sys.exit(main())
