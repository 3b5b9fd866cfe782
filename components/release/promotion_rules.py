"""The rules a bundle must meet to be promoted onto a device target's stage.

Like the release gate's (``components.gate``), each rule is a small function whose docstring
is the rule as users read it; it returns None when the bundle meets it, or the reason it
does not. :data:`OVERRIDABLE` rules may be overridden by a forced promotion with a recorded
reason; the others never: a bundle that failed its gate or that the firmware cannot run
must not reach a device. Integrity (every file matches its SHA-256, the signature verifies)
is checked before any rule runs, by ``bundle.verify``.

Called by ``components.release.registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import Field

from components.device import DeviceSpec
from components.release.backend import StoredBundle
from components.release.manifest import Manifest
from components.spec import component_spec

Fraction = Annotated[float, Field(ge=0, le=1)]


@component_spec
class RegistrySpec:
    """Promotion policy: the accuracy drop against production tolerated without force, and
    how often a writer that lost a race with another re-reads and retries."""

    max_regression: Fraction = 0.01
    max_attempts: Annotated[int, Field(ge=1)] = 200


Rule = Callable[[Manifest, DeviceSpec, "StoredBundle | None", RegistrySpec], "str | None"]


def check_device(m: Manifest, device: DeviceSpec, _: StoredBundle | None, __: RegistrySpec):
    """The bundle was built and gated for this device target."""
    if m.device.name != device.name:
        return f"the bundle was built for device {m.device.name!r}, not {device.name!r}"
    return None


def check_gate(m: Manifest, device: DeviceSpec, _: StoredBundle | None, __: RegistrySpec):
    """The release gate passed for this device target (its report is in the manifest)."""
    if m.gate is None or m.gate.device != device.name:
        return f"no gate report for device {device.name!r} in the manifest"
    failed = [f"{r.name} ({r.detail})" for r in m.gate.rules if not r.passed]
    if failed:
        return f"the gate did not pass for {device.name!r}: {'; '.join(failed)}"
    return None


def check_firmware(m: Manifest, device: DeviceSpec, _: StoredBundle | None, __: RegistrySpec):
    """Every operator the model uses, and each custom op's options version, is provided by
    the firmware on the device (when the device file declares its firmware)."""
    firmware = device.firmware
    if firmware is None:
        return None
    missing: list[str] = []
    if firmware.builtin_ops is not None:
        missing += [op for op in m.ops.builtin if op not in firmware.builtin_ops]
    for op in m.ops.custom:
        versions = firmware.custom_versions(op.name)
        if not versions:
            missing.append(f"custom op {op.name}")
        elif op.version not in versions:
            accepted = ", ".join(map(str, versions))
            missing.append(f"{op.name} version {op.version} (the firmware has {accepted})")
    if missing:
        label = f" ({firmware.name})" if firmware.name else ""
        return f"the firmware on {device.name!r}{label} does not provide {', '.join(missing)}"
    return None


def check_regression(
    m: Manifest, device: DeviceSpec, production: StoredBundle | None, spec: RegistrySpec
):
    """int8 accuracy is no more than `max_regression` below the current production version
    on this device (a forced promotion with a reason may override this)."""
    if production is None:
        return None
    floor = production.int8_accuracy - spec.max_regression
    accuracy = m.figures.int8_accuracy
    if accuracy < floor:
        return (
            f"int8 accuracy {accuracy:.4f} regresses from production version "
            f"{production.version} ({production.int8_accuracy:.4f}) by more than "
            f"{spec.max_regression:.4f}"
        )
    return None


RULES: tuple[Rule, ...] = (check_device, check_gate, check_firmware, check_regression)
OVERRIDABLE: frozenset[Rule] = frozenset({check_regression})


def refusals(
    m: Manifest, device: DeviceSpec, production: StoredBundle | None, spec: RegistrySpec
) -> tuple[list[str], list[str]]:
    """(reasons nothing overrides, reasons a forced promotion overrides)."""
    hard: list[str] = []
    soft: list[str] = []
    for rule in RULES:
        reason = rule(m, device, production, spec)
        if reason:
            (soft if rule in OVERRIDABLE else hard).append(reason)
    return hard, soft


def rules_table() -> str:
    """A markdown table of the promotion rules, generated from their docstrings."""
    rows = ["| rule | passes when | force overrides |", "| --- | --- | --- |"]
    for rule in RULES:
        doc = " ".join(rule.__doc__.split())
        name = rule.__name__.removeprefix("check_")
        rows.append(f"| `{name}` | {doc} | {'yes' if rule in OVERRIDABLE else 'no'} |")
    return "\n".join(rows)
