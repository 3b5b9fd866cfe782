"""``tflm-pipelines search``: the fit-to-device search from the command line.

``pipelines.cli`` adds the command with :func:`add_parser` and dispatches to :func:`search`.
Exit status 0 when every device got a candidate passing its gate, 3 when some device got
none (the answer naming the binding limit is printed), 1 on an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pipelines.cli_args import add_config_args

EXIT_NOTHING_FITS = 3  # pipelines.cli.EXIT_GATE_FAILED


def add_parser(sub) -> None:
    search = sub.add_parser(
        "search",
        help="find the most accurate model that fits each device",
        description="Build candidates over the config's search: grid (width, resolution, "
        "prune ratio, patch mode), measure each on TFLM, gate it against every device and "
        "report the Pareto front and the best candidate per device. Fanned out on Apache "
        "Beam: DirectRunner with worker processes by default, or --runner DaskRunner "
        "--dask_client_address=tcp://HOST:PORT for a dask.distributed cluster. Unrecognised "
        "--options are passed to Beam. Candidates already measured are reused.",
    )
    add_config_args(search)
    search.add_argument(
        "--device", action="append", default=[], metavar="YAML",
        help="device file to fit (repeatable; default: the config's devices)",
    )  # fmt: skip
    search.add_argument("--runner", help="Beam runner (default: the config's search.runner)")
    search.add_argument("--tracking-uri", help="MLflow tracking URI (default: the work dir's)")
    search.add_argument(
        "--force", action="store_true",
        help="rebuild every candidate instead of reusing the ones already measured",
    )  # fmt: skip
    search.add_argument("--no-progress", action="store_true", help="hide progress bars")


def search(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines import config
    from pipelines import search as search_pipeline

    cfg = config.load(args.config, args.overrides)
    if args.device:
        cfg = cfg.model_copy(update={"devices": tuple(map(config.load_device, args.device))})
    if args.runner:
        cfg = cfg.model_copy(update={"search": dataclasses.replace(cfg.search, runner=args.runner)})
    found = search_pipeline.run(
        cfg, tracking_uri=args.tracking_uri, pipeline_args=extra,
        progress=not args.no_progress, force=args.force,
    )  # fmt: skip
    print(found.table.read_text())
    print(f"MLflow parent run {found.parent_run_id}; table {found.table}")
    if not found.all_fit:
        print("tflm-pipelines: some device has no candidate that passes", file=sys.stderr)
        return EXIT_NOTHING_FITS
    return 0
