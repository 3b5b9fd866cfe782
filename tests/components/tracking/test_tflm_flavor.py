"""The tflm flavor (components.tracking) on a tiny real int8 keyword model and a real MLflow store.

The model is a small Keras CNN on the MFCC feature shape, converted to full-int8 with the
TFLite converter (calibrated on MFCCs of noise, so its outputs vary); scores from the flavor
must equal those of ``tflm_ext.inference.run_batch`` on the same features, bit for bit.
``make_tiny_kws_tflite`` is also used by ``test_track.py``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from components.artifacts import Preprocessing
from components.audio import frontends, wav
from components.errors import ComponentError
from components.quantize import convert_int8
from components.tracking import tflm_flavor
from tflm_ext.inference import run_batch

LABELS = ("yes", "no", "_unknown_")
FRONTEND = "mfcc"
PREPROCESSING = Preprocessing(kind="audio", frontend=FRONTEND)


def noise_clips(count: int, seed: int = 0) -> np.ndarray:
    """Clips of white noise at several loudnesses, so the features (and scores) differ."""
    rng = np.random.default_rng(seed)
    gains = np.geomspace(0.01, 0.5, count)[:, None]
    return (rng.uniform(-1, 1, (count, wav.CLIP_SAMPLES)) * gains).astype(np.float32)


def make_tiny_kws_tflite(path: Path, classes: int = len(LABELS)) -> Path:
    """A 3-class int8 CNN on (49, 10, 1) MFCCs, int8 in and out, as the quantize stage makes."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(*frontends.feature_shape(FRONTEND), 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    calibration = frontends.compute_batch(FRONTEND, noise_clips(16, seed=1))[..., None]

    path.write_bytes(convert_int8(model, calibration))
    return path


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_kws_tflite(tmp_path_factory.mktemp("tiny") / "kws.tflite")


@pytest.fixture(scope="module")
def saved_model(tiny_tflite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "model"
    tflm_flavor.save_model(tiny_tflite, path, labels=LABELS, preprocessing=PREPROCESSING)
    return path


@contextlib.contextmanager
def sqlite_tracking(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite store, set as the process-wide URI only inside the block."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with _use_tracking_uri(uri):
        yield uri


def expected_scores(tflite: Path, clips: np.ndarray) -> np.ndarray:
    feats = frontends.compute_batch(FRONTEND, clips)
    return np.asarray(run_batch(tflite.read_bytes(), feats).scores)


def assert_prediction(frame: pd.DataFrame, scores: np.ndarray) -> None:
    """Labels are the argmax of TFLM's scores, and every score equals TFLM's exactly."""
    assert list(frame.columns[:2]) == ["label", "score"]
    assert set(frame["label"]) <= set(LABELS)
    per_class = frame[[f"score_{label}" for label in LABELS]].to_numpy()
    np.testing.assert_array_equal(per_class, scores)
    assert list(frame["label"]) == [LABELS[i] for i in scores.argmax(axis=1)]
    np.testing.assert_array_equal(frame["score"].to_numpy(), scores.max(axis=1))


def test_save_model_writes_both_flavors_and_pinned_requirements(saved_model: Path, tiny_tflite):
    mlmodel = yaml.safe_load((saved_model / "MLmodel").read_text())
    loader = mlmodel["flavors"]["python_function"]["loader_module"]
    assert loader == "components.tracking.tflm_flavor"
    tflm = mlmodel["flavors"]["tflm"]
    assert tflm["preprocessing"] == {"kind": "audio", "frontend": FRONTEND}
    data = saved_model / tflm["data"]
    assert (data / tflm["model_file"]).read_bytes() == tiny_tflite.read_bytes()
    config = json.loads((data / tflm["config_file"]).read_text())
    assert config == {
        "format_version": 2,
        "labels": list(LABELS),
        "preprocessing": PREPROCESSING.describe(),
    }
    requirements = (saved_model / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("tflite-micro==") for r in requirements)
    assert any(r.startswith("tflm-pipelines") for r in requirements)


def test_pyfunc_predict_on_arrays_matches_run_batch(saved_model: Path, tiny_tflite: Path):
    model = mlflow.pyfunc.load_model(str(saved_model))
    clips = noise_clips(6)
    scores = expected_scores(tiny_tflite, clips)
    assert_prediction(model.predict(list(clips)), scores)
    assert_prediction(model.predict(clips), scores)  # a 2-D (N, 16000) array
    assert len(set(map(tuple, scores))) > 1, "the tiny model should not be constant"


def test_pyfunc_predict_on_wav_paths(saved_model: Path, tiny_tflite: Path, tmp_path: Path):
    paths = []
    for i, clip in enumerate(noise_clips(3, seed=7)):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], clip, wav.SAMPLE_RATE, subtype="PCM_16")
    loaded = np.stack([wav.load_clip(p) for p in paths])
    model = mlflow.pyfunc.load_model(str(saved_model))
    assert_prediction(model.predict([str(p) for p in paths]), expected_scores(tiny_tflite, loaded))
    assert_prediction(model.predict(paths), expected_scores(tiny_tflite, loaded))


