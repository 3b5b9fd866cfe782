"""What the project's data generators (speech, scenes) share: a cache key from the generator
version and every spec field, and reading back the info file a finished set leaves behind.

A generated set is a pure function of its spec, so a folder whose info file carries the same
key needs no work; each generator then checks its own files against the recorded counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any


def spec_hash(generator_version: int, spec: Any) -> str:
    """The cache key: the generator version and every field of the (dataclass) spec."""
    text = json.dumps(
        {"generator": generator_version, "spec": dataclasses.asdict(spec)}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_info(out_dir: Path, info_file: str, key: str) -> dict[str, Any] | None:
    """The info file of a set generated with ``key`` in ``out_dir``, or None (missing,
    unreadable, or written for another spec)."""
    try:
        info = json.loads((Path(out_dir) / info_file).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("spec_hash") == key else None
