"""Copy a run kept in a local MLflow store to a tracking server, resuming where a failed copy
stopped.

A run bound for a server is logged first into a store of its own (a folder holding
``mlflow.db`` and ``mlartifacts/``), then replayed here: the experiment, the run (tags,
params, every metric's history, artifacts, status and times), its logged models (tags,
params, linked metrics, artifacts), their registered versions (tags) and the aliases that
point at them. If the server fails, the folder keeps everything and the error names the
command that finishes the copy later (``tflm-pipelines upload FOLDER --tracking-uri URI``).

Every step is safe to repeat: the server's copy of the run and of each logged model carries a
``tflm.upload.source`` tag with the local id, so a second upload finds and completes them
instead of making duplicates (params and tags are rewritten with the same values, MLflow
drops metric points it already holds, artifacts are overwritten). The remote run stays
``RUNNING`` until the last step, so a half-copied run never looks finished.

Retries are MLflow's own (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``,
``..._TIMEOUT``), set for the copy by :func:`retrying`. Written here rather than taken from
``mlflow-export-import``, which exports to an intermediate folder, pins unrelated packages
(``databricks-cli``) and cannot resume a half-finished import.

Called by ``components.tracking.track`` after logging a run, and by ``tflm-pipelines upload``.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from components.errors import ComponentError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel, Run

SOURCE_TAG = "tflm.upload.source"
STORE_FILE = "mlflow.db"
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # written by the registry itself, per store
_METRIC_BATCH = 1000  # MLflow's limit per log_batch call
_TAG_BATCH = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingResult:
    """The run, the logged model's URI (``models:/<model id>``) and the registered version."""

    run_id: str
    model_uri: str
    model_version: str | None
    kept: Path | None = None  # a server run's local copy, which `tflm-pipelines upload` replays


def is_server(tracking_uri: str) -> bool:
    """A tracking server answers over HTTP; SQLite files and local folders are embedded."""
    return urlparse(tracking_uri).scheme in {"http", "https"}


def local_uri(folder: Path) -> str:
    """The tracking URI of the local store in ``folder``."""
    return f"sqlite:///{Path(folder).resolve()}/{STORE_FILE}"


def upload_command(folder: Path, tracking_uri: str) -> str:
    """The shell command that copies the run kept in ``folder`` to ``tracking_uri``."""
    quoted = shlex.quote(str(folder)), shlex.quote(tracking_uri)
    return "tflm-pipelines upload {} --tracking-uri {}".format(*quoted)


@contextmanager
def retrying(max_retries: int, backoff_factor: int, timeout_s: int) -> Iterator[None]:
    """MLflow's HTTP retry knobs for the calls made inside, restored afterwards: each request
    is tried ``1 + max_retries`` times, waiting ``backoff_factor * 2**n`` s between tries."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(backoff_factor),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
    }
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload(folder: Path, tracking_uri: str) -> TrackingResult:
    """Copy the one run kept in ``folder`` to ``tracking_uri``, completing any earlier copy."""
    from mlflow import MlflowClient

    local = MlflowClient(local_uri(_require_store(folder)))
    run = the_run(local, folder)
    step = Steps(folder, tracking_uri, run.info.run_id)
    remote = MlflowClient(tracking_uri)
    with step("the experiment"):
        experiment_id = _experiment(remote, local.get_experiment(run.info.experiment_id).name)
    with step("the run"):
        remote_run = _find_or_create_run(remote, experiment_id, run)
    with step("tags and params"):
        _copy_tags_and_params(remote, remote_run, run)
    with step("metrics"):
        _copy_metrics(local, remote, remote_run, run)
    with step("artifacts"):
        remote.log_artifacts(remote_run, _local_path(run.info.artifact_uri))
    models = {}
    for model in _logged_models(local, run):
        with step(f"logged model {model.model_id}"):
            models[model.model_id] = _copy_logged_model(remote, experiment_id, remote_run, model)
    version = None
    for local_version in local.search_model_versions(f"run_id='{run.info.run_id}'"):
        with step(f"model {local_version.name!r} version {local_version.version}"):
            version = _copy_version(local, remote, remote_run, local_version, models)
    with step("the run's status"):
        remote.set_terminated(remote_run, run.info.status, run.info.end_time)
    model_uri = f"models:/{next(iter(models.values()))}" if models else ""
    log.info("uploaded run %s from %s as run %s at %s", run.info.run_id, folder, remote_run,
             tracking_uri)  # fmt: skip
    return TrackingResult(remote_run, model_uri, version)


class Steps:
    """Names each step of a copy in the log and, when the server fails, in a ComponentError
    that says where everything is kept and how to finish the copy."""

    def __init__(self, folder: Path, tracking_uri: str, run_id: str) -> None:
        self.folder, self.tracking_uri, self.run_id = folder, tracking_uri, run_id

    @contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        import requests
        from mlflow.exceptions import MlflowException

        log.info("uploading %s of run %s to %s", what, self.run_id, self.tracking_uri)
        try:
            yield
        except (MlflowException, requests.RequestException, OSError) as e:
            cause = " ".join(str(e).split())[:400]
            raise ComponentError(
                f"MLflow tracking server {self.tracking_uri} failed while logging {what} of "
                f"run {self.run_id} ({cause}); nothing is lost: the run is kept in "
                f"{self.folder}, upload it later with: "
                f"{upload_command(self.folder, self.tracking_uri)}"
            ) from e


def _require_store(folder: Path) -> Path:
    if not (Path(folder) / STORE_FILE).is_file():
        raise ComponentError(f"{folder}: not a run kept for upload (no {STORE_FILE} in it)")
    return Path(folder)


def the_run(local: MlflowClient, folder: Path) -> Run:
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in local.search_experiments(view_type=ViewType.ALL)]
    runs = local.search_runs(experiments, run_view_type=ViewType.ALL) if experiments else []
    if len(runs) != 1:
        raise ComponentError(f"{folder}: holds {len(runs)} runs, expected the one to upload")
    return runs[0]


def _local_path(uri: str) -> str:
    return unquote(urlparse(uri).path)


def _experiment(remote: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = remote.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return remote.create_experiment(name)
    except MlflowException as e:  # another run created it meanwhile
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return remote.get_experiment_by_name(name).experiment_id


def _find_or_create_run(remote: MlflowClient, experiment_id: str, run: Run) -> str:
    from mlflow.entities import ViewType

    found = remote.search_runs(
        [experiment_id], f"tags.`{SOURCE_TAG}` = '{run.info.run_id}'", ViewType.ALL
    )
    if found:
        return found[0].info.run_id
    tags = {**run.data.tags, SOURCE_TAG: run.info.run_id}
    created = remote.create_run(
        experiment_id, run.info.start_time, tags=tags, run_name=run.info.run_name
    )
    return created.info.run_id


def _copy_tags_and_params(remote: MlflowClient, remote_run: str, run: Run) -> None:
    from mlflow.entities import Param, RunTag

    tags = [RunTag(k, v) for k, v in run.data.tags.items()]
    params = [Param(k, v) for k, v in run.data.params.items()]
    for start in range(0, max(len(tags), len(params)), _TAG_BATCH):
        end = start + _TAG_BATCH
        remote.log_batch(remote_run, params=params[start:end], tags=tags[start:end])


def _copy_metrics(local: MlflowClient, remote: MlflowClient, remote_run: str, run: Run) -> None:
    """Every point of every metric's history, with its step and timestamp."""
    from mlflow.entities import Metric

    points = {
        (m.key, m.value, m.timestamp, m.step)
        for key in run.data.metrics
        for m in local.get_metric_history(run.info.run_id, key)
    }
    metrics = [Metric(*point) for point in sorted(points)]
    for start in range(0, len(metrics), _METRIC_BATCH):
        remote.log_batch(remote_run, metrics=metrics[start : start + _METRIC_BATCH])


