"""stage_ops: each support rule accepts what it should, names what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.passes import stage_ops

OPS, INT8, INT32, FLOAT32 = (
    schema.BuiltinOperator,
    schema.TensorType.INT8,
    schema.TensorType.INT32,
    schema.TensorType.FLOAT32,
)


def _activation(name: str, shape=(1, 4, 4, 2), dtype=INT8) -> me.Tensor:
    quant = me.Quantization(scales=[0.1], zero_points=[0])
    return me.Tensor(shape=shape, dtype=dtype, quantization=quant, name=name)


def _conv(zero_points=(0, 0), activation=0, bias_dtype=INT32) -> me.Operator:
    quant = me.Quantization(scales=[0.1, 0.1], zero_points=list(zero_points), axis=0)
    weights = me.Tensor(
        shape=(2, 1, 1, 2),
        dtype=INT8,
        data=np.ones((2, 1, 1, 2), np.int8),
        quantization=quant,
        name="w",
    )
    bias = me.Tensor(
        shape=(2,),
        dtype=bias_dtype,
        data=np.zeros(2, np.int32 if bias_dtype == INT32 else np.int64),
        name="b",
    )
    op = me.Operator(
        opcode=OPS.CONV_2D, inputs=[_activation("x"), weights, bias], outputs=[_activation("y")]
    )
    op._fb.builtinOptions = schema.Conv2DOptionsT()
    op._fb.builtinOptions.fusedActivationFunction = activation
    return op


def _failed_rules(op: me.Operator) -> list[str]:
    return [rule.__name__ for rule in stage_ops.RULES if rule(op) is not None]


def test_a_plain_int8_conv_passes_every_rule() -> None:
    assert _failed_rules(_conv()) == []


def test_each_breakage_trips_its_own_rule() -> None:
    dense = me.Operator(
        opcode=OPS.FULLY_CONNECTED, inputs=[_activation("x")], outputs=[_activation("y")]
    )
    mean = me.Operator(opcode=OPS.MEAN, inputs=[_activation("x")], outputs=[_activation("y")])
    transpose = me.Operator(
        opcode=OPS.TRANSPOSE, inputs=[_activation("x")], outputs=[_activation("y")]
    )
    float_relu = me.Operator(
        opcode=OPS.CONV_2D, inputs=[_activation("x", dtype=FLOAT32)], outputs=[_activation("y")]
    )
    batched = _conv()
    batched.inputs[0] = _activation("x", shape=(2, 4, 4, 2))
    assert _failed_rules(dense) == ["rule_kind"]
    assert _failed_rules(mean) == ["rule_global_pool"]  # no constant axes [1, 2]
    assert _failed_rules(transpose) == ["rule_rows_in_order", "rule_kind"]
    assert "rule_int8_activations" in _failed_rules(float_relu)
    assert _failed_rules(batched) == ["rule_int8_activations"]
    assert _failed_rules(_conv(zero_points=(0, 3))) == ["rule_weights"]
    assert _failed_rules(_conv(bias_dtype=schema.TensorType.INT64)) == ["rule_weights"]
    assert _failed_rules(_conv(activation=4)) == ["rule_activation_function"]


def test_add_of_a_constant_or_of_different_shapes_is_refused() -> None:
    constant = me.Tensor(
        shape=(1, 4, 4, 2),
        dtype=INT8,
        data=np.ones((1, 4, 4, 2), np.int8),
        quantization=me.Quantization(scales=[0.1], zero_points=[0]),
        name="c",
    )
    with_constant = me.Operator(
        opcode=OPS.ADD, inputs=[_activation("a"), constant], outputs=[_activation("y")]
    )
    mismatched = me.Operator(
        opcode=OPS.ADD,
        inputs=[_activation("a"), _activation("b", shape=(1, 4, 1, 2))],
        outputs=[_activation("y")],
    )
    assert stage_ops.rule_add_operands(with_constant) == "an operand is a constant or missing"
    assert stage_ops.rule_add_operands(mismatched) == "shapes (1, 4, 4, 2) and (1, 4, 1, 2)"


def test_refusal_names_operator_rule_and_detail() -> None:
    with pytest.raises(TflmExtError) as caught:
        stage_ops.check_supported(_conv(zero_points=(0, 3)), 7)
    assert str(caught.value) == (
        "operator 7 (CONV_2D) cannot join a patch stage: Filters are int8 constants with zero "
        "points of 0; biases are int32 constants or absent. Here filter 'w' has non-zero zero "
        "points."
    )


def test_supported_ops_text_lists_every_rule() -> None:
    text = stage_ops.supported_ops_text()
    assert text.count("\n- ") == len(stage_ops.RULES) - 1
    assert (
        "- The operator is CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, PAD, or a global "
        "pool (AVERAGE_POOL_2D, MEAN)." in text
    )
