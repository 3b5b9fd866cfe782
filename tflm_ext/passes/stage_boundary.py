"""Where a stage of operators meets the rest of the graph: its one input, its one output.

Used by both stage passes, ``fuse_patch_stage`` and ``split_stage_builtin``, so the two
modes accept the same stages with the same messages: a stage computed tile by tile must read exactly
one activation from outside it, and only its last operator's output may leave it, because
the tiles keep every other intermediate as a window that no one outside ever sees.
"""

from __future__ import annotations

from tflite_micro.tensorflow.lite.micro.compression import model_editor

from tflm_ext.errors import TflmExtError
from tflm_ext.passes import stage_ops


def stage_operators(
    subgraph: model_editor.Subgraph, first_op: int, last_op: int
) -> list[model_editor.Operator]:
    """Operators first..last (inclusive) of the subgraph; refuses a range outside it."""
    count = len(subgraph.operators)
    if not 0 <= first_op <= last_op < count:
        raise TflmExtError(f"stage {first_op}..{last_op} is not inside the {count} operators")
    return subgraph.operators[first_op : last_op + 1]


def checked_stage_input(
    subgraph: model_editor.Subgraph,
    ops: list[model_editor.Operator],
    first_op: int,
    *,
    streamed: bool = False,
) -> model_editor.Tensor:
    """The stage input, once the stage passes every check both stage passes make: each
    operator's support rules (``stage_ops``), one activation in, only the last output out,
    and global pools only where they can run (``streamed``: computed row by row)."""
    for offset, op in enumerate(ops):
        stage_ops.check_supported(op, first_op + offset)
    check_pools(ops, first_op, streamed)
    source = stage_input(ops, first_op)
    check_nothing_escapes(subgraph, ops, first_op)
    return source


def check_pools(ops: list[model_editor.Operator], first_op: int, streamed: bool) -> None:
    """A global pool reads every row of its input before it writes its one pixel: only a
    streamed stage runs it (summing row by row), and only as its last operator."""
    for offset, op in enumerate(ops):
        if op.opcode not in stage_ops.POOLS:
            continue
        where = f"operator {first_op + offset} ({op.opcode_name}) is a global pool"
        if not streamed:
            raise TflmExtError(f"{where}: only a streamed stage runs it, not tiles or builtins")
        if offset != len(ops) - 1:
            raise TflmExtError(f"{where}: it must be the stage's last operator")


def stage_input(ops: list[model_editor.Operator], first_op: int) -> model_editor.Tensor:
    """The one activation the stage reads that no stage op writes."""
    produced = {id(op.outputs[0]) for op in ops}
    outside = {
        id(t): t
        for op in ops
        for t in op.inputs
        if t is not None and not stage_ops.is_constant(t) and id(t) not in produced
    }
    if len(outside) != 1:
        names = sorted(str(t.name) for t in outside.values())
        raise TflmExtError(
            f"stage starting at operator {first_op} must read exactly one activation from "
            f"outside, not {len(outside)}: {names}"
        )
    return next(iter(outside.values()))


def check_nothing_escapes(
    subgraph: model_editor.Subgraph, ops: list[model_editor.Operator], first_op: int
) -> None:
    """Intermediates feed later stage ops only, and each feeds at least one."""
    inside = {id(op) for op in ops}
    model_outputs = {id(t) for t in subgraph.outputs}
    for offset, op in enumerate(ops[:-1]):
        tensor = op.outputs[0]
        readers = [o for o in subgraph.operators if any(t is tensor for t in o.inputs)]
        if id(tensor) in model_outputs or any(id(o) not in inside for o in readers):
            raise TflmExtError(
                f"operator {first_op + offset}'s output {tensor.name!r} is used outside the "
                f"stage; a stage must end at the only tensor that leaves it"
            )
        if not readers:
            raise TflmExtError(f"operator {first_op + offset}'s output {tensor.name!r} is unused")
