"""``tflm-pipelines cache``: what a work dir's stage cache holds, and pruning it.

Every code change keys every stage anew, so a work dir that has seen a few changes keeps
several trained models and preprocessed image sets (about 0.7 GB for the default VWW job)
that no run will read again. Pruning keeps what the latest runs used, so the next rerun is
still cached, and an entry another process is building or reading. Runs of other configs
in the same work dir count as runs too: prune while one is in progress, and it may lose a
stage it already finished (it then fails; a rerun rebuilds the stage); keep more runs
(``--keep-runs``) then.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from pipelines.cli_args import add_config_args

DAY_S = 86_400.0


def add_parser(sub) -> None:
    cache = sub.add_parser(
        "cache",
        help="list or prune the work dir's cached stages",
        description="List the cached stage outputs in the config's work dir (entries and "
        "size per stage); with --prune, remove the ones that none of the latest runs used.",
    )
    add_config_args(cache)
    cache.add_argument("--prune", action="store_true", help="remove the unused entries")
    cache.add_argument(
        "--keep-runs", type=_at_least_one, default=1, metavar="N",
        help="keep what the latest N runs used (default 1)",
    )  # fmt: skip
    cache.add_argument(
        "--unused-for", type=float, default=0.0, metavar="DAYS",
        help="remove only entries no run has read for DAYS days (default 0)",
    )  # fmt: skip
    cache.add_argument(
        "--dry-run", action="store_true", help="with --prune: say what would go, remove nothing"
    )


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of runs, at least 1")
    return int(text)


def cache(args: argparse.Namespace, extra: list[str]) -> int:
    from components.stage_cache import StageCache
    from pipelines import config

    cfg = config.load(args.config, args.overrides)
    store = StageCache(cfg.work_dir / "stages")
    in_latest = store.used_by_recent_runs(1)
    if not args.prune:
        _print_table(store.entries(), in_latest)
        return 0
    removed, kept = store.prune(keep_runs=args.keep_runs, unused_for_s=args.unused_for * DAY_S,
                                dry_run=args.dry_run)  # fmt: skip
    _print_table(removed + kept, in_latest, removed)
    verb = "would remove" if args.dry_run else "removed"
    freed = sum(e.size_bytes for e in removed)
    print(f"{verb} {len(removed)} entries, {freed / 1e6:,.1f} MB, from {store.root}")
    return 0


def _print_table(entries, in_latest, removed=None) -> None:
    """One row per stage: entries, how many the latest run used, how many went, size, the
    newest use."""
    stages = defaultdict(list)
    for entry in entries:
        stages[entry.stage].append(entry)
    gone = "| removed " if removed is not None else ""
    print(f"| stage | entries | used by the latest run {gone}| MB | last used |")
    print("| --- " * (5 + bool(gone)) + "|")
    for stage, group in sorted(stages.items()):
        used = sum((e.stage, e.key) in in_latest for e in group)
        went = f"| {sum(e in removed for e in group)} " if removed is not None else ""
        size = sum(e.size_bytes for e in group) / 1e6
        newest = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(e.last_used for e in group)))
        print(f"| {stage} | {len(group)} | {used} {went}| {size:,.1f} | {newest} |")
