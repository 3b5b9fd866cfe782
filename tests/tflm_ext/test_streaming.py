"""Streaming execution: ring sizing per inner op kind, and streamed stages on the real TFLM
interpreter, bit-exact and with exactly the arena the planner predicts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.int8_models import convert_on_noise, seeded_keras
from tflm_ext import receptive_field as rf
from tflm_ext import streaming
from tflm_ext.errors import TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.memory_profile import profile
from tflm_ext.model_graph import read_graph
from tflm_ext.patch_op import OP_NAME, OPTIONS_VERSION, TILE_OPTIONS_VERSION, decode_options
from tflm_ext.receptive_field import ChainOp, Geometry
from tflm_ext.rewrite import rewrite_stage, verify
from tflm_ext.tflite_file import read_model

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ builds the kernel")

H = 16  # rows of the hand-built chains


def _conv(kernel=1, stride=1, dilation=1, same=True, size=H, inputs=(0,), channels=2):
    reach = rf.reach(kernel, dilation)
    axis = (rf.same_axis if same else rf.valid_axis)(size, reach, stride)
    return ChainOp(Geometry(axis, axis), inputs, channels, macs_per_pixel=kernel * kernel)


def _add(a: int, b: int, size=H, channels=2) -> ChainOp:
    axis = rf.identity_axis(size)
    return ChainOp(Geometry(axis, axis), (a, b), channels)


def _pad(top: int, bottom: int, size=H, channels=2) -> ChainOp:
    rows, cols = rf.explicit_axis(size, top, bottom), rf.explicit_axis(size, 0, 0)
    return ChainOp(Geometry(rows, cols), (1,), channels)


def _pool(size: int, inputs=(1,), channels=2) -> ChainOp:
    axis = rf.valid_axis(size, size, 1)
    return ChainOp(Geometry(axis, axis), inputs, channels, reduces=True)


@pytest.mark.parametrize(
    ("consumer", "rows"),
    [
        (_conv(3, inputs=(1,)), 3),  # 3x3 stride 1 SAME: its window
        (_conv(3, 2, inputs=(1,)), 3),  # stride 2: still the window, no stride - 1 slack
        (_conv(3, dilation=2, inputs=(1,)), 5),  # dilation 2: (k - 1) * d + 1 rows
        (_conv(5, inputs=(1,)), 5),
        (_conv(3, same=False, inputs=(1,)), 3),  # VALID
        (_conv(7, 2, same=False, inputs=(1,)), 7),
        (_conv(1, 2, same=False, inputs=(1,)), 1),  # a 1x1 stride 2 reads every other row
        (_conv(3, dilation=2, size=4, inputs=(1,)), 4),  # clipped to the tensor
        (_pad(1, 2), 1),  # PAD copies one row at a time
        (_pool(H), 1),  # the pool sums one row at a time
    ],
    ids=[
        "3x3",
        "3x3/s2",
        "3x3 d2",
        "5x5",
        "3x3 VALID",
        "7x7/s2 VALID",
        "1x1/s2 VALID",
        "d2 on 4 rows",
        "PAD",
        "global pool",
    ],
)
def test_a_tensor_read_by_one_op_holds_that_ops_window(consumer: ChainOp, rows: int) -> None:
    size = consumer.geometry.rows.in_size
    chain = (_conv(size=size), consumer)
    assert streaming.ring_rows(chain) == (0, rows, 0)


def test_pad_feeding_a_strided_valid_conv() -> None:
    """PAD (1 row above, 2 below) -> 3x3/s2 VALID: the PAD's output ring is the conv's
    window, its input ring one row; padding rows need no input row."""
    chain = (_conv(), _pad(1, 2), _conv(3, 2, same=False, size=H + 3, inputs=(2,)))
    assert streaming.ring_rows(chain) == (0, 1, 3, 0)


@pytest.mark.parametrize(("kernel", "skip_rows"), [(3, 2), (5, 3), (7, 4)])
def test_a_skip_tensor_holds_the_rows_its_add_waits_for(kernel: int, skip_rows: int) -> None:
    """x -> 1x1 -> kxk depthwise -> 1x1 -> ADD(x, .): while the ADD waits for row y, the
    branch has pulled x down to row y + (k - 1) / 2, so x's ring holds 1 + (k - 1) / 2 rows."""
    chain = (
        _conv(),  # 1: x
        _conv(inputs=(1,), channels=6),  # 2: expand
        _conv(kernel, inputs=(2,), channels=6),  # 3: depthwise
        _conv(inputs=(3,)),  # 4: project
        _add(1, 4),  # 5
        _conv(inputs=(5,)),  # 6: stage output
    )
    assert streaming.ring_rows(chain) == (0, skip_rows, kernel, 1, 1, 1, 0)


