"""The release gate: every rule's verdict on both sides of its limit."""

from __future__ import annotations

import dataclasses

import pytest

from components import gate
from components.artifacts import Evaluation
from components.device import DeviceSpec, estimate_latency_ms

DEVICE = DeviceSpec(
    name="board",
    board="Board",
    mcu="mcu",
    core="cortex-m4f",
    clock_mhz=100,
    sram_bytes=100_000,
    flash_bytes=1_000_000,
    model_sram_share=0.5,
    model_flash_share=0.1,
    cycles_per_mac=2.0,
)
GOOD = Evaluation(
    int8_accuracy=0.95,
    float_accuracy=0.95,
    confusion=((1,),),
    labels=("a",),
    arena_head=30_000,
    arena_tail=10_000,
    arena_total=40_000,
    arena_bisected=40_000,
    flash_bytes=60_000,
    macs=1_000_000,
    host_latency_ms=0.5,
    estimated_latency_ms={"board": 20.0},
)


LOOSE = gate.GateSpec(max_latency_ms=50)


def verdicts(evaluation, spec=LOOSE, baseline=None):
    report = gate.run(spec, evaluation, DEVICE, baseline)
    return {r.name: r.passed for r in report.rules}, report


def test_good_candidate_passes_every_rule():
    results, report = verdicts(GOOD)
    assert report.passed and all(results.values())
    assert set(results) == {"accuracy", "arena_bytes", "flash_bytes", "latency_ms", "no_regression"}


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"int8_accuracy": 0.89}, "accuracy"),
        ({"arena_total": 50_001}, "arena_bytes"),
        ({"flash_bytes": 100_001}, "flash_bytes"),
        ({"estimated_latency_ms": {"board": 50.1}}, "latency_ms"),
        ({"estimated_latency_ms": {}}, "latency_ms"),
    ],
)
def test_each_rule_fails_just_past_its_limit(change, rule):
    results, report = verdicts(dataclasses.replace(GOOD, **change))
    assert not report.passed
    assert [name for name, ok in results.items() if not ok] == [rule]


def test_limits_hold_exactly_at_the_boundary():
    edge = dataclasses.replace(GOOD, int8_accuracy=0.9, arena_total=50_000, flash_bytes=100_000)
    assert verdicts(edge)[1].passed


def test_spec_shares_override_the_device_file():
    spec = gate.GateSpec(max_arena_share=0.3, max_latency_ms=50)
    results, _ = verdicts(GOOD, spec)
    assert results["arena_bytes"] is False  # 40,000 > 30% of 100,000


def test_regression_against_production_baseline():
    assert verdicts(GOOD, baseline={"int8_accuracy": 0.955})[0]["no_regression"]
    results, report = verdicts(GOOD, baseline={"int8_accuracy": 0.97})
    assert not results["no_regression"]
    assert "0.9700" in next(r.detail for r in report.rules if r.name == "no_regression")


def test_rules_table_is_generated_from_docstrings():
    table = gate.rules_table()
    for rule in gate.RULES:
        assert rule.__doc__.strip() in table


def test_report_markdown_lists_every_rule_and_verdict():
    _, report = verdicts(dataclasses.replace(GOOD, int8_accuracy=0.5))
    text = gate.report_markdown(report)
    assert "FAILED" in text and "| accuracy | FAIL |" in text
    assert text.count("| pass |") == 4


def test_latency_estimate_follows_cycles_per_mac():
    assert estimate_latency_ms(1_000_000, DEVICE) == pytest.approx(20.0)


def test_invalid_threshold_is_refused():
    with pytest.raises(ValueError, match="min_accuracy"):
        gate.GateSpec(min_accuracy=1.5)
