"""Load a pipeline YAML into frozen, validated objects before any work starts.

``load(path, overrides)`` reads the file, applies ``--set key=value`` overrides, resolves
device files relative to the config and validates everything with pydantic. The top-level
``pipeline:`` key picks the pipeline (``kws`` or ``vww``; a config without it is ``kws``,
as every config was before person detection). Whatever is wrong (unknown key, wrong type,
missing file) comes back as one :class:`PipelineError` naming the file, the dotted key and
what was expected.

Only spec modules are imported here, and they import nothing heavy (no TensorFlow, no
Beam), so ``tflm-pipelines validate`` answers at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml

from components.audio.extract_features import FeatureSpec
from components.audio.mix_sources import SourceSpec
from components.audio.speech_commands import ReaderSpec
from components.audio.synth_speech import SynthSpec
from components.device import DeviceSpec
from components.evaluate import EvaluateSpec
from components.gate import GateSpec
from components.patch import PatchSpec
from components.prune import PruneSpec
from components.quantize import QuantizeSpec
from components.release.stage import ReleaseSpec
from components.search.space import SearchSpec
from components.tracking.track import TrackSpec
from components.train import TrainSpec
from components.vision.coco import CocoSpec
from components.vision.image_folder import ImageFolderSpec
from components.vision.preprocess_images import ImageSpec
from components.vision.scenes import SceneSpec
from pipelines.errors import PipelineError

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)
_DEVICE = pydantic.TypeAdapter(DeviceSpec)


class DataConfig(pydantic.BaseModel):
    """Where clips come from: generated with eSpeak NG, a Speech Commands folder, or a
    ``mix`` of those with a weight per source (``components.audio.mix_sources``)."""

    model_config = _STRICT
    source: Literal["synth", "speech_commands", "mix"] = "synth"
    path: Path | None = None
    synth: SynthSpec = SynthSpec()
    reader: ReaderSpec = ReaderSpec()
    mix: tuple[SourceSpec, ...] = ()

    @pydantic.model_validator(mode="after")
    def _path_exists(self) -> DataConfig:
        if (self.source == "mix") != bool(self.mix):
            raise ValueError("'mix' lists the sources of source 'mix', and only of it "
                             f"(source {self.source!r}, {len(self.mix)} mix entries)")  # fmt: skip
        if self.source == "speech_commands":
            if self.path is None:
                raise ValueError("source 'speech_commands' needs 'path' (a folder)")
            if not self.path.is_dir():
                raise ValueError(f"path '{self.path}' is not a folder")
        return self


class ImageDataConfig(pydantic.BaseModel):
    """Where images come from: generated scenes, an image folder (one folder per class,
    optionally inside train/validation/test folders) or COCO-style annotations."""

    model_config = _STRICT
    source: Literal["synth", "folder", "coco"] = "synth"
    path: Path | None = None  # the image folder (folder) or the images of the annotations (coco)
    annotations: Path | None = None  # coco: the instances JSON
    synth: SceneSpec = SceneSpec()
    folder: ImageFolderSpec = ImageFolderSpec()
    coco: CocoSpec = CocoSpec()

    @pydantic.model_validator(mode="after")
    def _paths_exist(self) -> ImageDataConfig:
        if self.source == "synth":
            return self
        if self.path is None or not self.path.is_dir():
            raise ValueError(f"source {self.source!r} needs 'path', a folder (got {self.path})")
        if self.source == "coco" and (self.annotations is None or not self.annotations.is_file()):
            raise ValueError(
                f"source 'coco' needs 'annotations', a JSON file (got {self.annotations})"
            )
        return self


PRUNE_FOLLOWS_TRAIN = ("batch_size", "pair_batches", "fused_batch_norm")  # unless set in prune


class ChainConfig(pydantic.BaseModel):
    """What every pipeline shares: the model chain's sections and the device targets."""

    model_config = _STRICT
    work_dir: Path = Path("runs/kws")
    train: TrainSpec = TrainSpec()
    prune: PruneSpec = PruneSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    patch: PatchSpec = PatchSpec()
    evaluate: EvaluateSpec = EvaluateSpec()
    devices: tuple[DeviceSpec, ...] = pydantic.Field(min_length=1)
    gate: GateSpec = GateSpec()
    track: TrackSpec = TrackSpec()
    release: ReleaseSpec = ReleaseSpec()
    search: SearchSpec = SearchSpec()  # only read by `tflm-pipelines search`

    @pydantic.model_validator(mode="before")
    @classmethod
    def _prune_batches_as_training(cls, raw: Any) -> Any:
        """Pruning's fine-tuning batches as training does (batch size, and each scene with
        its twin when training pairs them), unless the prune section says otherwise: one
        key to change, not two."""
        if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict):
            return raw
        prune = raw.get("prune") or {}
        if not isinstance(prune, dict):
            return raw
        inherited = {
            key: raw["train"][key]
            for key in PRUNE_FOLLOWS_TRAIN
            if raw["train"].get(key) is not None and key not in prune
        }
        return {**raw, "prune": {**prune, **inherited}} if inherited else raw