def test_stream_cost_sums_the_rings_and_the_pool_sums() -> None:
    chain = (_conv(channels=3), _conv(3, 2, inputs=(1,), channels=4), _pool(8, (2,), channels=4))
    cost = streaming.stream_cost(chain)
    assert cost.ring_rows == (0, 3, 1, 0) and cost.ring_widths == (0, H, 8, 0)
    assert cost.ring_bytes == (0, 3 * H * 3, 1 * 8 * 4, 0)
    assert cost.sum_bytes == 4 * 4
    assert cost.scratch_bytes == 16 + 144 + 32
    assert cost.extra_macs == 0


def test_strips_narrow_the_rings_and_recompute_the_halos() -> None:
    chain = (_conv(), _conv(3, inputs=(1,)), _conv(inputs=(2,)))
    whole, halves = streaming.stream_cost(chain), streaming.stream_cost(chain, 2)
    assert whole.ring_widths == (0, H, H, 0) and halves.ring_widths == (0, H // 2 + 1, H // 2, 0)
    assert halves.ring_rows == whole.ring_rows
    assert halves.extra_macs == 2 * H * 1  # one column of the first conv computed twice
    with pytest.raises(TflmExtError, match="global pool streams in one strip"):
        streaming.stream_cost((_conv(), _pool(H)), 2)
    assert streaming.strip_counts((_conv(), _pool(H)), (2, 4)) == [1]
    assert streaming.strip_counts(chain, (2, 40)) == [1, 2, H]


def test_a_pool_before_the_last_op_is_refused() -> None:
    with pytest.raises(TflmExtError, match="global pool but not the last op"):
        streaming.stream_cost((_conv(), _pool(H), _conv(size=1, inputs=(2,))))


# --- on the real TFLM interpreter --------------------------------------------------------


def _model(build, input_shape) -> bytes:
    keras = seeded_keras()
    inputs = keras.Input(input_shape, batch_size=1)
    outputs = build(keras.layers, inputs)
    return convert_on_noise(keras.Model(inputs, outputs), input_shape)


def _ops(model_bytes: bytes) -> list[str]:
    return [op.opcode_name for op in read_model(model_bytes).subgraphs[0].operators]


@pytest.fixture(scope="module")
def kinds_model() -> bytes:
    """36x36x3 -> PAD (asymmetric) -> 3x3/s2 VALID -> 1x1 -> 3x3 depthwise dilation 2 ->
    5x5 conv -> 1x1/s2 VALID -> dense: every geometry the rings must size."""

    def build(layers, x):
        bias = "random_normal"
        x = layers.ZeroPadding2D(((1, 2), (2, 1)))(x)
        x = layers.Conv2D(8, 3, strides=2, activation="relu6", bias_initializer=bias)(x)
        x = layers.Conv2D(16, 1, activation="relu", bias_initializer=bias)(x)
        x = layers.DepthwiseConv2D(
            3, dilation_rate=2, padding="same", activation="relu6", bias_initializer=bias
        )(x)
        x = layers.Conv2D(8, 5, padding="same", bias_initializer=bias)(x)
        x = layers.Conv2D(8, 1, strides=2, bias_initializer=bias)(x)
        return layers.Dense(3, bias_initializer=bias)(layers.Flatten()(x))

    return _model(build, (36, 36, 3))


@pytest.fixture(scope="module")
def trunk_model() -> bytes:
    """A MobileNetV2-like trunk: 40x40x3 -> 3x3/s2 -> two stride-1 inverted-residual blocks
    with ADD (depthwise 3x3 and 5x5) -> a stride-2 block -> 1x1 -> global pool (MEAN) ->
    dense."""

    def block(layers, x, expand, kernel, stride, out):
        bias = "random_normal"
        y = layers.Conv2D(expand, 1, activation="relu6", bias_initializer=bias)(x)
        y = layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", activation="relu6", bias_initializer=bias
        )(y)
        y = layers.Conv2D(out, 1, bias_initializer=bias)(y)
        return layers.Add()([x, y]) if stride == 1 and out == x.shape[-1] else y

    def build(layers, x):
        bias = "random_normal"
        x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
        x = block(layers, x, 24, 3, 1, 8)
        x = block(layers, x, 24, 5, 1, 8)
        x = block(layers, x, 32, 3, 2, 12)
        x = layers.Conv2D(48, 1, activation="relu6", bias_initializer=bias)(x)
        x = layers.GlobalAveragePooling2D()(x)
        return layers.Dense(5, bias_initializer=bias)(x)

    return _model(build, (40, 40, 3))


