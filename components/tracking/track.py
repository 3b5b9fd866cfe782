"""Track component: record a candidate in MLflow and register it as a model.

One MLflow run per candidate holds the flattened config as parameters; the evaluation, the
per-epoch training history (``step`` = epoch, 0-based as Keras counts) and the device latency
estimates as metrics; the ``.tflite``, its C array for firmware, the plots, the gate report
and the list of skipped inputs (clips or images) as artifacts. The model itself is logged
with the ``tflm`` flavor and registered, and the gate verdict is tagged on both the run and
the model version. A failed gate is recorded, never raised: logging always completes.

With a tracking server (``http(s)://``) the run is logged first into a store of its own on
local disk and then copied to the server (``components.tracking.replay``), with MLflow's HTTP
retries and backoff set from the spec; when the server is down or fails midway the copy stays
on disk and the error names the ``tflm-pipelines upload`` command that finishes it, so a
failing server loses nothing. SQLite files and local folders are logged to directly.

Called by the pipelines after evaluation and gating. Everything goes through an
``MlflowClient`` bound to ``tracking_uri``; only ``Model.log`` needs the process-wide URI, and
it is set for that call alone and restored afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote

from pydantic import Field

from components.artifacts import (
    Evaluation,
    ExampleSet,
    GateReport,
    QuantizedModel,
    TrainedModel,
)
from components.errors import ComponentError
from components.gate import report_markdown
from components.spec import component_spec
from components.tracking import replay
from components.tracking.replay import TrackingResult

if TYPE_CHECKING:  # MLflow takes seconds to import: only the functions that log import it
    from mlflow import MlflowClient
    from mlflow.entities import Metric

MODEL_NAME = "model"
C_ARRAY_NAME = "g_model"  # the C symbol; the files are model_data.cc and .h
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value
_BATCH = 100  # MLflow accepts at most 100 params per log_batch call

log = logging.getLogger(__name__)


@component_spec
class TrackSpec:
    """Where the run goes: the experiment, the registered model, an optional run name, and
    how hard to try a tracking server (MLflow's ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    ``..._BACKOFF_FACTOR`` and ``..._TIMEOUT``, set from here while a run is copied to it: each
    request is tried ``1 + server_max_retries`` times, ``server_backoff_factor * 2**n`` s apart,
    each try waiting at most ``server_timeout_s``; the defaults ride out about a minute of
    outage)."""

    experiment: str = "kws"
    registered_model_name: str = "kws-ds-cnn"
    run_name: str | None = None
    # Move the gate's baseline alias (e.g. "production") to this run's model version when
    # every device gate passed, so the next candidate is held to it.
    promote_on_pass: bool = False
    server_max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    server_backoff_factor: Annotated[int, Field(ge=0, le=60)] = 2
    server_timeout_s: Annotated[int, Field(gt=0)] = 60


@dataclass(frozen=True)
class _Candidate:
    """What one run records, bundled so the logging steps share one argument."""

    params: Mapping[str, object]
    examples: ExampleSet
    trained: TrainedModel
    quantized: QuantizedModel
    evaluation: Evaluation
    gates: tuple[GateReport, ...]
    timings: Mapping[str, float]
    extra_artifacts: Sequence[Path]
    extra_metrics: Mapping[str, float]
    extra_tags: Mapping[str, str]
    sram_budget_bytes: int | None
    aliases: Sequence[str]


def default_tracking_uri(work_dir: Path) -> str:
    """The embedded store: a SQLite file in the working directory, no server needed."""
    return f"sqlite:///{Path(work_dir).resolve()}/mlflow.db"


def flatten_params(params: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """Nested config sections become dotted keys (``train.epochs``); lists stay one value."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = _param_value(name, value)
    return flat


def _param_value(name: str, value: object) -> str:
    text = str(value)
    if len(text) > _MAX_PARAM_CHARS:
        log.warning("param %s is %d characters long; truncated for MLflow", name, len(text))
        text = text[: _MAX_PARAM_CHARS - 3] + "..."
    return text


def _metric_key(*parts: str) -> str:
    """MLflow allows letters, digits, ``_-. /`` in metric names; device names may hold more."""
    return ".".join(re.sub(r"[^\w\-. /]", "_", part) for part in parts)


