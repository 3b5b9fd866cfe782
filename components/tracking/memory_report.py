"""Memory report component: where a model's activation memory goes, as a table and a chart.

Called by ``tflm-pipelines profile``. Per operator: the bytes alive under TFLM's planning,
MACs and output shape; the peak and where it is; TFLM's measured arena (head and tail).
Writes ``memory.md``, ``memory.json`` and ``memory_per_layer.png`` and, given a tracking
URI, logs them to an MLflow run with the figures as metrics.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryReport:
    """The profile and the files it was written to."""

    model: Path
    table: str
    files: tuple[Path, ...]
    metrics: dict[str, float]


def run(model: Path, out_dir: Path, budget_bytes: int | None = None) -> MemoryReport:
    """Profile ``model`` (measuring the real arena in a child process) and write the files."""
    import tflm_ext
    from components.tracking import plots

    profile = tflm_ext.profile(Path(model).read_bytes(), measure=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = _table(profile, budget_bytes)
    figure = out_dir / "memory_per_layer.png"
    plots.memory_per_layer(profile, budget_bytes).savefig(figure, dpi=120)
    (out_dir / "memory.md").write_text(table)
    (out_dir / "memory.json").write_text(json.dumps(asdict(profile), indent=2))
    metrics = {
        "peak_live_bytes": float(profile.peak_bytes),
        "peak_op": float(profile.peak_op),
        "total_macs": float(sum(op.macs for op in profile.ops)),
    }
    if profile.arena is not None:
        metrics |= {f"arena_{k}": float(v) for k, v in asdict(profile.arena).items()}
    files = (out_dir / "memory.md", out_dir / "memory.json", figure)
    return MemoryReport(model=Path(model), table=table, files=files, metrics=metrics)


def log_to_mlflow(report: MemoryReport, tracking_uri: str, experiment: str = "profile") -> str:
    """Log the report as one MLflow run; returns its id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id, run_name=report.model.stem).info.run_id
    client.log_param(run_id, "model", str(report.model))
    for key, value in report.metrics.items():
        client.log_metric(run_id, key, value)
    for path in report.files:
        client.log_artifact(run_id, str(path), "memory")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _table(profile, budget_bytes: int | None) -> str:
    rows = ["| op | type | live bytes | MACs | output |", "| ---: | --- | ---: | ---: | --- |"]
    for op in profile.ops:
        mark = " **peak**" if op.index == profile.peak_op else ""
        shape = "x".join(str(d) for d in op.output_shape)
        rows.append(f"| {op.index} | {op.op}{mark} | {op.live_bytes:,} | {op.macs:,} | {shape} |")
    lines = [*rows, "", f"peak: {profile.peak_bytes:,} B at op {profile.peak_op}"]
    if profile.arena is not None:
        a = profile.arena
        lines.append(
            f"TFLM arena: {a.total:,} B (head {a.head:,}, tail {a.tail:,}); "
            f"smallest that builds: {a.bisected_min:,} B"
        )
    if budget_bytes:
        verdict = "fits" if profile.peak_bytes <= budget_bytes else "does NOT fit"
        lines.append(f"device budget: {budget_bytes:,} B: the activation peak {verdict}")
    return "\n".join(lines) + "\n"
