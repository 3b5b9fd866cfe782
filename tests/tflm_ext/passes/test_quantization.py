"""quantization: TFLM's multiplier, activation-range and ADD arithmetic, pinned on cases where
a naive port goes wrong (banker's rounding, the 2^31 carry, float32 division, flushing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tflm_ext.errors import TflmExtError
from tflm_ext.passes.quantization import (
    NONE,
    RELU,
    RELU6,
    RELU_N1_TO_1,
    activation_range,
    add_params,
    channel_multipliers,
    quantize_multiplier,
    round_half_away,
)


def test_rounding_is_half_away_from_zero() -> None:
    assert [round_half_away(v) for v in (2.5, -2.5, 0.5, 1.49, -0.5)] == [3, -3, 1, 1, -1]


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.5, (1 << 30, 0)),
        (1.0, (1 << 30, 1)),
        (0.75, (3 << 29, 0)),
        (3.0, (3 << 29, 2)),
        (0.0, (0, 0)),
        (2.0**-40, (0, 0)),  # below 2^-31: flushed to zero like TFLM
        (1.0 - 2.0**-40, (1 << 30, 1)),  # significand rounds up to 2^31: carried into the shift
    ],
)
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


def test_quantized_multiplier_represents_the_real_value() -> None:
    for real in np.random.default_rng(0).uniform(1e-6, 4.0, 200):
        multiplier, shift = quantize_multiplier(float(real))
        assert (1 << 30) <= multiplier < (1 << 31)
        assert math.isclose(multiplier * 2.0 ** (shift - 31), real, rel_tol=2**-30)


def test_channel_multipliers_broadcast_a_per_tensor_scale() -> None:
    multipliers, shifts = channel_multipliers(0.5, [0.25], 0.125, 3)
    assert multipliers.dtype == np.int32 and multipliers.tolist() == [1 << 30] * 3
    assert shifts.tolist() == [1] * 3
    with pytest.raises(TflmExtError, match="2 filter scales for 3 output channels"):
        channel_multipliers(0.5, [0.25, 0.5], 0.125, 3)


def test_activation_ranges() -> None:
    assert activation_range(NONE, 0.1, 3) == (-128, 127)
    assert activation_range(RELU, 0.1, 3) == (3, 127)
    assert activation_range(RELU6, 6 / 255, -128) == (-128, 127)
    assert activation_range(RELU6, 0.05, -10) == (-10, 110)
    assert activation_range(RELU_N1_TO_1, 1 / 100, 0) == (-100, 100)
    with pytest.raises(TflmExtError, match="fused activation 4"):
        activation_range(4, 0.1, 0)


def test_activation_bound_divides_in_float32() -> None:
    """6 / 0.0470588 is 127.5000... in float32 but 127.49999... in double."""
    scale = float(np.float32(6 / 127.5))
    assert np.float32(6.0) / np.float32(scale) == np.float32(127.5)
    assert 6.0 / scale < 127.5
    assert activation_range(RELU6, scale, -128) == (-128, 0)


def test_add_params_follow_tflm() -> None:
    params = add_params(0.1, 0.1, 0.2)
    assert params.left_shift == 20
    assert (params.input_multiplier, params.input_shift) == (1 << 30, 0)
    assert (params.input_b_multiplier, params.input_b_shift) == (1 << 30, 0)
    assert (params.output_multiplier, params.output_shift) == (1 << 30, -19)  # 2^-20


def test_add_with_an_output_scale_tflm_rejects_is_refused() -> None:
    with pytest.raises(TflmExtError, match="outside \\(0, 1\\)"):
        add_params(0.1, 0.1, 1e-9)
