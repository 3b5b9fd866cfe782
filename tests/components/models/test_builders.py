"""Every registered architecture builds through the registry, validates its options, and the
vision ones convert to int8 and run on TFLM (at 48x48 to keep the conversions short)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydantic
import pytest

from components import models
from components.errors import ComponentError
from components.models import mcunet, mobilenet_v1, mobilenet_v2

VISION = ("mobilenet_v1", "mobilenet_v2", "mcunet")
#: Input shapes each architecture is built on: its own, another resolution, grayscale.
SHAPES = {
    "ds_cnn": ((49, 10, 1),),
    **{name: ((96, 96, 3), (64, 80, 3), (96, 96, 1)) for name in (*VISION, "plain_cnn")},
}
DEFAULTS = {
    "ds_cnn": {"filters": 64, "blocks": 4, "dropout": 0.2},
    "mobilenet_v1": {"alpha": 0.25, "dropout": 0.0, "l2": 1e-4},
    "mobilenet_v2": {"alpha": 0.35, "dropout": 0.2, "l2": 1e-4},
    "mcunet": {"alpha": 0.5, "dropout": 0.2, "l2": 1e-4},
    "plain_cnn": {
        "filters": 8,
        "blocks": 4,
        "dropout": 0.0,
        "l2": 1e-4,
        "blur_sigma": 0.0,
        "stem_stride": 1,
    },
}
#: What TFLM's reference kernels run and every vision model may use.
VISION_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "AVERAGE_POOL_2D",
    "RESHAPE",
    "FULLY_CONNECTED",
    "SOFTMAX",
}
TFLM_SIZE = (48, 48, 3)
TFLM_CLASSES = 3


def settled(model, x, seed: int = 0):
    """Give a freshly built model a trained model's scales: random biases, batch-norm
    gammas and betas, then batch-norm statistics from one pass over ``x``.

    Untrained, 13 Glorot-initialized depthwise layers shrink activations to ~1e-9, and TFLM
    aborts the process on the resulting multipliers; a zero Dense bias would also vanish from
    the .tflite. Momentum 0 makes the training-mode pass write the batch's statistics.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for weight in layer.weights:
            leaf = weight.path.rsplit("/", 1)[-1]
            if leaf in ("bias", "beta"):
                weight.assign(rng.normal(0.0, 0.1, weight.shape).astype(np.float32))
            elif leaf == "gamma":
                weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model


def int8_model(name: str, shape, num_classes: int, values=None, seed: int = 0):
    """(float Keras model, int8 .tflite bytes) of ``name`` with settled random weights,
    calibrated on 8 random [0, 1] images and converted the project's way at batch 1."""
    import keras

    from components.quantize import convert_int8

    keras.utils.set_random_seed(seed)
    model = models.build(name, shape, num_classes, values)
    x = np.random.default_rng(seed).uniform(0, 1, (8, *shape)).astype(np.float32)
    settled(model, x, seed)
    one = keras.models.clone_model(model, input_tensors=keras.Input(batch_shape=(1, *shape)))
    one.set_weights(model.get_weights())
    return model, convert_int8(one, x)


@pytest.fixture(scope="module")
def converted():
    """Each vision model at 48x48x3, 3 classes, default options: (Keras model, int8 bytes)."""
    return {name: int8_model(name, TFLM_SIZE, TFLM_CLASSES) for name in VISION}


def test_every_architecture_is_tested_here() -> None:
    assert set(models.ARCHITECTURES) == set(SHAPES)


@pytest.mark.parametrize(
    ("name", "shape"), [(n, s) for n in sorted(models.ARCHITECTURES) for s in SHAPES[n]]
)
def test_builds_with_exact_input_and_output(name: str, shape) -> None:
    model = models.build(name, shape, 5)
    assert tuple(model.input_shape) == (None, *shape)
    assert tuple(model.output_shape) == (None, 5)
    assert model.count_params() > 0


def test_modules_import_without_keras() -> None:
    code = (
        "import sys\n"
        "from components.models import ds_cnn, mcunet, mobilenet_v1, mobilenet_v2, plain_cnn\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_are_recorded(name: str) -> None:
    assert models.resolved_options(name) == DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_unknown_options_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="no_such_option"):
        models.options(name, {"no_such_option": 1})
    with pytest.raises(pydantic.ValidationError):
        models.build(name, SHAPES[name][0], 2, {"no_such_option": 1})


