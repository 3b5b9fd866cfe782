"""Release bundle: one model version for one device target, as a folder firmware builds from.

A bundle is what ``tflm_ext.firmware_export`` writes (``model_data.cc/.h``, ``op_resolver.h``
with exactly the model's operators, the patch-stage kernel sources when the model uses them,
a README with the arena to reserve) plus ``model.tflite`` and ``manifest.json`` (see
``components.release.manifest``), and optionally ``manifest.sig`` (``signing``).

:func:`build` makes one from plain inputs (model bytes and typed records), so the pipeline,
a notebook or ``from_mlflow`` can call it alike; :func:`verify` checks one before anything
trusts it: the manifest's bytes (against a known bundle id), its signature, its schema, and
every file against its recorded SHA-256, naming the first file that does not match.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import Field

from components.artifacts import Evaluation, GateReport, Preprocessing
from components.device import DeviceSpec, estimate_latency_ms
from components.errors import ComponentError
from components.release import firmware_facts
from components.release.manifest import (
    MANIFEST_NAME,
    Figures,
    FileEntry,
    FirmwarePreprocessing,
    Manifest,
    ModelRef,
    dumps,
    loads,
)
from components.spec import component_spec

MODEL_FILE = "model.tflite"
SIGNATURE_NAME = "manifest.sig"
USER_VARIABLE = "TFLM_PIPELINES_USER"  # who builds and promotes, when not the login name
_NOT_LISTED = {MANIFEST_NAME, SIGNATURE_NAME}
_CHUNK = 1 << 20

log = logging.getLogger(__name__)


@component_spec
class BundleSpec:
    """How bundles are written: the C array's name; who built it (None: the environment's
    user, ``$TFLM_PIPELINES_USER`` or the login name)."""

    c_name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "g_model"
    created_by: str | None = None


@dataclass(frozen=True)
class ReleaseCandidate:
    """What a bundle is built from: the int8 model, which version it is, what the evaluation
    measured, the preprocessing it was trained with and the gate reports (any devices; the
    bundle keeps its target's)."""

    model_bytes: bytes
    model: ModelRef
    evaluation: Evaluation
    preprocessing: Preprocessing
    gates: tuple[GateReport, ...] = ()


@dataclass(frozen=True)
class Bundle:
    """A bundle folder, its manifest, and its id: the SHA-256 of ``manifest.json``."""

    folder: Path
    manifest: Manifest
    bundle_id: str

    @property
    def signed(self) -> bool:
        return (self.folder / SIGNATURE_NAME).is_file()


def current_user(override: str | None = None) -> str:
    """Who acts: ``override``, else ``$TFLM_PIPELINES_USER``, else the login name."""
    if override:
        return override
    try:
        return os.environ.get(USER_VARIABLE) or getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (some containers)
        return "unknown"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    spec: BundleSpec,
    candidate: ReleaseCandidate,
    device: DeviceSpec,
    to_dir: Path,
    *,
    created_at: str | None = None,
) -> Bundle:
    """Write the bundle of ``candidate`` for ``device`` into ``to_dir`` (new or empty).

    The folder is assembled beside ``to_dir`` and renamed into place, so ``to_dir`` holds
    either nothing or a whole bundle, whatever fails."""
    to_dir = _check_target(Path(to_dir))
    scratch = to_dir.parent / f".{to_dir.name}.{uuid.uuid4().hex}.partial"
    try:
        manifest = _assemble(spec, candidate, device, scratch, created_at or utc_now())
        if to_dir.exists():
            to_dir.rmdir()  # empty (checked): rename needs the name free or an empty dir
        os.rename(scratch, to_dir)
    except OSError as e:
        raise ComponentError(f"cannot write the bundle to {to_dir}: {e}") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data = (to_dir / MANIFEST_NAME).read_bytes()
    log.info(
        "bundle %s %s for %s in %s",
        manifest.model.name,
        manifest.model.version,
        device.name,
        to_dir,
    )
    return Bundle(to_dir, manifest, sha256_bytes(data))


def _check_target(to_dir: Path) -> Path:
    if to_dir.exists() and (not to_dir.is_dir() or any(to_dir.iterdir())):
        raise ComponentError(f"bundle folder {to_dir} exists and is not empty: choose a new one")
    to_dir.parent.mkdir(parents=True, exist_ok=True)
    return to_dir


