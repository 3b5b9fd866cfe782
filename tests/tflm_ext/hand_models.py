"""Tiny hand-built .tflite graphs for tests that need a shape Keras does not produce."""

from __future__ import annotations

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema


def unsupported_first_model() -> bytes:
    """8x8x2 -> SPACE_TO_DEPTH -> 4x4x8: its first operator joins no stage in any mode."""
    int8 = schema.TensorType.INT8
    quantization = model_editor.Quantization(scales=0.5, zero_points=0)
    x = model_editor.Tensor(shape=(1, 8, 8, 2), dtype=int8, quantization=quantization)
    y = model_editor.Tensor(shape=(1, 4, 4, 8), dtype=int8, quantization=quantization)
    space_to_depth = schema.BuiltinOperator.SPACE_TO_DEPTH
    op = model_editor.Operator(opcode=space_to_depth, inputs=[x], outputs=[y])
    subgraph = model_editor.Subgraph(tensors=[x, y], operators=[op], inputs=[x], outputs=[y])
    return bytes(model_editor.Model(subgraphs=[subgraph]).build())
