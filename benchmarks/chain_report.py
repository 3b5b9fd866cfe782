"""What the pipeline benchmarks share: run a pipeline into a throw-away MLflow store, time
it, and print its stage times and TFLM figures as the markdown table the README quotes."""

from __future__ import annotations

import tempfile
import time


def run_timed(pipeline, config):
    """``pipeline.run(config)`` tracked into a temporary SQLite store; (result, seconds)."""
    with tempfile.TemporaryDirectory() as store:
        start = time.perf_counter()
        result = pipeline.run(config, tracking_uri=f"sqlite:///{store}/mlflow.db")
        return result, time.perf_counter() - start


def stage_rows(result, total: float) -> list[tuple[str, str]]:
    rows = [(f"stage {name}", f"{seconds:.1f} s") for name, seconds in result.timings.items()]
    return [*rows, ("whole run", f"{total:.1f} s")]


def measurement_rows(result) -> list[tuple[str, str]]:
    """Arena, flash, MACs, latency (host and estimated per device) and the gate verdicts."""
    ev = result.evaluation
    rows = [
        (
            "arena total / head / tail",
            f"{ev.arena_total:,} / {ev.arena_head:,} / {ev.arena_tail:,} B",
        ),  # fmt: skip
        ("flash (model size)", f"{ev.flash_bytes:,} B"),
        ("MACs", f"{ev.macs:,}"),
        ("host latency (median)", f"{ev.host_latency_ms:.3f} ms"),
    ]
    estimates = ev.estimated_latency_ms.items()
    rows += [(f"estimated latency {d}", f"{ms:.1f} ms") for d, ms in estimates]
    return rows + [(f"gate {g.device}", "pass" if g.passed else "FAIL") for g in result.gates]


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"| {'figure':<{width}} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
