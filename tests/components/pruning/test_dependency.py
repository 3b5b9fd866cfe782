"""Channel dependency groups on hand-built residual, depthwise and concatenating graphs."""

from __future__ import annotations

from components.pruning import dependency
from tests.components.pruning import helpers
from tests.int8_models import seeded_keras


def _group(analysis, producer):
    return next(g for g in analysis.groups if producer in g.producers)


def test_add_ties_its_inputs_into_one_group():
    analysis = dependency.analyse(helpers.residual_model())
    residual = _group(analysis, "a")
    assert residual.producers == ("a", "b")
    assert residual.followers == ("bn_a", "b", "c")  # b reads a's channels as well
    assert len(residual.units) == 6 and residual.frozen_units == 0
    assert _group(analysis, "c").followers == ("out",)


def test_classifier_outputs_are_frozen():
    analysis = dependency.analyse(helpers.residual_model())
    classifier = _group(analysis, "out")
    assert classifier.units == () and classifier.frozen_units == 3


def test_depthwise_and_batch_norm_follow_their_input():
    analysis = dependency.analyse(helpers.depthwise_model())
    assert analysis.roles["dw"] == analysis.roles["bn"] == "channelwise"
    assert _group(analysis, "a").followers == ("dw", "bn", "b")
    assert len(analysis.inputs["out"]) == 4 * 4 * 5  # flatten repeats b's channels per pixel
    assert set(analysis.unit_of[analysis.inputs["out"]]) == set(_group(analysis, "b").units)


def test_concatenate_maps_into_its_range_and_add_ties_across_it():
    analysis = dependency.analyse(helpers.concat_model())
    tied = _group(analysis, "a")
    assert set(tied.producers) == {"a", "b", "d"}  # Add(concat(a, b), d)
    assert len(tied.units) == 8
    assert {"e", "c"} <= set(tied.followers)
    assert _group(analysis, "e").producers == ("e",)


def test_model_input_channels_are_never_pruned():
    keras = seeded_keras()
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 1, name="a")(inputs)
    x = keras.layers.Add()([inputs, x])  # tied to the input: frozen
    x = keras.layers.Conv2D(4, 1, name="b")(x)
    x = keras.layers.Flatten()(keras.layers.GlobalAveragePooling2D()(x))
    analysis = dependency.analyse(keras.Model(inputs, keras.layers.Dense(2)(x)))
    assert _group(analysis, "a").units == () and _group(analysis, "a").frozen_units == 3
    assert len(_group(analysis, "b").units) == 4


def test_unknown_layers_freeze_what_they_touch():
    keras = seeded_keras()
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1, name="a")(inputs)
    x = keras.layers.Reshape((4, 16), name="reshape")(x)  # mixes axes: opaque
    x = keras.layers.Conv1D(5, 1, name="b")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    analysis = dependency.analyse(keras.Model(inputs, keras.layers.Dense(2)(x)))
    assert analysis.roles["reshape"] == "opaque"
    assert _group(analysis, "a").units == ()
    assert len(_group(analysis, "b").units) == 5


def test_shared_layer_unifies_its_calls():
    keras = seeded_keras()
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(inputs)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    shared = keras.layers.BatchNormalization(name="bn")
    x = keras.layers.Concatenate()([shared(a), shared(b)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    analysis = dependency.analyse(keras.Model(inputs, keras.layers.Dense(2)(x)))
    assert set(_group(analysis, "a").producers) == {"a", "b"}  # one BN's weights for both
