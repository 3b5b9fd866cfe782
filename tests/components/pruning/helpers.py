"""Tiny hand-built graphs and a reference for pruning: zeroing channels instead of removing them.

``zeroed`` keeps every shape and silences the removed channels (filters and biases to 0,
batch norm's gamma and beta to 0), so after ReLU, Add and pooling those channels are 0 and
contribute nothing: the pruned model must compute what the zeroed one does.
"""

from __future__ import annotations

import numpy as np

from components.pruning import dependency, ranking, surgery
from tests.int8_models import seeded_keras


def residual_model():
    """conv a -> BN -> ReLU; conv b; Add(a, b) -> conv c -> global pool -> dense."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    a = layers.ReLU(name="relu_a")(layers.BatchNormalization(name="bn_a")(
        layers.Conv2D(6, 3, padding="same", name="a")(inputs)))  # fmt: skip
    b = layers.Conv2D(6, 1, name="b")(a)
    x = layers.Add(name="add")([a, b])
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def depthwise_model():
    """conv a -> depthwise -> BN -> ReLU -> conv b -> flatten (4x4 spatial) -> dense."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="a")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.ReLU(name="relu")(layers.BatchNormalization(name="bn")(x))
    x = layers.Conv2D(5, 1, activation="relu", name="b")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def concat_model():
    """conv a (3) and conv b (5) -> Concatenate -> Add with conv d (8) -> conv c -> dense;
    and Concatenate(a, b) -> conv e, so e's input slice spans both ranges."""
    keras = seeded_keras()
    layers = keras.layers
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 1, activation="relu", name="a")(inputs)
    b = layers.Conv2D(5, 3, padding="same", activation="relu", name="b")(inputs)
    joined = layers.Concatenate(name="cat")([a, b])
    e = layers.Conv2D(4, 1, activation="relu", name="e")(joined)
    d = layers.Conv2D(8, 1, activation="relu", name="d")(e)
    x = layers.Add(name="add")([joined, d])
    x = layers.Conv2D(4, 1, activation="relu", name="c")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


def randomize_batch_norm(model, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics, so that copying them is tested."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            size = gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, size), rng.normal(0, 0.3, size),
                               rng.normal(0, 0.3, size), rng.uniform(0.5, 2.0, size)])  # fmt: skip


def prune(model, ratio: float, **options):
    """The model pruned at ``ratio`` (L1, uniform), the analysis and the removed units."""
    analysis = dependency.analyse(model)
    removed = ranking.select(analysis, ranking.unit_scores(model, analysis), ratio, **options)
    return surgery.shrink(model, analysis, removed), analysis, removed


def zeroed(model, analysis, removed):
    """A copy of ``model`` with the removed channels silenced instead of removed."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        role = analysis.roles.get(layer.name)
        if role == "producer":
            _zero_outputs(layer, analysis.unit_of[analysis.producers[layer.name]], removed)
        elif role == "channelwise":
            _zero_channels(layer, analysis.unit_of[analysis.inputs[layer.name]], removed)
    return copy


def _zero_outputs(layer, units, removed) -> None:
    gone = np.isin(units, list(removed))
    weights = layer.get_weights()
    weights[0][..., gone] = 0
    for bias in weights[1:]:
        bias[gone] = 0
    layer.set_weights(weights)


def _zero_channels(layer, units, removed) -> None:
    import keras

    gone = np.isin(units, list(removed))
    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
        weights[0][gone] = 0  # gamma
        weights[1][gone] = 0  # beta
    elif len(weights) > 1:
        weights[1][gone] = 0  # a depthwise bias; its kernel sees zeros already
    layer.set_weights(weights)
