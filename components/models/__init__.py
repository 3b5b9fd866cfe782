"""Model builders, one module per architecture, looked up by ``train.architecture``.

Each builder module defines ``Options`` (a component spec: the architecture's own settings,
validated with the config before any work starts), ``WIDTH_OPTION`` (the field of
``Options`` that sets the width, which a search's ``widths`` axis writes) and
``build(input_shape, num_classes, options) -> keras.Model`` for an uncompiled float model
whose input is exactly ``input_shape`` (channels last, no batch axis). Builder modules import
Keras inside ``build`` only, so validating a config stays fast. No other component knows
which architecture it trains or which task it serves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from components.errors import ComponentError

ARCHITECTURES: dict[str, str] = {
    "ds_cnn": "components.models.ds_cnn",
    "mobilenet_v1": "components.models.mobilenet_v1",
    "mobilenet_v2": "components.models.mobilenet_v2",
    "mcunet": "components.models.mcunet",
    "plain_cnn": "components.models.plain_cnn",
}


def _module(architecture: str):
    try:
        return importlib.import_module(ARCHITECTURES[architecture])
    except KeyError as e:
        raise ComponentError(
            f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from e


def options(architecture: str, values: Mapping[str, Any] | None = None) -> Any:
    """The architecture's ``Options`` built from ``values`` (validated; defaults filled)."""
    return _module(architecture).Options(**dict(values or {}))


def resolved_options(architecture: str, values: Mapping[str, Any] | None = None) -> dict:
    """``options`` as a plain dict, every default written out (what a run records)."""
    return asdict(options(architecture, values))


def width_option(architecture: str) -> str:
    """The ``Options`` field that sets the architecture's width (``alpha``, ``filters``):
    what a search's ``widths`` axis writes."""
    return _module(architecture).WIDTH_OPTION


def build(
    architecture: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    values: Mapping[str, Any] | None = None,
):
    """An uncompiled Keras model of ``architecture`` for ``input_shape`` and ``num_classes``."""
    module = _module(architecture)
    return module.build(tuple(input_shape), int(num_classes), module.Options(**dict(values or {})))
