"""The child side of ``tflm_ext.isolation.run_isolated``: read one request, run it, answer.

The parent starts a fresh interpreter as ``python -c BOOTSTRAP REQUEST_FD OUTCOME_FD PATH...``
(see ``isolation._BOOTSTRAP``): the bootstrap sets ``sys.path`` to the parent's before anything
of the project is imported, then calls :func:`main`. Nothing of the parent's ``__main__`` (a
script, ``<stdin>``, a notebook, a Beam worker) is ever imported here; the request pickles the
function by reference, so unpickling it imports only the module that defines it.

Wire format on both pipes: frames of an 8-byte big-endian length and a pickle. The request
is one frame ``(func, args, kwargs)``. The answer is a first frame ``("started",)`` once the
function is loaded (or ``("start-error", summary, traceback)`` if it could not be), then an
outcome frame ``("ok", result)`` or ``("error", type name, summary, traceback)``. An
exception travels as text because its type may not unpickle in the parent.

fd 0 is /dev/null, fd 1 is the parent's stdout, fd 2 is a file the parent quotes when this
process dies (TFLM's DebugLog writes to fd 2). This module imports only the standard
library (importing it runs ``tflm_ext/__init__``, as the function's own import would):
never TensorFlow or the pipelines packages.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback
from typing import Any, BinaryIO

FRAME = struct.Struct("!Q")


def main() -> None:
    """Run the request read from the fd in sys.argv[1]; answer on the fd in sys.argv[2]."""
    request_fd, outcome_fd = int(sys.argv[1]), int(sys.argv[2])
    del sys.argv[1:]  # the function sees a plain `python -c` argv, not our fds and paths
    for fd in (request_fd, outcome_fd):
        os.set_inheritable(fd, False)  # a process the function starts must not hold them
    with os.fdopen(outcome_fd, "wb") as outcome:
        try:
            with os.fdopen(request_fd, "rb") as request:
                func, args, kwargs = pickle.loads(read_frame(request))
        except BaseException as e:  # the function's module failed to import, say
            write_frame(outcome, pickle.dumps(("start-error", *_describe(e)[1:])))
            return
        write_frame(outcome, pickle.dumps(("started",)))
        write_frame(outcome, _run(func, args, kwargs))


def _run(func: Any, args: tuple, kwargs: dict) -> bytes:
    """The pickled outcome of func(*args, **kwargs); a result that does not pickle is an error."""
    try:
        result: tuple[Any, ...] = ("ok", func(*args, **kwargs))
    except BaseException as e:  # everything must reach the parent, SystemExit included
        result = ("error", *_describe(e))
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as e:
        type_name, summary, trace = _describe(e)
        return pickle.dumps(
            ("error", type_name, f"its result could not be sent back: {summary}", trace)
        )


def _describe(error: BaseException) -> tuple[str, str, str]:
    """(type name, 'Type: message', formatted traceback) of an exception."""
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    return type(error).__qualname__, summary, "".join(traceback.format_exception(error))


def read_frame(stream: BinaryIO) -> bytes:
    header = _read_exactly(stream, FRAME.size)
    return _read_exactly(stream, FRAME.unpack(header)[0])


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(FRAME.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the request ended after {len(data)} of {size} bytes")
    return data
