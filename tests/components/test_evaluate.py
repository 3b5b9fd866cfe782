"""Evaluate: every figure comes from the real TFLM runtime and is self-consistent."""

from __future__ import annotations

import pytest

from components import evaluate
from components.device import DeviceSpec

BOARD = DeviceSpec(
    name="b",
    board="B",
    mcu="m",
    core="cortex-m4f",
    clock_mhz=100,
    sram_bytes=262_144,
    flash_bytes=1_048_576,
    cycles_per_mac=2.0,
)


@pytest.fixture(scope="module")
def result(quantized, trained, feature_set):
    return evaluate.run(
        evaluate.EvaluateSpec(), quantized, trained, feature_set, [BOARD], progress=False
    )


def test_accuracy_and_confusion_cover_the_test_split(result, feature_set):
    assert result.test_examples == feature_set.counts["test"]
    assert sum(map(sum, result.confusion)) == result.test_examples
    diagonal = sum(result.confusion[i][i] for i in range(len(result.labels)))
    assert result.int8_accuracy == pytest.approx(diagonal / result.test_examples)
    assert result.int8_accuracy > 0.6 and abs(result.int8_accuracy - result.float_accuracy) < 0.1


def test_memory_figures_are_tflms_own(result, quantized):
    assert result.arena_total == result.arena_bisected
    assert result.arena_head + result.arena_tail == result.arena_total
    assert result.flash_bytes == quantized.path.stat().st_size


def test_latency_estimate_per_device(result):
    assert result.macs > 0 and result.host_latency_ms > 0
    assert result.estimated_latency_ms == {"b": pytest.approx(result.macs * 2.0 / 100e3)}


def test_max_examples_limits_the_run(quantized, trained, feature_set):
    small = evaluate.run(
        evaluate.EvaluateSpec(max_examples=7), quantized, trained, feature_set, progress=False
    )
    assert small.test_examples == 7 and small.estimated_latency_ms == {}
