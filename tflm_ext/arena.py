"""Measure the tensor arena a model needs on the tflite-micro wheel's interpreter.

Called by the evaluate component and the patch planner (through ``run_isolated`` for models
not yet vetted: TFLM aborts the process on some bad models).

Two figures, because neither alone is the whole truth (measured on the pinned wheel):
- TFLM's RecordingMicroAllocator reports ``head`` (the activation plan) and ``tail``
  (persistent structs). The tail includes up to 15 B of alignment padding at the end of
  the arena that depends on ``arena_size`` modulo 16, so the same model reports totals up
  to 15 B apart for arenas a few bytes apart (the notes' "total or total - 8"). We
  therefore read the figures from an interpreter built with exactly the bisected minimum.
- The figures miss the temporary allocations kernels make while they prepare. When those
  exceed the planned head (small models), the smallest arena that builds is larger than
  TFLM's total, and an arena of ``total`` bytes fails. ``bisected_min`` (the smallest
  ``arena_size`` for which the interpreter builds) is the figure to size firmware with.

Invariant: ``head + tail == total <= bisected_min``; equal when the activation plan, not
prepare-time temporaries, sets the peak (as for a DS-CNN-shaped KWS model tried: 21,192 B).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from tflite_micro.python.tflite_micro import runtime

from tflm_ext.errors import TflmExtError
from tflm_ext.interpreter import (
    ARENA_ALIGNMENT,
    debug_log_capture,
    default_arena_size,
    make_interpreter,
)

log = logging.getLogger(__name__)

_ALLOCATION_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclass(frozen=True)
class ArenaMeasurement:
    """TFLM's own figures at the minimal arena (head, tail, total) and that minimum."""

    head: int
    tail: int
    total: int
    bisected_min: int


def measure_arena(model_bytes: bytes) -> ArenaMeasurement:
    """Bisect the smallest arena that builds, then read TFLM's figures at that size."""
    generous = default_arena_size(model_bytes)
    recorded = recorded_allocations(make_interpreter(model_bytes, generous))
    # The minimum is never more than 15 B below TFLM's total, so total - 32 still fails, in
    # memory planning or (each probe runs in a forked child) by crashing the wheel.
    minimum = bisect_arena(model_bytes, recorded["total"] - 2 * ARENA_ALIGNMENT, generous)
    at_minimum = recorded_allocations(make_interpreter(model_bytes, minimum))
    measurement = ArenaMeasurement(
        head=at_minimum["head"],
        tail=at_minimum["tail"],
        total=at_minimum["total"],
        bisected_min=minimum,
    )
    log.info("arena %s", measurement)
    return measurement


def recorded_totals(models: list[bytes]) -> list[int]:
    """TFLM's total arena (head + tail) of each model, from one build each at a generous
    size: up to 15 B above the figure at the bisected minimum (the tail's end padding), so
    it ranks plans without a bisection per plan. Module-level, to run isolated."""
    return [
        recorded_allocations(make_interpreter(model, default_arena_size(model)))["total"]
        for model in models
    ]


def recorded_allocations(interpreter: runtime.Interpreter) -> dict[str, int]:
    """TFLM's ``Arena allocation total|head|tail`` figures, read from its DebugLog on fd 2.

    Planning happens while the interpreter is built, so these are complete before invoke().
    """
    with debug_log_capture() as debug_log:
        interpreter.print_allocations()
    figures = {key: int(value) for key, value in _ALLOCATION_LINE.findall(debug_log.text)}
    if set(figures) != {"total", "head", "tail"}:
        raise TflmExtError(
            f"print_allocations() did not report total, head and tail; it wrote:\n"
            f"{debug_log.tail(10)}"
        )
    return figures


def bisect_arena(model_bytes: bytes, fails: int, builds: int) -> int:
    """Smallest arena_size in (fails, builds] for which the interpreter builds.

    Building succeeds monotonically in arena_size (each persistent allocation's address is a
    non-decreasing function of the arena's end), so bisection is exact. ``fails`` must stay
    above the few hundred bytes of TFLM's own first structs: below them the wheel segfaults
    instead of reporting an error, which is why callers start just below the recorded total.
    """
    if _builds(model_bytes, fails) or not _builds(model_bytes, builds):
        raise TflmExtError(
            f"arena bisection needs a failing lower bound and a working upper bound; "
            f"got {fails} B and {builds} B for a {len(model_bytes)} B model"
        )
    probes = 0
    while builds - fails > 1:
        middle = (fails + builds) // 2
        fails, builds = (fails, middle) if _builds(model_bytes, middle) else (middle, builds)
        probes += 1
    log.debug("arena bisection: %d B after %d probes", builds, probes)
    return builds


def _builds(model_bytes: bytes, arena_size: int) -> bool:
    """Whether the interpreter builds in ``arena_size``, tried in a forked child: where a
    kernel's Prepare-time allocation fails, some of the wheel's builtin kernels write
    through the failed pointer and crash instead of reporting it (sizes just below the
    minimum of a model with a tiny head), and a crash is a failed build too."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only reports by its exit status
        try:
            make_interpreter(model_bytes, arena_size)
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