@pytest.mark.parametrize("name", VISION)
@pytest.mark.parametrize("values", [{"alpha": 0}, {"dropout": 1.0}, {"l2": -1e-4}])
def test_bad_values_are_refused(name: str, values) -> None:
    with pytest.raises(pydantic.ValidationError):
        models.options(name, values)


def test_unknown_architecture_raises_component_error() -> None:
    with pytest.raises(ComponentError, match="unknown architecture 'resnet'"):
        models.build("resnet", (96, 96, 3), 2)
    with pytest.raises(ComponentError):
        models.options("resnet")


@pytest.mark.parametrize("name", VISION)
def test_alpha_widens_the_model(name: str) -> None:
    # Parameter counts do not depend on the resolution, so build small.
    counts = [
        models.build(name, (32, 32, 3), 2, {"alpha": a}).count_params() for a in (0.25, 0.5, 1.0)
    ]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("name", VISION)
def test_l2_on_full_convolution_kernels_only_and_dropout_optional(name: str) -> None:
    import keras

    model = models.build(name, (32, 32, 3), 2, {"l2": 1e-3, "dropout": 0.1})
    depthwise = keras.layers.DepthwiseConv2D
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, depthwise)
    ]
    assert len(model.losses) == len(convs) > 0
    assert any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    bare = models.build(name, (32, 32, 3), 2, {"l2": 0.0, "dropout": 0.0})
    assert not bare.losses
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in bare.layers)


def test_mobilenet_channel_rules() -> None:
    assert [mobilenet_v1.channels(c, 0.25) for c in (32, 64, 1024)] == [8, 16, 256]
    # Keras' MobileNetV2 at 0.35: 16-channel stem, blocks of 8, 8, 16, 24, 32, 56, 112.
    assert mobilenet_v2.make_divisible(32 * 0.35) == 16
    table = mobilenet_v2.block_table(0.35)
    assert sorted({c for _, _, c, _ in table}) == [8, 16, 24, 32, 56, 112]
    assert len(table) == 17
    assert all(c % 8 == 0 for _, _, c, _ in mcunet.block_table(0.5))


def _expected_adds(table, stem: int) -> int:
    adds, channels = 0, stem
    for _, _, filters, stride in table:
        adds += stride == 1 and filters == channels
        channels = filters
    return adds


@pytest.mark.parametrize("name", VISION)
def test_int8_model_runs_on_tflm(name: str, converted) -> None:
    import tflm_ext
    from tflm_ext.model_graph import read_graph

    _, model_bytes = converted[name]
    graph = read_graph(model_bytes)
    assert [graph.tensors[t].dtype for t in (*graph.inputs, *graph.outputs)] == ["INT8", "INT8"]
    assert [graph.shape(t) for t in graph.inputs] == [(1, *TFLM_SIZE)]
    assert [graph.shape(t) for t in graph.outputs] == [(1, TFLM_CLASSES)]
    ops = [op.name for op in graph.ops]
    assert set(ops) <= VISION_OPS
    assert ops[-1] == "SOFTMAX"
    x = np.random.default_rng(1).uniform(0, 1, (4, *TFLM_SIZE)).astype(np.float32)
    scores = tflm_ext.run_batch(model_bytes, x).scores
    assert scores.shape == (4, TFLM_CLASSES)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=4 / 256)


def test_residual_adds_where_stride_1_and_channels_match(converted) -> None:
    from tflm_ext.model_graph import read_graph

    def adds(name: str) -> int:
        return sum(op.name == "ADD" for op in read_graph(converted[name][1]).ops)

    assert adds("mobilenet_v1") == 0
    v2 = mobilenet_v2.block_table(0.35)
    assert adds("mobilenet_v2") == _expected_adds(v2, 16) == 10
    mc = mcunet.block_table(0.5)
    assert adds("mcunet") == _expected_adds(mc, 8) == 7


def test_receptive_field_helper() -> None:
    assert mobilenet_v2.receptive_field([(3, 2), (3, 1)], 8) == 7
    assert mobilenet_v2.receptive_field([(3, 2), (3, 2), (3, 2), (3, 2)], 8) == 15
    assert mobilenet_v2.receptive_field([(3, 2), (7, 1)], 8) == 15
    assert mobilenet_v2.receptive_field([(5, 1)], 1) == 5