class KwsConfig(ChainConfig):
    """Keyword spotting: clips (generated or Speech Commands) -> features -> the chain."""

    pipeline: Literal["kws"] = "kws"
    data: DataConfig = DataConfig()
    features: FeatureSpec = FeatureSpec()


class VwwConfig(ChainConfig):
    """Person detection: images (generated, a folder or COCO) -> preprocessing -> the chain."""

    pipeline: Literal["vww"] = "vww"
    work_dir: Path = Path("runs/vww")
    data: ImageDataConfig = ImageDataConfig()
    images: ImageSpec = ImageSpec()

    @pydantic.model_validator(mode="before")
    @classmethod
    def _vww_defaults(cls, raw: Any) -> Any:
        """Keys a VWW config leaves out take MLPerf Tiny's VWW recipe, not the KWS one."""
        if not isinstance(raw, dict):
            return raw
        merged = dict(raw)
        for section, defaults in _VWW_DEFAULTS.items():
            given = raw.get(section, {})
            merged[section] = {**defaults, **given} if isinstance(given, dict) else given
        return merged


# MLPerf Tiny's VWW training: MobileNetV1, Adam, batch 32, stepped rate, its augmentation.
_VWW_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {
        "architecture": "mobilenet_v1", "epochs": 30, "batch_size": 32, "learning_rate": 0.001,
        "schedule": "step", "step_epochs": (15, 23), "augment": {},
    },
    "track": {"experiment": "vww", "registered_model_name": "vww-mobilenet-v1"},
}  # fmt: skip


PipelineConfig = Annotated[KwsConfig | VwwConfig, pydantic.Field(discriminator="pipeline")]
# Each pipeline's module (its data front ``data_front`` and ``run``) and the config section
# of its example-writing stage (whose ``runner`` --runner sets, and whose cache key names
# the examples).
PIPELINES = {"kws": ("pipelines.kws", "features"), "vww": ("pipelines.vww", "images")}
_PIPELINE_CONFIG = pydantic.TypeAdapter(PipelineConfig)


def load(path: str | Path, overrides: Sequence[str] = ()) -> KwsConfig | VwwConfig:
    """Parse and validate ``path`` with ``overrides`` (``dotted.key=yaml-value``) applied."""
    path = Path(path)
    raw = _read_yaml(path)
    for item in overrides:
        _apply_override(raw, item, path)
    raw.setdefault("pipeline", "kws")
    raw["devices"] = [_load_device(path.parent, d) for d in raw.get("devices") or []]
    try:
        return _PIPELINE_CONFIG.validate_python(raw)
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
        loc = err["loc"][1:] if err["loc"][:1] in (("kws",), ("vww",)) else err["loc"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        given = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        lines.append(f"{path}: key '{key}': {err['msg']}{given}")
    return "\n".join(lines)
