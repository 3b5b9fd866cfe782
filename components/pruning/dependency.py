"""Channel dependency groups: which channels of a Keras 3 functional model must go together.

Called by ``components.prune`` (``analyse``) before ranking and surgery. Every channel
position (last axis) of every tensor is labelled with an *element*: the filter that made it
(``(layer, filter)``) or a frozen source (the model's input, an opaque layer's output).
Walking the calls in graph order, each layer's rule says how its output's elements follow
from its inputs':

- producers (Conv1D/2D/3D with ``groups`` 1, Dense) start new elements, one per filter,
  and read their input's elements (their kernel's input slice follows them);
- depthwise convolutions (depth multiplier 1) and BatchNormalization on the last axis keep
  their input's elements and carry per-channel weights that follow them;
- element-wise layers (activations but softmax, dropout, pooling, padding, cropping,
  upsampling) keep them;
- Add, Subtract, Multiply, Average, Maximum, Minimum tie their inputs position by position:
  those channels become one *unit*, removed together or not at all;
- Concatenate on the last axis lays its inputs' elements side by side; Flatten repeats them
  once per spatial position (channels last, row-major);
- anything else is opaque: its inputs are frozen and its outputs are new frozen elements.

The model's outputs are frozen too, so the classifier's classes are never removed. A unit
holding any frozen element cannot be removed. A *group* is every producer whose filters are
tied to another's by some unit, with the layers that follow those channels; the producers'
filters define it, and its units are the channels pruning may remove.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, replace

import keras
import numpy as np

from components.pruning.graph import LayerCall, layer_calls

log = logging.getLogger(__name__)

L = keras.layers
_PRODUCERS = (L.Conv1D, L.Conv2D, L.Conv3D, L.Dense)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
_ELEMENTWISE = (
    L.ReLU, L.LeakyReLU, L.ELU, L.Identity,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianDropout, L.GaussianNoise, L.AlphaDropout,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
)  # fmt: skip
#: Activations that mix channels: a channel's output depends on every other channel.
_CHANNEL_MIXING = ("softmax", "log_softmax")


@dataclass(frozen=True)
class ChannelGroup:
    """Producers whose filters must be removed together, the layers that follow their
    channels (BatchNormalization, depthwise convolutions, consumers' input slices), the
    units pruning may remove (ids, in the first producer's filter order) and how many of the
    group's channels are frozen (tied to the model's input or output, or an opaque layer)."""

    producers: tuple[str, ...]
    followers: tuple[str, ...]
    units: tuple[int, ...]
    frozen_units: int

    @property
    def channels(self) -> int:
        """Channels of the group's tensors (each unit is one channel of each)."""
        return len(self.units) + self.frozen_units


@dataclass(frozen=True)
class ChannelAnalysis:
    """Every element's unit, the units' members, and the elements each layer's weights are
    indexed by: ``producers`` (per filter) and ``inputs`` (per input channel position)."""

    unit_of: np.ndarray
    members: dict[int, tuple[tuple[str, int], ...]]
    producers: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    roles: dict[str, str]
    groups: tuple[ChannelGroup, ...]

    def kept(self, elements: np.ndarray, removed: frozenset[int]) -> np.ndarray:
        """Positions of ``elements`` whose unit is not in ``removed``."""
        if not removed:
            return np.arange(len(elements))
        units = self.unit_of[elements]
        return np.flatnonzero(~np.isin(units, np.fromiter(removed, dtype=np.int64)))

    @property
    def prunable_units(self) -> int:
        return sum(len(g.units) for g in self.groups)


def analyse(model) -> ChannelAnalysis:
    """The channel dependency groups of a functional ``model`` (see the module docstring)."""
    builder = _Builder()
    for call in layer_calls(model):
        builder.add(call)
    for tensor in model.outputs:
        builder.freeze(builder.elements[id(tensor)])
    return builder.finish()


def role_of(layer) -> str:
    """How a layer's channels follow its inputs': input, producer, channelwise, pass,
    merge, concat, flatten or opaque (shape-dependent checks happen per call)."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "opaque"
    if isinstance(layer, L.InputLayer):
        return "input"
    if isinstance(layer, _PRODUCERS) and getattr(layer, "groups", 1) == 1:
        return "producer"
    if isinstance(layer, _DEPTHWISE) and layer.depth_multiplier == 1:
        return "channelwise"
    if isinstance(layer, L.BatchNormalization):
        return "channelwise"
    if isinstance(layer, _MERGES):
        return "merge"
    if isinstance(layer, L.Concatenate):
        return "concat"
    if isinstance(layer, L.Flatten):
        return "flatten"
    if isinstance(layer, _ELEMENTWISE):
        return "pass"
    if isinstance(layer, L.Activation) and _activation(layer) not in _CHANNEL_MIXING:
        return "pass"
    return "opaque"


def _activation(layer) -> str:
    activation = layer.get_config().get("activation")
    return activation if isinstance(activation, str) else str(activation)


class _Builder:
    """Labels tensors with elements call by call; a union-find ties elements into units."""

    def __init__(self):
        self.parent: list[int] = []
        self.owner: list[tuple[str, int] | None] = []
        self.frozen: set[int] = set()
        self.elements: dict[int, np.ndarray] = {}
        self.producers: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}
        self.roles: dict[str, str] = {}
        self.order: list[str] = []

    def add(self, call: LayerCall) -> None:
        role = self.roles.setdefault(call.name, role_of(call.layer))
        if call.name not in self.order:
            self.order.append(call.name)
        handler = getattr(self, f"_{role}")
        outputs = handler(call)
        if outputs is None:  # the rule does not apply to this call's shapes
            log.debug("layer %s (%s) is opaque to pruning", call.name, type(call.layer).__name__)
            self.roles[call.name] = "opaque"
            outputs = self._opaque(call)
        for key, elements in zip(call.outputs, outputs, strict=True):
            self.elements[key] = elements

    def new(self, count: int, owner: str | None = None) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        self.owner.extend((owner, j) if owner else None for j in range(count))
        if owner is None:
            self.frozen.update(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, e: int) -> int:
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def freeze(self, elements: np.ndarray) -> None:
        self.frozen.update(elements.tolist())

    def _single_input(self, call: LayerCall) -> np.ndarray | None:
        if len(call.inputs) != 1 or len(call.outputs) != 1:
            return None
        elements = self.elements[call.inputs[0]]
        known = self.inputs.setdefault(call.name, elements)
        if known is not elements:  # a shared layer: its weights serve every call's channels
            self.tie(known, elements)
        return elements

    def _input(self, call: LayerCall):
        return [self.new(_channels(shape)) for shape in call.output_shapes]

    def _producer(self, call: LayerCall):
        if self._single_input(call) is None:
            return None
        if call.name not in self.producers:
            self.producers[call.name] = self.new(_channels(call.output_shapes[0]), call.name)
        elements = self.producers[call.name]
        if _activation(call.layer) in _CHANNEL_MIXING:
            self.freeze(elements)
        return [elements]

    def _channelwise(self, call: LayerCall):
        if isinstance(call.layer, L.BatchNormalization) and not _last_axis(
            call.layer.axis, call.input_shapes[0]
        ):
            return None
        elements = self._single_input(call)
        return None if elements is None else [elements]

    def _pass(self, call: LayerCall):
        if len(call.inputs) != 1 or len(call.outputs) != 1:
            return None
        return [self.elements[call.inputs[0]]]

    def _merge(self, call: LayerCall):
        sources = [self.elements[key] for key in call.inputs]
        if len({len(s) for s in sources}) != 1:  # broadcasting: channels do not line up
            return None
        for other in sources[1:]:
            self.tie(sources[0], other)
        return [sources[0]]

    def _concat(self, call: LayerCall):
        if not _last_axis(call.layer.axis, call.input_shapes[0]):
            return None
        return [np.concatenate([self.elements[key] for key in call.inputs])]

    def _flatten(self, call: LayerCall):
        spatial = call.input_shapes[0][1:-1]
        if len(call.inputs) != 1 or any(d is None for d in spatial):
            return None
        return [np.tile(self.elements[call.inputs[0]], math.prod(spatial))]

    def _opaque(self, call: LayerCall):
        for key in call.inputs:
            self.freeze(self.elements[key])
        return [self.new(_channels(shape)) for shape in call.output_shapes]

    def finish(self) -> ChannelAnalysis:
        unit_of = np.array([self.find(e) for e in range(len(self.parent))], dtype=np.int64)
        frozen_units = {int(unit_of[e]) for e in self.frozen}
        members: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for e, owner in enumerate(self.owner):
            if owner is not None:
                members[int(unit_of[e])].append(owner)
        analysis = ChannelAnalysis(
            unit_of=unit_of,
            members={u: tuple(m) for u, m in members.items()},
            producers=self.producers,
            inputs=self.inputs,
            roles=self.roles,
            groups=(),
        )
        groups = _groups(analysis, frozen_units, self.order)
        return replace(analysis, groups=groups)


def _groups(analysis: ChannelAnalysis, frozen: set[int], order: list[str]):
    """Producers tied by a shared unit form one group, in graph order of their first
    producer; a group lists its removable units in that producer's filter order."""
    group_of = {name: name for name in analysis.producers}

    def root(name: str) -> str:
        while group_of[name] != name:
            name = group_of[name]
        return name

    for owners in analysis.members.values():
        first = root(owners[0][0])
        for name, _ in owners[1:]:
            other = root(name)
            if other != first:
                group_of[other] = first
    ranked = [n for n in order if n in analysis.producers]
    named = defaultdict(list)
    for name in ranked:
        named[root(name)].append(name)
    return tuple(_group(analysis, tuple(names), frozen, order) for names in named.values())


def _group(analysis: ChannelAnalysis, producers, frozen: set[int], order) -> ChannelGroup:
    units = list(dict.fromkeys(int(analysis.unit_of[e]) for p in producers
                               for e in analysis.producers[p]))  # fmt: skip
    unit_set = set(units)
    followers = tuple(
        name
        for name in order
        if name in analysis.inputs
        and unit_set.intersection(analysis.unit_of[analysis.inputs[name]].tolist())
    )
    return ChannelGroup(
        producers=producers,
        followers=followers,
        units=tuple(u for u in units if u not in frozen),
        frozen_units=sum(u in frozen for u in units),
    )


def _last_axis(axis: int, shape: tuple) -> bool:
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return isinstance(axis, int) and axis in (-1, len(shape) - 1)


def _channels(shape: tuple) -> int:
    return int(shape[-1]) if shape and shape[-1] is not None else 0