@pytest.fixture(scope="module")
def pooled_model() -> bytes:
    """24x24x4 -> 3x3/s2 -> depthwise 3x3 -> 1x1 (relu) -> AVERAGE_POOL_2D over the 12x12
    map (with its fused ReLU6) -> dense."""

    def build(layers, x):
        bias = "random_normal"
        x = layers.Conv2D(8, 3, strides=2, padding="same", bias_initializer=bias)(x)
        x = layers.DepthwiseConv2D(3, padding="same", bias_initializer=bias)(x)
        x = layers.Conv2D(16, 1, activation="relu", bias_initializer=bias)(x)
        x = layers.AveragePooling2D(12)(x)
        return layers.Dense(3, bias_initializer=bias)(layers.Flatten()(x))

    return _model(build, (24, 24, 4))


def test_the_models_hold_the_geometries_meant(kinds_model, trunk_model, pooled_model) -> None:
    assert (
        _ops(kinds_model)[:6]
        == ["PAD", "CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D"] + ["CONV_2D"] * 2
    )
    assert read_graph(kinds_model).ops[3].options.dilationHFactor == 2
    trunk = _ops(trunk_model)
    assert trunk.count("ADD") == 2 and trunk[-2:] == ["MEAN", "FULLY_CONNECTED"]
    assert _ops(pooled_model)[3] == "AVERAGE_POOL_2D"


def _check_streamed(model: bytes, last_op: int, strips: int = 1, inputs: int = 4) -> bytes:
    """Stream ops 0..last_op: bit-exact with the original on TFLM, and TFLM's measured head
    is the head simulated with the planner's ring sizes (the stage is each model's peak, so
    a kernel requesting even a few bytes more than planned fails here)."""
    rewritten = rewrite_stage(model, 0, last_op, (1, strips), mode="stream")
    report = verify(model, rewritten, inputs=inputs, seed=last_op + strips)
    assert report.identical, report.first_mismatch
    measured = profile(rewritten)
    assert measured.peak_op == 0
    assert measured.arena is not None and measured.arena.head == measured.planned_head
    return rewritten


@needs_gxx
@pytest.mark.parametrize(("last_op", "strips"), [(5, 1), (5, 3), (4, 2), (3, 1)])
def test_every_inner_op_kind_streams_bit_exact(kinds_model, last_op: int, strips: int) -> None:
    _check_streamed(kinds_model, last_op, strips)


