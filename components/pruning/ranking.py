"""Rank the removable channels of each dependency group and choose which to remove.

Called by ``components.prune`` for a channel ratio, and by the budget search for each ratio
it tries. Criteria for a unit (a channel removed from every tensor of its group at once):

- ``l1`` (default; Li et al. 2017, "Pruning Filters for Efficient ConvNets"): the L1 norm
  of the filters that produce it, ``sum |kernel[..., j]|``, summed over the group's
  producers (an Add ties one filter of each). Small filters contribute little.
- ``bn_gamma`` (Liu et al. 2017, "network slimming"): the sum of ``|gamma|`` over the
  BatchNormalization layers on the unit's channels: batch norm rescales each channel, so
  a small scale silences it whatever its filter. A group where some unit has no batch norm
  falls back to ``l1`` (a score of 0 would remove such units first for no reason).

Scopes for a ratio ``r`` (the fraction of removable channels to remove):

- ``uniform``: every group loses ``round(r * units)`` of its lowest-scored units, so each
  layer keeps the same share of its width (the usual choice: no layer is hollowed out);
- ``global``: all units of all groups are ranked together, each score divided by its group's
  mean (L1 norms grow with fan-in, so raw scores do not compare across layers), and the
  ``round(r * all units)`` lowest are removed; layers that matter less lose more.

Either way a group keeps at least ``min_channels`` channels, and with ``channel_multiple``
(for example 8, for kernels that vectorise over channels) its kept count is rounded up to a
multiple of it, never above the original width. Every producer keeps at least one filter
(a layer is never deleted), which can leave a group tied through a concatenation slightly
wider than asked.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict

import numpy as np

from components.pruning.dependency import ChannelAnalysis, ChannelGroup

log = logging.getLogger(__name__)

CRITERIA = ("l1", "bn_gamma")
SCOPES = ("uniform", "global")


def unit_scores(model, analysis: ChannelAnalysis, criterion: str = "l1") -> dict[int, float]:
    """A score per removable unit; lower means removed first."""
    l1 = _l1_scores(model, analysis)
    if criterion == "l1":
        return l1
    gamma = _gamma_scores(model, analysis)
    scores: dict[int, float] = {}
    for group in analysis.groups:
        use_gamma = all(u in gamma for u in group.units)
        if not use_gamma and group.units:
            log.debug("group of %s has channels without batch norm: ranked by L1",
                      group.producers[0])  # fmt: skip
        source = gamma if use_gamma else l1
        scores.update({u: source[u] for u in group.units})
    return scores


def select(
    analysis: ChannelAnalysis,
    scores: dict[int, float],
    ratio: float,
    *,
    scope: str = "uniform",
    min_channels: int = 1,
    channel_multiple: int = 1,
) -> frozenset[int]:
    """The units to remove for ``ratio`` (see the module docstring for the scopes)."""
    groups = [g for g in analysis.groups if g.units]
    if ratio <= 0 or not groups:
        return frozenset()
    if scope == "uniform":
        wanted = {g: round(ratio * len(g.units)) for g in groups}
    else:
        wanted = _global_counts(groups, scores, ratio, min_channels)
    allowed = {g: _allowed(g, wanted[g], min_channels, channel_multiple) for g in groups}
    return frozenset(u for g in groups for u in _lowest(analysis, g, scores, allowed[g]))


def _allowed(group: ChannelGroup, wanted: int, min_channels: int, multiple: int) -> int:
    """How many units ``group`` may lose of the ``wanted``: it keeps ``min_channels`` and a
    multiple of ``multiple`` channels (or all of them)."""
    keep = max(group.channels - wanted, min_channels)
    keep = min(group.channels, math.ceil(keep / multiple) * multiple)
    return max(0, min(len(group.units), group.channels - keep))


def _lowest(analysis: ChannelAnalysis, group: ChannelGroup, scores, count: int) -> list[int]:
    """Up to ``count`` lowest-scored units of ``group`` (ties: filter order), skipping any
    whose removal would leave one of its producers without a filter (a concatenation can
    tie all of a narrow producer's filters into a wider group)."""
    left = {name: len(analysis.producers[name]) for name in group.producers}
    chosen: list[int] = []
    for i in np.argsort([scores[u] for u in group.units], kind="stable"):
        if len(chosen) == count:
            break
        owners = Counter(name for name, _ in analysis.members[group.units[i]])
        if all(left[name] > n for name, n in owners.items()):
            left.update({name: left[name] - n for name, n in owners.items()})
            chosen.append(group.units[i])
    return chosen


def _global_counts(groups: list[ChannelGroup], scores, ratio: float, min_channels: int):
    """How many units each group loses when the lowest ``ratio`` of all units go, ranked
    by score / group mean, each group keeping ``min_channels`` (within a group this order is
    the group's own, so ``_lowest`` then picks the same units)."""
    ranked = []
    for index, g in enumerate(groups):
        mean = float(np.mean([scores[u] for u in g.units])) or 1.0
        ranked += [(scores[u] / mean, index, position) for position, u in enumerate(g.units)]
    target = round(ratio * len(ranked))
    counts = [0] * len(groups)
    for _, index, _ in sorted(ranked):
        if sum(counts) == target:
            break
        if groups[index].channels - counts[index] > min_channels:
            counts[index] += 1
    return dict(zip(groups, counts, strict=True))


def _l1_scores(model, analysis: ChannelAnalysis) -> dict[int, float]:
    scores: dict[int, float] = defaultdict(float)
    for name, elements in analysis.producers.items():
        kernel = np.asarray(model.get_layer(name).kernel)
        norms = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        for unit, norm in zip(analysis.unit_of[elements].tolist(), norms.tolist(), strict=True):
            scores[unit] += norm
    return dict(scores)


def _gamma_scores(model, analysis: ChannelAnalysis) -> dict[int, float]:
    scores: dict[int, float] = defaultdict(float)
    for name, elements in analysis.inputs.items():
        layer = model.get_layer(name)
        if analysis.roles[name] != "channelwise" or getattr(layer, "gamma", None) is None:
            continue
        gammas = np.abs(np.asarray(layer.gamma))
        for unit, gamma in zip(analysis.unit_of[elements].tolist(), gammas.tolist(), strict=True):
            scores[unit] += gamma
    return dict(scores)
