"""Listing the tensors a pass created in the model, without moving any existing tensor.

Used by both stage passes, ``fuse_patch_stage`` and ``split_stage_builtin``. Signature defs
refer to tensors by their position in the subgraph's tensor list (the passes' invariant,
``tflm_ext.passes``), so new tensors go at its end; a model that was read lists its buffers,
so their buffers go at the end of that list, keeping it complete.
"""

from __future__ import annotations

from collections.abc import Iterable

from tflite_micro.tensorflow.lite.micro.compression import model_editor


def append_new_tensors(model: model_editor.Model, tensors: Iterable[model_editor.Tensor]) -> None:
    """Append to the main subgraph each of ``tensors`` it does not list yet, with its buffer."""
    subgraph = model.subgraphs[0]
    known = {id(t) for t in subgraph.tensors}
    fresh = [t for t in tensors if id(t) not in known]
    subgraph.tensors.extend(fresh)
    if model.buffers:
        model.buffers.extend(t.buffer for t in fresh if t.buffer is not None)
