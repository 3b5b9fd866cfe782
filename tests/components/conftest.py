"""Fixtures for component tests: a tiny, learnable feature set and a model trained on it.

The features are MFCC-shaped (49x10) with three classes, each a bump in its own band of
coefficients plus noise, so two epochs of a narrow DS-CNN separate them; they are written
as the TFRecords the Beam extraction produces, so the readers under test are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.artifacts import ExampleSet, Preprocessing

LABELS = ("_silence_", "_unknown_", "yes")
SHAPE = (49, 10, 1)
COUNTS = {"train": 90, "validation": 24, "test": 30}


def write_feature_set(root: Path, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> ExampleSet:
    import tensorflow as tf

    from components.example_records import serialize_example

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in COUNTS.items():
        with tf.io.TFRecordWriter(str(root / f"{split}-00000-of-00001.tfrecord")) as writer:
            for i in range(count):
                label = i % len(LABELS)
                x = rng.normal(0.0, 1.0, shape).astype(np.float32)
                x[:, 3 * label : 3 * label + 3] += 4.0
                writer.write(serialize_example(x, label, f"{split}/{i:04d}"))
    return ExampleSet(
        directory=root,
        labels=LABELS,
        example_shape=shape,
        preprocessing=Preprocessing(kind="audio", frontend="mfcc"),
        counts=COUNTS,
    )


@pytest.fixture(scope="session")
def feature_set(tmp_path_factory) -> ExampleSet:
    return write_feature_set(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def trained(feature_set, tmp_path_factory):
    from components import train

    spec = train.TrainSpec(
        model={"filters": 16, "blocks": 1}, epochs=3, batch_size=16, learning_rate=0.01
    )
    return train.run(spec, feature_set, tmp_path_factory.mktemp("model"), progress=False)


@pytest.fixture(scope="session")
def quantized(trained, feature_set, tmp_path_factory):
    from components import quantize

    spec = quantize.QuantizeSpec(representative_examples=32)
    return quantize.run(spec, trained, feature_set, tmp_path_factory.mktemp("int8"))