def test_load_model_gives_keyword_model(saved_model: Path, tiny_tflite: Path):
    model = tflm_flavor.load_model(str(saved_model))
    assert isinstance(model, tflm_flavor.TflmClassifier)
    assert model.labels == LABELS and model.preprocessing == PREPROCESSING
    assert model.model_bytes == tiny_tflite.read_bytes()
    assert model.predict([]).shape[0] == 0


def test_wrong_clip_length_is_refused_with_its_index(saved_model: Path):
    model = mlflow.pyfunc.load_model(str(saved_model))
    with pytest.raises(ComponentError, match=r"clip 1 has shape \(8000,\)"):
        model.predict([np.zeros(16000, np.float32), np.zeros(8000, np.float32)])


def test_label_count_must_match_model_outputs(tiny_tflite: Path, tmp_path: Path):
    path = tmp_path / "model"
    tflm_flavor.save_model(tiny_tflite, path, labels=LABELS[:2], preprocessing=PREPROCESSING)
    with pytest.raises(ComponentError, match="3 outputs but 2 labels"):
        mlflow.pyfunc.load_model(str(path))


def test_save_model_refuses_bad_inputs(tiny_tflite: Path, tmp_path: Path):
    with pytest.raises(ComponentError, match="unknown frontend 'fbank'"):
        tflm_flavor.save_model(
            tiny_tflite, tmp_path / "a", labels=LABELS,
            preprocessing=Preprocessing(kind="audio", frontend="fbank"),
        )  # fmt: skip
    with pytest.raises(ComponentError, match="unique"):
        tflm_flavor.save_model(
            tiny_tflite, tmp_path / "b", labels=("a", "a"), preprocessing=PREPROCESSING
        )
    with pytest.raises(ComponentError, match="no .tflite model"):
        tflm_flavor.save_model(
            tmp_path / "x.tflite", tmp_path / "c", labels=LABELS, preprocessing=PREPROCESSING
        )


def test_log_model_registers_a_version_that_serves(tiny_tflite: Path, tmp_path: Path):
    with sqlite_tracking(tmp_path) as uri:
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            info = tflm_flavor.log_model(
                tiny_tflite, "model", labels=LABELS, preprocessing=PREPROCESSING,
                registered_model_name="tiny-kws",
            )  # fmt: skip
        assert info.registered_model_version == 1
        assert client.get_logged_model(info.model_id).experiment_id == experiment
        version = client.get_model_version("tiny-kws", "1")
        assert version.run_id == run.info.run_id
        model = mlflow.pyfunc.load_model("models:/tiny-kws/1")
        clips = noise_clips(2)
        assert_prediction(model.predict(list(clips)), expected_scores(tiny_tflite, clips))
    assert mlflow.get_tracking_uri() != uri
    assert (tmp_path / "art").is_dir()


@pytest.mark.parametrize(
    "legacy",
    [{"labels": list(LABELS), "frontend": "mfcc"},
     {"labels": list(LABELS), "preprocessing": {"kind": "audio", "frontend": "mfcc"}}],
)  # fmt: skip
def test_models_saved_before_format_2_keep_their_40_ms_mfcc(saved_model, tmp_path, legacy):
    """Their "mfcc" meant the 40 ms recipe: they must keep getting those features."""
    old = tmp_path / "old"
    shutil.copytree(saved_model, old)
    (old / "data" / "tflm.json").write_text(json.dumps(legacy))
    model = tflm_flavor.load_model(str(old))
    assert model.preprocessing == Preprocessing(kind="audio", frontend="mfcc40")
