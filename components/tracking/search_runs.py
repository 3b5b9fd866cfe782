"""Record a fit-to-device search in MLflow: one parent run, one child run per candidate.

The parent holds the search's config as parameters, what it covered as metrics, each
device's answer as a tag, and the table, the Pareto plot (with several prune ratios, the
pruning curve too) and every result as artifacts. Each child holds one candidate: its grid
point as parameters, TFLM's figures as metrics, its gate verdicts as tags and the model as
an artifact, so the MLflow UI compares candidates side by side. Candidates measured by an
earlier search are logged again under the new parent with ``search.reused`` = true: each
search's parent run is complete on its own.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from components.errors import ComponentError
from components.search import report
from components.search.outcome import SearchOutcome
from components.tracking import plots, track


def log_search(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, object],
    result: SearchOutcome,
    devices,
) -> str:
    """Log ``result``; returns the parent run's id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        experiment_id = track._experiment_id(client, tracking_uri, experiment)
        parent = client.create_run(experiment_id, run_name=run_name, tags={"search": "true"})
        parent_id = parent.info.run_id
        stamp = int(time.time() * 1000)
        flat = [Param(k, v) for k, v in track.flatten_params(params).items()]
        for chunk in track._chunks(flat, track._BATCH):  # MLflow's cap per log_batch call
            client.log_batch(parent_id, params=chunk)
        for m in result.measured:
            if m.ok:
                _log_candidate(client, experiment_id, parent_id, m, stamp)
        counts = {
            "search.candidates": len(result.measured),
            "search.measured": len(result.done),
            "search.reused": sum(m.reused for m in result.done),
            "search.not_covered": sum(m.result is None for m in result.measured),
        }
        counts["search.failed"] = counts["search.candidates"] - counts["search.measured"]
        counts["search.failed"] -= counts["search.not_covered"]
        client.log_batch(parent_id, metrics=[Metric(k, v, stamp, 0) for k, v in counts.items()])
        for choice in result.choices:
            client.set_tag(parent_id, f"search.{choice.device}.answer", choice.answer[:5000])
            if choice.best is not None:
                client.set_tag(
                    parent_id, f"search.{choice.device}.best", choice.best.candidate.name
                )
        _log_reports(client, parent_id, result, devices)
        client.set_terminated(parent_id, "FINISHED")
        return parent_id
    except MlflowException as e:
        raise ComponentError(f"cannot log the search to MLflow at {tracking_uri}: {e}") from e


def _log_candidate(client, experiment_id: str, parent_id: str, m, stamp: int) -> None:
    from mlflow.entities import Metric

    ev = m.result.evaluation
    tags = {
        "mlflow.parentRunId": parent_id,
        "search.candidate_key": m.key,
        "search.reused": "true" if m.reused else "false",
        "patch.applied": "true" if m.result.patched else "false",
        "patch.reason": m.result.patch_reason[:5000],
        **track.gate_tags(m.gates),
    }
    run = client.create_run(experiment_id, run_name=m.candidate.name, tags=tags)
    run_id = run.info.run_id
    for key, value in m.candidate.record().items():
        client.log_param(run_id, f"candidate.{key}", value)
    metrics = {**ev.scalars(), "model_parameters": float(m.result.parameters)}
    for device, ms in ev.estimated_latency_ms.items():
        metrics[track._metric_key("estimated_latency_ms", device)] = float(ms)
    client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()])
    client.log_artifact(run_id, str(m.result.quantized.path), "model")
    client.set_terminated(run_id, "FINISHED")


def _log_reports(client, run_id: str, result: SearchOutcome, devices) -> None:
    figure = plots.pareto_fronts(report.panels(result, devices))
    client.log_figure(run_id, figure, "plots/pareto_fronts.png")
    unpatched = sorted((m for m in result.done if m.candidate.patch_mode == "off"),
                       key=lambda m: m.result.evaluation.macs)  # fmt: skip
    if len({m.candidate.prune_ratio for m in unpatched}) > 1:
        points = [(m.result.evaluation.macs, m.result.evaluation.int8_accuracy,
                   m.candidate.name) for m in unpatched]  # fmt: skip
        client.log_figure(run_id, plots.accuracy_curve("MACs", points), "plots/pruning_curve.png")
    with tempfile.TemporaryDirectory() as scratch:
        table = Path(scratch) / "search.md"
        table.write_text(report.table(result))
        rows = Path(scratch) / "candidates.json"
        rows.write_text(json.dumps(records(result), indent=2))
        for path in (table, rows):
            client.log_artifact(run_id, str(path), "reports")


def records(result: SearchOutcome) -> list[dict[str, object]]:
    """Every candidate as JSON: grid point, key, status, figures and gate verdicts."""
    rows = []
    for m in result.measured:
        row: dict[str, object] = {**m.candidate.record(), "name": m.candidate.name, "key": m.key}
        if m.result is None:
            row["status"] = "not covered"
        elif not m.ok:
            row |= {"status": "failed", "error": m.result.error}
        else:
            row |= {
                "status": "reused" if m.reused else "measured",
                "model": str(m.result.quantized.path),
                "patched": m.result.patched,
                "evaluation": m.result.evaluation.record(),
                "gates": {g.device: g.passed for g in m.gates},
            }
        rows.append(row)
    return rows
