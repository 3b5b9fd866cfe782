"""Functions the isolation tests run in a child process, importable there by module name.

Imports only what the children need: never TensorFlow or pytest.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from tflm_ext.inference import run_batch
from tflm_ext.interpreter import make_interpreter


def power(base: int, exponent: int = 2) -> int:
    return base**exponent


def run_batch_reporting_modules(model_bytes: bytes, features: np.ndarray):
    """run_batch's result and which heavy or parent-only modules the child had loaded."""
    watched = ("tensorflow", "keras", "pipelines", "components", "apache_beam", "mlflow", "pytest")
    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(watched))
    main = sys.modules["__main__"]
    return run_batch(model_bytes, features), loaded, getattr(main, "__file__", None)


def child_view() -> tuple[list[str], str, list[str]]:
    """The child's sys.path, what it reads from stdin, and its argv."""
    return list(sys.path), sys.stdin.read(), list(sys.argv)


def abort_after_a_message() -> None:
    os.write(2, b"some earlier line\ntflm_ext test: giving up now\n")
    os.abort()


def raise_value_error() -> None:
    raise ValueError("bad value 42 in layer 'conv'")


def exit_with_status_3() -> None:
    os._exit(3)


def sleep_after_writing_pid(pid_path: str, seconds: float) -> None:
    with open(pid_path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def echo(value):
    return value


def noisy_result() -> str:
    """Writes to fd 1 and fd 2 around its result: neither may corrupt the answer."""
    print("child stdout line", flush=True)
    os.write(1, b"\x00\x00\x00\x00\x00\x00\x00\x09raw bytes on fd 1\n")
    os.write(2, b"child stderr line\n")
    return "clean"


def answer_then_leave_a_grandchild(seconds: float) -> str:
    """Forks a grandchild that keeps the answer pipe open for `seconds` after we return."""
    if os.fork() == 0:
        time.sleep(seconds)
        os._exit(0)
    return "answered"


def return_unpicklable():
    return lambda: None


def builds(model_bytes: bytes) -> bool:
    make_interpreter(model_bytes)
    return True
