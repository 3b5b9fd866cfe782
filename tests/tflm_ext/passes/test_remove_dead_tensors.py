"""remove_dead_tensors: orphans go, signature indices follow, LSTM-style ops are refused."""

from __future__ import annotations

import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.passes.check_graph import graph_problems
from tflm_ext.passes.remove_dead_tensors import dead_tensors, remove_dead_tensors

FLOAT32, RELU = schema.TensorType.FLOAT32, schema.BuiltinOperator.RELU


def _with_orphans() -> me.Model:
    """orphan_a, x -RELU-> y, orphan_b, with a signature naming x (1) and y (2)."""
    a, x, y, b = (
        me.Tensor(shape=(1, 4), dtype=FLOAT32, name=n) for n in ("orphan_a", "x", "y", "orphan_b")
    )
    op = me.Operator(opcode=RELU, inputs=[x], outputs=[y])
    model = me.Model(
        subgraphs=[me.Subgraph(tensors=[a, x, y, b], operators=[op], inputs=[x], outputs=[y])]
    )
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = [schema.TensorMapT()], [schema.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "x", 1
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "y", 2
    model._fb.signatureDefs = [signature]
    return me.read(bytes(model.build()))


def test_orphans_are_removed_and_signatures_renumbered() -> None:
    model = _with_orphans()
    assert [t.name for t in dead_tensors(model.subgraphs[0])] == ["orphan_a", "orphan_b"]

    remove_dead_tensors(model)

    subgraph = model.subgraphs[0]
    assert [t.name for t in subgraph.tensors] == ["x", "y"]
    signature = model._fb.signatureDefs[0]
    assert (signature.inputs[0].tensorIndex, signature.outputs[0].tensorIndex) == (0, 1)
    assert graph_problems(model) == []
    rebuilt = me.read(bytes(model.build()))
    assert [t.name for t in rebuilt.subgraphs[0].tensors] == ["x", "y"]


def test_a_clean_graph_is_left_alone() -> None:
    model = _with_orphans()
    remove_dead_tensors(model)
    kept = list(model.subgraphs[0].tensors)
    remove_dead_tensors(model)
    assert model.subgraphs[0].tensors == kept
    assert model._fb.signatureDefs[0].outputs[0].tensorIndex == 1


def test_operators_with_intermediates_are_refused() -> None:
    model = _with_orphans()
    model.subgraphs[0].operators[0]._fb.intermediates = [0]
    with pytest.raises(TflmExtError, match="intermediate tensors"):
        remove_dead_tensors(model)
