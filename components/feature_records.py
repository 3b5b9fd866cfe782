"""Read the feature TFRecords the Beam extraction wrote, as tf.data or as numpy arrays.

Record layout (written by ``components.extract_features``): a ``tf.train.Example`` with
``features`` (float list, row-major ``FeatureSet.feature_shape``), ``label`` (int64) and
``key`` (the clip and augmented copy it came from). Training, quantization and evaluation
all read through here, so the layout has one reader.
"""

from __future__ import annotations

import numpy as np

from components.artifacts import FeatureSet
from components.errors import ComponentError


def dataset(
    features: FeatureSet, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0
):
    """A batched ``tf.data.Dataset`` of (features (rows, cols, 1), label) for ``split``.

    Built from the key-ordered arrays of :func:`load_split`, not by streaming the shards:
    the order of records inside Beam's shards depends on the runner's bundling, and a
    seeded shuffle of a differently ordered stream trains a different model. KWS feature
    sets fit in memory (the full Speech Commands set is under 200 MB of MFCCs).
    """
    import tensorflow as tf

    x, y = load_split(features, split)
    ds = tf.data.Dataset.from_tensor_slices((x[..., None], y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_split(
    features: FeatureSet,
    split: str,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy, ordered by clip key (the same order whatever the runner).

    Returns features (N, rows, cols) float32 and labels (N,) int64, at most ``limit`` rows.
    """
    rows = sorted(_parsed(features, split).as_numpy_iterator(), key=lambda r: r["key"])
    rows = rows[:limit] if limit else rows
    x = np.zeros((len(rows), *features.feature_shape), dtype=np.float32)
    y = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        x[i] = row["features"].reshape(features.feature_shape)
        y[i] = row["label"]
    return x, y


def _parsed(features: FeatureSet, split: str):
    import tensorflow as tf

    files = [str(f) for f in features.files(split)]
    if not files:
        raise ComponentError(f"no {split}-*.tfrecord files in {features.directory}")
    size = int(np.prod(features.feature_shape))
    schema = {
        "features": tf.io.FixedLenFeature([size], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "key": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    return tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, schema))
