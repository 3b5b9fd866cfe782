""".tflite flatbuffers as the wheel's readers see them, read one way everywhere.

Called by every module that opens a model (``graph_stats``, ``model_graph``, ``stage_rules``,
``rewrite``, ``firmware_export``, ``interpreter``), so that bytes which are no model always
fail with the same TflmExtError, and by the passes for what a tensor's buffer says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError


def read_model(model_bytes: bytes) -> model_editor.Model:
    """The model editor's view of a .tflite flatbuffer."""
    with _reading(model_bytes):
        return model_editor.read(bytes(model_bytes))


def read_main_subgraph(model_bytes: bytes) -> tuple[model_editor.Model, model_editor.Subgraph]:
    """The model editor's view and its main subgraph (index 0); a model without one is an
    error like any other unreadable model."""
    with _reading(model_bytes):
        model = model_editor.read(bytes(model_bytes))
        return model, model.subgraphs[0]


def root(model_bytes: bytes) -> schema.Model:
    """The schema-generated reader's root table, which reads fields lazily in place."""
    with _reading(model_bytes):
        return schema.Model.GetRootAs(bytes(model_bytes), 0)


def holds_data(tensor: model_editor.Tensor) -> bool:
    """Whether the tensor's buffer holds data: converters give every tensor a buffer, and
    only constants' buffers are non-empty."""
    return tensor.buffer is not None and len(tensor.buffer.data) > 0


@contextlib.contextmanager
def _reading(model_bytes: bytes) -> Iterator[None]:
    try:
        yield
    except Exception as e:  # the flatbuffer readers raise anything on garbage input
        raise TflmExtError(f"cannot read a .tflite model from {len(model_bytes)} B: {e}") from e


def custom_options(op: model_editor.Operator) -> bytes:
    """An operator's raw custom_options (the reader gives a numpy array, a built model a
    list; none is empty)."""
    options = op._fb.customOptions
    return b"" if options is None else bytes(np.asarray(options, dtype=np.uint8))
