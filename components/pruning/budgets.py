"""Figures of a candidate (MACs, parameters, int8 flash and TFLM arena) and the budget search.

Called by ``components.prune``. MACs are counted on the Keras graph with the rule of
``tflm_ext.graph_stats`` (one multiply-accumulate per output element and kernel weight of
each convolution, depthwise convolution and dense layer; nothing else), so a ``macs_ratio``
search needs no conversion; the figures reported are the int8 model's own. Flash is the
int8 flatbuffer's size and the arena TFLM's measured total (``tflm_ext.measure_arena`` in a
child process: TFLM aborts on some bad models), converted as the quantize component does
(batch of one, full int8).

The search walks the channel ratio in steps of ``step`` up to ``ceiling`` and bisects for
the smallest ratio whose figure fits, assuming the figure does not grow as channels go
(true of flash and MACs; the arena can wobble by alignment, and the chosen candidate is
always one measured to fit). The ceiling is tried first, so an impossible budget costs one
measurement and is refused naming the best figure reached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from components.errors import ComponentError
from components.pruning.graph import layer_calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    """What a candidate costs: int8 MACs, Keras parameters, int8 flash and TFLM arena."""

    macs: int
    params: int
    flash_bytes: int
    arena_total: int


@dataclass(frozen=True)
class Found:
    """The smallest ratio of the search whose figure fits, its figure and its candidate."""

    ratio: float
    value: int
    candidate: object


def keras_macs(model) -> int:
    """MACs of one inference (batch of one), counted as ``tflm_ext.graph_stats`` does."""
    return sum(_call_macs(call.layer, call.input_shapes, call.output_shapes)
               for call in layer_calls(model))  # fmt: skip


def _call_macs(layer, input_shapes, output_shapes) -> int:
    layers = keras.layers
    if not output_shapes or not input_shapes:
        return 0
    outputs = math.prod(d for d in output_shapes[0][1:] if d is not None)
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        return outputs * math.prod(layer.kernel_size)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        fan_in = input_shapes[0][-1] // getattr(layer, "groups", 1)
        return outputs * math.prod(layer.kernel_size) * fan_in
    if isinstance(layer, layers.Dense):
        return outputs * input_shapes[0][-1]
    return 0


def int8_bytes(model, calibration: np.ndarray) -> bytes:
    """The model as the quantize component converts it: batch of one, full int8."""
    from components.quantize import batch_of_one, convert_int8

    try:
        return convert_int8(batch_of_one(model), calibration)
    except Exception as e:  # the converter raises many unrelated types
        raise ComponentError(f"int8 conversion of the pruned {model.name} failed: {e}") from e


def measure(model, calibration: np.ndarray) -> Figures:
    """Every figure of ``model``: converts it to int8 and measures its arena on TFLM."""
    import tflm_ext

    model_bytes = int8_bytes(model, calibration)
    try:
        arena = tflm_ext.run_isolated(tflm_ext.measure_arena, model_bytes)
    except tflm_ext.TflmExtError as e:
        raise ComponentError(f"TFLM could not run the pruned {model.name}: {e}") from e
    return Figures(
        macs=tflm_ext.graph_stats(model_bytes).total_macs,
        params=int(model.count_params()),
        flash_bytes=len(model_bytes),
        arena_total=arena.total,
    )


def search(
    candidate: Callable[[float], object],
    figure: Callable[[object], int],
    limit: int,
    budget: str,
    *,
    step: float,
    ceiling: float,
) -> Found:
    """The smallest ratio in ``step`` increments up to ``ceiling`` whose candidate's figure
    is at most ``limit``; ComponentError naming ``budget`` and the best reached otherwise.

    The caller has found that the unpruned model (ratio 0) does not fit.
    """
    ratios = [round(k * step, 6) for k in range(math.floor(ceiling / step + 1e-9) + 1)]
    tried: dict[int, Found] = {}

    def at(k: int) -> Found:
        if k not in tried:
            model = candidate(ratios[k])
            tried[k] = Found(ratios[k], int(figure(model)), model)
            log.info("prune search: ratio %.3f -> %s %d", ratios[k], budget, tried[k].value)
        return tried[k]

    if at(len(ratios) - 1).value > limit:
        best = tried[len(ratios) - 1]
        raise ComponentError(
            f"prune budget {budget} {limit:,} cannot be met: the best reached is "
            f"{best.value:,} at channel ratio {best.ratio:.3f} (max_channel_ratio {ceiling}); "
            f"raise the budget or max_channel_ratio, or lower min_channels or channel_multiple"
        )
    fails, fits = 0, len(ratios) - 1  # ratios[fails] does not fit, ratios[fits] does
    while fits - fails > 1:
        middle = (fails + fits) // 2
        fails, fits = (fails, middle) if at(middle).value <= limit else (middle, fits)
    return tried[fits]
