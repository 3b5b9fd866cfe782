"""What a search found: every candidate's figures and gate verdicts, the Pareto fronts,
the best candidate passing each device's gate, and, when none does, the binding limit.

Pure functions over stored results (no TFLM, no Beam), so the answer is the same whichever
runner measured the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from components import gate
from components.artifacts import GateReport
from components.device import DeviceSpec, estimate_latency_ms
from components.gate import GateSpec
from components.search.space import Candidate
from components.search.units import CandidateResult, UnitFailure

HARDWARE_RULES = ("arena_bytes", "flash_bytes", "latency_ms")


@dataclass(frozen=True)
class Measured:
    """A candidate with its result (None: not covered; a failure: why it has no model)."""

    candidate: Candidate
    key: str
    result: CandidateResult | UnitFailure | None
    gates: tuple[GateReport, ...] = ()
    reused: bool = False

    @property
    def ok(self) -> bool:
        return isinstance(self.result, CandidateResult)

    def gate(self, device: str) -> GateReport:
        return next(g for g in self.gates if g.device == device)

    def fits(self, device: str) -> bool:
        """Passes the device's hardware rules (arena, flash, latency), accuracy aside."""
        return all(r.passed for r in self.gate(device).rules if r.name in HARDWARE_RULES)


@dataclass(frozen=True)
class DeviceChoice:
    """Per device: the most accurate candidate passing its whole gate, the most accurate
    one that fits its hardware, and a sentence saying what decided it."""

    device: str
    best: Measured | None
    best_fitting: Measured | None
    answer: str


@dataclass(frozen=True)
class SearchOutcome:
    measured: tuple[Measured, ...]
    choices: tuple[DeviceChoice, ...]
    front_arena: tuple[Measured, ...]
    front_latency: tuple[Measured, ...]
    latency_device: str
    notes: tuple[str, ...] = field(default=())

    @property
    def done(self) -> tuple[Measured, ...]:
        return tuple(m for m in self.measured if m.ok)


def gated(measured: Measured, spec: GateSpec, devices: Sequence[DeviceSpec]) -> Measured:
    """``measured`` with its gate report per device (no baseline: a search compares
    candidates with each other, not with production)."""
    if not measured.ok:
        return measured
    reports = tuple(gate.run(spec, measured.result.evaluation, d, None) for d in devices)
    return Measured(measured.candidate, measured.key, measured.result, reports, measured.reused)


def pareto(points: Sequence[Measured], cost) -> tuple[Measured, ...]:
    """Candidates no other beats on both int8 accuracy (higher) and ``cost`` (lower),
    cheapest first."""
    ranked = sorted(points, key=lambda m: (cost(m), -_accuracy(m)))
    front, best = [], -1.0
    for m in ranked:
        if _accuracy(m) > best:
            front.append(m)
            best = _accuracy(m)
    return tuple(front)


def decide(
    measured: Sequence[Measured], spec: GateSpec, devices: Sequence[DeviceSpec]
) -> SearchOutcome:
    """Gate every measured candidate against every device and pick per device."""
    measured = tuple(gated(m, spec, devices) for m in measured)
    done = [m for m in measured if m.ok]
    choices = tuple(_choose(done, d) for d in devices)
    latency_device = devices[0]
    notes = []
    missing = [m.candidate.name for m in measured if m.result is None]
    if missing:
        notes.append(f"{len(missing)} candidate(s) not covered: {', '.join(missing)}")
    failed = [m for m in measured if isinstance(m.result, UnitFailure)]
    notes += [f"{m.candidate.name} failed: {m.result.error}" for m in failed]
    return SearchOutcome(
        measured=measured,
        choices=choices,
        front_arena=pareto(done, arena),
        front_latency=pareto(done, lambda m: latency(m, latency_device)),
        latency_device=latency_device.name,
        notes=tuple(notes),
    )


def arena(m: Measured) -> int:
    return m.result.evaluation.arena_total


def latency(m: Measured, device: DeviceSpec) -> float:
    return estimate_latency_ms(m.result.evaluation.macs, device)


def _accuracy(m: Measured) -> float:
    return m.result.evaluation.int8_accuracy


def _choose(done: Sequence[Measured], device: DeviceSpec) -> DeviceChoice:
    name = device.name
    by_accuracy = sorted(done, key=lambda m: (-_accuracy(m), arena(m)))
    best = next((m for m in by_accuracy if m.gate(name).passed), None)
    fitting = next((m for m in by_accuracy if m.fits(name)), None)
    if best is not None:
        answer = (
            f"{name}: {best.candidate.name}, int8 accuracy {_accuracy(best):.4f}, "
            f"arena {arena(best):,} B of {device.sram_budget_bytes:,} B"
        )
    elif not done:
        answer = f"{name}: nothing fits: no candidate was measured"
    elif fitting is not None:
        rule = next(r for r in fitting.gate(name).rules if not r.passed)
        answer = (
            f"nothing passes {name}'s gate: the binding limit is {rule.name} "
            f"({rule.detail}) for the most accurate candidate that fits, {fitting.candidate.name}"
        )
    else:
        answer = f"nothing fits {name}: the binding limit is " + _binding_hardware(done, name)
    return DeviceChoice(name, best, fitting, answer)


def _binding_hardware(done: Sequence[Measured], device: str) -> str:
    """The limit that binds: each candidate's worst miss (measured over limit), taken for
    the candidate that comes closest to fitting."""

    def worst(m: Measured):
        misses = [r for r in m.gate(device).rules if r.name in HARDWARE_RULES and not r.passed]
        rule = max(misses, key=_over)
        return _over(rule), rule

    ratio, rule, closest = min(((*worst(m), m) for m in done), key=lambda x: x[0])
    return (
        f"{rule.name}: the closest candidate, {closest.candidate.name}, needs {rule.detail} "
        f"({ratio:.2f}x the limit)"
    )


def _over(rule) -> float:
    """How far a failed rule's measured value is over its limit (a ratio; no value: inf)."""
    return rule.value / rule.limit if rule.value is not None and rule.limit else float("inf")
