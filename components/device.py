"""Device targets: the hardware figures a release gate and the latency estimate need.

A device is described by ``configs/devices/<board>.yaml``; the pipeline parses that file
into a :class:`DeviceSpec` and hands it to the components that reason about hardware.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from components.spec import component_spec

Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(gt=0, le=1)]


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
