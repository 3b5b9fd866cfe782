"""The ``tflm`` MLflow model flavor: an int8 keyword-spotting ``.tflite`` run by TFLM.

Same shape as MLflow's built-in flavors (``mlflow/h2o/__init__.py``): ``save_model`` writes a
model directory, ``log_model`` logs it to the active tracking store through
``mlflow.models.Model.log``, ``load_model`` gives back a :class:`TflmKeywordModel`, and the
private ``_load_pyfunc`` is the ``python_function`` loader. The audio front end travels with
the model (its name is stored beside the ``.tflite``), so
``mlflow.pyfunc.load_model(uri).predict(clips)`` takes raw 1 s, 16 kHz clips (1-D arrays or
WAV paths) and returns the predicted labels and scores computed by TFLM on the int8 model.

Crash safety: TFLM calls ``abort()`` on a bad model, which would kill a serving process. A
loaded model is therefore first run once in a child process (``run_isolated``); only when that
succeeds, and the output has one score per label, is it run in-process for every ``predict``.
Data cannot make a vetted int8 model abort, and an in-process run costs milliseconds where a
child process per request would cost a process start.

Called by ``components.track`` (``log_model``) and by anyone serving a registered model.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.models import Model, ModelSignature
from mlflow.models.model import MLMODEL_FILE_NAME, ModelInfo
from mlflow.pyfunc import add_to_model
from mlflow.utils.environment import (
    _CONDA_ENV_FILE_NAME,
    _PYTHON_ENV_FILE_NAME,
    _REQUIREMENTS_FILE_NAME,
    _process_pip_requirements,
    _PythonEnv,
)

from components import audio, features
from components.errors import ComponentError
from tflm_ext.errors import TflmExtError
from tflm_ext.inference import run_batch
from tflm_ext.isolation import run_isolated

FLAVOR_NAME = "tflm"
DATA_DIR = "data"
MODEL_FILE = "model.tflite"
CONFIG_FILE = "tflm.json"
_REQUIRED_PACKAGES = ("tflite-micro", "numpy", "pandas", "tflm-pipelines")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TflmKeywordModel:
    """An int8 keyword model, its labels and front end; ``predict`` goes from audio to labels."""

    model_bytes: bytes
    labels: tuple[str, ...]
    frontend: str

    def scores(self, feats: np.ndarray) -> np.ndarray:
        """Dequantized TFLM scores ``(N, classes)`` for features ``(N, frames, bins)``."""
        try:
            return np.asarray(run_batch(self.model_bytes, feats).scores, dtype=np.float32)
        except TflmExtError as e:
            raise ComponentError(
                f"TFLM could not run the {self.frontend} keyword model: {e}"
            ) from e

    def predict(self, clips: Any) -> pd.DataFrame:
        """Labels and scores for raw clips: a list of 1-D arrays or WAV paths, or ``(N, 16000)``."""
        feats = features_for(clips, self.frontend)
        if not len(feats):
            return _as_frame(np.zeros((0, len(self.labels)), np.float32), self.labels)
        scores = self.scores(feats)
        return _as_frame(scores, self.labels)

    def vet(self) -> None:
        """Run the model once in a child process so a TFLM abort becomes an error, not a crash."""
        probe = np.zeros((1, *features.feature_shape(self.frontend)), dtype=np.float32)
        try:
            result = run_isolated(run_batch, self.model_bytes, probe)
        except TflmExtError as e:
            raise ComponentError(f"TFLM cannot run this {self.frontend} model: {e}") from e
        classes = np.asarray(result.scores).shape[-1]
        if classes != len(self.labels):
            raise ComponentError(
                f"model has {classes} outputs but {len(self.labels)} labels: {self.labels}"
            )


class _TflmPyfuncWrapper:
    """The ``python_function`` face of a :class:`TflmKeywordModel`."""

    def __init__(self, model: TflmKeywordModel) -> None:
        self.model = model

    def get_raw_model(self) -> TflmKeywordModel:
        return self.model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Columns ``label``, ``score`` and ``score_<label>`` per class, one row per clip."""
        return self.model.predict(model_input)


