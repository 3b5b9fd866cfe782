"""Load a pipeline YAML into frozen, validated objects before any work starts.

``load(path, overrides)`` reads the file, applies ``--set key=value`` overrides, resolves
device files relative to the config and validates everything with pydantic. Whatever is
wrong (unknown key, wrong type, missing file) comes back as one :class:`PipelineError`
naming the file, the dotted key and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from components.device import DeviceSpec
from components.evaluate import EvaluateSpec
from components.extract_features import FeatureSpec
from components.gate import GateSpec
from components.patch import PatchSpec
from components.quantize import QuantizeSpec
from components.speech_commands import ReaderSpec
from components.synth_speech import SynthSpec
from components.track import TrackSpec
from components.train import TrainSpec
from pipelines.errors import PipelineError

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)
_DEVICE = pydantic.TypeAdapter(DeviceSpec)


class DataConfig(pydantic.BaseModel):
    """Where clips come from: generated with eSpeak NG, or a Speech Commands folder."""

    model_config = _STRICT
    source: Literal["synth", "speech_commands"] = "synth"
    path: Path | None = None
    synth: SynthSpec = SynthSpec()
    reader: ReaderSpec = ReaderSpec()

    @pydantic.model_validator(mode="after")
    def _path_exists(self) -> DataConfig:
        if self.source == "speech_commands":
            if self.path is None:
                raise ValueError("source 'speech_commands' needs 'path' (a folder)")
            if not self.path.is_dir():
                raise ValueError(f"path '{self.path}' is not a folder")
        return self


class KwsConfig(pydantic.BaseModel):
    """The keyword-spotting pipeline: one section per component, plus the device targets."""

    model_config = _STRICT
    work_dir: Path = Path("runs/kws")
    data: DataConfig = DataConfig()
    features: FeatureSpec = FeatureSpec()
    train: TrainSpec = TrainSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    patch: PatchSpec = PatchSpec()
    evaluate: EvaluateSpec = EvaluateSpec()
    devices: tuple[DeviceSpec, ...] = pydantic.Field(min_length=1)
    gate: GateSpec = GateSpec()
    track: TrackSpec = TrackSpec()


def load(path: str | Path, overrides: Sequence[str] = ()) -> KwsConfig:
    """Parse and validate ``path`` with ``overrides`` (``dotted.key=yaml-value``) applied."""
    path = Path(path)
    raw = _read_yaml(path)
    for item in overrides:
        _apply_override(raw, item, path)
    raw["devices"] = [_load_device(path.parent, d) for d in raw.get("devices") or []]
    try:
        return KwsConfig.model_validate(raw)
    except pydantic.ValidationError as e:
        raise PipelineError(_describe(path, e)) from e


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise PipelineError(f"{path}: config file not found") from e
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of sections at the top level")
    return data


def _apply_override(raw: dict[str, Any], item: str, path: Path) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise PipelineError(f"--set '{item}': expected key=value, e.g. train.epochs=3")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise PipelineError(f"{path}: --set '{key}': '{part}' is not a section")
        node = child
    node[leaf] = yaml.safe_load(value)


def load_device(path: str | Path) -> DeviceSpec:
    """One device file (``configs/devices/<board>.yaml``), validated."""
    return _load_device(Path.cwd(), str(path))


def _load_device(base: Path, entry: Any) -> Any:
    """A device entry is a path to a device YAML (relative to the config) or a mapping."""
    if not isinstance(entry, str):
        return entry
    device_path = base / entry if not Path(entry).is_absolute() else Path(entry)
    if not device_path.is_file() and Path(entry).is_file():
        device_path = Path(entry)
    try:
        return _DEVICE.validate_python(_read_yaml(device_path))
    except pydantic.ValidationError as e:
        raise PipelineError(_describe(device_path, e)) from e


def _describe(path: Path, error: pydantic.ValidationError) -> str:
    """One line per problem: file, dotted key, what was expected and what was given."""
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        lines.append(f"{path}: key '{key}': {err['msg']}{given}")
    return "\n".join(lines)
