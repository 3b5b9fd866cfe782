"""Run a function in a child process, so a TFLM ``abort()`` becomes an error, not a crash.

TFLM's internal checks abort the whole process on models they cannot handle. Evaluation code
calls ``run_isolated(run_batch, model_bytes, x)`` (or ``measure_arena``); a crash in the
child becomes a ChildCrashError naming the signal and quoting TFLM's last DebugLog lines.

The child is a fresh interpreter (``sys.executable``, or ``$TFLM_EXT_PYTHON`` where that is
not a usable python, as in some embedded interpreters) running ``tflm_ext.isolated_child``
with the parent's ``sys.path``. It inherits no TensorFlow state and never imports the
parent's ``__main__``, so any entry point works: a script without a main guard, ``python -``
on standard input, ``python -c``, a notebook, a Beam worker. It imports only the module
that defines ``func``, which must therefore be a module-level function importable by name
(not a lambda, a nested function, or anything defined in ``__main__``); that module must
not import TensorFlow at import time. The request and the answer travel as length-prefixed
pickles over two private pipes (see ``tflm_ext.isolated_child``); the child's stdin is
/dev/null, its stdout the parent's, its fd 2 a file quoted when it dies. POSIX only.

Errors say whose fault they are (all are TflmExtError): ChildStartError (nothing ran: no
interpreter, a function or argument that cannot be sent, a module failing to import in the
child), ChildCrashError (the function's process died: for TFLM, the model crashed it),
ChildTimeoutError, and ChildRaisedError (the function raised; its type and message kept).
"""

from __future__ import annotations

import fcntl
import functools
import io
import logging
import math
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tflm_ext.errors import (
    ChildCrashError,
    ChildRaisedError,
    ChildStartError,
    ChildTimeoutError,
    TflmExtError,
)
from tflm_ext.isolated_child import FRAME

log = logging.getLogger(__name__)

T = TypeVar("T")
PYTHON_ENV = "TFLM_EXT_PYTHON"
_STDERR_LINES = 20
_EXIT_GRACE_S = 30.0
_POLL_S = 0.25
_READ_CHUNK = 1 << 20
# argv: -c, request fd, outcome fd, the parent's sys.path. The path is set before the first
# project import, so the child finds tflm_ext and the caller's modules as the parent does.
_BOOTSTRAP = (
    "import sys; sys.path[:] = sys.argv[3:]; from tflm_ext.isolated_child import main; main()"
)
_ROOT = str(Path(__file__).resolve().parents[1])  # the directory holding tflm_ext/


def run_isolated(
    func: Callable[..., T], *args: Any, timeout_s: float | None = 600, **kwargs: Any
) -> T:
    """Return func(*args, **kwargs) computed in a fresh child python process.

    Raises ChildStartError when the child cannot be started or given the call (checked
    before anything starts where possible), ChildCrashError when it is killed by a signal
    (e.g. "SIGABRT") or exits without a result, ChildTimeoutError past timeout_s (the child
    is killed; None waits for ever), and ChildRaisedError when func raises (with the
    original type and message).
    """
    name = _name(func)
    request = _request(func, args, kwargs, name)
    command = [*_python_command(name), "-c", _BOOTSTRAP]
    with tempfile.TemporaryDirectory(prefix="tflm_ext_child_") as scratch:
        stderr_path = Path(scratch) / "stderr.txt"
        child, request_w, outcome_r = _start(command, stderr_path, name)
        writer = threading.Thread(target=_send, args=(request_w, request), daemon=True)
        writer.start()
        timed_out = True
        try:
            frames, timed_out = _receive(child, outcome_r, timeout_s)
        finally:
            os.close(outcome_r)
            _reap(child, kill=timed_out)
            writer.join()
        stderr_tail = _tail(stderr_path)
    if timed_out:
        raise ChildTimeoutError(
            f"{name} timed out after {timeout_s} s in a child process, which was killed; "
            f"its last stderr lines:\n{stderr_tail}"
        )
    return _unpack(frames, child.returncode, name, stderr_tail)


