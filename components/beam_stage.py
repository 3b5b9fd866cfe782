"""Beam glue shared by the data preprocessing stages (audio features, image preprocessing).

Both stages have the same shape: inputs -> decode (bad inputs to a dead-letter output) ->
examples -> ``<split>-SSSSS-of-NNNNN.tfrecord``, on the runner the config names with every
other Beam option passed through. What they share lives here, once: the options, the shard
writer, the dead-letter file, the bad-fraction refusal, record counting and the progress bar.
Apache Beam is imported inside the functions that build pipelines, so importing a spec stays
fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from components.artifacts import SPLITS, SkippedItem
from components.errors import ComponentError

DEAD_LETTER = "dead_letter"
SKIPPED_FILE = "skipped.jsonl"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"

log = logging.getLogger(__name__)
_PROGRESS: dict[str, object] = {}  # run id -> tqdm bar, only in the process that started it


def run_pipeline(
    runner: str,
    pipeline_args: Sequence[str],
    build: Callable[[object], None],
    what: str,
) -> None:
    """Build with ``build(pipeline)`` and run on ``runner``; any runner failure becomes a
    ComponentError naming the runner and the cause."""
    import apache_beam as beam

    options = pipeline_options(runner, pipeline_args)
    result = None
    try:
        pipeline = beam.Pipeline(options=options)
        build(pipeline)
        result = pipeline.run()
        result.wait_until_finish()
    except ComponentError:
        raise
    except Exception as e:  # a runner failure of any kind
        raise ComponentError(f"{what} failed on runner {runner}: {e}") from e
    finally:
        # Beam's DaskRunner leaves its dask.distributed client open (threads that keep
        # reconnecting once the scheduler goes away): close it with the pipeline.
        if (client := getattr(result, "client", None)) is not None:
            client.close()


def pipeline_options(runner: str, pipeline_args: Sequence[str]):
    """Beam options: ``--runner`` from the spec, everything else passed through."""
    from apache_beam.options.pipeline_options import PipelineOptions

    if any(a == "--runner" or a.startswith("--runner=") for a in pipeline_args):
        raise ComponentError(
            f"pipeline_args {list(pipeline_args)} set --runner; set the spec's runner instead"
        )
    return PipelineOptions([f"--runner={RUNNER_PATHS.get(runner, runner)}", *pipeline_args])


# Runners Beam does not know by their short name (its DaskRunner is registered only by path).
RUNNER_PATHS = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


def write_splits(examples, num_shards: int, out_dir: Path) -> None:
    """``(split, record)`` pairs to ``<split>-SSSSS-of-NNNNN.tfrecord``, every split written."""
    import apache_beam as beam

    parts = examples | "BySplit" >> beam.Partition(lambda e, _: SPLITS.index(e[0]), len(SPLITS))
    for split, part in zip(SPLITS, parts, strict=True):
        _ = (
            part
            | f"Records_{split}" >> beam.Map(lambda e: e[1])
            | f"Write_{split}"
            >> beam.io.WriteToTFRecord(
                str(out_dir / split),
                file_name_suffix=".tfrecord",
                num_shards=num_shards,
                shard_name_template=SHARD_TEMPLATE,
            )
        )


def write_dead_letters(dead_letters, out_dir: Path) -> None:
    """Dead-letter dicts (with ``path`` and ``reason``) to ``skipped.jsonl``."""
    import apache_beam as beam

    _ = (
        dead_letters
        | "DeadLetterJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(str(out_dir / SKIPPED_FILE), shard_name_template="")
    )


def read_skipped(out_dir: Path) -> tuple[SkippedItem, ...]:
    path = out_dir / SKIPPED_FILE
    if not path.is_file():
        return ()
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return tuple(sorted((SkippedItem(r["path"], r["reason"]) for r in rows), key=lambda s: s.path))


def check_bad(skipped: Sequence[SkippedItem], total: int, max_fraction: float, noun: str) -> None:
    """Warn about every skipped input; refuse when more than ``max_fraction`` are bad."""
    if not skipped:
        return
    names = ", ".join(Path(s.path).name for s in skipped[:20])
    more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    log.warning("skipped %d of %d %s: %s%s", len(skipped), total, noun, names, more)
    if len(skipped) / total > max_fraction:
        raise ComponentError(
            f"{len(skipped)} of {total} {noun} could not be decoded "
            f"({len(skipped) / total:.1%} > max_bad_fraction {max_fraction:.1%}), e.g. "
            + "; ".join(f"{Path(s.path).name}: {s.reason}" for s in skipped[:3])
        )


def split_counts(out_dir: Path) -> dict[str, int]:
    return {s: sum(map(_count_records, out_dir.glob(f"{s}-*.tfrecord"))) for s in SPLITS}


def _count_records(path: Path) -> int:
    """Records in a TFRecord file, read from its framing (length, crc, data, crc)."""
    count = 0
    with path.open("rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            f.seek(length + 4, 1)
            count += 1
    return count


def clear_outputs(out_dir: Path) -> None:
    """Remove a previous run's shards so a changed shard count cannot mix old and new."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for f in out_dir.glob(f"{split}-*.tfrecord"):
            f.unlink()
    (out_dir / SKIPPED_FILE).unlink(missing_ok=True)


def advance(run_id: str, n: int) -> None:
    """Move the bar of ``run_id`` by ``n``; remote workers simply find no bar."""
    bar = _PROGRESS.get(run_id)
    if bar is not None:
        bar.update(n)


@contextlib.contextmanager
def progress(total: int, desc: str, unit: str) -> Iterator[str]:
    """A tqdm bar that in-process DoFns update through :func:`advance` and the run id."""
    from tqdm.auto import tqdm

    run_id = uuid.uuid4().hex
    _PROGRESS[run_id] = tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
    try:
        yield run_id
    finally:
        _PROGRESS.pop(run_id).close()