def metrics_of(
    examples: ExampleSet,
    trained: TrainedModel,
    evaluation: Evaluation,
    timings: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Single-valued metrics: evaluation fields, latency per device, data and model sizes,
    and the wall time of each pipeline stage."""
    metrics = evaluation.scalars()
    for device, ms in evaluation.estimated_latency_ms.items():
        metrics[_metric_key("estimated_latency_ms", device)] = float(ms)
    for split, count in examples.counts.items():
        metrics[_metric_key("examples", split)] = float(count)
    metrics["skipped_inputs"] = float(len(examples.skipped))
    metrics["model_parameters"] = float(trained.params)
    for stage, seconds in (timings or {}).items():
        metrics[_metric_key("stage_seconds", stage)] = float(seconds)
    return metrics


def _history_metrics(history: Mapping[str, Sequence[float]], stamp: int) -> list[Metric]:
    from mlflow.entities import Metric

    return [
        Metric(key=_metric_key(name), value=float(v), timestamp=stamp, step=epoch)
        for name, values in history.items()
        for epoch, v in enumerate(values)
    ]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _log_values(client: MlflowClient, run_id: str, c: _Candidate) -> None:
    """Params, single-valued metrics at step 0 (the pipeline's extra ones too) and the
    training history at step = epoch."""
    from mlflow.entities import Metric, Param

    stamp = int(time.time() * 1000)
    metrics = metrics_of(c.examples, c.trained, c.evaluation, c.timings)
    metrics.update({_metric_key(k): v for k, v in c.extra_metrics.items()})
    history = c.trained.history
    for chunk in _chunks([Param(k, v) for k, v in flatten_params(c.params).items()], _BATCH):
        client.log_batch(run_id, params=chunk)
    single = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
    for chunk in _chunks(single + _history_metrics(history, stamp), 1000):
        client.log_batch(run_id, metrics=chunk)


def gate_tags(gates: Sequence[GateReport]) -> dict[str, str]:
    """Tags that say whether the model passed every device gate, and each one (none when no
    gate ran). ``gate.passed`` is "true" only when every device target passed."""
    if not gates:
        return {}
    tags = {f"gate.{g.device}.passed": _flag(g.passed) for g in gates}
    failed = [f"{g.device}:{r.name}" for g in gates for r in g.rules if not r.passed]
    return {
        **tags,
        "gate.devices": ",".join(g.device for g in gates),
        "gate.passed": _flag(not failed),
        "gate.failed_rules": ",".join(failed),
    }


def preprocessing_tags(quantized: QuantizedModel) -> dict[str, str]:
    """``preprocessing.<field>`` tags: what the firmware must compute before the model."""
    return {f"preprocessing.{k}": str(v) for k, v in quantized.preprocessing.describe().items()}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _write_gate_report(gates: Sequence[GateReport], out_dir: Path) -> list[Path]:
    report = [
        {"device": g.device, "passed": g.passed, "rules": [asdict(r) for r in g.rules]}
        for g in gates
    ]
    json_path = out_dir / "gate_report.json"
    json_path.write_text(json.dumps(report, indent=2))
    md_path = out_dir / "gate_report.md"
    md_path.write_text("\n".join(report_markdown(g) for g in gates))
    return [json_path, md_path]


def _write_skipped(examples: ExampleSet, out_dir: Path) -> Path:
    path = out_dir / "skipped_inputs.json"
    path.write_text(json.dumps([asdict(s) for s in examples.skipped], indent=2))
    return path


def _write_evaluation(evaluation: Evaluation, out_dir: Path) -> Path:
    path = out_dir / "evaluation.json"
    path.write_text(json.dumps(evaluation.record(), indent=2))
    return path


def _log_files(client: MlflowClient, run_id: str, scratch: Path, c: _Candidate) -> None:
    """The firmware files, reports and skipped-clip list, each under its own folder."""
    from tflm_ext.c_array import write_c_array

    firmware = scratch / "firmware"
    firmware.mkdir()
    cc, h = write_c_array(c.quantized.read_bytes(), firmware, C_ARRAY_NAME)
    for path in (c.quantized.path, Path(cc), Path(h)):
        client.log_artifact(run_id, str(path), "firmware")
    reports = scratch / "reports"
    reports.mkdir()
    written = [_write_evaluation(c.evaluation, reports), _write_skipped(c.examples, reports)]
    if c.gates:
        written += _write_gate_report(c.gates, reports)
    for path in written:
        client.log_artifact(run_id, str(path), "reports")


def _log_plots(client: MlflowClient, run_id: str, c: _Candidate) -> None:
    import tflm_ext
    from components.tracking import plots

    curves = plots.training_curves(c.trained.history)
    client.log_figure(run_id, curves, "plots/training_curves.png")
    confusion = plots.confusion_matrix(c.evaluation.confusion, c.evaluation.labels)
    client.log_figure(run_id, confusion, "plots/confusion_matrix.png")
    profile = tflm_ext.profile(c.quantized.read_bytes(), False)
    memory = plots.memory_per_layer(profile, c.sram_budget_bytes)
    client.log_figure(run_id, memory, "plots/memory_per_layer.png")


def _experiment_id(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The experiment's id, creating it; with a SQLite store its artifacts go beside the
    database (MLflow's default would be ``./mlruns`` under whatever the current directory is)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(unquote(tracking_uri.removeprefix("sqlite:///").partition("?")[0])).resolve()
        location = (db.parent / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _log_model(
    client: MlflowClient, tracking_uri: str, spec: TrackSpec, run_id: str, c: _Candidate
) -> tuple[str, str | None]:
    """Log with the ``tflm`` flavor and register; gate tags go on the model and the version.

    The logged model is created here, in the run's experiment: ``Model.log`` would otherwise
    file it under whatever experiment is active in the process."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from components.tracking import tflm_flavor

    tags = gate_tags(c.gates)
    logged = client.create_logged_model(
        client.get_run(run_id).info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={**tags, **preprocessing_tags(c.quantized)},
    )
    with _use_tracking_uri(tracking_uri):
        info = tflm_flavor.log_model(
            c.quantized.path,
            MODEL_NAME,
            labels=c.quantized.labels,
            preprocessing=c.quantized.preprocessing,
            registered_model_name=spec.registered_model_name,
            run_id=run_id,
            model_id=logged.model_id,
            tags=tags or None,
        )
    version = info.registered_model_version
    return info.model_uri, None if version is None else str(version)


def run(
    spec: TrackSpec,
    *,
    tracking_uri: str,
    params: Mapping[str, object],
    examples: ExampleSet,
    trained: TrainedModel,
    quantized: QuantizedModel,
    evaluation: Evaluation,
    gates: Sequence[GateReport] = (),
    timings: Mapping[str, float] | None = None,
    extra_artifacts: Sequence[Path] = (),
    extra_metrics: Mapping[str, float] | None = None,
    extra_tags: Mapping[str, str] | None = None,
    sram_budget_bytes: int | None = None,
    aliases: Sequence[str] = (),
    local_dir: Path | None = None,
) -> TrackingResult:
    """Log one candidate as a finished run and a registered model version.

    ``extra_metrics`` and ``extra_tags`` carry what the pipeline measured beside the
    candidate (e.g. the unpatched model's figures); ``sram_budget_bytes`` is drawn as a line
    on the memory-per-layer plot; ``aliases`` are pointed at the new version. For a tracking
    server the run is kept in a new folder under ``local_dir`` and then uploaded (see
    :func:`upload`); the default is ``tracking/`` in the config's ``work_dir`` (from
    ``params``), never inside a stage's cached outputs, which may be rebuilt."""
    candidate = _Candidate(
        params, examples, trained, quantized, evaluation, tuple(gates), timings or {},
        tuple(extra_artifacts), extra_metrics or {}, extra_tags or {}, sram_budget_bytes,
        tuple(aliases),
    )  # fmt: skip
    if not replay.is_server(tracking_uri):
        return _log_run(spec, tracking_uri, candidate)
    folder = _new_local_copy(Path(local_dir or Path(str(params.get("work_dir", "."))) / "tracking"))
    kept = _log_run(spec, replay.local_uri(folder), candidate)
    log.info("run %s kept in %s; uploading it to %s", kept.run_id, folder, tracking_uri)
    return dataclasses.replace(upload(folder, tracking_uri, spec), kept=folder)


def upload(folder: Path, tracking_uri: str, spec: TrackSpec | None = None) -> TrackingResult:
    """Copy the run kept in ``folder`` to the server at ``tracking_uri`` (completing an
    earlier, interrupted copy), retrying as ``spec`` says; on failure a ComponentError names
    the server, what was being logged and the command that uploads the run later."""
    spec = spec or TrackSpec()
    with replay.retrying(
        spec.server_max_retries, spec.server_backoff_factor, spec.server_timeout_s
    ):
        return replay.upload(Path(folder), tracking_uri)


def _new_local_copy(root: Path) -> Path:
    """A fresh folder per run: runs of the same work dir at once never share a store."""
    folder = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def _log_run(spec: TrackSpec, tracking_uri: str, c: _Candidate) -> TrackingResult:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = _start_run(client, tracking_uri, spec, c)
    try:
        _log_values(client, run_id, c)
        _log_plots(client, run_id, c)
        with tempfile.TemporaryDirectory(prefix="track-") as scratch:
            _log_files(client, run_id, Path(scratch), c)
        for path in c.extra_artifacts:
            client.log_artifact(run_id, str(path), "extra")
        model_uri, version = _log_model(client, tracking_uri, spec, run_id, c)
        for alias in c.aliases if version is not None else ():
            client.set_registered_model_alias(spec.registered_model_name, alias, version)
    except Exception as e:
        client.set_terminated(run_id, "FAILED")
        if isinstance(e, ComponentError):
            raise
        raise ComponentError(f"MLflow run {run_id} at {tracking_uri} failed: {e}") from e
    client.set_terminated(run_id, "FINISHED")
    log.info("run %s logged model %s (version %s)", run_id, model_uri, version)
    return TrackingResult(run_id=run_id, model_uri=model_uri, model_version=version)


def _start_run(client: MlflowClient, tracking_uri: str, spec: TrackSpec, c: _Candidate) -> str:
    from mlflow.exceptions import MlflowException

    tags = {**gate_tags(c.gates), **preprocessing_tags(c.quantized), **c.extra_tags}
    try:
        experiment_id = _experiment_id(client, tracking_uri, spec.experiment)
        return client.create_run(experiment_id, run_name=spec.run_name, tags=tags).info.run_id
    except MlflowException as e:
        raise ComponentError(f"cannot start an MLflow run at {tracking_uri}: {e}") from e


def tag_run(
    tracking_uri: str,
    run_id: str,
    tags: Mapping[str, str],
    *,
    kept: Path | None = None,
    spec: TrackSpec | None = None,
) -> None:
    """Add tags to a finished run (what later stages, such as the release, decided). A
    server run's local copy (``kept``) is tagged first, so when the server fails the error
    names the upload command that replays the tags with the rest: nothing is lost."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if kept is not None:
        local = MlflowClient(replay.local_uri(kept))
        local_run = replay.the_run(local, kept).info.run_id
        for key, value in tags.items():
            local.set_tag(local_run, key, value)
        spec = spec or TrackSpec()
        retries = spec.server_max_retries, spec.server_backoff_factor, spec.server_timeout_s
        with replay.retrying(*retries), replay.Steps(kept, tracking_uri, local_run)("tags"):
            remote = MlflowClient(tracking_uri)
            for key, value in tags.items():
                remote.set_tag(run_id, key, value)
        return
    client = MlflowClient(tracking_uri)
    try:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    except MlflowException as e:
        raise ComponentError(f"cannot tag MLflow run {run_id} at {tracking_uri}: {e}") from e


def production_baseline(
    tracking_uri: str, registered_model_name: str, alias: str = "production"
) -> dict[str, float] | None:
    """Metrics of the run behind the model version at ``alias``; None when there is none yet,
    so the first candidate has nothing to regress from."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        version = client.get_model_version_by_alias(registered_model_name, alias)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(e).lower():
            return None
        raise ComponentError(
            f"cannot read alias {alias!r} of {registered_model_name!r} at {tracking_uri}: {e}"
        ) from e
    if not version.run_id:
        return None
    return dict(client.get_run(version.run_id).data.metrics)


def promote(
    tracking_uri: str, registered_model_name: str, version: str, alias: str = "production"
) -> None:
    """Point ``alias`` at ``version``: what the next candidate's regression check compares to."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        client.set_registered_model_alias(registered_model_name, alias, str(version))
    except MlflowException as e:
        raise ComponentError(
            f"cannot set alias {alias!r} of {registered_model_name!r} to version {version}: {e}"
        ) from e
    log.info("%s version %s is now %r", registered_model_name, version, alias)
