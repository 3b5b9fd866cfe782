"""Keep TensorFlow's C++ start-up lines out of the CLI's output.

TensorFlow 2.21 logs through Abseil before anything initialises Abseil's logging, so its
start-up lines ("WARNING: All log messages before absl::InitializeLog() is called are
written to STDERR" and oneDNN's notice) go straight to file descriptor 2 whatever
``TF_CPP_MIN_LOG_LEVEL`` says (abseil/abseil-cpp#1718). They are printed while the
``tensorflow`` package is imported, so the CLI imports it, the first time any module does,
with descriptor 2 pointed at /dev/null. Python errors raised by that import still raise;
``--verbose`` skips all of this.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

_PACKAGE = "tensorflow"


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _stderr_to_devnull():
            self._loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Import ``tensorflow`` silently when something first imports it (idempotent)."""
    if _PACKAGE in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