def _logged_models(local: MlflowClient, run: Run) -> list[LoggedModel]:
    outputs = run.outputs.model_outputs if run.outputs else []
    return [local.get_logged_model(output.model_id) for output in outputs]


def _copy_logged_model(
    remote: MlflowClient, experiment_id: str, remote_run: str, model: LoggedModel
) -> str:
    """The logged model under the remote run, with its files, and the run's metrics linked
    to it as ``Model.log`` links them; returns the remote model id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric

    remote_id = _find_logged_model(remote, experiment_id, remote_run, model.model_id)
    if remote_id is None:
        tags = {k: v for k, v in model.tags.items() if k != _MODEL_VERSIONS_TAG}
        created = remote.create_logged_model(
            experiment_id, name=model.name, source_run_id=remote_run,
            tags={**tags, SOURCE_TAG: model.model_id}, params=model.params or None,
            model_type=model.model_type,
        )  # fmt: skip
        remote_id = created.model_id
    outputs = remote.get_run(remote_run).outputs
    if remote_id not in {o.model_id for o in (outputs.model_outputs if outputs else [])}:
        remote.log_outputs(remote_run, [LoggedModelOutput(remote_id, step=0)])
        linked = [
            Metric(m.key, m.value, m.timestamp, m.step, model_id=remote_id, run_id=remote_run)
            for m in model.metrics or []
        ]
        for start in range(0, len(linked), _METRIC_BATCH):
            remote.log_batch(remote_run, metrics=linked[start : start + _METRIC_BATCH])
    remote.log_model_artifacts(remote_id, _local_path(model.artifact_location))
    if model.status == LoggedModelStatus.READY:
        remote.finalize_logged_model(remote_id, LoggedModelStatus.READY)
    return remote_id


def _find_logged_model(
    remote: MlflowClient, experiment_id: str, remote_run: str, local_id: str
) -> str | None:
    found = remote.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{remote_run}'"
    )
    return next((m.model_id for m in found if m.tags.get(SOURCE_TAG) == local_id), None)


def _copy_version(local, remote, remote_run, version, models) -> str:
    """The remote version of ``version`` (tags set at creation; the server links it to the
    logged model) and every alias that points at it locally; returns its number."""
    name = version.name
    found = remote.search_model_versions(f"name='{name}' and run_id='{remote_run}'")
    if found:
        number = str(found[0].version)
    else:
        _ensure_registered_model(remote, name, local.get_registered_model(name).tags)
        remote_model = models[version.source.removeprefix("models:/")]
        created = remote.create_model_version(
            name, f"models:/{remote_model}", run_id=remote_run, tags=dict(version.tags),
            description=version.description, model_id=remote_model,
        )  # fmt: skip
        number = str(created.version)
    for alias, target in local.get_registered_model(name).aliases.items():
        if str(target) == str(version.version):
            remote.set_registered_model_alias(name, alias, number)
    return number


def _ensure_registered_model(remote, name: str, tags: dict[str, str]) -> None:
    from mlflow.exceptions import MlflowException

    try:
        remote.create_registered_model(name, tags=tags or None)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
