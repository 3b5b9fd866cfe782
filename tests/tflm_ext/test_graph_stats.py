"""graph_stats: MACs and sizes against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.graph_stats import OpStats, graph_stats

INT8, INT32 = schema.TensorType.INT8, schema.TensorType.INT32


def test_tiny_model_macs_and_sizes_match_hand_computation(tiny_int8_model: bytes) -> None:
    stats = graph_stats(tiny_int8_model)

    assert stats.ops == (
        OpStats(0, "CONV_2D", 8 * 8 * 4 * 3 * 3 * 1, (1, 8, 8, 4)),
        OpStats(1, "DEPTHWISE_CONV_2D", 8 * 8 * 4 * 3 * 3, (1, 8, 8, 4)),
        OpStats(2, "CONV_2D", 8 * 8 * 8 * 4, (1, 8, 8, 8)),
        OpStats(3, "AVERAGE_POOL_2D", 0, (1, 1, 1, 8)),
        OpStats(4, "FULLY_CONNECTED", 3 * 8, (1, 3)),
    )
    assert stats.total_macs == 6680
    # int8 filters + int32 biases: conv 36+16, depthwise 36+16, 1x1 conv 32+32, dense 24+12
    assert stats.weight_bytes == 204
    # int8 activations: input 256, 256, 256, 512, pooled 8, output 3
    assert stats.activation_bytes == 1291


def _edited_model() -> bytes:
    """A grouped CONV_2D feeding a batch-2 FULLY_CONNECTED, the two filters sharing nothing
    but both biases sharing one buffer; never run, only counted."""
    shared_bias = model_editor.Buffer(data=np.zeros(4, np.int32).tobytes())
    x = model_editor.Tensor(shape=(1, 6, 6, 8), dtype=INT8, name="x")
    conv_filter = model_editor.Tensor(  # 4 groups of 2 input channels
        shape=(4, 3, 3, 2), dtype=INT8, data=np.ones((4, 3, 3, 2), np.int8), name="w"
    )
    conv_bias = model_editor.Tensor(shape=(4,), dtype=INT32, buffer=shared_bias, name="b")
    y = model_editor.Tensor(shape=(1, 4, 4, 4), dtype=INT8, name="y")
    fc_in = model_editor.Tensor(shape=(2, 32), dtype=INT8, name="fc_in")
    fc_filter = model_editor.Tensor(
        shape=(4, 32), dtype=INT8, data=np.ones((4, 32), np.int8), name="fc_w"
    )
    fc_bias = model_editor.Tensor(shape=(4,), dtype=INT32, buffer=shared_bias, name="fc_b")
    z = model_editor.Tensor(shape=(2, 4), dtype=INT8, name="z")
    conv = model_editor.Operator(
        opcode=schema.BuiltinOperator.CONV_2D, inputs=[x, conv_filter, conv_bias], outputs=[y]
    )
    reshape = model_editor.Operator(
        opcode=schema.BuiltinOperator.RESHAPE, inputs=[y], outputs=[fc_in]
    )
    dense = model_editor.Operator(
        opcode=schema.BuiltinOperator.FULLY_CONNECTED,
        inputs=[fc_in, fc_filter, fc_bias],
        outputs=[z],
    )
    subgraph = model_editor.Subgraph(
        tensors=[x, conv_filter, conv_bias, y, fc_in, fc_filter, fc_bias, z],
        operators=[conv, reshape, dense],
        inputs=[x],
        outputs=[z],
    )
    return bytes(model_editor.Model(subgraphs=[subgraph]).build())


def test_grouped_conv_batched_dense_and_shared_buffers() -> None:
    stats = graph_stats(_edited_model())

    assert [(op.op, op.macs) for op in stats.ops] == [
        ("CONV_2D", 4 * 4 * 4 * (3 * 3 * 2)),  # per output: one 3x3 window over its group
        ("RESHAPE", 0),
        ("FULLY_CONNECTED", 2 * 4 * 32),  # two rows, four 32-long dot products each
    ]
    assert stats.weight_bytes == 72 + 128 + 16  # the shared bias counts once
    assert stats.activation_bytes == 288 + 64 + 64 + 8
    assert stats.tensor_count == 8


def test_garbage_is_a_tflm_ext_error() -> None:
    with pytest.raises(TflmExtError, match="cannot read a .tflite model from 64 B"):
        graph_stats(bytes(range(64)))


@pytest.mark.parametrize("mode", ["custom", "stream"])
def test_a_patch_stage_counts_its_inner_convolutions(inverted_residual_int8_model, mode):
    """Once per output value: a patched model does the original's useful MACs (a tiled stage
    recomputes halos on top, which the plan reports as extra MACs)."""
    import shutil

    from tflm_ext.patching import patch_model

    if shutil.which("g++") is None:
        pytest.skip("the custom op needs g++")
    outcome = patch_model(inverted_residual_int8_model, mode=mode, inputs=2)
    assert outcome.applied, outcome.plan.reason
    patched = graph_stats(outcome.model_bytes)
    assert "TFLM_EXT_PATCH_STAGE" in {op.op for op in patched.ops}
    assert patched.total_macs == graph_stats(inverted_residual_int8_model).total_macs
