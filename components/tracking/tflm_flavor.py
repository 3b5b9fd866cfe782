"""The ``tflm`` MLflow model flavor: an int8 classification ``.tflite`` run by TFLM.

Same shape as MLflow's built-in flavors (``mlflow/h2o/__init__.py``): ``save_model`` writes a
model directory, ``log_model`` logs it to the active tracking store through
``mlflow.models.Model.log``, ``load_model`` gives back a :class:`TflmClassifier`, and the
private ``_load_pyfunc`` is the ``python_function`` loader. The preprocessing travels with
the model (stored beside the ``.tflite``), so ``mlflow.pyfunc.load_model(uri).predict(x)``
takes raw inputs and returns the predicted labels and scores computed by TFLM on the int8
model: an audio model takes 1 s, 16 kHz clips (WAV paths, int16 PCM or float arrays in
[-1, 1]), an image model takes image files (JPEG, PNG, BMP) or HxWx3 uint8 arrays, resized
exactly as training did (``components.preprocessing``).

Crash safety: TFLM calls ``abort()`` on a bad model, which would kill a serving process. A
loaded model is therefore first run once in a child process (``run_isolated``); only when that
succeeds, and the output has one score per label, is it run in-process for every ``predict``.
Data cannot make a vetted int8 model abort, and an in-process run costs milliseconds where a
child process per request would cost a process start.

Called by ``components.tracking.track`` (``log_model``) and by anyone serving a registered model.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
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

from components import preprocessing
from components.artifacts import Preprocessing
from components.errors import ComponentError
from tflm_ext.errors import ChildCrashError, TflmExtError
from tflm_ext.inference import run_batch
from tflm_ext.isolation import run_isolated

FLAVOR_NAME = "tflm"
DATA_DIR = "data"
MODEL_FILE = "model.tflite"
CONFIG_FILE = "tflm.json"
# 2: the stored preprocessing names MLPerf Tiny's exact front end as "mfcc". Models saved
# without a format version computed "mfcc" with the earlier 40 ms recipe, now "mfcc40".
FORMAT_VERSION = 2
_REQUIRED_PACKAGES = ("tflite-micro", "numpy", "pandas", "tflm-pipelines")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TflmClassifier:
    """An int8 classifier, its labels and preprocessing; ``predict`` goes from raw inputs
    (clips or images) to labels."""

    model_bytes: bytes
    labels: tuple[str, ...]
    preprocessing: Preprocessing

    def scores(self, examples: np.ndarray) -> np.ndarray:
        """Dequantized TFLM scores ``(N, classes)`` for model inputs ``(N, *example_shape)``."""
        try:
            return np.asarray(run_batch(self.model_bytes, examples).scores, dtype=np.float32)
        except TflmExtError as e:
            raise ComponentError(f"TFLM could not run the {self._kind} model: {e}") from e

    def predict(self, inputs: Any) -> pd.DataFrame:
        """Labels and scores for raw inputs: one or many clips or images (paths or arrays)."""
        examples = preprocessing.prepare(self.preprocessing, inputs)
        if not len(examples):
            return _as_frame(np.zeros((0, len(self.labels)), np.float32), self.labels)
        return _as_frame(self.scores(examples), self.labels)

    def vet(self) -> None:
        """Run the model once in a child process so a TFLM abort becomes an error, not a crash."""
        probe = np.zeros((1, *preprocessing.example_shape(self.preprocessing)), np.float32)
        try:
            result = run_isolated(run_batch, self.model_bytes, probe)
        except ChildCrashError as e:
            raise ComponentError(f"TFLM crashed on this {self._kind} model: {e}") from e
        except TflmExtError as e:
            raise ComponentError(f"could not check the {self._kind} model on TFLM: {e}") from e
        classes = np.asarray(result.scores).shape[-1]
        if classes != len(self.labels):
            raise ComponentError(
                f"model has {classes} outputs but {len(self.labels)} labels: {self.labels}"
            )

    @property
    def _kind(self) -> str:
        p = self.preprocessing
        return f"{p.frontend} audio" if p.kind == "audio" else f"{p.kind}"


class _TflmPyfuncWrapper:
    """The ``python_function`` face of a :class:`TflmClassifier`."""

    def __init__(self, model: TflmClassifier) -> None:
        self.model = model

    def get_raw_model(self) -> TflmClassifier:
        return self.model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Columns ``label``, ``score`` and ``score_<label>`` per class, one row per input."""
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


