"""The device registry: which model version is at which stage on each device target.

A slot (registered model, device target, stage ``staging`` or ``production``) holds one
bundle at a time. :meth:`DeviceRegistry.promote` puts a stored bundle there after checking
it (files against their SHA-256 and the signature, then ``promotion_rules``: the device's
gate passed, its firmware provides every operator and custom-op version, no accuracy
regression against production unless forced with a reason); :meth:`DeviceRegistry.rollback`
restores the version that was there before the current one. Every action is kept with who,
when, why and whether it was forced.

Rollback reads the history as a stack per slot: a promotion pushes its bundle, a rollback
pops one, so rolling back twice after promoting A, B, C lands on A, and never on a version
that was rolled back.

Concurrency: every change is a compare-and-set on the slot's latest action (see
``backend``). A writer that lost a race re-reads the slot and re-runs every rule against
the new state before trying again, so no check is ever made against a stale production.

Called by ``pipelines.release_cli`` and by anyone scripting releases.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from components.device import DeviceSpec
from components.errors import ComponentError
from components.release import promotion_rules
from components.release.backend import (
    PROMOTE,
    ROLLBACK,
    STAGES,
    Action,
    RegistryBackend,
    Slot,
    StoredBundle,
)
from components.release.bundle import Bundle, current_user, utc_now, verify
from components.release.manifest import Manifest
from components.release.mlflow_mirror import MlflowMirror
from components.release.promotion_rules import RegistrySpec

log = logging.getLogger(__name__)


class DeviceRegistry:
    """Promotion and rollback rules over a :class:`RegistryBackend`; ``mirror`` keeps MLflow's
    aliases in step; ``public_key`` (PEM) is the only signer trusted when given."""

    def __init__(
        self,
        backend: RegistryBackend,
        spec: RegistrySpec | None = None,
        *,
        mirror: MlflowMirror | None = None,
        public_key: Path | None = None,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.backend = backend
        self.spec = spec or RegistrySpec()
        self.mirror = mirror
        self.public_key = public_key
        self._clock = clock

    @classmethod
    def local(cls, root: Path, *, tracking_uri: str | None = None, **kwargs) -> DeviceRegistry:
        """The registry in a local directory, mirrored into MLflow at ``tracking_uri``."""
        from components.release.local_store import LocalBackend

        mirror = MlflowMirror(tracking_uri) if tracking_uri else None
        return cls(LocalBackend(Path(root)), mirror=mirror, **kwargs)

    # -- bundles ---------------------------------------------------------------------------

    def add(self, folder: Path) -> StoredBundle:
        """Verify the bundle at ``folder`` and store it (a no-op if it is there already)."""
        bundle = verify(Path(folder), public_key=self.public_key)
        m = bundle.manifest
        record = StoredBundle(
            bundle_id=bundle.bundle_id,
            model=m.model.name,
            version=m.model.version,
            device=m.device.name,
            run_id=m.model.run_id,
            int8_accuracy=m.figures.int8_accuracy,
            created_at=m.created_at,
            created_by=m.created_by,
            signed=bundle.signed,
        )
        stored = self.backend.put_bundle(bundle.folder, record)
        log.info(
            "stored bundle %s (%s %s for %s)",
            stored.bundle_id[:12],
            stored.model,
            stored.version,
            stored.device,
        )
        return stored

    def latest_bundle(self, model: str, version: str, device: str) -> StoredBundle | None:
        """The newest stored bundle of ``model`` ``version`` for ``device``, if any."""
        matches = [
            b
            for b in self.backend.bundles()
            if (b.model, b.version, b.device) == (model, version, device)
        ]
        return matches[-1] if matches else None

    def fetch(self, bundle_id: str, to_dir: Path) -> Bundle:
        """Copy a stored bundle to ``to_dir`` (new) and verify it there; on any mismatch
        nothing is left at ``to_dir``."""
        to_dir = Path(to_dir)
        if to_dir.exists() and (not to_dir.is_dir() or any(to_dir.iterdir())):
            raise ComponentError(f"{to_dir} exists and is not empty: choose a new folder")
        to_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = to_dir.parent / f".{to_dir.name}.{uuid.uuid4().hex}.partial"
        try:
            self.backend.get_bundle(bundle_id, scratch)
            checked = verify(scratch, bundle_id=bundle_id, public_key=self.public_key)
            if to_dir.exists():
                to_dir.rmdir()
            scratch.rename(to_dir)
        except OSError as e:
            raise ComponentError(f"cannot write bundle {bundle_id} to {to_dir}: {e}") from e
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Bundle(to_dir, checked.manifest, bundle_id)

    def _verified_manifest(self, bundle_id: str) -> Manifest:
        """The stored bundle's manifest, once the bundle is checked file by file (in a
        throw-away copy, as a remote backend would hand it over)."""
        with tempfile.TemporaryDirectory(prefix="registry-check-") as scratch:
            copy = self.backend.get_bundle(bundle_id, Path(scratch) / bundle_id)
            return verify(copy, bundle_id=bundle_id, public_key=self.public_key).manifest

    # -- actions ---------------------------------------------------------------------------

    def promote(
        self,
        bundle_id: str,
        stage: str = "production",
        *,
        device: DeviceSpec | None = None,
        actor: str | None = None,
        reason: str = "",
        force: bool = False,
    ) -> Action:
        """Put a stored bundle at ``stage`` on its device target, or refuse naming why.

        ``device``: the target as it is now (its firmware section decides which operators
        are there); default, the target recorded in the bundle. ``force`` overrides only the
        regression rule, and needs a ``reason``."""
        _check_stage(stage)
        if force and not reason.strip():
            raise ComponentError("a forced promotion needs a reason (--reason)")
        if self.backend.bundle(bundle_id) is None:
            raise ComponentError(f"bundle {bundle_id} is not in the registry: add it first")
        manifest = self._verified_manifest(bundle_id)
        device = device or manifest.device
        slot = Slot(manifest.model.name, device.name, stage)
        if self.mirror:
            self.mirror.check_version(slot.model, manifest.model.version)
        for attempt in range(self.spec.max_attempts):
            head = self.backend.head(slot)
            if head is not None and head.bundle_id == bundle_id:
                raise ComponentError(
                    f"{slot.model} {head.version} (bundle {bundle_id[:12]}) "
                    f"is already at {stage} on {device.name}"
                )
            production = self._production(slot, head)
            hard, soft = promotion_rules.refusals(manifest, device, production, self.spec)
            if hard or (soft and not force):
                what = f"{slot.model} {manifest.model.version} to {stage} on {device.name}"
                raise ComponentError(f"refused to promote {what}: {'; '.join(hard + soft)}")
            action = self._action(
                PROMOTE, slot, bundle_id, manifest.model.version, head, actor, reason, force
            )
            stored = self.backend.append(action, None if head is None else head.id)
            if stored is not None:
                return self._done(stored, overridden=soft if force else [])
            _back_off(attempt)
        raise ComponentError(
            f"{slot} kept changing under concurrent writers: gave up after "
            f"{self.spec.max_attempts} attempts"
        )

    def rollback(
        self,
        model: str,
        device: str,
        stage: str = "production",
        *,
        actor: str | None = None,
        reason: str = "",
    ) -> Action:
        """Restore the version that was at ``stage`` before the current one (see the module
        docstring); its files are checked first. Refuses when there is none."""
        _check_stage(stage)
        slot = Slot(model, device, stage)
        checked: set[str] = set()
        for attempt in range(self.spec.max_attempts):
            history = self.backend.history(model, device, stage)
            if not history:
                raise ComponentError(f"nothing to roll back: {slot} has never been promoted")
            stack = deployment_stack(history)
            if len(stack) < 2:
                raise ComponentError(
                    f"nothing to roll back to: {model} {stack[-1][1]} is the "
                    f"only version left at {stage} on {device}"
                )
            target, version = stack[-2]
            if target not in checked:
                self._verified_manifest(target)
                checked.add(target)
            head = history[-1]
            action = self._action(ROLLBACK, slot, target, version, head, actor, reason, False)
            stored = self.backend.append(action, head.id)
            if stored is not None:
                return self._done(stored, overridden=[])
            _back_off(attempt)
        raise ComponentError(
            f"{slot} kept changing under concurrent writers: gave up after "
            f"{self.spec.max_attempts} attempts"
        )

    def _production(self, slot: Slot, head: Action | None) -> StoredBundle | None:
        """The bundle the regression rule compares with: the slot's current one, for
        production only (a staging slot is where a weaker candidate may be tried)."""
        if slot.stage != "production" or head is None:
            return None
        return self.backend.bundle(head.bundle_id)

    def _action(
        self,
        kind: str,
        slot: Slot,
        bundle_id: str,
        version: str,
        head: Action | None,
        actor: str | None,
        reason: str,
        forced: bool,
    ) -> Action:
        return Action(
            model=slot.model,
            device=slot.device,
            stage=slot.stage,
            kind=kind,
            bundle_id=bundle_id,
            version=version,
            previous_bundle_id=None if head is None else head.bundle_id,
            previous_version=None if head is None else head.version,
            actor=current_user(actor),
            at=self._clock(),
            reason=reason.strip(),
            forced=forced,
        )

    def _done(self, action: Action, overridden: list[str]) -> Action:
        if overridden:
            log.warning("forced (%s): %s", action.reason, "; ".join(overridden))
        log.info(
            "#%d %s %s %s -> %s on %s by %s",
            action.id,
            action.kind,
            action.model,
            action.version,
            action.stage,
            action.device,
            action.actor,
        )
        if self.mirror:
            head = self.backend.head(action.slot)
            self.mirror.apply(head or action)
        return action

    # -- reading ---------------------------------------------------------------------------

    def current(self, model: str, device: str, stage: str = "production") -> Action | None:
        """The action that put the slot's current bundle there, None if it is empty."""
        return self.backend.head(Slot(model, device, stage))

    def placements(self) -> tuple[Action, ...]:
        return self.backend.heads()

    def history(
        self, model: str | None = None, device: str | None = None, stage: str | None = None
    ) -> tuple[Action, ...]:
        return self.backend.history(model, device, stage)

    def slot_for(self, device: str, stage: str = "production", model: str | None = None) -> Action:
        """The current action of the one model at ``stage`` on ``device`` (or of ``model``)."""
        heads = [h for h in self.backend.heads() if h.device == device and h.stage == stage]
        if model is not None:
            heads = [h for h in heads if h.model == model]
        if not heads:
            which = f"{model} " if model else ""
            raise ComponentError(f"no {which}{stage} bundle for device {device!r} in the registry")
        if len(heads) > 1:
            names = ", ".join(h.model for h in heads)
            raise ComponentError(
                f"device {device!r} has several models at {stage} ({names}): name one (--model)"
            )
        return heads[0]

    def pull(
        self, device: str, to_dir: Path, *, stage: str = "production", model: str | None = None
    ) -> Bundle:
        """Fetch the current bundle of a device target into ``to_dir`` and verify it (hashes,
        and the signature: required to be by ``public_key`` when the registry has one)."""
        head = self.slot_for(device, stage, model)
        bundle = self.fetch(head.bundle_id, Path(to_dir))
        log.info("pulled %s %s (%s on %s) to %s", head.model, head.version, stage, device, to_dir)
        return bundle

    def sync_mlflow(self) -> int:
        """Re-apply every slot's current version to MLflow; the number of slots."""
        if self.mirror is None:
            raise ComponentError("no MLflow tracking URI given: nothing to sync")
        heads = self.backend.heads()
        for head in heads:
            self.mirror.apply(head)
        return len(heads)


def deployment_stack(history: tuple[Action, ...]) -> list[tuple[str, str]]:
    """(bundle id, version) deployed in turn on one slot, current last: promotions push,
    rollbacks pop."""
    stack: list[tuple[str, str]] = []
    for action in history:
        if action.kind == PROMOTE:
            stack.append((action.bundle_id, action.version))
        elif stack:
            stack.pop()
    return stack


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ComponentError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")


def _back_off(attempt: int) -> None:
    """Random wait, growing with the attempts, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
