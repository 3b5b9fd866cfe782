"""Device targets: the hardware figures a release gate and the latency estimate need.

A device is described by ``configs/devices/<board>.yaml``; the pipeline parses that file
into a :class:`DeviceSpec` and hands it to the components that reason about hardware. The
optional ``firmware`` section says which operators the firmware deployed on the fleet
registers, so that the device registry (``components.release``) refuses a model the boards
could not run; without it any operator is assumed available.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.spec import component_spec

Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(gt=0, le=1)]
OpName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]  # TFLite schema spelling


@component_spec
class CustomOpSupport:
    """A custom operator the firmware registers and the options versions its kernel reads."""

    name: OpName
    versions: tuple[Annotated[int, Field(ge=1)], ...]


@component_spec
class FirmwareSpec:
    """What the firmware on a device provides: ``builtin_ops`` None means every TFLM builtin
    (an all-ops resolver); custom operators must be listed, with their versions, to be used.
    ``name`` (e.g. "fleet-fw 2.3.1") is recorded in release manifests."""

    name: str | None = None
    builtin_ops: tuple[OpName, ...] | None = None
    custom_ops: tuple[CustomOpSupport, ...] = ()

    def custom_versions(self, op_name: str) -> tuple[int, ...]:
        """The options versions of ``op_name`` the firmware accepts (empty: not registered)."""
        return next((c.versions for c in self.custom_ops if c.name == op_name), ())


@component_spec
class DeviceSpec:
    """Datasheet figures of one board and the share of its memory a model may take."""

    name: str
    board: str
    mcu: str
    core: str
    clock_mhz: Positive
    sram_bytes: Annotated[int, Field(gt=0)]
    flash_bytes: Annotated[int, Field(gt=0)]
    model_sram_share: Share = 0.5
    model_flash_share: Share = 0.5
    cycles_per_mac: Positive = 2.0
    # None: the firmware's operator set is not declared, any operator is taken to be there.
    firmware: FirmwareSpec | None = None

    @property
    def sram_budget_bytes(self) -> int:
        return int(self.sram_bytes * self.model_sram_share)

    @property
    def flash_budget_bytes(self) -> int:
        return int(self.flash_bytes * self.model_flash_share)


def estimate_latency_ms(macs: int, device: DeviceSpec) -> float:
    """Latency from a cycles-per-MAC model: ``macs * cycles_per_mac / clock``.

    A first-order estimate, good for ranking candidates and catching models that are an
    order of magnitude too slow; ``cycles_per_mac`` in the device file folds in the kernel
    library's efficiency (CMSIS-NN, ESP-NN or reference kernels) and per-op overhead.
    """
    return macs * device.cycles_per_mac / (device.clock_mhz * 1e6) * 1e3
