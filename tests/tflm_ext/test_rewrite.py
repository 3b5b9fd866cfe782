"""rewrite_stage + verify on Keras-built int8 models, run on the real TFLM interpreter.

Every rewrite here is checked bit for bit against the original by ``verify`` (both models in
child processes, the patch op registered by make_interpreter's defaults).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor

from tests.int8_models import convert_on_noise, seeded_keras
from tflm_ext.errors import TflmExtError
from tflm_ext.memory_profile import profile
from tflm_ext.passes.remove_dead_tensors import dead_tensors
from tflm_ext.passes.remove_unused_buffers import unused_buffers
from tflm_ext.patch_op import HEADER_FIELDS_V1, OP_FIELDS_V1, OP_NAME, decode_options
from tflm_ext.rewrite import example_inputs, first_mismatch, rewrite_stage, verify

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("g++") is None, reason="g++ builds the patch-stage host kernel"
)


@pytest.fixture(scope="module")
def cnn() -> bytes:
    """32x32x3 -> conv3x3 s2 relu6 -> dw3x3 relu -> conv1x1 -> dw3x3 s2 relu6 -> conv1x1 relu
    -> global pool -> dense: ops 0-4 are the stage candidates, 5 is MEAN."""
    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", bias_initializer=bias)(
        inputs
    )
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", bias_initializer=bias)(x)
    x = layers.Conv2D(16, 1, bias_initializer=bias)(x)
    x = layers.DepthwiseConv2D(
        3, strides=2, padding="same", activation="relu6", bias_initializer=bias
    )(x)
    x = layers.Conv2D(16, 1, activation="relu", bias_initializer=bias)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(4, bias_initializer=bias)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (32, 32, 3))


@pytest.fixture(scope="module")
def residual_cnn() -> bytes:
    """An asymmetric ZeroPadding2D (stays a PAD op) and an inverted-residual block:
    24x24x4 -> pad -> conv3x3 valid s2 relu6 -> [conv1x1 x3 relu6 -> dw3x3 relu6 -> conv1x1]
    + skip -> dense."""
    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((24, 24, 4), batch_size=1)
    x = layers.ZeroPadding2D(((2, 1), (1, 2)))(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="relu6", bias_initializer=bias)(x)
    y = layers.Conv2D(24, 1, activation="relu6", bias_initializer=bias)(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=bias)(y)
    y = layers.Conv2D(8, 1, bias_initializer=bias)(y)
    x = layers.Add()([x, y])
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, bias_initializer=bias)(x)
    return convert_on_noise(keras.Model(inputs, outputs), (24, 24, 4))


def _ops(model_bytes: bytes) -> list[str]:
    return [op.opcode_name for op in model_editor.read(model_bytes).subgraphs[0].operators]


@pytest.mark.parametrize(
    ("last_op", "grid"), [(1, (2, 2)), (2, (3, 3)), (3, (2, 2)), (4, (3, 3)), (3, (6, 5))]
)
def test_rewritten_stage_is_bit_exact(cnn: bytes, last_op: int, grid: tuple[int, int]) -> None:
    rewritten = rewrite_stage(cnn, 0, last_op, grid)

    assert _ops(rewritten) == [OP_NAME, *_ops(cnn)[last_op + 1 :]]
    report = verify(cnn, rewritten, inputs=6, seed=last_op)
    assert report.identical, report.first_mismatch
    assert report.examples == 6


def test_stage_ending_after_downsampling_shrinks_the_arena(cnn: bytes) -> None:
    report = verify(cnn, rewrite_stage(cnn, 0, 3, (4, 4)), inputs=2)

    assert report.identical
    assert report.arena_after.head < report.arena_before.head
    assert report.arena_after.bisected_min < report.arena_before.bisected_min


def test_pad_and_residual_add_inside_the_stage_are_bit_exact(residual_cnn: bytes) -> None:
    assert _ops(residual_cnn)[:6] == [
        "PAD",
        "CONV_2D",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "ADD",
    ]
    rewritten = rewrite_stage(residual_cnn, 0, 5, (3, 2))

    report = verify(residual_cnn, rewritten, inputs=6)
    assert report.identical, report.first_mismatch


@pytest.mark.parametrize(
    ("model", "last_op", "grid"),
    [
        ("cnn", 3, (4, 4)),
        ("cnn", 4, (2, 3)),
        ("residual_cnn", 5, (3, 2)),
        ("residual_cnn", 5, (4, 4)),
    ],
)
def test_kernel_scratch_is_what_the_planner_predicts(
    request: pytest.FixtureRequest, model: str, last_op: int, grid: tuple[int, int]
) -> None:
    """The stage is the peak of these models, so TFLM's measured head moves with every byte
    of scratch the kernel requests: it must equal the head simulated from
    receptive_field.scratch_layout."""
    rewritten = rewrite_stage(request.getfixturevalue(model), 0, last_op, grid)
    measured = profile(rewritten)

    assert measured.peak_op == 0
    assert measured.arena is not None and measured.arena.head == measured.planned_head


def test_dead_tensors_and_buffers_are_gone_and_the_interface_kept(cnn: bytes) -> None:
    original = model_editor.read(cnn)
    rewritten = model_editor.read(rewrite_stage(cnn, 0, 3, (2, 2)))
    before, after = original.subgraphs[0], rewritten.subgraphs[0]

    assert dead_tensors(after) == [] and unused_buffers(rewritten) == []
    # 3 intermediate activations (and their empty buffers) gone; 4 conv/depthwise ops
    # gained a multipliers and a shifts constant each
    assert len(after.tensors) == len(before.tensors) - 3 + 2 * 4
    assert len(rewritten.buffers) == len(original.buffers) - 3 + 2 * 4
    for old, new in zip(
        [*before.inputs, *before.outputs], [*after.inputs, *after.outputs], strict=True
    ):
        assert (new.name, new.shape, new.dtype) == (old.name, old.shape, old.dtype)
        assert new.quantization == old.quantization
    signature = rewritten._fb.signatureDefs[0]
    assert after.tensors[signature.inputs[0].tensorIndex] is after.inputs[0]
    assert after.tensors[signature.outputs[0].tensorIndex] is after.outputs[0]
    assert rewritten.metadata == original.metadata


def test_custom_op_carries_decodable_options(cnn: bytes) -> None:
    rewritten = model_editor.read(rewrite_stage(cnn, 0, 2, (3, 3)))
    custom = rewritten.subgraphs[0].operators[0]
    stage = decode_options(bytes(custom._fb.customOptions))

    assert stage.grid == (3, 3) and stage.input_shape == (32, 32, 3)
    assert [op.kind.name for op in stage.ops] == ["CONV", "DEPTHWISE", "CONV"]
    assert [op.weights_input for op in stage.ops] == [1, 5, 9]
    assert len(custom.inputs) == 1 + 3 * 4
    assert stage.ops[0].stride == (2, 2) and stage.ops[0].padding == (0, 0, 1, 1)
    assert struct.calcsize(f"<{len(HEADER_FIELDS_V1) + 3 * len(OP_FIELDS_V1)}i") == len(
        custom._fb.customOptions
    )


def test_unsupported_operator_is_refused_with_the_rule(cnn: bytes) -> None:
    with pytest.raises(TflmExtError) as caught:
        rewrite_stage(cnn, 3, 6, (1, 1))
    message = str(caught.value)
    assert "operator 6 (FULLY_CONNECTED) cannot join a patch stage" in message
    assert "The operator is CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, PAD, or a" in message


def test_a_global_pool_is_refused_in_tiles(cnn: bytes) -> None:
    with pytest.raises(
        TflmExtError, match=r"operator 5 \(MEAN\) is a global pool: only a streamed"
    ):
        rewrite_stage(cnn, 3, 5, (1, 1))


def test_stage_whose_intermediate_escapes_is_refused(residual_cnn: bytes) -> None:
    """Ending inside the residual block leaves the skip tensor needed by the ADD."""
    with pytest.raises(TflmExtError, match="operator 1's output .* is used outside the stage"):
        rewrite_stage(residual_cnn, 0, 3, (2, 2))


def test_grid_larger_than_the_stage_output_is_refused(cnn: bytes) -> None:
    with pytest.raises(TflmExtError, match="cannot cut an axis of 8 into 9 tiles"):
        rewrite_stage(cnn, 0, 3, (9, 1))


def test_out_of_range_stage_is_refused(cnn: bytes) -> None:
    with pytest.raises(TflmExtError, match="stage 4..9 is not inside the 7 operators"):
        rewrite_stage(cnn, 4, 9, (1, 1))


def test_verify_reports_the_first_differing_output(cnn: bytes) -> None:
    """Clamping the last inner op's activation to [0, 0] must show up as a difference."""
    model = model_editor.read(rewrite_stage(cnn, 0, 1, (2, 2)))
    options = bytearray(model.subgraphs[0].operators[0]._fb.customOptions)
    last_op = len(HEADER_FIELDS_V1) + len(OP_FIELDS_V1)  # second inner op's record (version 1)
    for field in ("activation_min", "activation_max"):
        offset = 4 * (last_op + OP_FIELDS_V1.index(field))
        options[offset : offset + 4] = struct.pack("<i", 0)
    model.subgraphs[0].operators[0]._fb.customOptions = list(options)

    report = verify(cnn, bytes(model.build()), inputs=3)

    assert not report.identical
    assert report.first_mismatch.startswith("output 0, example 0, element (0, ")
    with pytest.raises(TflmExtError, match="differs from the original: output 0"):
        report.raise_if_different()


