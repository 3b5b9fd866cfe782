"""remove_unused_buffers: buffers of removed constants go; buffer 0 and metadata stay."""

from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.passes.remove_dead_tensors import remove_dead_tensors
from tflm_ext.passes.remove_unused_buffers import remove_unused_buffers, unused_buffers

FLOAT32, ADD = schema.TensorType.FLOAT32, schema.BuiltinOperator.ADD


def _model() -> me.Model:
    """x + weights -> y, plus a constant nothing reads, plus metadata."""
    x, y = (me.Tensor(shape=(1, 4), dtype=FLOAT32, name=n) for n in "xy")
    weights = me.Tensor(shape=(1, 4), dtype=FLOAT32, data=np.ones((1, 4), np.float32), name="w")
    unread = me.Tensor(shape=(2,), dtype=FLOAT32, data=np.zeros(2, np.float32), name="unread")
    op = me.Operator(opcode=ADD, inputs=[x, weights], outputs=[y])
    subgraph = me.Subgraph(tensors=[x, weights, unread, y], operators=[op], inputs=[x], outputs=[y])
    return me.read(bytes(me.Model(subgraphs=[subgraph], metadata={"note": b"kept"}).build()))


def test_buffer_of_a_removed_constant_is_dropped_and_metadata_kept() -> None:
    model = _model()
    remove_dead_tensors(model)
    orphaned = unused_buffers(model)
    assert [bytes(b.data) for b in orphaned] == [np.zeros(2, np.float32).tobytes()]

    remove_unused_buffers(model)

    # left: the empty buffer 0 and the weights; build() re-emits the metadata buffer
    assert [bytes(b.data) for b in model.buffers] == [b"", np.ones(4, np.float32).tobytes()]
    rebuilt = me.read(bytes(model.build()))
    assert rebuilt.metadata == {"note": b"kept"}
    assert unused_buffers(rebuilt) == []
    assert rebuilt.subgraphs[0].operators[0].inputs[1].array.tolist() == [[1, 1, 1, 1]]


def test_repeated_builds_do_not_pile_up_metadata_buffers() -> None:
    model = _model()
    for _ in range(3):
        remove_unused_buffers(model)
        model = me.read(bytes(model.build()))
    assert len(model.buffers) == len(_model().buffers)