def _assemble(
    spec: BundleSpec, candidate: ReleaseCandidate, device: DeviceSpec, folder: Path, at: str
) -> Manifest:
    """Export the firmware folder, add the model, then the manifest that hashes them."""
    from tflm_ext.errors import TflmExtError
    from tflm_ext.firmware_export import export_firmware

    model_bytes = bytes(candidate.model_bytes)
    model_input, model_output = firmware_facts.tensor_formats(model_bytes)
    firmware_facts.check_input_shape(candidate.preprocessing, model_input)
    try:
        exported = export_firmware(model_bytes, folder, spec.c_name)
    except TflmExtError as e:
        raise ComponentError(
            f"cannot export {candidate.model.name} {candidate.model.version} as firmware: {e}"
        ) from e
    (folder / MODEL_FILE).write_bytes(model_bytes)
    manifest = Manifest(
        model=candidate.model,
        labels=tuple(candidate.evaluation.labels),
        device=device,
        figures=_figures(candidate.evaluation, exported.arena, device, len(model_bytes)),
        ops=firmware_facts.op_set(exported.builtin_ops, exported.custom_ops, model_bytes),
        preprocessing=FirmwarePreprocessing(
            preprocessing=candidate.preprocessing,
            parameters=firmware_facts.preprocessing_parameters(candidate.preprocessing),
            input=model_input,
            output=model_output,
        ),
        gate=_gate_for(candidate, device),
        files=hash_files(folder),
        tflite_micro_version=_version("tflite-micro"),
        tool_version=_version("tflm-pipelines"),
        created_at=at,
        created_by=current_user(spec.created_by),
    )
    (folder / MANIFEST_NAME).write_bytes(dumps(manifest))
    return manifest


def _figures(ev: Evaluation, arena, device: DeviceSpec, flash_bytes: int) -> Figures:
    latency = ev.estimated_latency_ms.get(device.name)
    if latency is None and ev.macs:
        latency = estimate_latency_ms(int(ev.macs), device)
    return Figures(
        int8_accuracy=float(ev.int8_accuracy),
        float_accuracy=None if ev.float_accuracy is None else float(ev.float_accuracy),
        test_examples=int(ev.test_examples),
        arena_head=int(arena.head),
        arena_tail=int(arena.tail),
        arena_total=int(arena.total),
        arena_min=int(arena.bisected_min),
        flash_bytes=flash_bytes,
        macs=int(ev.macs),
        host_latency_ms=float(ev.host_latency_ms),
        estimated_latency_ms=None if latency is None else float(latency),
    )


def _gate_for(candidate: ReleaseCandidate, device: DeviceSpec) -> GateReport | None:
    report = next((g for g in candidate.gates if g.device == device.name), None)
    if report is None:
        log.warning("no gate report for %s: the bundle cannot be promoted", device.name)
    return report


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def hash_files(folder: Path) -> tuple[FileEntry, ...]:
    """Every file under ``folder`` but the manifest and its signature, sorted by path."""
    return tuple(
        FileEntry(path.relative_to(folder).as_posix(), sha256_file(path), path.stat().st_size)
        for path in sorted(_listed_files(folder))
    )


def _listed_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() not in _NOT_LISTED
    ]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(
    folder: Path,
    *,
    bundle_id: str | None = None,
    public_key: Path | None = None,
    require_signature: bool = False,
) -> Bundle:
    """Check a bundle before trusting it; raise ComponentError naming what does not match.

    ``bundle_id``: the SHA-256 ``manifest.json`` must have (the registry's id for it), so an
    altered manifest is caught even unsigned. The signature is checked whenever
    ``manifest.sig`` exists, and required with ``public_key`` (only that key is trusted) or
    ``require_signature``. Then every file must match its recorded size and SHA-256, and no
    file may be there that the manifest does not list."""
    from components.release import signing

    folder = Path(folder)
    data = _read_manifest_bytes(folder)
    digest = sha256_bytes(data)
    if bundle_id is not None and digest != bundle_id:
        raise ComponentError(
            f"{folder / MANIFEST_NAME} was altered: its SHA-256 is {digest}, "
            f"the bundle's id is {bundle_id}"
        )
    if (folder / SIGNATURE_NAME).exists() or public_key is not None or require_signature:
        signing.verify_signature(folder, public_key)
    manifest = loads(data, str(folder / MANIFEST_NAME))
    check_files(folder, manifest)
    return Bundle(folder, manifest, digest)


def _read_manifest_bytes(folder: Path) -> bytes:
    try:
        return (folder / MANIFEST_NAME).read_bytes()
    except OSError as e:
        raise ComponentError(f"{folder} is not a bundle: cannot read {MANIFEST_NAME}: {e}") from e


def check_files(folder: Path, manifest: Manifest) -> None:
    """Each listed file exists with its recorded size and SHA-256; nothing else is there."""
    for entry in manifest.files:
        path = folder / entry.path
        if path.is_symlink() or not path.is_file():
            raise ComponentError(f"bundle {folder}: file {entry.path} is missing (or a link)")
        size = path.stat().st_size
        if size != entry.size or sha256_file(path) != entry.sha256:
            raise ComponentError(
                f"bundle {folder}: file {entry.path} does not match its recorded SHA-256 "
                f"{entry.sha256} ({size} bytes, recorded {entry.size}): it was altered"
            )
    listed = {entry.path for entry in manifest.files}
    extra = sorted(p.relative_to(folder).as_posix() for p in _listed_files(folder))
    extra = [p for p in extra if p not in listed]
    if extra:
        raise ComponentError(f"bundle {folder}: file {extra[0]} is not in the manifest")