def _request(func: Callable[..., Any], args: tuple, kwargs: dict, name: str) -> bytes:
    """The pickled call; refuses what the child could not import by name."""
    why = _unimportable(func)
    if why:
        raise ChildStartError(f"cannot start {name} in a child process: {why}")
    buffer = io.BytesIO()
    try:
        _RequestPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((func, args, kwargs))
    except Exception as e:
        raise ChildStartError(
            f"cannot start {name} in a child process: its function or arguments cannot be "
            f"sent to it ({type(e).__name__}: {e})"
        ) from e
    return buffer.getvalue()


def _unimportable(func: Callable[..., Any]) -> str | None:
    """Why the child could not import func by module and name, or None."""
    while isinstance(func, functools.partial):
        func = func.func
    qualname = getattr(func, "__qualname__", "")
    if getattr(func, "__module__", None) == "__main__":
        return (
            "it is defined in __main__ (the script, notebook or standard input being run), "
            "which the child never imports; define it in a module importable by name"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        return (
            "it is a lambda or a function defined inside a function, which the child cannot "
            "import by name; define it at module level"
        )
    return None


class _RequestPickler(pickle.Pickler):
    """Refuses classes and functions of __main__ among the arguments: they would pickle by
    reference here and fail to unpickle in the child, which has another __main__."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, type | types.FunctionType)
            and getattr(obj, "__module__", None) == "__main__"
        ):
            raise pickle.PicklingError(
                f"{obj.__qualname__} is defined in __main__, which the child never imports"
            )
        return NotImplemented


def _python_command(name: str) -> list[str]:
    """The interpreter to start, with this one's -X, -W, -O, ... flags."""
    python = os.environ.get(PYTHON_ENV) or sys.executable
    if not python:
        raise ChildStartError(
            f"cannot start {name} in a child process: this interpreter does not know its "
            f"python executable (sys.executable is empty, as in some embedded interpreters); "
            f"set {PYTHON_ENV} to a python that can import tflm_ext"
        )
    try:
        flags = subprocess._args_from_interpreter_flags()  # what multiprocessing passes too
    except Exception:  # a private helper: never let it stop a run
        flags = []
    return [python, *flags]


def _child_sys_path() -> list[str]:
    """The parent's sys.path made absolute ('' is the working directory), plus tflm_ext's."""
    try:
        paths = [os.path.abspath(p) for p in sys.path if isinstance(p, str)]
    except OSError:  # the working directory is gone; the child inherits it as it is
        paths = [p for p in sys.path if isinstance(p, str)]
    return paths if _ROOT in paths else [*paths, _ROOT]


def _start(command: list[str], stderr_path: Path, name: str) -> tuple[subprocess.Popen, int, int]:
    """The started child, the write end of its request pipe and the read end of its answers."""
    request_r, request_w = _pipe()
    outcome_r, outcome_w = _pipe()
    try:
        with open(stderr_path, "wb") as stderr_file:
            child = subprocess.Popen(
                [*command, str(request_r), str(outcome_w), *_child_sys_path()],
                stdin=subprocess.DEVNULL,  # never the parent's: `python -` reads its script there
                stderr=stderr_file,
                pass_fds=(request_r, outcome_w),
            )
    except Exception as e:
        os.close(request_w)
        os.close(outcome_r)
        raise ChildStartError(
            f"cannot start {name} in a child process: {command[0]} does not start "
            f"({type(e).__name__}: {e}); set {PYTHON_ENV} to a python that can import tflm_ext"
        ) from e
    finally:  # the child's ends: once closed here, its death shows as EOF and EPIPE
        os.close(request_r)
        os.close(outcome_w)
    return child, request_w, outcome_r


def _pipe() -> tuple[int, int]:
    """os.pipe(), but above fds 0-2 even where those are closed (a daemon): the child's
    stdin and stderr are put there and must not land on a pipe it was passed."""
    ends = []
    for fd in os.pipe():
        if fd <= 2:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        ends.append(fd)
    return ends[0], ends[1]


def _send(fd: int, request: bytes) -> None:
    """Writer thread: the request may exceed the pipe's buffer while the parent reads."""
    try:
        with open(fd, "wb") as stream:
            stream.write(FRAME.pack(len(request)))
            stream.write(request)
    except OSError:  # the child died first; its exit status says why
        pass


def _receive(child: subprocess.Popen, fd: int, timeout_s: float | None) -> tuple[list[bytes], bool]:
    """The child's answer frames and whether timeout_s passed first.

    Stops at the outcome frame, at EOF, or when the child has exited and nothing more is
    waiting (a process it started may still hold the pipe open).
    """
    deadline = time.monotonic() + (math.inf if timeout_s is None else timeout_s)
    buffer, frames = bytearray(), []
    while not _complete(frames):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return frames, True
        if select.select([fd], [], [], min(remaining, _POLL_S))[0]:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            buffer += chunk
            frames += _split_frames(buffer)
        elif child.poll() is not None:
            while select.select([fd], [], [], 0)[0] and (chunk := os.read(fd, _READ_CHUNK)):
                buffer += chunk
            frames += _split_frames(buffer)
            break
    return frames, False


def _complete(frames: list[bytes]) -> bool:
    """A start error, or the started frame and the outcome."""
    return len(frames) >= 2 or (len(frames) == 1 and pickle.loads(frames[0])[0] != "started")


def _split_frames(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete frames at the start of buffer."""
    frames = []
    while len(buffer) >= FRAME.size:
        end = FRAME.size + FRAME.unpack_from(buffer)[0]
        if len(buffer) < end:
            break
        frames.append(bytes(buffer[FRAME.size : end]))
        del buffer[:end]
    return frames


def _reap(child: subprocess.Popen, kill: bool) -> None:
    """Wait for the child to exit; kill it at once on timeout, or if it hangs after its
    answer (e.g. at teardown)."""
    if kill:
        child.kill()
    try:
        child.wait(timeout=_EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        log.warning("child %s hung after answering; killing it", child.pid)
        child.kill()
        child.wait()


def _unpack(frames: list[bytes], exitcode: int | None, name: str, stderr_tail: str) -> Any:
    if not frames:
        raise ChildStartError(
            f"cannot start {name} in a child process: the child python {_death(exitcode)} "
            f"before it could load the function (not a TFLM crash); its last stderr lines:\n"
            f"{stderr_tail}"
        )
    first = pickle.loads(frames[0])
    if first[0] == "start-error":
        log.debug("%s could not be loaded in a child process:\n%s", name, first[2])
        raise ChildStartError(
            f"cannot start {name} in a child process: loading the function and its arguments "
            f"there failed (not a TFLM crash): {first[1]}"
        )
    if len(frames) < 2:
        raise ChildCrashError(
            f"{name} {_death(exitcode)} in a child process (a crash: for a TFLM function, "
            f"the model crashed TFLM); its last stderr lines:\n{stderr_tail}"
        )
    try:
        outcome = pickle.loads(frames[1])
    except Exception as e:
        raise TflmExtError(
            f"{name} returned a result from a child process that does not unpickle here: "
            f"{type(e).__name__}: {e}"
        ) from e
    if outcome[0] == "ok":
        if exitcode != 0:
            log.warning("%s returned a result but its process then %s", name, _death(exitcode))
        log.debug("%s child stderr:\n%s", name, stderr_tail)
        return outcome[1]
    _, type_name, summary, trace = outcome
    log.debug("%s raised in a child process:\n%s", name, trace)
    raise ChildRaisedError(
        f"{name} raised in a child process: {summary}", type_name=type_name, child_traceback=trace
    )


def _death(exitcode: int | None) -> str:
    """'was killed by SIGABRT' or 'exited with status 3 without a result'."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode} without a result"


def _tail(path: Path) -> str:
    if not path.exists():
        return "(no stderr captured)"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_LINES:]) or "(stderr was empty)"


def _name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
