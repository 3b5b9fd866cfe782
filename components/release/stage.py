"""The chain's last stage: bundle a tracked model version for each device whose gate passed
and promote it in the device registry (``staging`` by default), so a scheduled run leaves
candidates ready to try on devices without anyone promoting by hand.

Called by ``pipelines.chain`` after ``track`` when ``release.enabled``. A refused promotion
(say, the device's firmware lacks an operator the model needs) is recorded in the result and
logged, never raised: the run has been tracked already, and the refusal names its reason.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components.artifacts import GateReport
from components.device import DeviceSpec
from components.errors import ComponentError
from components.spec import component_spec

log = logging.getLogger(__name__)


@component_spec
class ReleaseSpec:
    """Whether a run ends with a release, to which stage, where the registry lives (relative
    to the work directory unless absolute) and the PEM key that signs the bundles."""

    enabled: bool = False
    stage: Literal["staging", "production"] = "staging"
    registry: Path = Path("registry")
    signing_key: Path | None = None


@dataclass(frozen=True)
class ReleaseResult:
    """Per device: ``promoted <stage> (bundle <id>)``, ``skipped: ...`` or ``refused: ...``."""

    outcomes: dict[str, str]

    def tags(self) -> dict[str, str]:
        return {f"release.{device}": outcome[:5000] for device, outcome in self.outcomes.items()}


def run(
    spec: ReleaseSpec,
    *,
    tracking_uri: str,
    model_name: str,
    version: str | None,
    devices: Sequence[DeviceSpec],
    gates: Sequence[GateReport],
    work_dir: Path,
) -> ReleaseResult:
    """Bundle, sign and promote ``model_name`` ``version`` on every device that passed."""
    if not spec.enabled:
        return ReleaseResult({})
    if version is None:
        raise ComponentError("release needs a registered model version: set "
                             "track.registered_model_name")  # fmt: skip
    from components.release.registry import DeviceRegistry

    root = spec.registry if spec.registry.is_absolute() else Path(work_dir) / spec.registry
    registry = DeviceRegistry.local(root, tracking_uri=tracking_uri)
    passed = {g.device: g.passed for g in gates}
    outcomes = {}
    for device in devices:
        if not passed.get(device.name):
            outcomes[device.name] = "skipped: the gate did not pass"
            continue
        outcomes[device.name] = _release_one(spec, registry, tracking_uri, model_name, version,
                                             device)  # fmt: skip
    return ReleaseResult(outcomes)


def _release_one(spec, registry, tracking_uri, model_name, version, device) -> str:
    from components.release.from_mlflow import build_from_mlflow
    from components.release.signing import sign

    try:
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            built = build_from_mlflow(tracking_uri, model_name, version, device,
                                      Path(scratch) / "bundle")  # fmt: skip
            if spec.signing_key is not None:
                sign(built.folder, spec.signing_key)
            stored = registry.add(built.folder)
        action = registry.promote(stored.bundle_id, spec.stage, device=device,
                                  reason="the run's gate passed")  # fmt: skip
    except ComponentError as e:
        log.warning("release of %s %s on %s refused: %s", model_name, version, device.name, e)
        return f"refused: {e}"
    log.info("%s %s is %s on %s", model_name, version, spec.stage, device.name)
    return f"promoted {action.stage} (bundle {action.bundle_id})"
