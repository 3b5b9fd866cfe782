"""measure_arena: TFLM's own figures against the bisected ground truth, on the real wheel."""

from __future__ import annotations

import pytest

from tflm_ext.arena import ArenaMeasurement, measure_arena, recorded_allocations
from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import align_up, make_interpreter


@pytest.fixture(scope="module")
def tiny_arena(tiny_int8_model: bytes) -> ArenaMeasurement:
    return measure_arena(tiny_int8_model)


def test_recorded_total_is_the_smallest_arena_that_builds(
    tiny_int8_model: bytes, tiny_arena: ArenaMeasurement
) -> None:
    assert tiny_arena.head + tiny_arena.tail == tiny_arena.total
    assert tiny_arena.total == tiny_arena.bisected_min
    assert tiny_arena.head >= 512 + 256  # the 1x1 conv's input and output are alive together
    make_interpreter(tiny_int8_model, tiny_arena.bisected_min)
    with pytest.raises(TflmExtError):
        make_interpreter(tiny_int8_model, tiny_arena.bisected_min - 1)


def test_tail_padding_depends_on_arena_size(
    tiny_int8_model: bytes, tiny_arena: ArenaMeasurement
) -> None:
    """Why measure_arena reads the figures at the minimum: the recorded tail includes up to
    15 B of padding at the arena's end, congruent to arena_size modulo 8 (whether the 8s
    bit adds or removes 8 B depends on the model's first persistent allocations)."""
    aligned = align_up(tiny_arena.bisected_min, 16) + 256
    base = recorded_allocations(make_interpreter(tiny_int8_model, aligned))
    for extra in range(16):
        figures = recorded_allocations(make_interpreter(tiny_int8_model, aligned + extra))
        assert figures["head"] == tiny_arena.head
        assert (figures["tail"] - base["tail"]) % 8 == extra % 8
        assert 0 <= figures["tail"] - tiny_arena.tail < 16


def test_prepare_temporaries_can_exceed_the_recorded_total(
    prepare_bound_int8_model: bytes,
) -> None:
    """TFLM does not report the temporaries kernels allocate while they prepare; when they
    outgrow the activation plan, an arena of TFLM's own total does not build."""
    measurement = measure_arena(prepare_bound_int8_model)
    assert measurement.head + measurement.tail == measurement.total
    assert measurement.total < measurement.bisected_min
    with pytest.raises(TflmExtError, match="temp"):
        make_interpreter(prepare_bound_int8_model, measurement.total)
    make_interpreter(prepare_bound_int8_model, measurement.bisected_min)
