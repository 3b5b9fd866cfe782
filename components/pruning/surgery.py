"""Build the smaller model: the same layers with fewer channels, surviving weights copied.

Called by ``components.prune`` and the budget search once the units to remove are chosen.
The new model is a ``keras.models.clone_model`` of the old one whose producers are rebuilt
from their config with fewer ``filters``/``units``; every other layer is rebuilt from its
own config, so layer types, names, activations, regularizers and graph stay as they were.
Weights are then sliced from the old layers by position:

- a producer keeps its surviving filters (kernel's last axis, bias) and the input slice of
  its kernel (axis -2) for its input's surviving channels (after Flatten, every spatial
  copy of them);
- a depthwise convolution keeps its surviving channels' kernels (axis -2) and biases;
- BatchNormalization keeps gamma, beta and the moving mean and variance of its channels.

Because removed channels vanish from the weights rather than being zeroed, the int8 model
TFLM runs is smaller in flash, arena and MACs. Removing nothing rebuilds an identical model.
"""

from __future__ import annotations

import keras
import numpy as np

from components.errors import ComponentError
from components.pruning.dependency import ChannelAnalysis

#: The config key holding a producer's output width.
_WIDTH_KEYS = ("filters", "units")


def shrink(model, analysis: ChannelAnalysis, removed: frozenset[int]):
    """A new model without the channels of the ``removed`` units, weights copied over."""

    def clone(layer):
        return layer.__class__.from_config(_config(layer, analysis, removed))

    try:
        smaller = keras.models.clone_model(model, clone_function=clone)
        for layer in model.layers:
            if layer.weights:
                smaller.get_layer(layer.name).set_weights(_weights(layer, analysis, removed))
    except (ValueError, TypeError) as e:
        raise ComponentError(
            f"rebuilding {model.name} without the pruned channels failed: {e}"
        ) from e
    return smaller


def _config(layer, analysis: ChannelAnalysis, removed: frozenset[int]) -> dict:
    config = layer.get_config()
    if analysis.roles.get(layer.name) == "producer":
        key = next(k for k in _WIDTH_KEYS if k in config)
        config[key] = len(analysis.kept(analysis.producers[layer.name], removed))
    return config


def _weights(layer, analysis: ChannelAnalysis, removed: frozenset[int]) -> list[np.ndarray]:
    weights = layer.get_weights()
    role = analysis.roles.get(layer.name)
    if role == "producer":
        return _producer_weights(layer, weights, analysis, removed)
    if role == "channelwise":
        kept = analysis.kept(analysis.inputs[layer.name], removed)
        if isinstance(layer, keras.layers.BatchNormalization):
            return [w[kept] for w in weights]
        return [np.take(weights[0], kept, axis=-2), *(w[kept] for w in weights[1:])]
    return weights


def _producer_weights(layer, weights, analysis: ChannelAnalysis, removed) -> list[np.ndarray]:
    expected = 2 if layer.use_bias else 1
    if len(weights) != expected:
        raise ComponentError(
            f"layer {layer.name} has {len(weights)} weight arrays where pruning expects "
            f"{expected} (kernel{' and bias' if layer.use_bias else ''}): a quantized or "
            f"LoRA layer cannot be pruned"
        )
    outputs = analysis.kept(analysis.producers[layer.name], removed)
    inputs = analysis.kept(analysis.inputs[layer.name], removed)
    kernel = np.take(np.take(weights[0], inputs, axis=-2), outputs, axis=-1)
    return [kernel, *(b[outputs] for b in weights[1:])]
