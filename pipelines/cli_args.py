"""The arguments every command that reads a pipeline config takes, spelled once."""

from __future__ import annotations

import argparse


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``CONFIG`` and repeatable ``--set KEY=VALUE`` overrides (``args.overrides``)."""
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
