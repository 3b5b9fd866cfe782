"""Train component: fit a DS-CNN on the extracted features with tf.data and Keras 3.

Called by the KWS pipeline after feature extraction. Deterministic for a seed (Keras and
tf.data seeded, op determinism on), stops early on the validation loss and keeps the best
weights. Returns the per-epoch history so the tracking component can log training curves.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from components.artifacts import FeatureSet, TrainedModel
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)

PositiveInt = Annotated[int, Field(gt=0)]


@component_spec
class TrainSpec:
    """Architecture and optimiser settings; defaults are MLPerf Tiny's DS-CNN."""

    architecture: Literal["ds_cnn"] = "ds_cnn"
    filters: PositiveInt = 64
    blocks: PositiveInt = 4
    dropout: Annotated[float, Field(ge=0, lt=0.5)] = 0.2
    epochs: PositiveInt = 50
    batch_size: PositiveInt = 50
    learning_rate: Annotated[float, Field(gt=0)] = 0.005  # peak; cosine decay to 5% of it
    early_stopping_patience: PositiveInt = 10
    seed: int = 0


def run(
    spec: TrainSpec, features: FeatureSet, out_dir: Path, progress: bool = True
) -> TrainedModel:
    """Train on the ``train`` split, validate on ``validation``, save ``model.keras``."""
    import keras
    import tensorflow as tf

    from components import ds_cnn, feature_records
    from components.progress import EpochProgress

    if not features.counts.get("train"):
        raise ComponentError(f"no training examples in {features.directory}")
    keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    train = feature_records.dataset(
        features, "train", spec.batch_size, shuffle=True, seed=spec.seed
    )
    val = feature_records.dataset(features, "validation", spec.batch_size)
    has_val = bool(features.counts.get("validation"))
    model = ds_cnn.build(
        features.feature_shape,
        len(features.labels),
        filters=spec.filters,
        blocks=spec.blocks,
        dropout=spec.dropout,
    )
    steps = spec.epochs * math.ceil(features.counts["train"] / spec.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps, alpha=0.05)
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    monitor = "val_loss" if has_val else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=spec.early_stopping_patience, restore_best_weights=True
        ),
        EpochProgress(spec.epochs, enabled=progress),
    ]
    fit = model.fit(
        train,
        validation_data=val if has_val else None,
        epochs=spec.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,  # tf.data shuffles
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.keras"
    model.save(path)
    history = {k: tuple(float(v) for v in vs) for k, vs in fit.history.items()}
    log.info(
        "trained %d epochs, %d parameters -> %s", len(history["loss"]), model.count_params(), path
    )
    return TrainedModel(
        path=path,
        labels=features.labels,
        input_shape=features.feature_shape,
        history=history,
        params=int(model.count_params()),
    )
