"""A search's outcome as people read it: a markdown table, the answer per device, and the
Pareto plot's panels (accuracy against measured arena and against estimated latency)."""

from __future__ import annotations

from collections.abc import Sequence

from components.device import DeviceSpec
from components.search import outcome as oc
from components.tracking.plots import ParetoPanel


def table(result: oc.SearchOutcome) -> str:
    """Every candidate, most accurate first: figures, front membership, gate per device."""
    devices = [c.device for c in result.choices]
    on_front = {m.key for m in (*result.front_arena, *result.front_latency)}
    head = ["candidate", "int8 acc", "float acc", "arena B", "flash B", "MACs",
            f"latency ms ({result.latency_device})", "patched", "front", *devices]  # fmt: skip
    rows = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    done = sorted(result.done, key=lambda m: -m.result.evaluation.int8_accuracy)
    for m in done:
        ev = m.result.evaluation
        float_acc = "" if ev.float_accuracy is None else f"{ev.float_accuracy:.4f}"
        latency = ev.estimated_latency_ms.get(result.latency_device, float("nan"))
        cells = [
            m.candidate.name + (" (reused)" if m.reused else ""),
            f"{ev.int8_accuracy:.4f}", float_acc, f"{ev.arena_total:,}", f"{ev.flash_bytes:,}",
            f"{ev.macs:,}", f"{latency:.1f}", "yes" if m.result.patched else "no",
            "*" if m.key in on_front else "",
            *(_verdict(m, d) for d in devices),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    lines = ["\n".join(rows), "", *(f"- {c.answer}" for c in result.choices)]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _verdict(m: oc.Measured, device: str) -> str:
    report = m.gate(device)
    if report.passed:
        return "pass"
    return "fail: " + ", ".join(r.name for r in report.rules if not r.passed)


def panels(result: oc.SearchOutcome, devices: Sequence[DeviceSpec]) -> list[ParetoPanel]:
    """Accuracy against arena (each device's SRAM share marked) and against latency."""
    device = next(d for d in devices if d.name == result.latency_device)

    def panel(cost: str, value, front, limits) -> ParetoPanel:
        points = [(value(m), m.result.evaluation.int8_accuracy, m.candidate.name)
                  for m in result.done]  # fmt: skip
        return ParetoPanel(
            cost, points, [(value(m), m.result.evaluation.int8_accuracy) for m in front], limits
        )

    return [
        panel("TFLM arena (bytes, measured)", oc.arena, result.front_arena,
              {d.name: d.sram_budget_bytes for d in devices}),
        panel(f"estimated latency on {device.name} (ms)", lambda m: oc.latency(m, device),
              result.front_latency, {}),
    ]  # fmt: skip