def test_example_inputs_are_seeded_and_span_int8(cnn: bytes) -> None:
    first, again = example_inputs(cnn, 50, seed=3), example_inputs(cnn, 50, seed=3)
    assert np.array_equal(first[0], again[0])
    assert first[0].shape == (50, 1, 32, 32, 3) and first[0].dtype == np.int8
    assert first[0].min() == -128 and first[0].max() == 127
    given = example_inputs(cnn, np.zeros((2, 32, 32, 3), np.int8), seed=0)
    assert given[0].shape == (2, 1, 32, 32, 3)


def test_first_mismatch_names_output_example_and_element() -> None:
    a = [np.zeros((2, 1, 3), np.int8)]
    b = [a[0].copy()]
    assert first_mismatch(a, b) is None
    b[0][1, 0, 2] = 5
    assert first_mismatch(a, b) == "output 0, example 1, element (0, 2): original 0, rewritten 5"


@pytest.mark.slow
@pytest.mark.parametrize("size", [96])
def test_mobilenet_v2_first_stage(size: int) -> None:
    """MobileNetV2 alpha 0.35, random weights, no softmax (TFLM aborts on its degenerate
    scale): the stage up to the first stride-2 block's output, ops 0-5 -> 24x24x8 at 96."""
    keras = seeded_keras()
    network = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=0.35, weights=None, classifier_activation=None
    )
    model = convert_on_noise(network, (size, size, 3))
    assert _ops(model)[:6] == [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
    ]

    report = verify(model, rewrite_stage(model, 0, 5, (3, 3)), inputs=4)

    assert report.identical, report.first_mismatch
    assert report.arena_after.bisected_min < 0.7 * report.arena_before.bisected_min


