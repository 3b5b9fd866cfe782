"""check_graph: a valid chain passes; each kind of breakage is named."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.passes.check_graph import check_graph, graph_problems

FLOAT32, RELU = schema.TensorType.FLOAT32, schema.BuiltinOperator.RELU


def _chain() -> me.Model:
    """x -RELU-> y -RELU-> z, read back so it has buffers and a signature like real models."""
    x, y, z = (me.Tensor(shape=(1, 4), dtype=FLOAT32, name=n) for n in "xyz")
    ops = [
        me.Operator(opcode=RELU, inputs=[x], outputs=[y]),
        me.Operator(opcode=RELU, inputs=[y], outputs=[z]),
    ]
    model = me.Model(
        subgraphs=[me.Subgraph(tensors=[x, y, z], operators=ops, inputs=[x], outputs=[z])]
    )
    model._fb.signatureDefs = [_signature(0, 2)]
    return me.read(bytes(model.build()))


def _signature(input_index: int, output_index: int) -> schema.SignatureDefT:
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = schema.TensorMapT(), schema.TensorMapT()
    signature.inputs.name, signature.inputs.tensorIndex = "x", input_index
    signature.outputs.name, signature.outputs.tensorIndex = "z", output_index
    signature.inputs, signature.outputs = [signature.inputs], [signature.outputs]
    return signature


def test_a_valid_chain_has_no_problems() -> None:
    model = _chain()
    assert graph_problems(model) == []
    check_graph(model, after="nothing")


def test_tensor_missing_from_the_list_is_named() -> None:
    model = _chain()
    subgraph = model.subgraphs[0]
    subgraph.tensors.remove(subgraph.operators[0].outputs[0])
    problems = graph_problems(model)
    assert "subgraph 0: operator 0 names tensor 'y', which is not in its tensor list" in problems


def test_operators_out_of_order_are_named() -> None:
    model = _chain()
    model.subgraphs[0].operators.reverse()
    assert "subgraph 0 operator 0 (RELU) reads 'y' before anything writes it" in graph_problems(
        model
    )


def test_second_writer_and_written_constant_are_named() -> None:
    model = _chain()
    first, second = model.subgraphs[0].operators
    second.outputs = [first.outputs[0]]
    first.outputs[0].buffer = model.buffers[0]
    first.outputs[0].buffer.data = np.ones(4, np.float32).tobytes()
    problems = graph_problems(model)
    assert any("operator 0 (RELU) writes 'y', already written or constant" in p for p in problems)
    assert any("operator 1 (RELU) writes 'y', already written or constant" in p for p in problems)


def test_stale_signature_and_foreign_buffer_are_named() -> None:
    model = _chain()
    model._fb.signatureDefs[0].outputs[0].tensorIndex = 1
    model.subgraphs[0].tensors[0].buffer = me.Buffer(data=b"")
    problems = graph_problems(model)
    assert (
        "signature 'serving_default' output 'z' points at tensor 1, which is not a subgraph output"
    ) in [
        p.replace("b'serving_default'", "'serving_default'").replace("b'z'", "'z'")
        for p in problems
    ]
    assert "tensor 'x' uses a buffer the model does not list" in problems


def test_check_graph_names_the_step() -> None:
    model = _chain()
    model.subgraphs[0].operators.reverse()
    with pytest.raises(TflmExtError, match="graph invalid after fuse_patch_stage: subgraph 0"):
        check_graph(model, after="fuse_patch_stage")
