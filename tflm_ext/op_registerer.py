"""What adds one custom op to the wheel's interpreter: a host library and its symbol.

Used by ``interpreter`` (which loads registerers into every interpreter it builds) and by
``host_build`` (which makes the project's own); kept apart from both so that neither needs
the other to name one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OpRegisterer:
    """A host-built shared library and the ``bool Register(tflite::PythonOpsResolver*)``
    symbol in it that adds one custom op to the interpreter's resolver."""

    library: Path
    symbol: str
