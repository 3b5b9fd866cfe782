"""MAX_POOL_2D inside a patch stage: tiles, streamed rows, the row reader and the builtin
split, each bit-exact with TFLM's own MAX_POOL_2D on the real interpreter.

The plain CNN the person detector can use (``components.models.plain_cnn``) downsamples
with max pooling, so without this its full-resolution first block could not be patched.
"""

from __future__ import annotations

import shutil

import pytest

from tests.int8_models import convert_on_noise, seeded_keras
from tflm_ext import stage_rules
from tflm_ext.errors import TflmExtError
from tflm_ext.memory_profile import profile
from tflm_ext.model_graph import read_graph
from tflm_ext.patch_op import OP_NAME, OPTIONS_VERSION, OpKind, decode_options
from tflm_ext.patching import patch_model
from tflm_ext.plan_types import PlannerSpec
from tflm_ext.rewrite import rewrite_stage, verify
from tflm_ext.tflite_file import read_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ builds the kernel")


@pytest.fixture(scope="module")
def pooled_cnn() -> bytes:
    """30x30x3 -> conv3x3 relu -> max 2x2 (VALID) -> conv3x3 (no activation: negative
    values reach the pool) -> max 3x3/s2 SAME (pads the border) -> conv1x1 relu6 -> max over
    the whole 8x8 map -> dense. Ops 0-5 are the stage candidates."""
    keras = seeded_keras()
    layers, bias = keras.layers, "random_normal"
    inputs = keras.Input((30, 30, 3), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer=bias)(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(12, 3, padding="same", bias_initializer=bias)(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Conv2D(16, 1, activation="relu6", bias_initializer=bias)(x)
    x = layers.MaxPooling2D(8)(x)
    outputs = layers.Dense(3, bias_initializer=bias)(layers.Flatten()(x))
    return convert_on_noise(keras.Model(inputs, outputs), (30, 30, 3))


def _ops(model_bytes: bytes) -> list[str]:
    return [op.opcode_name for op in read_model(model_bytes).subgraphs[0].operators]


def test_the_model_holds_the_pools_meant(pooled_cnn: bytes) -> None:
    assert _ops(pooled_cnn)[:6] == ["CONV_2D", "MAX_POOL_2D"] * 3


@pytest.mark.parametrize(("last_op", "grid"), [(1, (3, 3)), (3, (2, 2)), (5, (1, 1)), (4, (4, 3))])
def test_tiles_with_max_pools_are_bit_exact(pooled_cnn: bytes, last_op: int, grid) -> None:
    rewritten = rewrite_stage(pooled_cnn, 0, last_op, grid)

    stage = decode_options(bytes(read_model(rewritten).subgraphs[0].operators[0]._fb.customOptions))
    assert stage.options_version == OPTIONS_VERSION  # MAX_POOL is a version-2 kind
    assert [op.kind for op in stage.ops].count(OpKind.MAX_POOL) == (last_op + 1) // 2
    report = verify(pooled_cnn, rewritten, inputs=6, seed=last_op)
    assert report.identical, report.first_mismatch


@pytest.mark.parametrize(
    ("mode", "last_op", "strips"),
    [("stream", 5, 1), ("stream", 3, 2), ("reader", 3, 1), ("reader", 4, 3)],
)
def test_streamed_max_pools_are_bit_exact_in_the_planned_arena(
    pooled_cnn: bytes, mode: str, last_op: int, strips: int
) -> None:
    rewritten = rewrite_stage(pooled_cnn, 0, last_op, (1, strips), mode=mode)

    assert _ops(rewritten)[0] == OP_NAME
    report = verify(pooled_cnn, rewritten, inputs=4, seed=strips)
    assert report.identical, report.first_mismatch
    if mode == "stream":
        measured = profile(rewritten)
        assert measured.arena is not None and measured.arena.head == measured.planned_head


def test_patching_the_first_block_lowers_the_arena(pooled_cnn: bytes) -> None:
    report = verify(pooled_cnn, rewrite_stage(pooled_cnn, 0, 3, (1, 1), mode="stream"), inputs=2)

    assert report.identical
    assert report.arena_after.head < report.arena_before.head


def test_builtin_mode_tiles_an_unpadded_max_pool(pooled_cnn: bytes) -> None:
    rewritten = rewrite_stage(pooled_cnn, 0, 2, (2, 3), mode="builtin")

    assert OP_NAME not in _ops(rewritten) and "MAX_POOL_2D" in _ops(rewritten)
    report = verify(pooled_cnn, rewritten, inputs=6)
    assert report.identical, report.first_mismatch


def test_builtin_mode_refuses_a_max_pool_that_pads_the_border(pooled_cnn: bytes) -> None:
    with pytest.raises(TflmExtError, match="cannot tile MAX_POOL_2D .* use mode custom"):
        rewrite_stage(pooled_cnn, 0, 3, (2, 2), mode="builtin")


def test_builtin_planning_stops_before_a_max_pool_that_pads(pooled_cnn: bytes) -> None:
    graph = read_graph(pooled_cnn)
    problems = stage_rules.operator_problems(pooled_cnn, graph)

    assert stage_rules.stage_ends(graph, problems, 0)[0] == [1, 2, 3, 4, 5]
    ends, why = stage_rules.stage_ends(graph, problems, 0, stage_rules.BUILTIN)
    assert ends == [1, 2] and "operator 3 (MAX_POOL_2D) pads its input" in why
    # Any recomputation allowed, so splits through the padded pool would be candidates.
    outcome = patch_model(pooled_cnn, PlannerSpec(max_extra_mac_fraction=10.0), mode="builtin",
                          inputs=2)  # fmt: skip
    assert all(stage.last_op <= 2 for stage in outcome.plan.stages)
