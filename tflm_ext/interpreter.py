"""Build the tflite-micro wheel's interpreter for a model, with the project's custom ops.

Called by ``arena`` (measurement), ``inference`` (batch runs) and anything else that needs a
live TFLM interpreter. It also owns ``debug_log_capture``: TFLM's DebugLog writes straight
to file descriptor 2, so the only way to read (or silence) what TFLM says is to point fd 2
at a file for a while.

TFLM calls ``abort()`` on models it cannot handle; build interpreters for models the
pipeline has not vetted inside ``tflm_ext.isolation.run_isolated``.

Custom ops: by default an interpreter gets every registerer in ``CUSTOM_OP_REGISTERERS``
(added by users) plus the project's own op (``TFLM_EXT_PATCH_STAGE``) when the model uses it.
The project's host library is compiled on that first use (``tflm_ext.host_build``), so
models without it never need a compiler.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tflite_micro.python.tflite_micro import runtime

from tflm_ext import host_build
from tflm_ext.errors import TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.op_registerer import OpRegisterer
from tflm_ext.patch_op import OP_NAME as PATCH_STAGE_OP_NAME
from tflm_ext.tflite_file import root

log = logging.getLogger(__name__)

ARENA_ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment(): the arena is used in 16-byte units
_TAIL_ALLOWANCE = 16 * 1024  # persistent structs beyond what the model's size accounts for


# Extra custom ops, registered in every interpreter make_interpreter builds by default. The
# project's own ops are not listed here: default_registerers adds them when a model uses them.
CUSTOM_OP_REGISTERERS: tuple[OpRegisterer, ...] = ()

# The project's custom ops, by custom code.
PROJECT_CUSTOM_OPS = frozenset({PATCH_STAGE_OP_NAME})


class DebugLog:
    """What TFLM wrote to fd 2 inside a ``debug_log_capture`` block (filled in on exit)."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 5) -> str:
        """The last non-empty lines: TFLM's final message usually says what went wrong."""
        kept = [line for line in self.text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


@contextlib.contextmanager
def debug_log_capture() -> Iterator[DebugLog]:
    """Redirect fd 2 (TFLM's DebugLog, and anything else writing there) into a temp file.

    fd 2 is process-wide: other threads' stderr output during the block is captured too.
    """
    captured = DebugLog()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


def default_arena_size(model_bytes: bytes) -> int:
    """An arena that comfortably fits the model, so a first build never fails for size.

    The head can never need more than all non-constant tensors side by side (plus alignment
    padding); the tail's persistent structs grow with the flatbuffer's own size.
    """
    stats = graph_stats(model_bytes)
    padding = ARENA_ALIGNMENT * stats.tensor_count
    size = stats.activation_bytes + padding + 2 * len(model_bytes) + _TAIL_ALLOWANCE
    return align_up(size, ARENA_ALIGNMENT)


def align_up(value: int, alignment: int) -> int:
    """Round value up to a multiple of alignment."""
    return -(-value // alignment) * alignment


def make_interpreter(
    model_bytes: bytes,
    arena_size: int | None = None,
    registerers: Sequence[OpRegisterer] | None = None,
) -> runtime.Interpreter:
    """The wheel's interpreter for model_bytes, with the custom ops registered.

    registerers None means ``default_registerers(model_bytes)``: CUSTOM_OP_REGISTERERS
    (read at call time, so a later addition applies) plus the project's ops the model uses.
    Any failure, including TFLM refusing the arena size or a registerer refusing, becomes a
    TflmExtError carrying TFLM's own last log lines.
    """
    model_bytes = bytes(model_bytes)
    if arena_size is None:
        arena_size = default_arena_size(model_bytes)
    if registerers is None:
        registerers = default_registerers(model_bytes)
    symbols = [load_registerer(r) for r in registerers]
    with debug_log_capture() as debug_log:
        try:
            return runtime.Interpreter.from_bytes(
                model_bytes, custom_op_registerers=symbols, arena_size=arena_size
            )
        except (RuntimeError, ValueError, TypeError) as e:  # TypeError: not a flatbuffer
            error = e
    raise TflmExtError(
        f"TFLM could not build an interpreter for a {len(model_bytes)} B model with a "
        f"{arena_size} B arena: {error}\n{debug_log.tail()}"
    ) from error


def default_registerers(model_bytes: bytes) -> tuple[OpRegisterer, ...]:
    """CUSTOM_OP_REGISTERERS plus a registerer for each project op the model uses (the
    project's host library is built on first use), each symbol once."""
    chosen = list(CUSTOM_OP_REGISTERERS)
    if PATCH_STAGE_OP_NAME in custom_codes(model_bytes):
        chosen.append(host_build.patch_stage_registerer())
    unique: dict[str, OpRegisterer] = {}
    for registerer in chosen:
        unique.setdefault(registerer.symbol, registerer)
    return tuple(unique.values())


def custom_codes(model_bytes: bytes) -> frozenset[str]:
    """Custom operator names in the model's operator-code table; empty for bytes that are
    no model (the wheel then reports the real error)."""
    try:
        model = root(model_bytes)
        codes = (model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength()))
        return frozenset(code.decode() for code in codes if code)
    except Exception:  # the flatbuffer reader raises anything on garbage
        return frozenset()


def load_registerer(registerer: OpRegisterer) -> str:
    """Load the registerer's library RTLD_GLOBAL (so TFLM's dlsym finds the symbol) and
    return the symbol name the wheel expects."""
    _load_library(str(Path(registerer.library).resolve()))
    return registerer.symbol


@functools.cache
def _load_library(path: str) -> ctypes.CDLL:
    """Load once and keep forever: the resolver holds pointers into the library."""
    try:
        library = ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
    except OSError as e:
        raise TflmExtError(f"cannot load custom op library {path}: {e}") from e
    log.info("loaded custom op library %s", path)
    return library
