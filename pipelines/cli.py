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
    _add_config_args(run)
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

    check = sub.add_parser(
        "validate",
        help="check a config without running anything",
        description="Parse and validate a config, then print it resolved.",
    )
    _add_config_args(check)

    sub.add_parser(
        "rules",
        help="print the release gate's rules",
        description="Print the release gate's rules as a markdown table.",
    )
    return parser


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline YAML, e.g. configs/kws.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value); repeatable, "
        "e.g. --set train.epochs=3",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines import config, kws

    overrides = list(args.overrides)
    if args.runner:
        overrides.append(f"features.runner={args.runner}")
    cfg = config.load(args.config, overrides)
    result = kws.run(
        cfg, tracking_uri=args.tracking_uri, pipeline_args=extra, progress=not args.no_progress
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


_COMMANDS = {"run": _run, "validate": _validate, "rules": _rules}

if __name__ == "__main__":
    sys.exit(main())