@needs_gxx
def test_a_whole_trunk_streams_through_its_residual_blocks_and_mean(trunk_model) -> None:
    """One streamed stage from the first conv through the MEAN: nothing is recomputed and
    the stage output is the 48 pooled values."""
    last = _ops(trunk_model).index("MEAN")
    rewritten = _check_streamed(trunk_model, last)

    assert _ops(rewritten) == [OP_NAME, "FULLY_CONNECTED"]
    stage = decode_options(bytes(read_model(rewritten).subgraphs[0].operators[0]._fb.customOptions))
    assert stage.options_version == OPTIONS_VERSION and stage.ops[-1].kind.name == "MEAN"
    before = profile(trunk_model, measure=False)
    assert profile(rewritten, measure=False).peak_bytes < 0.7 * before.peak_bytes
    streamed = graph_stats(rewritten).ops[0]
    assert streamed.macs == sum(op.macs for op in before.ops[: last + 1])  # each value once
    assert graph_stats(rewritten).total_macs == graph_stats(trunk_model).total_macs


@needs_gxx
def test_a_global_average_pool_streams_bit_exact(pooled_model) -> None:
    _check_streamed(pooled_model, 3, inputs=6)


@needs_gxx
def test_tile_stages_still_run_as_version_1(trunk_model) -> None:
    rewritten = rewrite_stage(trunk_model, 0, 0, (2, 2))
    custom = read_model(rewritten).subgraphs[0].operators[0]
    assert decode_options(bytes(custom._fb.customOptions)).options_version == TILE_OPTIONS_VERSION
    report = verify(trunk_model, rewritten, inputs=2)
    assert report.identical, report.first_mismatch


@pytest.fixture(scope="module")
def transposed_model() -> bytes:
    """16x16x4 -> 3x3/s2 -> Permute (TRANSPOSE of height and width) -> 1x1 -> dense."""

    def build(layers, x):
        x = layers.Conv2D(8, 3, strides=2, padding="same")(x)
        x = layers.Permute((2, 1, 3))(x)
        x = layers.Conv2D(8, 1)(x)
        return layers.Dense(3)(layers.Flatten()(x))

    return _model(build, (16, 16, 4))


def test_an_op_reading_rows_out_of_order_is_refused(transposed_model) -> None:
    assert _ops(transposed_model)[1] == "TRANSPOSE"
    with pytest.raises(TflmExtError) as caught:
        rewrite_stage(transposed_model, 0, 2, (1, 1), mode="stream")
    message = str(caught.value)
    assert "operator 1 (TRANSPOSE) cannot join a patch stage" in message
    assert "reads its input rows in order, top to bottom" in message


def test_a_streamed_stage_refuses_a_grid_of_several_rows(pooled_model) -> None:
    with pytest.raises(TflmExtError, match="one row of strips, not a"):
        rewrite_stage(pooled_model, 0, 2, (2, 2), mode="stream")
    with pytest.raises(TflmExtError, match="cannot cut an axis of 1 into 2"):
        rewrite_stage(pooled_model, 0, 3, (1, 2), mode="stream")  # the pool's one pixel


# --- the row reader: the stage input pulled from the application, not held in the arena ---


def test_a_row_reader_rings_the_stage_input_like_any_tensor() -> None:
    """The reader's rows land in a ring of whole input rows: its consumer's window."""
    chain = (_conv(3, 2, channels=4), _conv(3, size=8, inputs=(1,)))
    assert streaming.ring_rows(chain) == (0, 3, 0)
    assert streaming.ring_rows(chain, reader=True) == (3, 3, 0)
    cost = streaming.stream_cost(chain, reader_channels=3)
    assert cost.ring_widths[0] == H and cost.ring_bytes[0] == 3 * H * 3


def test_a_row_reader_on_strips_reads_whole_rows_and_narrows_the_other_rings() -> None:
    """On two strips the reader's ring still holds whole input rows (each strip reads the
    rows again, its columns of them), every other ring is a strip wide, and the overlap
    recomputed is exactly that of the same strips fed from the arena."""
    chain = (_conv(3, 2, channels=4), _conv(3, size=8, inputs=(1,)), _conv(size=8, inputs=(2,)))
    whole = streaming.stream_cost(chain, reader_channels=3)
    strips = streaming.stream_cost(chain, 2, reader_channels=3)
    from_arena = streaming.stream_cost(chain, 2)

    assert strips.ring_rows == whole.ring_rows == (3, 3, 1, 0)
    assert strips.ring_widths[0] == H and strips.ring_bytes[0] == whole.ring_bytes[0]
    assert strips.ring_widths[1:3] == from_arena.ring_widths[1:3] == (5, 4)  # 3x3's halo: 1
    assert strips.ring_bytes[1:] < whole.ring_bytes[1:]
    assert strips.extra_macs == from_arena.extra_macs > 0 == whole.extra_macs


