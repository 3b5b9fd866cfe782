"""Graph rewrite passes over the wheel's model editor (``model_editor.Model``), in place.

One module per pass, named by what it does; ``tflm_ext.rewrite`` runs them in order and
calls ``check_graph`` after each. Helper modules that are not passes: ``check_graph``
(validity), ``stage_ops`` (support rules and op translation), ``quantization`` (TFLM's
requantization parameters), ``new_tensors`` (listing what a pass creates, keeping the
invariant below).

Invariant every pass keeps: signature defs name tensors by their position in the subgraph's
tensor list, so a pass appends new tensors at the end and only ``remove_dead_tensors`` (which
renumbers the signatures) removes any.
"""

from tflm_ext.passes.fuse_patch_stage import (
    fuse_patch_stage,
    read_rows_patch_stage,
    stream_patch_stage,
)
from tflm_ext.passes.remove_dead_tensors import remove_dead_tensors
from tflm_ext.passes.remove_unused_buffers import remove_unused_buffers

# What runs after any pass that removes operators, in this order.
CLEANUP_PASSES = (remove_dead_tensors, remove_unused_buffers)

__all__ = [
    "CLEANUP_PASSES",
    "fuse_patch_stage",
    "read_rows_patch_stage",
    "remove_dead_tensors",
    "remove_unused_buffers",
    "stream_patch_stage",
]
