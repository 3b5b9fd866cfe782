"""Release gate: check a measured candidate against one device target's rules.

Each rule is a small function whose docstring is the user-facing statement of the rule;
it returns a :class:`RuleResult`. :func:`rules_table` renders the docstrings, so the
documentation of the gate cannot drift from the code. The pipeline calls :func:`run`
once per device target; a failed gate is reported, never raised, so logging goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

from pydantic import Field

from components.artifacts import Evaluation, GateReport, RuleResult
from components.device import DeviceSpec
from components.spec import component_spec

Fraction = Annotated[float, Field(ge=0, le=1)]


@component_spec
class GateSpec:
    """Thresholds of the release gate. Shares default to the device file's figures."""

    min_accuracy: Fraction = 0.9
    max_arena_share: Fraction | None = None
    max_flash_share: Fraction | None = None
    max_latency_ms: Annotated[float, Field(gt=0)] = 1000.0
    max_regression: Fraction = 0.01
    baseline_alias: str = "production"


Baseline = Mapping[str, float] | None
Rule = Callable[[GateSpec, Evaluation, DeviceSpec, Baseline], RuleResult]


def check_accuracy(spec: GateSpec, ev: Evaluation, device: DeviceSpec, _: Baseline) -> RuleResult:
    """int8 accuracy on the test split, measured on TFLM, is at least `min_accuracy`."""
    ok = ev.int8_accuracy >= spec.min_accuracy
    detail = f"{ev.int8_accuracy:.4f} {'>=' if ok else '<'} {spec.min_accuracy:.4f}"
    return RuleResult("accuracy", ev.int8_accuracy, spec.min_accuracy, ok, detail)


def check_arena(spec: GateSpec, ev: Evaluation, device: DeviceSpec, _: Baseline) -> RuleResult:
    """The TFLM arena fits in the device's SRAM share for the model."""
    share = spec.max_arena_share or device.model_sram_share
    limit = int(device.sram_bytes * share)
    ok = ev.arena_total <= limit
    detail = f"{ev.arena_total:,} B {'<=' if ok else '>'} {limit:,} B ({share:.0%} of SRAM)"
    return RuleResult("arena_bytes", ev.arena_total, limit, ok, detail)


def check_flash(spec: GateSpec, ev: Evaluation, device: DeviceSpec, _: Baseline) -> RuleResult:
    """The model's flatbuffer fits in the device's flash share for the model."""
    share = spec.max_flash_share or device.model_flash_share
    limit = int(device.flash_bytes * share)
    ok = ev.flash_bytes <= limit
    detail = f"{ev.flash_bytes:,} B {'<=' if ok else '>'} {limit:,} B ({share:.0%} of flash)"
    return RuleResult("flash_bytes", ev.flash_bytes, limit, ok, detail)


def check_latency(spec: GateSpec, ev: Evaluation, device: DeviceSpec, _: Baseline) -> RuleResult:
    """The estimated latency on the device (cycles-per-MAC model) is at most `max_latency_ms`."""
    value = ev.estimated_latency_ms.get(device.name)
    if value is None:
        return RuleResult("latency_ms", None, spec.max_latency_ms, False, "no estimate")
    ok = value <= spec.max_latency_ms
    detail = f"{value:.1f} ms {'<=' if ok else '>'} {spec.max_latency_ms:.1f} ms"
    return RuleResult("latency_ms", value, spec.max_latency_ms, ok, detail)


def check_regression(
    spec: GateSpec, ev: Evaluation, device: DeviceSpec, baseline: Baseline
) -> RuleResult:
    """int8 accuracy is no more than `max_regression` below the model at `baseline_alias`."""
    reference = (baseline or {}).get("int8_accuracy")
    if reference is None:
        detail = f"no model at alias '{spec.baseline_alias}': nothing to regress from"
        return RuleResult("no_regression", ev.int8_accuracy, None, True, detail)
    floor = reference - spec.max_regression
    ok = ev.int8_accuracy >= floor
    detail = (
        f"{ev.int8_accuracy:.4f} {'>=' if ok else '<'} {floor:.4f} "
        f"('{spec.baseline_alias}' {reference:.4f} - {spec.max_regression:.4f})"
    )
    return RuleResult("no_regression", ev.int8_accuracy, floor, ok, detail)


RULES: tuple[Rule, ...] = (
    check_accuracy,
    check_arena,
    check_flash,
    check_latency,
    check_regression,
)


def run(
    spec: GateSpec, evaluation: Evaluation, device: DeviceSpec, baseline: Baseline
) -> GateReport:
    """Check every rule for ``device``; ``baseline`` holds the metrics of the model at
    ``spec.baseline_alias`` (None when there is none yet)."""
    results = tuple(rule(spec, evaluation, device, baseline) for rule in RULES)
    return GateReport(device=device.name, rules=results)


def rules_table() -> str:
    """A markdown table of the gate's rules, generated from their docstrings."""
    rows = ["| rule | passes when |", "| --- | --- |"]
    for rule in RULES:
        rows.append(f"| `{rule.__name__.removeprefix('check_')}` | {rule.__doc__.strip()} |")
    return "\n".join(rows)


def report_markdown(report: GateReport) -> str:
    """The gate report as a markdown table, one row per rule."""
    verdict = "PASSED" if report.passed else "FAILED"
    rows = [f"## Gate for `{report.device}`: {verdict}", "", "| rule | verdict | detail |"]
    rows.append("| --- | --- | --- |")
    for r in report.rules:
        rows.append(f"| {r.name} | {'pass' if r.passed else 'FAIL'} | {r.detail} |")
    return "\n".join(rows) + "\n"