def _check_inputs(tflite_path: Path, labels: Sequence[str], prep: Preprocessing) -> None:
    if not tflite_path.is_file():
        raise ComponentError(f"no .tflite model at {tflite_path}")
    if not labels or len(set(labels)) != len(labels):
        raise ComponentError(f"labels must be non-empty and unique, got {list(labels)}")
    preprocessing.example_shape(prep)  # raises on an unknown front end or kind


def save_model(
    tflite_path: str | Path,
    path: str | Path,
    *,
    labels: Sequence[str],
    preprocessing: Preprocessing,
    mlflow_model: Model | None = None,
    signature: ModelSignature | None = None,
    metadata: dict[str, Any] | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
) -> None:
    """Write an MLflow model directory holding the ``.tflite``, its labels and preprocessing,
    with both the ``tflm`` and the ``python_function`` flavor."""
    tflite_path, path = Path(tflite_path), Path(path).absolute()
    _check_inputs(tflite_path, labels, preprocessing)
    if path.exists():
        raise ComponentError(f"model directory already exists: {path}")
    (path / DATA_DIR).mkdir(parents=True)
    shutil.copyfile(tflite_path, path / DATA_DIR / MODEL_FILE)
    config = {
        "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "preprocessing": preprocessing.describe(),
    }
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
        preprocessing=preprocessing.describe(),
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
    preprocessing: Preprocessing,
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
        preprocessing=preprocessing,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
    )


def _open(data_dir: Path) -> TflmClassifier:
    """Read and vet the model stored in a flavor's data directory."""
    try:
        config = json.loads((data_dir / CONFIG_FILE).read_text())
        model = TflmClassifier(
            model_bytes=(data_dir / MODEL_FILE).read_bytes(),
            labels=tuple(config["labels"]),
            preprocessing=_stored_preprocessing(config),
        )
    except (OSError, ValueError, KeyError) as e:
        raise ComponentError(f"not a tflm model directory: {data_dir}: {e}") from e
    model.vet()
    log.info("vetted %s: %d labels, %s", data_dir, len(model.labels), model.preprocessing)
    return model


def _stored_preprocessing(config: dict) -> Preprocessing:
    """The stored preprocessing. Models saved before it existed recorded only a front end,
    and those saved before format version 2 meant the 40 ms variant by "mfcc"."""
    if "preprocessing" in config:
        stored = Preprocessing.from_record(config["preprocessing"])
    else:
        stored = Preprocessing(kind="audio", frontend=str(config["frontend"]))
    if stored.frontend == "mfcc" and config.get("format_version", 1) < 2:
        log.warning("model saved before format version 2: its 'mfcc' is the 40 ms 'mfcc40'")
        return dataclasses.replace(stored, frontend="mfcc40")
    return stored


def load_model(model_uri: str, dst_path: str | None = None) -> TflmClassifier:
    """Download (if remote) and open a ``tflm`` model: ``runs:/``, ``models:/`` or a path."""
    local = Path(download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    flavor = Model.load(str(local / MLMODEL_FILE_NAME)).flavors.get(FLAVOR_NAME)
    if flavor is None:
        raise ComponentError(f"model {model_uri} has no {FLAVOR_NAME!r} flavor")
    return _open(local / flavor.get("data", DATA_DIR))


def _load_pyfunc(path: str) -> _TflmPyfuncWrapper:
    """Called by ``mlflow.pyfunc.load_model`` with the flavor's data directory."""
    return _TflmPyfuncWrapper(_open(Path(path)))