def test_mcunet_patch_stage_has_the_smaller_receptive_field() -> None:
    ours = mcunet.first_stage_receptive_field()
    theirs = mobilenet_v2.first_stage_receptive_field()
    assert (ours, theirs) == (19, 59)
    assert ours < theirs
    # Width changes channels, never the geometry.
    assert mcunet.first_stage_receptive_field(mcunet.Options(alpha=1.5)) == ours
    assert mobilenet_v2.first_stage_receptive_field(mobilenet_v2.Options(alpha=1.0)) == theirs


@pytest.mark.parametrize(
    ("name", "helper"),
    [
        ("mcunet", lambda: mcunet.first_stage_receptive_field()),
        ("mobilenet_v2", lambda: mobilenet_v2.first_stage_receptive_field()),
    ],
)
def test_receptive_field_matches_the_built_layers(name: str, helper) -> None:
    """The helper's figure from the Keras layers themselves, up to output stride 8."""
    import keras

    model = models.build(name, (32, 32, 3), 2)
    layers = [
        (layer.kernel_size[0], layer.strides[0])
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    assert mobilenet_v2.receptive_field(layers, 8) == helper()


def test_mcunet_patch_stage_window_on_the_int8_graph(converted) -> None:
    """tflm_ext's own tile geometry on the converted graph: one output pixel of the patch
    stage (the ops up to output stride 8) reads a 19 x 19 input window."""
    from tflm_ext import receptive_field as rf
    from tflm_ext.model_graph import read_graph
    from tflm_ext.stage_rules import stage_chain

    graph = read_graph(converted["mcunet"][1])
    side = TFLM_SIZE[0] // mcunet.PATCH_STAGE_STRIDE
    last = max(
        op.index
        for op in graph.ops
        if len(graph.shape(op.outputs[0])) == 4 and graph.shape(op.outputs[0])[1] >= side
    )
    chain = stage_chain(graph, 0, last)
    centre = rf.Span(side // 2, side // 2 + 1)
    window = rf.tile_regions(chain, rf.Region(centre, centre))[0]
    assert len(window.rows) == len(window.cols) == mcunet.first_stage_receptive_field()


def test_plain_cnn_widens_with_filters_and_refuses_what_it_cannot_build() -> None:
    counts = [models.build("plain_cnn", (32, 32, 3), 2, {"filters": f}).count_params()
              for f in (4, 8, 16)]  # fmt: skip
    assert counts[0] < counts[1] < counts[2]
    bad = ({"filters": 0}, {"blocks": 7}, {"dropout": 1.0}, {"l2": -1.0}, {"blur_sigma": -0.5})
    for values in (*bad, {"blur_sigma": 3.5}, {"stem_stride": 3}):
        with pytest.raises(pydantic.ValidationError):
            models.options("plain_cnn", values)
    with pytest.raises(ComponentError, match="below 1x1"):
        models.build("plain_cnn", (8, 8, 3), 2, {"blocks": 4})


def _assert_conv_macs(model_bytes: bytes, convs) -> None:
    """The graph's MACs are those of its 3x3 convolutions, (side, in, out) each, within 1%
    (the dense layer adds the rest)."""
    from tflm_ext.graph_stats import graph_stats

    expected = sum(side * side * 9 * c_in * c_out for side, c_in, c_out in convs)
    assert expected <= graph_stats(model_bytes).total_macs <= expected * 1.01


def test_plain_cnn_int8_model_runs_on_tflm() -> None:
    import tflm_ext
    from tflm_ext.model_graph import read_graph

    _, model_bytes = int8_model("plain_cnn", TFLM_SIZE, TFLM_CLASSES)
    graph = read_graph(model_bytes)
    ops = [op.name for op in graph.ops]
    assert ops.count("CONV_2D") == 4 and ops.count("MAX_POOL_2D") == 5
    assert set(ops) <= {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}
    x = np.random.default_rng(1).uniform(0, 1, (4, *TFLM_SIZE)).astype(np.float32)
    scores = tflm_ext.run_batch(model_bytes, x).scores
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=4 / 256)
    # 3x3 convolutions of 8, 16, 32, 64 filters at 48, 24, 12 and 6 pixels a side.
    _assert_conv_macs(model_bytes, ((48, 3, 8), (24, 8, 16), (12, 16, 32), (6, 32, 64)))


def test_plain_cnn_stem_stride_computes_the_first_map_at_half_resolution() -> None:
    """``stem_stride: 2`` strides the first convolution in place of its pooling: the maps
    after the first block, and so the rest of the network, are those of the pooled model."""
    import keras

    def maps(options):
        model = models.build("plain_cnn", (96, 96, 3), 2, {"blocks": 3, **options})
        convs = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)]
        return model, [c.strides for c in convs], [tuple(c.output.shape[1:]) for c in convs]

    pooled, pooled_strides, pooled_maps = maps({})
    strided, strides, strided_maps = maps({"stem_stride": 2})
    assert pooled_strides == [(1, 1)] * 3 and strides == [(2, 2), (1, 1), (1, 1)]
    assert pooled_maps[0] == (96, 96, 8) and strided_maps[0] == (48, 48, 8)
    assert strided_maps[1:] == pooled_maps[1:] == [(48, 48, 16), (24, 24, 32)]
    assert strided.output.shape == pooled.output.shape
    assert strided.count_params() == pooled.count_params()


