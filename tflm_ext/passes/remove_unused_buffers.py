"""Pass: drop buffers that no tensor references, keeping the conventional empty buffer 0.

Called by ``tflm_ext.rewrite`` after ``remove_dead_tensors``: the constants of replaced
operators (and the metadata buffers the model editor re-emits on every build) would
otherwise stay in the flatbuffer as dead weight in flash.
"""

from __future__ import annotations

import logging

from tflite_micro.tensorflow.lite.micro.compression import model_editor

log = logging.getLogger(__name__)


def remove_unused_buffers(model: model_editor.Model) -> None:
    """Prune model.buffers to the buffers some tensor uses (the editor renumbers them)."""
    unused = unused_buffers(model)
    if model._fb.metadataBuffer:
        # The deprecated index list would go stale; keep every buffer rather than break it.
        log.warning("model lists deprecated metadata_buffer indices; buffers left in place")
        return
    model_editor.prune_buffers(model)
    log.info("removed %d unused buffers", len(unused))


def unused_buffers(model: model_editor.Model) -> list[model_editor.Buffer]:
    """Buffers after the first that neither a tensor nor a metadata entry of the model as
    read references (the editor rebuilds metadata buffers from ``model.metadata``)."""
    referenced = {id(t.buffer) for t in model_editor.iter_tensors(model) if t.buffer is not None}
    metadata = {entry.buffer for entry in model._fb.metadata or []}
    return [b for b in model.buffers[1:] if id(b) not in referenced and b.index not in metadata]
