"""Build a release bundle from a registered MLflow model version.

Reads what ``components.tracking.track`` logged for the version's run: the ``.tflite`` under
``firmware/``, the metrics (``int8_accuracy``, ``arena_*``, ``flash_bytes``, ``macs``,
``host_latency_ms``, ``estimated_latency_ms.<device>``), ``reports/evaluation.json`` (labels,
confusion), ``reports/gate_report.json`` (cross-checked against the ``gate.<device>.passed``
tag) and the ``preprocessing.*`` tags, then hands them to ``bundle.build``.

Called by the release CLI (``bundle``, ``promote``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from components.artifacts import Evaluation, GateReport, Preprocessing, RuleResult
from components.device import DeviceSpec
from components.errors import ComponentError
from components.release.bundle import Bundle, BundleSpec, ReleaseCandidate, build
from components.release.manifest import ModelRef

log = logging.getLogger(__name__)

_EVALUATION_FIELDS = {f.name for f in fields(Evaluation)}
_PREPROCESSING_TAG = "preprocessing."
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def build_from_mlflow(
    tracking_uri: str,
    model_name: str,
    version: str,
    device: DeviceSpec,
    to_dir: Path,
    spec: BundleSpec | None = None,
) -> Bundle:
    """The bundle of ``model_name`` version ``version`` for ``device``, written to ``to_dir``."""
    candidate = read_candidate(tracking_uri, model_name, str(version))
    return build(spec or BundleSpec(), candidate, device, Path(to_dir))


def read_candidate(tracking_uri: str, model_name: str, version: str) -> ReleaseCandidate:
    """Everything a bundle needs, from the version's run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    where = f"{model_name!r} version {version} at {tracking_uri}"
    try:
        model_version = client.get_model_version(model_name, version)
        if not model_version.run_id:
            raise ComponentError(f"{where} has no MLflow run: nothing to read its figures from")
        run = client.get_run(model_version.run_id)
        with tempfile.TemporaryDirectory(prefix="release-mlflow-") as scratch:
            files = _download(client, run.info.run_id, Path(scratch))
            return _candidate(run, files, ModelRef(model_name, version, run.info.run_id))
    except MlflowException as e:
        raise ComponentError(f"cannot read {where}: {e.message}") from e


def _download(client, run_id: str, scratch: Path) -> dict[str, Any]:
    """The run's .tflite and reports (ComponentError naming the artifact when one is missing)."""
    with _no_progress_bar():
        firmware = Path(client.download_artifacts(run_id, "firmware", str(scratch)))
        reports = Path(client.download_artifacts(run_id, "reports", str(scratch)))
    models = sorted(firmware.glob("*.tflite"))
    if len(models) != 1:
        raise ComponentError(
            f"run {run_id}: artifact folder firmware/ holds {len(models)} "
            ".tflite files, expected one"
        )
    return {
        "model_bytes": models[0].read_bytes(),
        "evaluation": _read_json(reports / "evaluation.json", run_id),
        "gates": _read_json(reports / "gate_report.json", run_id, missing=[]),
    }


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws download progress on stderr, where the CLI's one-line errors go."""
    previous = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = previous


def _read_json(path: Path, run_id: str, missing: Any = None) -> Any:
    if not path.is_file():
        if missing is not None:
            return missing
        raise ComponentError(f"run {run_id}: artifact reports/{path.name} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ComponentError(
            f"run {run_id}: artifact reports/{path.name} is unreadable: {e}"
        ) from e


def _candidate(run, files: Mapping[str, Any], ref: ModelRef) -> ReleaseCandidate:
    tags = run.data.tags
    gates = tuple(gate_report(g, ref.run_id or "") for g in files["gates"])
    for gate in gates:
        _check_gate_tag(gate, tags, ref.run_id or "")
    return ReleaseCandidate(
        model_bytes=files["model_bytes"],
        model=ref,
        evaluation=evaluation_of(files["evaluation"], run.data.metrics, ref.run_id or ""),
        preprocessing=preprocessing_of(tags, ref.run_id or ""),
        gates=gates,
    )


def evaluation_of(record: Mapping[str, Any], metrics: Mapping[str, float], run_id: str):
    """reports/evaluation.json with the run's metrics over its single-valued figures (the
    metrics are what MLflow users see and compare)."""
    values = {k: v for k, v in record.items() if k in _EVALUATION_FIELDS}
    values.update({k: metrics[k] for k in _EVALUATION_FIELDS if k in metrics})
    try:
        return Evaluation(
            **{
                **values,
                "confusion": tuple(tuple(int(c) for c in row) for row in values["confusion"]),
                "labels": tuple(values["labels"]),
                "estimated_latency_ms": dict(values.get("estimated_latency_ms") or {}),
            }
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ComponentError(f"run {run_id}: reports/evaluation.json lacks a figure: {e}") from e


def gate_report(record: Mapping[str, Any], run_id: str) -> GateReport:
    try:
        rules = tuple(RuleResult(**r) for r in record["rules"])
        return GateReport(device=str(record["device"]), rules=rules)
    except (KeyError, TypeError) as e:
        raise ComponentError(f"run {run_id}: reports/gate_report.json is malformed: {e}") from e


def _check_gate_tag(gate: GateReport, tags: Mapping[str, str], run_id: str) -> None:
    tag = tags.get(f"gate.{gate.device}.passed")
    if tag is not None and (tag == "true") != gate.passed:
        raise ComponentError(
            f"run {run_id}: tag gate.{gate.device}.passed is {tag!r} but "
            f"reports/gate_report.json says passed={gate.passed}"
        )


def preprocessing_of(tags: Mapping[str, str], run_id: str) -> Preprocessing:
    """The ``preprocessing.*`` tags (``str()`` of each field, as track.py writes them)."""
    record: dict[str, Any] = {
        k.removeprefix(_PREPROCESSING_TAG): v
        for k, v in tags.items()
        if k.startswith(_PREPROCESSING_TAG)
    }
    if "kind" not in record:
        raise ComponentError(
            f"run {run_id} has no preprocessing.kind tag: the firmware's preprocessing is unknown"
        )
    try:
        if "image_size" in record:
            record["image_size"] = json.loads(record["image_size"])
        if "channels" in record:
            record["channels"] = int(record["channels"])
    except ValueError as e:
        raise ComponentError(f"run {run_id}: preprocessing tags {record} are malformed: {e}") from e
    return Preprocessing.from_record(record)
