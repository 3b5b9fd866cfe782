"""What the ``tflm`` flavor's predict accepts, from any entry point a user calls it from.

Image models take image files (JPEG, PNG, BMP, any size) and HxWx3 uint8 arrays, resized
exactly as training did; audio models take int16 PCM as PCM and refuse what is neither int16
nor float in [-1, 1]. Loading and predicting work from a script without a main guard and
from a script on standard input (the vetting child must not re-import ``__main__``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from components.artifacts import Preprocessing
from components.errors import ComponentError
from components.tracking import tflm_flavor
from components.vision.images import load_image
from tests.components.tracking.test_tflm_flavor import (
    LABELS,
    PREPROCESSING,
    make_tiny_kws_tflite,
    noise_clips,
)
from tests.int8_models import seeded_keras
from tests.shared_data import REPO
from tflm_ext.inference import run_batch

SIZE = (24, 32)  # height, width: not square, so a swapped axis shows
IMAGE = Preprocessing(kind="image", image_size=SIZE, channels=3)
IMAGE_LABELS = ("non_person", "person")


def make_tiny_image_tflite(path: Path) -> Path:
    from components.quantize import convert_int8

    keras = seeded_keras()
    inputs = keras.Input(shape=(*SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    calibration = np.random.default_rng(0).uniform(0, 1, (16, *SIZE, 3)).astype(np.float32)
    path.write_bytes(convert_int8(model, calibration))
    return path


@pytest.fixture(scope="module")
def image_model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image_model")
    tflite = make_tiny_image_tflite(root / "vww.tflite")
    tflm_flavor.save_model(tflite, root / "model", labels=IMAGE_LABELS, preprocessing=IMAGE)
    return root / "model"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Random photos in three formats and three sizes."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    paths = []
    for i, (suffix, shape) in enumerate(
        [(".jpg", (60, 80)), (".png", (24, 32)), (".bmp", (50, 40))]
    ):
        pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        paths.append(root / f"photo{i}{suffix}")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_image_model_takes_files_of_any_size_and_format(image_model_dir, photos):
    model = mlflow.pyfunc.load_model(str(image_model_dir))
    frame = model.predict([str(p) for p in photos])
    tflite = (image_model_dir / "data" / "model.tflite").read_bytes()
    x = np.stack([load_image(p, SIZE, 3) for p in photos]).astype(np.float32) / 255.0
    expected = run_batch(tflite, x).scores
    np.testing.assert_array_equal(frame[["score_non_person", "score_person"]].to_numpy(), expected)


def test_image_model_takes_uint8_arrays_like_the_same_files(image_model_dir, photos):
    model = mlflow.pyfunc.load_model(str(image_model_dir))
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photos[1:]]
    from_files = model.predict([str(p) for p in photos[1:]])
    np.testing.assert_array_equal(model.predict(arrays).to_numpy(), from_files.to_numpy())
    single = model.predict(arrays[0])  # one HxWx3 array is one image
    assert len(single) == 1 and single.iloc[0]["label"] == from_files.iloc[0]["label"]


def test_image_model_refuses_a_file_that_is_not_an_image(image_model_dir, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    model = mlflow.pyfunc.load_model(str(image_model_dir))
    with pytest.raises(ComponentError, match="fake.png"):
        model.predict([str(fake)])


@pytest.fixture(scope="module")
def audio_model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio_model")
    tflite = make_tiny_kws_tflite(root / "kws.tflite")
    tflm_flavor.save_model(tflite, root / "model", labels=LABELS, preprocessing=PREPROCESSING)
    return root / "model"


def test_int16_clips_are_pcm(audio_model_dir):
    model = mlflow.pyfunc.load_model(str(audio_model_dir))
    clips = noise_clips(3)
    pcm = np.round(clips * 32767).astype(np.int16)
    from_pcm = model.predict(pcm)
    from_float = model.predict(pcm.astype(np.float32) / 32768.0)
    np.testing.assert_array_equal(from_pcm.to_numpy(), from_float.to_numpy())


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (np.zeros(16000, np.int32), "clip 0 has dtype int32"),
        (np.full(16000, 3000.0, np.float32), "clip 0 is float with peak 3000"),
    ],
)
def test_other_clips_are_refused_naming_the_clip(audio_model_dir, clip, message):
    model = mlflow.pyfunc.load_model(str(audio_model_dir))
    with pytest.raises(ComponentError, match=message):
        model.predict([clip])


SCRIPT = """
import mlflow
import numpy as np
model = mlflow.pyfunc.load_model({uri!r})
frame = model.predict([np.zeros(({h}, {w}, 3), np.uint8), np.full(({h}, {w}, 3), 200, np.uint8)])
print("LABELS", ",".join(frame["label"]))
"""


def _run_user_code(how: str, code: str, tmp_path: Path) -> str:
    """Run ``code`` as a user would: a script file (no main guard) or ``python -`` on stdin."""
    script = tmp_path / "user_script.py"
    script.write_text(code)
    command = [sys.executable, str(script)] if how == "script" else [sys.executable, "-"]
    done = subprocess.run(
        command, input=code if how == "stdin" else None, capture_output=True, text=True,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("how", ["script", "stdin"])
def test_load_and_predict_from_a_script_without_main_guard(how, image_model_dir, tmp_path):
    code = SCRIPT.format(uri=str(image_model_dir), h=SIZE[0], w=SIZE[1])
    out = _run_user_code(how, code, tmp_path)
    assert out.count("LABELS") == 1  # the script ran once: the child did not re-run it
    labels = out.split("LABELS ")[1].strip().split(",")
    assert len(labels) == 2 and set(labels) <= set(IMAGE_LABELS)