# --- mode="builtin": the same stages split into per-tile builtin operators --------------


@pytest.mark.parametrize(("last_op", "grid"), [(2, (3, 3)), (3, (2, 4))])
def test_builtin_mode_is_bit_exact_with_builtins_only(
    cnn: bytes, last_op: int, grid: tuple[int, int]
) -> None:
    rewritten = rewrite_stage(cnn, 0, last_op, grid, mode="builtin")

    stage = set(_ops(rewritten)[: -len(_ops(cnn)[last_op + 1 :])])
    assert stage == {"STRIDED_SLICE", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "CONCATENATION"}
    assert _ops(rewritten)[-len(_ops(cnn)[last_op + 1 :]) :] == _ops(cnn)[last_op + 1 :]
    report = verify(cnn, rewritten, inputs=6, seed=last_op)
    assert report.identical, report.first_mismatch


def test_builtin_mode_keeps_pad_and_residual_add_bit_exact(residual_cnn: bytes) -> None:
    rewritten = rewrite_stage(residual_cnn, 0, 5, (3, 2), mode="builtin")

    assert _ops(rewritten).count("ADD") == 6
    report = verify(residual_cnn, rewritten, inputs=6)
    assert report.identical, report.first_mismatch


def test_builtin_mode_saves_less_than_the_custom_op(cnn: bytes) -> None:
    """Both shrink the arena's head for a stage ending after downsampling; the builtin
    split keeps every tile and the joined copy alive, so the custom op saves more."""
    builtin = verify(cnn, rewrite_stage(cnn, 0, 3, (4, 4), mode="builtin"), inputs=2)
    custom = verify(cnn, rewrite_stage(cnn, 0, 3, (4, 4)), inputs=2)

    assert builtin.identical and custom.identical
    assert custom.arena_after.head < builtin.arena_after.head < builtin.arena_before.head


