"""Read the example TFRecords a Beam preprocessing wrote, as tf.data or as numpy arrays.

Record layout (written through :func:`serialize_example`): a ``tf.train.Example`` with
``label`` (int64), ``key`` (the input and augmented copy it came from) and the example,
row-major ``ExampleSet.example_shape``: ``features`` (float32 list) or, for uint8 storage,
``pixels`` (raw bytes, read back as value / 255, the [0, 1] scaling MLPerf Tiny's VWW
reference feeds its model). Training, quantization and evaluation all read through here,
so the layout has one writer and one reader.
"""

from __future__ import annotations

import numpy as np

from components.artifacts import ExampleSet
from components.errors import ComponentError

STORAGES = ("float32", "uint8")


def serialize_example(values: np.ndarray, label: int, key: str) -> bytes:
    """One record: the example (float32 as ``features``, uint8 as ``pixels``), its label
    (int64) and key (bytes)."""
    import tensorflow as tf

    if values.dtype == np.uint8:
        example = tf.train.Feature(bytes_list=tf.train.BytesList(value=[values.tobytes()]))
        name = "pixels"
    else:
        example = tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel()))
        name = "features"
    feature = {
        name: example,
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def dataset(
    examples: ExampleSet,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    augment=None,
    pair_by_name: bool = False,
):
    """A batched ``tf.data.Dataset`` of (example ``example_shape``, label) for ``split``.

    Built from the key-ordered arrays of :func:`load_split`, not by streaming the shards:
    the order of records inside Beam's shards depends on the runner's bundling, and a
    seeded shuffle of a differently ordered stream trains a different model. ``augment``
    (a function of a batch) runs on each training batch after shuffling. With
    ``pair_by_name`` the examples whose keys end in the same file name (one per class
    folder: a generated scene with and without its people) are shuffled as one unit and
    batched whole, so each lands in the same batch as its twin (batches then hold about
    ``batch_size`` examples).
    """
    import tensorflow as tf

    x, y, keys = _key_ordered(examples, split)
    if pair_by_name:  # batches of whole groups: about batch_size examples each
        groups = name_groups(keys)
        per_batch = max(1, round(batch_size * len(groups) / max(len(keys), 1)))
        ds = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(groups, dtype=tf.int64))
        if shuffle:
            ds = ds.shuffle(len(groups), seed=seed, reshuffle_each_iteration=True)
        x, y = tf.constant(x), tf.constant(y)
        ds = ds.ragged_batch(per_batch).map(lambda g: (tf.gather(x, g.flat_values),
                                                       tf.gather(y, g.flat_values)))  # fmt: skip
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda xb, yb: (augment(xb), yb), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_split(
    examples: ExampleSet,
    split: str,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy, ordered by key (the same order whatever the runner).

    Returns examples (N, *example_shape) float32 and labels (N,) int64, at most ``limit``.
    """
    x, y, _ = _key_ordered(examples, split, limit)
    return x, y


def name_groups(keys: list[str]) -> list[list[int]]:
    """Indices of ``keys`` grouped by file name (the part after the last ``/``), groups in
    order of their first member."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key.rsplit("/", 1)[-1], []).append(i)
    return list(groups.values())


def _key_ordered(examples: ExampleSet, split: str, limit: int | None = None):
    rows = sorted(_parsed(examples, split).as_numpy_iterator(), key=lambda r: r["key"])
    rows = rows[:limit] if limit else rows
    x = np.zeros((len(rows), *examples.example_shape), dtype=np.float32)
    y = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        x[i] = _values(examples, row).reshape(examples.example_shape)
        y[i] = row["label"]
    return x, y, [row["key"].decode() for row in rows]


def _values(examples: ExampleSet, row: dict) -> np.ndarray:
    if examples.storage == "uint8":
        return np.frombuffer(row["pixels"], dtype=np.uint8).astype(np.float32) / 255.0
    return row["features"]


def _parsed(examples: ExampleSet, split: str):
    import tensorflow as tf

    if examples.storage not in STORAGES:
        raise ComponentError(f"storage {examples.storage!r} is not one of {STORAGES}")
    files = [str(f) for f in examples.files(split)]
    if not files:
        raise ComponentError(f"no {split}-*.tfrecord files in {examples.directory}")
    schema = {
        "label": tf.io.FixedLenFeature([], tf.int64),
        "key": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    if examples.storage == "uint8":
        schema["pixels"] = tf.io.FixedLenFeature([], tf.string)
    else:
        size = int(np.prod(examples.example_shape))
        schema["features"] = tf.io.FixedLenFeature([size], tf.float32)
    return tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, schema))