def _image_input_shape(model_bytes: bytes) -> tuple[int, ...]:
    return tuple(int(d) for d in read_model(model_bytes).subgraphs[0].inputs[0].shape)


@needs_gxx
@pytest.mark.parametrize(
    ("fixture", "last_op", "strips"),
    [
        ("kinds_model", 5, 1),
        ("trunk_model", None, 1),
        ("kinds_model", 5, 3),
        ("trunk_model", 12, 2),
    ],
    ids=["kinds", "trunk to the pool", "kinds on 3 strips", "trunk up to its pool on 2 strips"],
)
def test_a_stage_reading_rows_is_bit_exact_and_holds_no_image(
    request: pytest.FixtureRequest, fixture: str, last_op: int | None, strips: int
) -> None:
    """The model input shrinks to one row; the host's reader serves each example's image
    (once per strip); outputs match the original bit for bit and TFLM plans the predicted
    head, which no longer holds the image; on strips the rings narrow further (residual
    ADDs and their skip rings included)."""
    model = request.getfixturevalue(fixture)
    last = _ops(model).index("MEAN") if last_op is None else last_op
    rewritten = rewrite_stage(model, 0, last, (1, strips), mode="reader")
    _, height, width, channels = _image_input_shape(model)

    assert _image_input_shape(rewritten) == (1, 1, width, channels)
    report = verify(model, rewritten, inputs=4, seed=last)
    assert report.identical, report.first_mismatch
    measured = profile(rewritten)
    assert measured.arena is not None and measured.arena.head == measured.planned_head
    streamed = profile(rewrite_stage(model, 0, last, (1, strips), mode="stream"), measure=False)
    assert measured.planned_head < streamed.planned_head
    if strips > 1:
        one_strip = profile(rewrite_stage(model, 0, last, (1, 1), mode="reader"), measure=False)
        assert measured.planned_head < one_strip.planned_head


@needs_gxx
def test_timing_runs_a_row_reading_model_on_whole_images(trunk_model) -> None:
    from tflm_ext.inference import run_batch
    from tflm_ext.isolation import run_isolated

    last = _ops(trunk_model).index("MEAN")
    rewritten = rewrite_stage(trunk_model, 0, last, (1, 1), mode="reader")
    features = np.random.default_rng(0).uniform(-1, 1, (3, 40, 40, 3)).astype(np.float32)
    before = run_isolated(run_batch, trunk_model, features)
    after = run_isolated(run_batch, rewritten, features)
    np.testing.assert_array_equal(before.scores, after.scores)


@needs_gxx
def test_a_row_reading_model_without_a_reader_fails_cleanly(trunk_model) -> None:
    from tflm_ext.isolation import run_isolated

    rewritten = rewrite_stage(trunk_model, 0, 0, (1, 1), mode="reader")
    with pytest.raises(TflmExtError, match="none is set .*SetRowReader"):
        run_isolated(_invoke_without_reader, rewritten)


def _invoke_without_reader(model_bytes: bytes) -> None:
    from tflm_ext.interpreter import debug_log_capture, make_interpreter

    interpreter = make_interpreter(model_bytes)
    with debug_log_capture() as log:
        try:
            interpreter.invoke()
            failure = None
        except RuntimeError as e:
            failure = e
    if failure is not None:  # the log is read once the capture ends
        raise TflmExtError(f"{failure}: {log.tail()}")


def test_a_row_reader_only_feeds_a_model_input_read_by_its_stage(trunk_model) -> None:
    with pytest.raises(TflmExtError, match="one row of strips, not"):
        rewrite_stage(trunk_model, 0, 3, (2, 2), mode="reader")
    with pytest.raises(TflmExtError, match="feeds a model input, not tensor"):
        rewrite_stage(trunk_model, 1, 4, (1, 1), mode="reader")
