"""What a search concludes from measured candidates: the Pareto fronts, the best candidate
per device, and the binding limit named when nothing fits."""

from __future__ import annotations

from pathlib import Path

from components.artifacts import Evaluation, Preprocessing, QuantizedModel
from components.device import DeviceSpec
from components.gate import GateSpec
from components.search import outcome, report
from components.search.space import Candidate
from components.search.units import CandidateResult, UnitFailure
from components.tracking import plots

BIG = DeviceSpec(name="big", board="b", mcu="m", core="c", clock_mhz=100,
                 sram_bytes=200_000, flash_bytes=2_000_000)  # fmt: skip
SMALL = DeviceSpec(name="small", board="b", mcu="m", core="c", clock_mhz=48,
                   sram_bytes=32_000, flash_bytes=256_000)  # fmt: skip


def _measured(name: str, accuracy: float, arena: int, macs: int, flash: int = 50_000):
    ev = Evaluation(
        int8_accuracy=accuracy, float_accuracy=accuracy, confusion=((1,),), labels=("a",),
        arena_head=arena, arena_tail=0, arena_total=arena, arena_bisected=arena,
        flash_bytes=flash, macs=macs, host_latency_ms=1.0,
        estimated_latency_ms={"big": macs * 2 / 100e3, "small": macs * 2 / 48e3,
                              "tiny": macs * 2 / 48e3},
    )  # fmt: skip
    model = QuantizedModel(Path(f"/m/{name}.tflite"), ("a",), (1,), Preprocessing("image"))
    width = float(name.removeprefix("w"))
    return outcome.Measured(Candidate(width, 96, 0.0, "off"), name, CandidateResult(
        model, ev, False, "", 1000))  # fmt: skip


POINTS = [
    _measured("w1", 0.90, 120_000, 8_000_000),
    _measured("w0.5", 0.85, 60_000, 2_000_000),
    _measured("w0.35", 0.86, 90_000, 3_000_000),  # dominated on arena by nothing cheaper+better
    _measured("w0.25", 0.80, 20_000, 1_000_000),
    _measured("w0.2", 0.70, 25_000, 900_000),  # dominated: w0.25 is smaller and more accurate
]


def test_pareto_front_keeps_only_undominated_candidates_cheapest_first():
    front = outcome.pareto(POINTS, outcome.arena)
    assert [m.key for m in front] == ["w0.25", "w0.5", "w0.35", "w1"]
    lat = outcome.pareto(POINTS, lambda m: m.result.evaluation.macs)
    assert [m.key for m in lat] == ["w0.2", "w0.25", "w0.5", "w0.35", "w1"]


def test_device_choice_respects_the_sram_share():
    result = outcome.decide(POINTS, GateSpec(min_accuracy=0.75), [BIG, SMALL])
    big, small = result.choices
    assert big.best.key == "w0.35"  # w1's 120,000 B is over 50% of 200,000
    assert small.best is None  # its share is 16,000 B; the smallest candidate needs 20,000 B
    assert "arena_bytes" in small.answer and "w0.25" in small.answer


def test_nothing_fitting_names_the_binding_hardware_limit():
    tiny = DeviceSpec(name="tiny", board="b", mcu="m", core="c", clock_mhz=48,
                      sram_bytes=32_000, flash_bytes=256_000, model_sram_share=0.5)  # fmt: skip
    result = outcome.decide(POINTS, GateSpec(min_accuracy=0.0, max_latency_ms=1e9), [tiny])
    (choice,) = result.choices
    assert choice.best is None and choice.best_fitting is None
    assert "binding limit is arena_bytes" in choice.answer
    assert "w0.25" in choice.answer  # 20,000 B is the closest to 16,000 B


def test_a_fitting_but_inaccurate_search_names_accuracy():
    result = outcome.decide(POINTS, GateSpec(min_accuracy=0.95), [BIG])
    (choice,) = result.choices
    assert choice.best is None and choice.best_fitting.key == "w0.35"
    assert "binding limit is accuracy" in choice.answer


def test_failures_and_uncovered_candidates_are_reported_not_dropped():
    failed = outcome.Measured(Candidate(2.0, 96, 0.9, "off"), "f", UnitFailure("boom"))
    missing = outcome.Measured(Candidate(3.0, 96, 0.0, "off"), "n", None)
    result = outcome.decide([*POINTS, failed, missing], GateSpec(min_accuracy=0.0), [BIG])
    assert len(result.done) == len(POINTS)
    assert any("failed: boom" in n for n in result.notes)
    assert any("not covered" in n and "w3" in n for n in result.notes)


def test_table_and_plot_show_every_measured_candidate():
    result = outcome.decide(POINTS, GateSpec(min_accuracy=0.75), [BIG, SMALL])
    text = report.table(result)
    assert all(f"| {m.candidate.name} |" in text for m in POINTS)
    assert "fail: arena_bytes" in text and text.count("| pass |") >= 1
    figure = plots.pareto_fronts(report.panels(result, [BIG, SMALL]))
    assert len(figure.axes) == 2
