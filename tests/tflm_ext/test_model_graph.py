"""model_graph: the read-only view agrees with the converter's model and a hand-built one."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.model_graph import read_graph

INT8, INT32 = schema.TensorType.INT8, schema.TensorType.INT32


def test_tiny_model_tensors_ops_and_edges(tiny_int8_model: bytes) -> None:
    graph = read_graph(tiny_int8_model)

    assert [op.name for op in graph.ops] == [
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "AVERAGE_POOL_2D",
        "FULLY_CONNECTED",
    ]
    (source,) = graph.inputs
    assert graph.tensors[source].shape == (1, 16, 16, 1)
    assert graph.tensors[source].dtype == "INT8"
    assert not graph.tensors[source].is_constant
    assert graph.tensors[source].nbytes == 256
    assert len(graph.tensors[source].scales) == 1
    assert graph.producer(source) is None

    conv = graph.ops[0]
    weights, bias = graph.tensors[conv.inputs[1]], graph.tensors[conv.inputs[2]]
    assert weights.is_constant and weights.dtype == "INT8" and weights.shape == (4, 3, 3, 1)
    assert len(weights.scales) == 4 and weights.quantized_dimension == 0
    assert weights.data.shape == (4, 3, 3, 1) and weights.nbytes == 36
    assert bias.is_constant and bias.dtype == "INT32" and bias.nbytes == 16
    assert (conv.options.strideH, conv.options.strideW) == (2, 2)
    assert graph.activation_inputs(0) == (source,)

    for index, op in enumerate(graph.ops[:-1]):
        (output,) = op.outputs
        assert graph.producer(output) == index
        assert graph.consumers(output) == (index + 1,)
    assert graph.outputs == graph.ops[-1].outputs
    assert graph.shape(graph.ops[2].outputs[0]) == (1, 8, 8, 8)
    assert graph.subgraph_count == 1


def _hand_built_model() -> bytes:
    """x -> ADD(x, x) -> CUSTOM "MY_OP" (an absent optional input, custom options) -> y,
    plus a tensor nothing touches."""
    x = model_editor.Tensor(shape=(1, 4, 4, 2), dtype=INT8, name="x")
    doubled = model_editor.Tensor(shape=(1, 4, 4, 2), dtype=INT8, name="doubled")
    table = model_editor.Tensor(shape=(3,), dtype=INT32, data=np.arange(3, dtype=np.int32))
    y = model_editor.Tensor(shape=(1, 2, 2, 2), dtype=INT8, name="y")
    orphan = model_editor.Tensor(shape=(7,), dtype=INT8, name="orphan")
    add = model_editor.Operator(opcode=schema.BuiltinOperator.ADD, inputs=[x, x], outputs=[doubled])
    custom = model_editor.Operator(
        opcode=schema.BuiltinOperator.CUSTOM,
        custom_code="MY_OP",
        inputs=[doubled, None, table],
        outputs=[y],
    )
    custom._fb.customOptions = list(b"\x01\x02\x03")
    subgraph = model_editor.Subgraph(
        tensors=[x, doubled, table, y, orphan],
        operators=[add, custom],
        inputs=[x],
        outputs=[y],
    )
    return bytes(model_editor.Model(subgraphs=[subgraph]).build())


def test_hand_built_model_absent_inputs_custom_options_and_orphans() -> None:
    graph = read_graph(_hand_built_model())
    x, doubled, table, y, orphan = range(5)

    add, custom = graph.ops
    assert add.inputs == (x, x) and graph.consumers(x) == (0,)  # read twice, one consumer
    assert custom.is_custom and custom.name == "MY_OP"
    assert custom.inputs == (doubled, -1, table)
    assert custom.custom_options == b"\x01\x02\x03"
    assert graph.activation_inputs(1) == (doubled,)
    assert graph.tensors[table].data.tolist() == [0, 1, 2]
    assert graph.producer(orphan) is None and graph.consumers(orphan) == ()
    assert graph.tensors[orphan].nbytes == 7 and not graph.tensors[orphan].is_constant
    assert (graph.inputs, graph.outputs) == ((x,), (y,))


def test_garbage_is_a_tflm_ext_error() -> None:
    with pytest.raises(TflmExtError, match="cannot read a .tflite model from 32 B"):
        read_graph(bytes(range(32)))
