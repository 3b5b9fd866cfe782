"""Run a function in a child process, so a TFLM ``abort()`` becomes an error, not a crash.

TFLM's internal checks abort the whole process on models they cannot handle. Evaluation code
calls ``run_isolated(run_batch, model_bytes, x)`` (or ``measure_arena``); a crash in the
child becomes a TflmExtError naming the signal and quoting TFLM's last DebugLog lines.

The child is started with the 'spawn' method: it inherits no TensorFlow state from the
parent and imports only the module that defines ``func`` (which must be a picklable
module-level function) plus, as multiprocessing always does, the parent's ``__main__``
module (a script or ``python -m`` target). Neither may import TensorFlow at import time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TypeVar

from tflm_ext.errors import TflmExtError

log = logging.getLogger(__name__)

T = TypeVar("T")
_STDERR_LINES = 20
_EXIT_GRACE_S = 30.0


def run_isolated(func: Callable[..., T], *args: Any, timeout_s: float = 600, **kwargs: Any) -> T:
    """Return func(*args, **kwargs) computed in a spawned child process.

    Raises TflmExtError when the child raises (with the original type and message), is
    killed by a signal (e.g. "SIGABRT"), exits non-zero, or runs past timeout_s.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="tflm_ext_child_") as scratch:
        stderr_path = Path(scratch) / "stderr.txt"
        child = context.Process(
            target=_child_main, args=(sender, str(stderr_path), func, args, kwargs), daemon=True
        )
        try:
            child.start()
        except Exception as e:  # pickling func or its arguments fails here, in the parent
            raise TflmExtError(f"cannot start {_name(func)} in a child process: {e}") from e
        sender.close()  # so a dead child shows as EOF on the receiving end
        try:
            outcome = _await_outcome(child, receiver, timeout_s, _name(func))
        finally:
            receiver.close()
            _reap(child)
        stderr_tail = _tail(stderr_path)
    return _unpack(outcome, child.exitcode, _name(func), stderr_tail)


def _await_outcome(
    child: multiprocessing.process.BaseProcess, receiver: Connection, timeout_s: float, name: str
) -> tuple[Any, ...] | None:
    """The child's ("ok", result) or ("error", summary, traceback); None if it died silently.

    Reads before joining: a large result blocks the child in send() until it is read.
    """
    if not wait([receiver, child.sentinel], timeout=timeout_s):
        child.kill()
        raise TflmExtError(f"{name} timed out after {timeout_s} s in a child process")
    try:
        return receiver.recv()
    except EOFError:
        return None


def _reap(child: multiprocessing.process.BaseProcess) -> None:
    """Wait for the child to exit; kill it if it hangs after its answer (e.g. at teardown)."""
    child.join(timeout=_EXIT_GRACE_S)
    if child.is_alive():
        log.warning("child %s hung after answering; killing it", child.pid)
        child.kill()
        child.join()


def _unpack(
    outcome: tuple[Any, ...] | None, exitcode: int | None, name: str, stderr_tail: str
) -> Any:
    if outcome is not None and outcome[0] == "ok":
        if exitcode != 0:
            log.warning("%s returned a result but its process then exited with %s", name, exitcode)
        log.debug("%s child stderr:\n%s", name, stderr_tail)
        return outcome[1]
    if outcome is not None:
        log.debug("%s raised in a child process:\n%s", name, outcome[2])
        raise TflmExtError(f"{name} failed in a child process: {outcome[1]}")
    raise TflmExtError(f"{name} {_death(exitcode)} in a child process; its stderr:\n{stderr_tail}")


def _death(exitcode: int | None) -> str:
    """'was killed by SIGABRT' or 'exited with status 3'."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode} without a result"


def _child_main(
    sender: Connection, stderr_path: str, func: Callable[..., Any], args: tuple, kwargs: dict
) -> None:
    """Child side: fd 2 goes to a file the parent quotes if we die; the outcome goes back
    through the pipe, an exception as text because its type may not unpickle."""
    with open(stderr_path, "wb") as stderr_file:
        os.dup2(stderr_file.fileno(), 2)
    try:
        outcome: tuple[Any, ...] = ("ok", func(*args, **kwargs))
    except BaseException as e:  # everything must reach the parent, SystemExit included
        outcome = _error_outcome(e)
    try:
        sender.send(outcome)
    except Exception as e:  # the result did not pickle
        sender.send(_error_outcome(e))
    sender.close()


def _error_outcome(error: BaseException) -> tuple[str, str, str]:
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    return ("error", summary, "".join(traceback.format_exception(error)))


def _tail(path: Path) -> str:
    if not path.exists():
        return "(no stderr captured)"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_LINES:]) or "(stderr was empty)"


def _name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
