"""The device registry's storage interface and the records it stores.

The registry's rules (``components.release.registry``) are written against
:class:`RegistryBackend` only, so a store other than the local one (an object store, an HTTP
service) implements these few methods and nothing else. Two ideas make that possible:

- bundles are content-addressed: a bundle's id is the SHA-256 of its ``manifest.json``, and
  storing the same bundle twice is harmless;
- history is append-only, and every append is a compare-and-set on the slot's latest action
  (``expected_head``): an HTTP backend maps it to a conditional request (``If-Match``), the
  local backend to one SQLite transaction. A writer that lost the race re-reads and re-checks.

A slot is (registered model, device target, stage); its current bundle is that of its latest
action, so "exactly one version per stage and device" holds by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

STAGES = ("staging", "production")
PROMOTE = "promote"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Slot:
    """Where a version is deployed: a registered model on a device target at a stage."""

    model: str
    device: str
    stage: str

    def __str__(self) -> str:
        return f"{self.model} on {self.device} ({self.stage})"


@dataclass(frozen=True)
class StoredBundle:
    """The registry's index entry for one stored bundle (figures copied from its manifest)."""

    bundle_id: str
    model: str
    version: str
    device: str
    run_id: str | None
    int8_accuracy: float
    created_at: str
    created_by: str
    signed: bool


@dataclass(frozen=True)
class Action:
    """One promotion or rollback of a slot: the bundle it put there and the one it replaced,
    who did it, when (UTC ISO 8601), why, and whether a refusal was overridden. ``id`` is the
    backend's sequence number (None before it is stored); ids grow with time."""

    model: str
    device: str
    stage: str
    kind: str
    bundle_id: str
    version: str
    previous_bundle_id: str | None
    previous_version: str | None
    actor: str
    at: str
    reason: str = ""
    forced: bool = False
    id: int | None = None

    @property
    def slot(self) -> Slot:
        return Slot(self.model, self.device, self.stage)


@runtime_checkable
class RegistryBackend(Protocol):
    """Storage of bundles and of the action history; no rules, no checks of content."""

    def put_bundle(self, folder: Path, record: StoredBundle) -> StoredBundle:
        """Store the (already verified) bundle at ``folder`` under ``record.bundle_id``, all
        or nothing; storing an id that is already there keeps the stored copy."""
        ...

    def get_bundle(self, bundle_id: str, to_dir: Path) -> Path:
        """Copy the stored bundle into ``to_dir`` (new); ComponentError if unknown."""
        ...

    def bundle(self, bundle_id: str) -> StoredBundle | None:
        """The index entry of a stored bundle, None if there is none."""
        ...

    def bundles(self) -> tuple[StoredBundle, ...]:
        """Every stored bundle, oldest first."""
        ...

    def head(self, slot: Slot) -> Action | None:
        """The latest action of ``slot`` (its bundle is the slot's current one), or None."""
        ...

    def heads(self) -> tuple[Action, ...]:
        """The latest action of every slot that has one."""
        ...

    def history(
        self, model: str | None = None, device: str | None = None, stage: str | None = None
    ) -> tuple[Action, ...]:
        """Every action matching the filters, in the order they were stored."""
        ...

    def append(self, action: Action, expected_head: int | None) -> Action | None:
        """Store ``action`` if the slot's latest action id is still ``expected_head`` (None:
        the slot has no action yet) and return it with its id; None when another writer
        got there first (nothing stored). The bundle must be stored already."""
        ...