def test_plain_cnn_with_stem_stride_runs_on_tflm_and_patches_bit_exact() -> None:
    """The int8 graph starts with a strided CONV_2D and no pooling; the patch stage takes it."""
    import tflm_ext
    from tflm_ext.model_graph import read_graph
    from tflm_ext.patching import patch_model

    _, model_bytes = int8_model("plain_cnn", TFLM_SIZE, TFLM_CLASSES, {"stem_stride": 2})
    ops = [op.name for op in read_graph(model_bytes).ops]
    assert ops[:2] == ["CONV_2D", "CONV_2D"] and ops.count("MAX_POOL_2D") == 4
    # 3x3 convolutions of 8, 16, 32, 64 filters at 24, 24, 12 and 6 pixels a side.
    _assert_conv_macs(model_bytes, ((24, 3, 8), (24, 8, 16), (12, 16, 32), (6, 32, 64)))
    x = np.random.default_rng(3).uniform(0, 1, (4, *TFLM_SIZE)).astype(np.float32)
    np.testing.assert_allclose(
        tflm_ext.run_batch(model_bytes, x).scores.sum(axis=1), 1, atol=4 / 256
    )
    outcome = patch_model(model_bytes, inputs=4)
    assert outcome.applied and outcome.report.identical and outcome.plan.stages[0].first_op == 0


def test_plain_cnn_low_pass_is_a_fixed_gaussian_that_training_leaves_alone() -> None:
    """``blur_sigma`` puts a Gaussian blur before the first convolution: a normalised,
    symmetric kernel per channel, untrained, so a flat image stays flat inside the border."""
    import keras

    model = models.build("plain_cnn", (32, 32, 3), 2, {"blocks": 2, "blur_sigma": 1.0})
    blur = model.get_layer("low_pass")
    assert model.layers[1] is blur and not blur.trainable
    kernel = blur.get_weights()[0][:, :, :, 0]  # (5, 5, channels) at sigma 1: radius 2
    assert kernel.shape == (5, 5, 3)
    np.testing.assert_allclose(kernel.sum(axis=(0, 1)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], rtol=1e-6)
    assert kernel[2, 2, 0] == kernel[:, :, 0].max() > 4 * kernel[0, 0, 0]
    flat = np.full((1, 32, 32, 3), 0.5, np.float32)
    inner = keras.Model(model.input, blur.output)(flat).numpy()[0, 2:-2, 2:-2]
    np.testing.assert_allclose(inner, 0.5, rtol=1e-5)
    before = blur.get_weights()[0].copy()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    np.testing.assert_array_equal(blur.get_weights()[0], before)
    assert models.build("plain_cnn", (32, 32, 3), 2, {"blocks": 2}).layers[1].name != "low_pass"


def test_plain_cnn_with_low_pass_runs_on_tflm_and_patches_bit_exact() -> None:
    """The blur is one DEPTHWISE_CONV_2D, the first operator, inside the patch stage."""
    import tflm_ext
    from tflm_ext.model_graph import read_graph
    from tflm_ext.patching import patch_model

    _, model_bytes = int8_model("plain_cnn", TFLM_SIZE, TFLM_CLASSES, {"blur_sigma": 0.8})
    ops = [op.name for op in read_graph(model_bytes).ops]
    assert ops[:2] == ["DEPTHWISE_CONV_2D", "CONV_2D"] and ops.count("DEPTHWISE_CONV_2D") == 1
    x = np.random.default_rng(2).uniform(0, 1, (4, *TFLM_SIZE)).astype(np.float32)
    np.testing.assert_allclose(
        tflm_ext.run_batch(model_bytes, x).scores.sum(axis=1), 1, atol=4 / 256
    )
    outcome = patch_model(model_bytes, inputs=4)
    assert outcome.applied and outcome.report.identical and outcome.plan.stages[0].first_op == 0
