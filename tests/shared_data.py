"""Where the real data samples and reference models live: ``../shared`` beside the repo.

Tests that check the project against real recordings, photos or MLPerf Tiny's reference
models find them here and skip, naming the missing path, when the folder is absent (the
product never needs it). ``TFLM_PIPELINES_SHARED`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFLM_PIPELINES_SHARED", REPO.parent / "shared"))


def shared(*parts: str) -> Path:
    """A path inside the shared folder (which may not exist)."""
    return SHARED.joinpath(*parts)


def require(*parts: str) -> Path:
    """The path inside the shared folder, or skip the calling test naming what is missing."""
    path = shared(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared folder beside the repo)")
    return path
