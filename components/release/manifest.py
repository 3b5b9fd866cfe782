"""The release manifest: what a bundle holds and what was measured, as typed records.

``manifest.json`` is the one file a device fleet, an auditor or the device registry reads to
know what a bundle is: the model version and its MLflow run, the device target, the figures
measured on TFLM, the operators (custom ones with their options versions), the gate report
for that device, the preprocessing the firmware must reproduce, and the SHA-256 of every
other file. Its shape is published as ``manifest.schema.json`` beside this module; every
manifest is checked against it when written and when read.

The JSON is canonical (sorted keys, two-space indent, one trailing newline) so that the
SHA-256 of the file identifies the bundle (the device registry stores bundles under it) and
the signature in ``manifest.sig`` covers exactly these bytes.

Called by ``components.release.bundle`` (writing, verifying) and the device registry.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from components.artifacts import GateReport, Preprocessing, RuleResult
from components.device import DeviceSpec
from components.errors import ComponentError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "manifest.schema.json"


@dataclass(frozen=True)
class ModelRef:
    """Which model a bundle holds: the registered model's name and version, and the run
    that logged it (None for a model that never went through MLflow)."""

    name: str
    version: str
    run_id: str | None = None


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle (POSIX path relative to the bundle), its SHA-256 and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class CustomOpVersion:
    """A custom operator the model uses and the options version its instances carry."""

    name: str
    version: int


@dataclass(frozen=True)
class OpSet:
    """The operators the firmware must register: builtins by schema name, then custom ops."""

    builtin: tuple[str, ...]
    custom: tuple[CustomOpVersion, ...] = ()


@dataclass(frozen=True)
class TensorFormat:
    """A model input or output as firmware fills or reads it: real = scale * (q - zero_point).
    ``scale`` and ``zero_point`` are None for a tensor that is not quantized."""

    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class FirmwarePreprocessing:
    """What the firmware computes before the model: the preprocessing (front end, or image
    size and colour), its parameters, and how the result is quantized into the input."""

    preprocessing: Preprocessing
    parameters: Mapping[str, Any]
    input: TensorFormat
    output: TensorFormat


@dataclass(frozen=True)
class Figures:
    """Accuracy and latency from the evaluation; the arena measured on TFLM (the tflite-micro
    version in ``Manifest.tflite_micro_version``) when the bundle was built; ``arena_min`` is
    the smallest arena the interpreter builds with, the figure to size firmware with."""

    int8_accuracy: float
    float_accuracy: float | None
    test_examples: int
    arena_head: int
    arena_tail: int
    arena_total: int
    arena_min: int
    flash_bytes: int
    macs: int
    host_latency_ms: float
    estimated_latency_ms: float | None  # on the bundle's device (cycles-per-MAC model)


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` records; see ``manifest.schema.json`` for each field."""

    model: ModelRef
    labels: tuple[str, ...]
    device: DeviceSpec
    figures: Figures
    ops: OpSet
    preprocessing: FirmwarePreprocessing
    gate: GateReport | None
    files: tuple[FileEntry, ...]
    tflite_micro_version: str
    tool_version: str
    created_at: str
    created_by: str
    schema_version: int = field(default=SCHEMA_VERSION)

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)


def to_record(manifest: Manifest) -> dict[str, Any]:
    """The JSON-ready record (the layout ``manifest.schema.json`` describes)."""
    prep = manifest.preprocessing
    gate = manifest.gate
    return {
        "schema_version": manifest.schema_version,
        "model": asdict(manifest.model),
        "labels": list(manifest.labels),
        "device": _jsonable(asdict(manifest.device)),
        "figures": asdict(manifest.figures),
        "ops": _jsonable(asdict(manifest.ops)),
        "preprocessing": {
            **prep.preprocessing.describe(),
            "parameters": _jsonable(dict(prep.parameters)),
            "input": _jsonable(asdict(prep.input)),
            "output": _jsonable(asdict(prep.output)),
        },
        "gate": None if gate is None else _gate_record(gate),
        "files": [asdict(f) for f in manifest.files],
        "verified_with": {
            "tflite_micro": manifest.tflite_micro_version,
            "tflm_pipelines": manifest.tool_version,
        },
        "created_at": manifest.created_at,
        "created_by": manifest.created_by,
    }


def from_record(record: Mapping[str, Any]) -> Manifest:
    """Inverse of :func:`to_record`, for a record that passed the schema."""
    prep = record["preprocessing"]
    ops = record["ops"]
    return Manifest(
        model=ModelRef(**record["model"]),
        labels=tuple(record["labels"]),
        device=DeviceSpec(**record["device"]),
        figures=Figures(**record["figures"]),
        ops=OpSet(tuple(ops["builtin"]), tuple(CustomOpVersion(**c) for c in ops["custom"])),
        preprocessing=FirmwarePreprocessing(
            preprocessing=Preprocessing.from_record(prep),
            parameters=prep["parameters"],
            input=_tensor_format(prep["input"]),
            output=_tensor_format(prep["output"]),
        ),
        gate=None if record["gate"] is None else _gate_report(record["gate"]),
        files=tuple(FileEntry(**f) for f in record["files"]),
        tflite_micro_version=record["verified_with"]["tflite_micro"],
        tool_version=record["verified_with"]["tflm_pipelines"],
        created_at=record["created_at"],
        created_by=record["created_by"],
        schema_version=record["schema_version"],
    )


def dumps(manifest: Manifest) -> bytes:
    """Canonical ``manifest.json`` bytes, checked against the schema first."""
    record = to_record(manifest)
    validate(record, MANIFEST_NAME)
    return (json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def loads(data: bytes, source: str) -> Manifest:
    """Parse and check ``manifest.json`` bytes; ``source`` (a path) names it in errors."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ComponentError(f"{source}: not a JSON manifest: {e}") from e
    validate(record, source)
    try:
        return from_record(record)
    except (TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise ComponentError(f"{source}: manifest does not describe a bundle: {e}") from e


def validate(record: Any, source: str) -> None:
    """Check a manifest record against ``manifest.schema.json``; the error names the key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        key = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ComponentError(f"{source}: key '{key}': {first.message}{more}")


@functools.cache
def schema() -> dict[str, Any]:
    """The published JSON Schema of ``manifest.json`` (package data)."""
    text = resources.files(__package__).joinpath(SCHEMA_NAME).read_text()
    return json.loads(text)


def _gate_record(gate: GateReport) -> dict[str, Any]:
    return {"device": gate.device, "passed": gate.passed, "rules": [asdict(r) for r in gate.rules]}


def _gate_report(record: Mapping[str, Any]) -> GateReport:
    report = GateReport(record["device"], tuple(RuleResult(**r) for r in record["rules"]))
    if report.passed != record["passed"]:
        raise ValueError(f"gate.passed is {record['passed']} but its rules say {report.passed}")
    return report


def _tensor_format(record: Mapping[str, Any]) -> TensorFormat:
    return TensorFormat(**{**record, "shape": tuple(record["shape"])})


def _jsonable(value: Any) -> Any:
    """Tuples become lists, so the record compares equal to its JSON round trip."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
