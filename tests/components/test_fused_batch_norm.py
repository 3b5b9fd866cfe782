"""Fused batch norm: the same training step as Keras' BatchNormalization, on one kernel."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from components.fused_batch_norm import fused_batch_norm  # noqa: E402


def _model(axis: int = -1):
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, axis=axis, name="norm")(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _step(model, x, y):
    """One training-mode forward and backward pass: outputs, gradients, moving statistics."""

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(tf.square(out - y))
        return out, tape.gradient(loss, model.trainable_variables)

    out, grads = step(x, y)
    norm = model.get_layer("norm")
    stats = [norm.moving_mean.numpy(), norm.moving_variance.numpy()]
    graph = step.get_concrete_function(x, y).graph
    ops = {op.type for op in graph.get_operations()}
    for f in graph._functions.values():
        ops |= {node.op for node in f.definition.node_def}
    return out.numpy(), [g.numpy() for g in grads], stats, ops


def _pair(**kwargs):
    """The same model and batch, stepped by Keras' call and by the fused one."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (8, 12, 12, 3)).astype("float32"))
    y = tf.constant(rng.normal(size=(8, 2)).astype("float32"))
    keras.utils.set_random_seed(1)
    plain = _model(**kwargs)
    fused = _model(**kwargs)
    fused.set_weights(plain.get_weights())
    expected = _step(plain, x, y)
    with fused_batch_norm(fused):
        got = _step(fused, x, y)
    return expected, got, fused


def test_fused_step_computes_what_keras_computes():
    (out, grads, stats, keras_ops), (f_out, f_grads, f_stats, fused_ops), _ = _pair()
    assert "FusedBatchNormV3" in fused_ops and "FusedBatchNormV3" not in keras_ops
    np.testing.assert_allclose(f_out, out, rtol=1e-4, atol=1e-5)
    for g, fg in zip(grads, f_grads, strict=True):
        np.testing.assert_allclose(fg, g, rtol=1e-3, atol=1e-6)
    for s, fs in zip(stats, f_stats, strict=True):  # the biased variance, as Keras keeps
        np.testing.assert_allclose(fs, s, rtol=1e-5, atol=1e-6)


def test_layers_get_keras_call_back_and_save_as_plain_keras(tmp_path):
    *_, fused = _pair()
    assert "call" not in vars(fused.get_layer("norm"))
    fused.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom objects needed
    assert type(loaded.get_layer("norm")) is keras.layers.BatchNormalization


def test_what_the_kernel_does_not_cover_keeps_keras_call():
    """Normalising another axis than the last: Keras' ops, the same numbers."""
    (out, _, stats, _), (f_out, _, f_stats, fused_ops), _ = _pair(axis=1)
    assert "FusedBatchNormV3" not in fused_ops
    np.testing.assert_allclose(f_out, out, rtol=1e-6)
    np.testing.assert_allclose(f_stats[1], stats[1], rtol=1e-6)
