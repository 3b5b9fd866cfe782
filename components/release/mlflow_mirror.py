"""Keep MLflow's Model Registry in step with the device registry.

For every slot (registered model, device, stage) the device registry's current version gets
the alias ``<device>-<stage>`` (e.g. ``nucleo_l4r5zi-production``, so
``models:/kws-ds-cnn@nucleo_l4r5zi-production`` loads what that board runs) and the tag
``release.<device>.<stage>`` = the bundle id; the version that held them before loses the
tag (the alias moves by itself). The device registry is the source of truth: the mirror is
written after each action from the slot's state read back after the commit, and
:meth:`MlflowMirror.apply` is idempotent, so re-running it (``registry sync``) repairs any
drift, e.g. after MLflow was unreachable.

Called by ``components.release.registry``.
"""

from __future__ import annotations

import logging
import re

from components.errors import ComponentError
from components.release.backend import Action

log = logging.getLogger(__name__)


def alias_name(device: str, stage: str) -> str:
    """MLflow aliases allow letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^\w\-]", "_", f"{device}-{stage}")


def tag_key(device: str, stage: str) -> str:
    return f"release.{device}.{stage}"


class MlflowMirror:
    """Aliases and tags in the Model Registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def check_version(self, model: str, version: str) -> None:
        """Refuse, before any registry change, a version MLflow does not know."""
        from mlflow.exceptions import MlflowException

        try:
            self._client().get_model_version(model, version)
        except MlflowException as e:
            raise ComponentError(
                f"model {model!r} version {version} is not in the MLflow Model Registry at "
                f"{self.tracking_uri}: {e.message}"
            ) from e

    def apply(self, head: Action) -> None:
        """Point ``<device>-<stage>`` at the version of the slot's latest action."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        alias, tag = alias_name(head.device, head.stage), tag_key(head.device, head.stage)
        try:
            previous = _version_at(client, head.model, alias)
            client.set_registered_model_alias(head.model, alias, head.version)
            client.set_model_version_tag(head.model, head.version, tag, head.bundle_id)
            if previous is not None and previous != head.version:
                client.delete_model_version_tag(head.model, previous, tag)
        except MlflowException as e:
            raise ComponentError(
                f"the device registry holds {head.model} {head.version} at {head.stage} on "
                f"{head.device}, but MLflow at {self.tracking_uri} could not be updated "
                f"({e.message}); run `tflm-pipelines registry sync` to repair it"
            ) from e
        log.info("MLflow: %s@%s -> version %s", head.model, alias, head.version)


def _version_at(client, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(e).lower():
            return None
        raise
