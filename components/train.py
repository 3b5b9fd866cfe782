"""Train component: fit the configured architecture on an example set with tf.data and Keras 3.

The first stage of the model chain, for every pipeline. The model comes from the builder
registry (``components.models``) by ``architecture``; the example set's ``example_shape``
is its input, so nothing here knows the task. Deterministic for a seed (Keras and tf.data
seeded, op determinism on), stops early on the validation loss and keeps the best weights.
Two learning-rate schedules: cosine decay (the KWS default) and MLPerf Tiny's stepped
schedule (the VWW recipe: the rate halves at each of ``step_epochs``). Image augmentation
(rotation, shifts, zoom, horizontal flip, as MLPerf Tiny's VWW training) runs on training
batches only and never becomes part of the saved model. Returns the per-epoch history so
the tracking component can log training curves.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from components import models
from components.artifacts import ExampleSet, TrainedModel
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)

PositiveInt = Annotated[int, Field(gt=0)]
Architecture = Literal["ds_cnn", "mobilenet_v1", "mobilenet_v2", "mcunet"]


@component_spec
class AugmentSpec:
    """Random image transforms per training batch; the defaults are MLPerf Tiny's VWW ones."""

    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 10.0
    shift_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    zoom_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    horizontal_flip: bool = True


@component_spec
class TrainSpec:
    """Architecture (with its own ``model`` options), optimiser, schedule, augmentation."""

    architecture: Architecture = "ds_cnn"
    model: dict[str, Any] = Field(default_factory=dict)
    epochs: PositiveInt = 50
    batch_size: PositiveInt = 50
    learning_rate: Annotated[float, Field(gt=0)] = 0.005  # peak (cosine) or initial (step)
    schedule: Literal["cosine", "step"] = "cosine"
    step_epochs: tuple[PositiveInt, ...] = ()  # step schedule: halve the rate at these epochs
    augment: AugmentSpec | None = None
    early_stopping_patience: PositiveInt = 10
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _resolve_model_options(self) -> TrainSpec:
        """Check ``model`` against the architecture's options and write out every default."""
        try:
            resolved = models.resolved_options(self.architecture, self.model)
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"model.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"{self.architecture} options: {problems}") from None
        object.__setattr__(self, "model", resolved)
        return self


def run(
    spec: TrainSpec, examples: ExampleSet, out_dir: Path, progress: bool = True
) -> TrainedModel:
    """Train on the ``train`` split, validate on ``validation``, save ``model.keras``."""
    import keras
    import tensorflow as tf

    from components import example_records

    if not examples.counts.get("train"):
        raise ComponentError(f"no training examples in {examples.directory}")
    keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    train = example_records.dataset(
        examples, "train", spec.batch_size, shuffle=True, seed=spec.seed,
        augment=_augmenter(spec.augment, spec.seed),
    )  # fmt: skip
    has_val = bool(examples.counts.get("validation"))
    val = example_records.dataset(examples, "validation", spec.batch_size) if has_val else None
    model = models.build(
        spec.architecture, examples.example_shape, len(examples.labels), spec.model
    )
    history = fit(
        model, train, val, _schedule(spec, examples.counts["train"]), spec.epochs,
        spec.early_stopping_patience, progress,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.keras"
    model.save(path)
    log.info(
        "trained %s %d epochs, %d parameters -> %s",
        spec.architecture, len(history["loss"]), model.count_params(), path,
    )  # fmt: skip
    return TrainedModel(
        path=path,
        labels=examples.labels,
        input_shape=examples.example_shape,
        history=history,
        params=int(model.count_params()),
    )


def fit(model, train, val, learning_rate, epochs: int, patience: int, progress: bool = True):
    """Compile ``model`` with Adam at ``learning_rate`` (a rate or a schedule), fit it on the
    ``train`` dataset (validating on ``val`` when given), stop early keeping the best epoch,
    and return the per-epoch history. Pruning's fine-tuning runs through here too."""
    import keras

    from components.progress import EpochProgress

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss" if val is not None else "loss",
            patience=patience,
            restore_best_weights=True,
        ),
        EpochProgress(epochs, enabled=progress),
    ]
    done = model.fit(
        train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=0,
        shuffle=False,  # tf.data shuffles
    )  # fmt: skip
    return {k: tuple(float(v) for v in vs) for k, vs in done.history.items()}


def _schedule(spec: TrainSpec, train_examples: int):
    """Cosine decay to 5% of the peak, or the rate halved at each of ``step_epochs``."""
    import keras

    steps_per_epoch = math.ceil(train_examples / spec.batch_size)
    if spec.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            spec.learning_rate, spec.epochs * steps_per_epoch, alpha=0.05
        )
    if not spec.step_epochs:
        return spec.learning_rate
    boundaries = [e * steps_per_epoch for e in sorted(spec.step_epochs)]
    values = [spec.learning_rate / 2**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _augmenter(spec: AugmentSpec | None, seed: int):
    """A function of an image batch applying ``spec``'s random transforms, or None."""
    if spec is None:
        return None
    import keras

    layers = [
        keras.layers.RandomRotation(spec.rotation_degrees / 360.0, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(
            spec.shift_fraction, spec.shift_fraction, fill_mode="nearest", seed=seed + 1
        ),
        keras.layers.RandomZoom(spec.zoom_fraction, fill_mode="nearest", seed=seed + 2),
    ]
    if spec.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 3))
    pipeline = keras.Sequential(layers)
    return lambda batch: pipeline(batch, training=True)