def _as_frame(scores: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame(
        {
            "label": [labels[i] for i in best],
            "score": scores[np.arange(len(best)), best].astype(np.float32),
        }
    )
    for i, label in enumerate(labels):
        frame[f"score_{label}"] = scores[:, i]
    return frame


def _clip_items(model_input: Any) -> list[Any]:
    """Split any accepted input into one item per clip (a path or a 1-D array)."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 1:
            return list(model_input.iloc[:, 0])
        return list(model_input.to_numpy(dtype=np.float32))
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, (str, os.PathLike)):
        return [model_input]
    if isinstance(model_input, np.ndarray):
        if model_input.dtype.kind in "OUS":
            return list(model_input.reshape(-1))
        if model_input.ndim == 1:
            return [model_input]
        return list(model_input)
    return list(model_input)


def _clip_audio(item: Any, index: int) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return np.asarray(audio.load_clip(Path(item)), dtype=np.float32)
    clip = np.asarray(item, dtype=np.float32)
    if clip.shape != (audio.CLIP_SAMPLES,):
        raise ComponentError(
            f"clip {index} has shape {clip.shape}; expected ({audio.CLIP_SAMPLES},) samples, "
            "1 s at 16 kHz"
        )
    return clip


def features_for(model_input: Any, frontend: str) -> np.ndarray:
    """Features ``(N, frames, bins)`` of every clip, computed by the model's own front end."""
    clips = [_clip_audio(item, i) for i, item in enumerate(_clip_items(model_input))]
    batch = np.stack(clips) if clips else np.zeros((0, audio.CLIP_SAMPLES), dtype=np.float32)
    return features.compute_batch(frontend, batch)


def _pin(package: str) -> str:
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def get_default_pip_requirements() -> list[str]:
    """Pinned from the installed versions, never resolved over the network: the TFLM nightly
    decides the numbers, so the serving side must run the same wheel."""
    return [_pin(name) for name in _REQUIRED_PACKAGES]


def _write_environment(
    path: Path, pip_requirements: list[str] | None, extra: list[str] | None
) -> None:
    default = None if pip_requirements else get_default_pip_requirements()
    conda_env, pip_reqs, _ = _process_pip_requirements(default, pip_requirements, extra)
    (path / _CONDA_ENV_FILE_NAME).write_text(yaml.safe_dump(conda_env, default_flow_style=False))
    (path / _REQUIREMENTS_FILE_NAME).write_text("\n".join(pip_reqs))
    _PythonEnv.current().to_yaml(str(path / _PYTHON_ENV_FILE_NAME))


def _check_inputs(tflite_path: Path, labels: Sequence[str], frontend: str) -> None:
    if not tflite_path.is_file():
        raise ComponentError(f"no .tflite model at {tflite_path}")
    if not labels or len(set(labels)) != len(labels):
        raise ComponentError(f"labels must be non-empty and unique, got {list(labels)}")
    features.feature_shape(frontend)  # raises on an unknown front end


def save_model(
    tflite_path: str | Path,
    path: str | Path,
    *,
    labels: Sequence[str],
    frontend: str,
    mlflow_model: Model | None = None,
    signature: ModelSignature | None = None,
    metadata: dict[str, Any] | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
) -> None:
    """Write an MLflow model directory holding the ``.tflite``, its labels and front end,
    with both the ``tflm`` and the ``python_function`` flavor."""
    tflite_path, path = Path(tflite_path), Path(path).absolute()
    _check_inputs(tflite_path, labels, frontend)
    if path.exists():
        raise ComponentError(f"model directory already exists: {path}")
    (path / DATA_DIR).mkdir(parents=True)
    shutil.copyfile(tflite_path, path / DATA_DIR / MODEL_FILE)
    config = {"labels": list(labels), "frontend": frontend}
    (path / DATA_DIR / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    mlflow_model = mlflow_model or Model()
    if signature is not None:
        mlflow_model.signature = signature
    if metadata is not None:
        mlflow_model.metadata = metadata
    add_to_model(
        mlflow_model,
        loader_module=__name__,
        data=DATA_DIR,
        conda_env=_CONDA_ENV_FILE_NAME,
        python_env=_PYTHON_ENV_FILE_NAME,
    )
    mlflow_model.add_flavor(
        FLAVOR_NAME,
        data=DATA_DIR,
        model_file=MODEL_FILE,
        config_file=CONFIG_FILE,
        frontend=frontend,
        tflite_micro_version=_pin("tflite-micro").partition("==")[2] or None,
    )
    mlflow_model.model_size_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    mlflow_model.save(str(path / MLMODEL_FILE_NAME))
    _write_environment(path, pip_requirements, extra_pip_requirements)


def log_model(
    tflite_path: str | Path,
    name: str,
    *,
    labels: Sequence[str],
    frontend: str,
    registered_model_name: str | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
) -> ModelInfo:
    """Log the model to the current tracking URI (into ``run_id`` or the active run) and,
    when ``registered_model_name`` is given, register a new version of it.

    Pass ``model_id`` (from ``MlflowClient.create_logged_model``) to choose the experiment:
    without it MLflow files the logged model under the active or default experiment, not
    necessarily the one of ``run_id``."""
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=sys.modules[__name__],
        flavor_name=FLAVOR_NAME,
        registered_model_name=registered_model_name,
        run_id=run_id,
        model_id=model_id,
        metadata=metadata,
        tags=tags,
        tflite_path=tflite_path,
        labels=labels,
        frontend=frontend,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
    )


def _open(data_dir: Path) -> TflmKeywordModel:
    """Read and vet the model stored in a flavor's data directory."""
    try:
        config = json.loads((data_dir / CONFIG_FILE).read_text())
        model = TflmKeywordModel(
            model_bytes=(data_dir / MODEL_FILE).read_bytes(),
            labels=tuple(config["labels"]),
            frontend=str(config["frontend"]),
        )
    except (OSError, ValueError, KeyError) as e:
        raise ComponentError(f"not a tflm model directory: {data_dir}: {e}") from e
    model.vet()
    log.info("vetted %s: %d labels, %s front end", data_dir, len(model.labels), model.frontend)
    return model


def load_model(model_uri: str, dst_path: str | None = None) -> TflmKeywordModel:
    """Download (if remote) and open a ``tflm`` model: ``runs:/``, ``models:/`` or a path."""
    local = Path(download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    flavor = Model.load(str(local / MLMODEL_FILE_NAME)).flavors.get(FLAVOR_NAME)
    if flavor is None:
        raise ComponentError(f"model {model_uri} has no {FLAVOR_NAME!r} flavor")
    return _open(local / flavor.get("data", DATA_DIR))


def _load_pyfunc(path: str) -> _TflmPyfuncWrapper:
    """Called by ``mlflow.pyfunc.load_model`` with the flavor's data directory."""
    return _TflmPyfuncWrapper(_open(Path(path)))
