"""Requantization parameters computed exactly as TFLM's Prepare computes them.

Used by ``stage_ops`` when it turns builtin ops into TFLM_EXT_PATCH_STAGE inner ops: the
kernel only sees TfLiteEvalTensor (no quantization parameters), so what TFLM's CONV_2D,
DEPTHWISE_CONV_2D and ADD derive from scales at Prepare time is derived here and passed as
constant tensors (per-channel multipliers/shifts) or options (ADD, activation bounds).

Bit-exactness hinges on using the same float types: scales are float32 in the model, products
and quotients of scales are double (as ``static_cast<double>`` in TFLM), the activation bounds
divide in float32 (TFLM's ``Quantize`` helper), and every rounding is half away from zero.
"""

from __future__ import annotations

import math

import numpy as np

from tflm_ext.errors import TflmExtError
from tflm_ext.patch_op import AddParams

INT8_MIN, INT8_MAX = -128, 127
ADD_LEFT_SHIFT = 20  # TFLM's choice for int8 ADD

# Fused activations from the .tflite schema (ActivationFunctionType).
NONE, RELU, RELU_N1_TO_1, RELU6 = 0, 1, 2, 3
SUPPORTED_ACTIVATIONS = {NONE: "NONE", RELU: "RELU", RELU_N1_TO_1: "RELU_N1_TO_1", RELU6: "RELU6"}


def round_half_away(value: float) -> int:
    """C's round(): halves away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: a Q31 significand and a power-of-two exponent.

    Multipliers below 2^-31 flush to (0, 0), as TFLM does.
    """
    if real == 0.0:
        return 0, 0
    significand, exponent = math.frexp(real)
    fixed = round_half_away(significand * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return fixed, exponent


def channel_multipliers(
    input_scale: float, filter_scales: list[float], output_scale: float, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) int32 arrays of CONV_2D/DEPTHWISE_CONV_2D:
    QuantizeMultiplier(input_scale * filter_scale[c] / output_scale), in double."""
    if len(filter_scales) not in (1, channels):
        raise TflmExtError(f"{len(filter_scales)} filter scales for {channels} output channels")
    scales = filter_scales if len(filter_scales) == channels else filter_scales * channels
    pairs = [
        quantize_multiplier(_f32(input_scale) * _f32(scale) / _f32(output_scale))
        for scale in scales
    ]
    multipliers = np.array([m for m, _ in pairs], dtype=np.int32)
    shifts = np.array([s for _, s in pairs], dtype=np.int32)
    return multipliers, shifts


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized for an int8 output."""
    if activation not in SUPPORTED_ACTIVATIONS:
        raise TflmExtError(f"fused activation {activation} is not supported in a patch stage")
    if activation == NONE:
        return INT8_MIN, INT8_MAX
    low = {RELU: 0.0, RELU6: 0.0, RELU_N1_TO_1: -1.0}[activation]
    high = {RELU: None, RELU6: 6.0, RELU_N1_TO_1: 1.0}[activation]
    minimum = max(INT8_MIN, _quantize(low, scale, zero_point))
    maximum = INT8_MAX if high is None else min(INT8_MAX, _quantize(high, scale, zero_point))
    return minimum, maximum


def add_params(scale_a: float, scale_b: float, scale_out: float) -> AddParams:
    """TFLM's int8 ADD rescaling: both inputs to twice the larger scale, then to the output."""
    twice_max = 2 * max(_f32(scale_a), _f32(scale_b))
    a_multiplier, a_shift = _smaller_than_one(_f32(scale_a) / twice_max)
    b_multiplier, b_shift = _smaller_than_one(_f32(scale_b) / twice_max)
    out_multiplier, out_shift = _smaller_than_one(
        twice_max / ((1 << ADD_LEFT_SHIFT) * _f32(scale_out))
    )
    return AddParams(
        left_shift=ADD_LEFT_SHIFT,
        input_multiplier=a_multiplier,
        input_shift=a_shift,
        input_b_multiplier=b_multiplier,
        input_b_shift=b_shift,
        output_multiplier=out_multiplier,
        output_shift=out_shift,
    )


def _smaller_than_one(real: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: TFLM aborts outside (0, 1); we refuse instead."""
    if not 0.0 < real < 1.0:
        raise TflmExtError(f"ADD rescaling factor {real!r} is outside (0, 1); TFLM rejects it")
    multiplier, shift = quantize_multiplier(real)
    if shift > 0:
        raise TflmExtError(f"ADD rescaling factor {real!r} has a positive exponent")
    return multiplier, shift


def _quantize(value: float, scale: float, zero_point: int) -> int:
    """TFLM's Quantize helper: the division is float32, the rounding roundf."""
    quotient = np.float32(value) / np.float32(scale)
    if not np.isfinite(quotient) or abs(float(quotient)) >= 2**31:
        raise TflmExtError(f"activation bound {value} overflows with output scale {scale!r}")
    return zero_point + round_half_away(float(quotient))


def _f32(value: float) -> float:
    """A scale as the float32 TFLM reads from the model, widened to double."""
    return float(np.float32(value))
