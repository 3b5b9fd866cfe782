"""Reading example TFRecords back: key order, and twins kept in one batch (pair_by_name)."""

from __future__ import annotations

import numpy as np

from components import example_records
from components.artifacts import ExampleSet, Preprocessing


def _twin_set(root, pairs: int, odd_one_out: bool) -> ExampleSet:
    """Generated-scene keys: ``person/NNNNN.jpg`` and its twin ``non_person/NNNNN.jpg``;
    each example's value is its pair number (negative for non_person), so a batch shows
    which examples travelled together."""
    import tensorflow as tf

    shape = (2, 2, 1)
    names = [("person", i) for i in range(pairs + odd_one_out)]
    names += [("non_person", i) for i in range(pairs)]
    with tf.io.TFRecordWriter(str(root / "train-00000-of-00001.tfrecord")) as writer:
        for label, i in reversed(names):  # the reader orders by key, not by record
            value = np.full(shape, i + 1 if label == "person" else -(i + 1), np.float32)
            writer.write(example_records.serialize_example(
                value, label == "person", f"{label}/{i:05d}.jpg"
            ))  # fmt: skip
    return ExampleSet(
        directory=root,
        labels=("non_person", "person"),
        example_shape=shape,
        preprocessing=Preprocessing(kind="image", image_size=(2, 2), channels=1),
        counts={"train": len(names)},
    )


def test_name_groups_join_keys_of_one_file_name_across_class_folders() -> None:
    keys = ["non_person/00000.jpg", "non_person/00001.jpg", "person/00000.jpg",
            "person/00001.jpg", "person/00002.jpg"]  # fmt: skip
    assert example_records.name_groups(keys) == [[0, 2], [1, 3], [4]]


def test_paired_batches_hold_each_scene_with_its_twin(tmp_path) -> None:
    examples = _twin_set(tmp_path, pairs=20, odd_one_out=True)
    ds = example_records.dataset(examples, "train", 8, shuffle=True, seed=3, pair_by_name=True)

    seen = []
    for x, y in ds.as_numpy_iterator():
        values = x[:, 0, 0, 0].astype(int)
        assert len(values) <= 9  # whole groups, about 8 examples
        assert list(y) == [int(v > 0) for v in values]  # labels follow their examples
        pairs = [v for v in values if v > 0]
        assert all(-v in values for v in pairs if v <= 20)  # each twin in the same batch
        seen += list(values)
    assert sorted(seen) == sorted([*range(1, 22), *range(-20, 0)])  # every example, once
    assert seen[:2] != [1, -1]  # shuffled


def test_unpaired_shuffle_splits_twins(tmp_path) -> None:
    examples = _twin_set(tmp_path, pairs=20, odd_one_out=False)
    ds = example_records.dataset(examples, "train", 8, shuffle=True, seed=3)

    apart = 0
    for x, _ in ds.as_numpy_iterator():
        values = set(x[:, 0, 0, 0].astype(int))
        apart += sum(-v not in values for v in values if v > 0)
    assert apart > 10