def test_builtin_mode_leaves_no_dead_tensor_and_keeps_the_interface(cnn: bytes) -> None:
    original = model_editor.read(cnn)
    rewritten = model_editor.read(rewrite_stage(cnn, 0, 3, (2, 2), mode="builtin"))
    before, after = original.subgraphs[0], rewritten.subgraphs[0]

    assert dead_tensors(after) == [] and unused_buffers(rewritten) == []
    for old, new in zip(
        [*before.inputs, *before.outputs], [*after.inputs, *after.outputs], strict=True
    ):
        assert (new.name, new.shape, new.dtype, new.quantization) == (
            old.name,
            old.shape,
            old.dtype,
            old.quantization,
        )
    signature = rewritten._fb.signatureDefs[0]
    assert after.tensors[signature.inputs[0].tensorIndex] is after.inputs[0]
    assert after.tensors[signature.outputs[0].tensorIndex] is after.outputs[0]
    originals = {t.name for t in before.tensors}
    stage_intermediates = {op.outputs[0].name for op in before.operators[:3]}
    assert not stage_intermediates & {t.name for t in after.tensors}
    assert originals - stage_intermediates <= {t.name for t in after.tensors}


def test_builtin_mode_refuses_what_the_custom_mode_refuses(cnn: bytes) -> None:
    with pytest.raises(TflmExtError, match=r"operator 5 \(MEAN\) is a global pool"):
        rewrite_stage(cnn, 3, 5, (2, 2), mode="builtin")
    with pytest.raises(TflmExtError, match="cannot cut an axis of 8 into 9 tiles"):
        rewrite_stage(cnn, 0, 3, (9, 1), mode="builtin")


def test_an_unknown_mode_is_refused(cnn: bytes) -> None:
    with pytest.raises(TflmExtError, match="rewrite mode 'fused' is not one of"):
        rewrite_stage(cnn, 0, 3, (2, 2), mode="fused")


@pytest.mark.slow
def test_mobilenet_v2_first_stage_in_builtin_mode() -> None:
    """The same stage and grid as the custom mode's MobileNetV2 test, split into builtins.
    Measured on the benchmarks/models.py build: the arena fell from 217,992 B to 167,304 B
    (custom op: 138,752 B); the head falls almost as far as with the custom op, but the 79
    added operators grow the tail (their per-operator structs and per-channel arrays)."""
    keras = seeded_keras()
    network = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classifier_activation=None
    )
    model = convert_on_noise(network, (96, 96, 3))

    rewritten = rewrite_stage(model, 0, 5, (3, 3), mode="builtin")
    report = verify(model, rewritten, inputs=4)

    assert report.identical, report.first_mismatch
    assert len(_ops(rewritten)) == len(_ops(model)) - 6 + 85
    assert report.arena_after.head < 0.5 * report.arena_before.head
    assert report.arena_after.tail > report.arena_before.tail
    assert report.arena_after.bisected_min < 0.85 * report.arena_before.bisected_min
