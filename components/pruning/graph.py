"""The calls of a Keras 3 functional model, in graph order, read from its symbolic tensors.

Used by the dependency analysis and the MAC count. Walks back from ``model.outputs`` through
each tensor's ``_keras_history`` (the only record Keras 3 keeps of which layer call made a
tensor), so nodes a layer has from other models are never seen. A layer called twice (shared
weights) appears once per call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer: its input and output tensors (keyed by ``id``) and their shapes."""

    layer: object
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]
    output_shapes: tuple[tuple[int | None, ...], ...]

    @property
    def name(self) -> str:
        return self.layer.name


def layer_calls(model) -> tuple[LayerCall, ...]:
    """Every layer call from the model's inputs to its outputs, each after its inputs'.

    Iterative depth-first post-order, so deep networks do not meet Python's recursion limit;
    in a graph without cycles a node is only appended once all its inputs' nodes are.
    """
    order: list[LayerCall] = []
    seen: set[int] = set()
    stack = [(_node(t), False) for t in reversed(model.outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(_call(node))
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((_node(t), False) for t in reversed(node.input_tensors))
    return tuple(order)


def _node(tensor):
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _call(node) -> LayerCall:
    return LayerCall(
        layer=node.operation,
        inputs=tuple(id(t) for t in node.input_tensors),
        outputs=tuple(id(t) for t in node.outputs),
        input_shapes=tuple(tuple(t.shape) for t in node.input_tensors),
        output_shapes=tuple(tuple(t.shape) for t in node.outputs),
    )
