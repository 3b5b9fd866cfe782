"""The validity check ``tflm_ext.rewrite`` runs before the first pass and after every pass.

Not a pass itself: it changes nothing and raises TflmExtError naming the pass after which the
graph broke and what broke. Valid means: every tensor an operator or the subgraph names is in
the subgraph's tensor list; each tensor has at most one writer and no operator writes a
constant; operators are in topological order; custom operators have a name; signature defs
point at the subgraph's inputs/outputs; every tensor's buffer belongs to the model.
Dead tensors and unused buffers are wasteful, not invalid: the cleanup passes remove them.
"""

from __future__ import annotations

from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.errors import TflmExtError
from tflm_ext.tflite_file import holds_data

_SHOWN = 5


def check_graph(model: model_editor.Model, after: str) -> None:
    """Raise TflmExtError listing what is wrong with the graph ``after`` a step."""
    problems = graph_problems(model)
    if problems:
        listed = "; ".join(problems[:_SHOWN])
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise TflmExtError(f"graph invalid after {after}: {listed}{more}")


def graph_problems(model: model_editor.Model) -> list[str]:
    """Every problem found, as messages naming the subgraph, operator and tensor."""
    problems = []
    for index, subgraph in enumerate(model.subgraphs):
        problems += _membership(subgraph, index)
        problems += _dataflow(subgraph, index)
    return problems + _signatures(model) + _buffers(model)


def _membership(subgraph: model_editor.Subgraph, index: int) -> list[str]:
    listed = {id(t) for t in subgraph.tensors}
    named = [("input", t) for t in subgraph.inputs] + [("output", t) for t in subgraph.outputs]
    for position, op in enumerate(subgraph.operators):
        named += [(f"operator {position}", t) for t in [*op.inputs, *op.outputs] if t is not None]
    return [
        f"subgraph {index}: {where} names tensor {t.name!r}, which is not in its tensor list"
        for where, t in named
        if id(t) not in listed
    ]


def _dataflow(subgraph: model_editor.Subgraph, index: int) -> list[str]:
    """Single writer, no constant written, every activation written before it is read."""
    problems = []
    available = {id(t) for t in subgraph.inputs}
    written: set[int] = set()
    for position, op in enumerate(subgraph.operators):
        where = f"subgraph {index} operator {position} ({op.opcode_name})"
        if op.opcode == schema.BuiltinOperator.CUSTOM and not op.custom_code:
            problems.append(f"{where} is CUSTOM without a name")
        for t in op.inputs:
            if t is not None and not _is_source(t) and id(t) not in available:
                problems.append(f"{where} reads {t.name!r} before anything writes it")
        for t in op.outputs:
            if id(t) in written or holds_data(t):
                problems.append(f"{where} writes {t.name!r}, already written or constant")
            written.add(id(t))
            available.add(id(t))
    problems += [
        f"subgraph {index} output {t.name!r} is never written"
        for t in subgraph.outputs
        if id(t) not in available and not _is_source(t)
    ]
    return problems


def _signatures(model: model_editor.Model) -> list[str]:
    problems = []
    for signature in model._fb.signatureDefs or []:
        subgraph = model.subgraphs[signature.subgraphIndex]
        for role, entries, allowed in (
            ("input", signature.inputs or [], subgraph.inputs),
            ("output", signature.outputs or [], subgraph.outputs),
        ):
            allowed_ids = {id(t) for t in allowed}
            for entry in entries:
                position = entry.tensorIndex
                if not 0 <= position < len(subgraph.tensors) or (
                    id(subgraph.tensors[position]) not in allowed_ids
                ):
                    problems.append(
                        f"signature {signature.signatureKey!r} {role} {entry.name!r} points at "
                        f"tensor {position}, which is not a subgraph {role}"
                    )
    return problems


def _buffers(model: model_editor.Model) -> list[str]:
    if not model.buffers:
        return []  # a model built from scratch: the editor emits buffers as it meets them
    owned = {id(b) for b in model.buffers}
    return [
        f"tensor {t.name!r} uses a buffer the model does not list"
        for t in model_editor.iter_tensors(model)
        if t.buffer is not None and id(t.buffer) not in owned
    ]


def _is_source(tensor: model_editor.Tensor) -> bool:
    """Constants and variable (state) tensors need no writer before they are read."""
    return holds_data(tensor) or tensor.is_variable
