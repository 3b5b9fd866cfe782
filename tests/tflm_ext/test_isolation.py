"""run_isolated: results come back; crashes, start failures, timeouts and exceptions become
the TflmExtError subclass that names their cause.

The child runs functions of ``tests.tflm_ext.isolation_targets``, imported there by name.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor

import tflm_ext.isolation as isolation
from tests.tflm_ext import isolation_targets as targets
from tflm_ext.errors import (
    ChildCrashError,
    ChildRaisedError,
    ChildStartError,
    ChildTimeoutError,
    TflmExtError,
)
from tflm_ext.inference import BatchResult, run_batch
from tflm_ext.isolation import run_isolated


def test_returns_the_result_with_args_and_kwargs() -> None:
    assert run_isolated(targets.power, 3, exponent=4) == 81
    assert run_isolated(functools.partial(targets.power, exponent=3), 2, timeout_s=None) == 8


def test_concurrent_calls_from_threads_each_get_their_own_answer() -> None:
    """As in Beam's multi-threaded direct runner: no child may hold another's pipes."""
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(lambda b: run_isolated(targets.power, b), [2, 3, 4])) == [4, 9, 16]


def test_runs_tflm_in_a_child_without_tensorflow_or_the_parents_main(
    tiny_int8_model: bytes,
) -> None:
    features = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    result, loaded, main_file = run_isolated(
        targets.run_batch_reporting_modules, tiny_int8_model, features
    )
    assert "tensorflow" in sys.modules  # the fixture built the model with it, here
    assert loaded == []  # no tensorflow, keras, pipelines, components, beam, mlflow, pytest
    assert main_file is None  # the child's __main__ is its `-c` bootstrap, not pytest's
    assert isinstance(result, BatchResult)
    assert np.array_equal(result.scores, run_batch(tiny_int8_model, features).scores)


def test_the_child_has_the_parents_sys_path_and_not_its_stdin() -> None:
    path, stdin, argv = run_isolated(targets.child_view)
    assert path[: len(sys.path)] == [os.path.abspath(p) for p in sys.path]
    assert stdin == ""
    assert argv == ["-c"]


def test_abort_is_a_crash_naming_the_signal_and_quoting_stderr() -> None:
    with pytest.raises(ChildCrashError) as caught:
        run_isolated(targets.abort_after_a_message)
    message = str(caught.value)
    assert "was killed by SIGABRT" in message
    assert "abort_after_a_message" in message
    assert "some earlier line\ntflm_ext test: giving up now" in message


@pytest.fixture(scope="module")
def softmax_int8_model() -> bytes:
    """Dense(4) -> Softmax, full int8; TensorFlow is imported here, never in the child."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), batch_size=1)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(4)(inputs)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 8), v, np.float32)] for v in (-1, 1))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def test_tflm_abort_on_a_degenerate_model_is_survived(softmax_int8_model: bytes) -> None:
    """A SOFTMAX input scale of 1e-30 makes TFLM's QuantizeMultiplier check abort()."""
    assert run_isolated(targets.builds, softmax_int8_model)
    model = model_editor.read(softmax_int8_model)
    softmax = next(op for op in model.subgraphs[0].operators if op.opcode_name == "SOFTMAX")
    softmax.inputs[0].quantization.scales = [1e-30]
    with pytest.raises(ChildCrashError, match="was killed by SIGABRT"):
        run_isolated(targets.builds, bytes(model.build()))


def test_exception_comes_back_with_its_type_message_and_traceback() -> None:
    with pytest.raises(ChildRaisedError) as caught:
        run_isolated(targets.raise_value_error)
    assert "raised in a child process: ValueError: bad value 42 in layer 'conv'" in str(
        caught.value
    )
    assert caught.value.type_name == "ValueError"
    assert "in raise_value_error" in caught.value.child_traceback


def test_result_that_does_not_pickle_is_an_error() -> None:
    with pytest.raises(ChildRaisedError, match="its result could not be sent back"):
        run_isolated(targets.return_unpicklable)


def test_nonzero_exit_without_a_result_is_a_crash() -> None:
    with pytest.raises(ChildCrashError, match="exited with status 3 without a result"):
        run_isolated(targets.exit_with_status_3)


def test_timeout_kills_the_child(tmp_path: Path) -> None:
    pid_path = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ChildTimeoutError, match="timed out after 1.5 s"):
        run_isolated(targets.sleep_after_writing_pid, str(pid_path), 60, timeout_s=1.5)
    assert time.monotonic() - start < 10
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pid_path.read_text()), 0)


def test_large_arguments_and_results_do_not_deadlock() -> None:
    big = np.arange(6 * 2**20, dtype=np.int32)  # 24 MiB each way, far past a pipe's buffer
    assert np.array_equal(run_isolated(targets.echo, big, timeout_s=120), big)


def test_output_on_fd_1_and_2_does_not_corrupt_the_answer(capfd: pytest.CaptureFixture) -> None:
    assert run_isolated(targets.noisy_result) == "clean"
    assert "child stdout line" in capfd.readouterr().out  # the child's stdout is ours


def test_a_grandchild_holding_the_pipe_does_not_delay_the_answer() -> None:
    start = time.monotonic()
    assert run_isolated(targets.answer_then_leave_a_grandchild, 20) == "answered"
    assert time.monotonic() - start < 10


@pytest.fixture
def no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if run_isolated starts a process."""

    def popen(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(isolation.subprocess, "Popen", popen)


def _defined_in_main():
    main_power = types.FunctionType(targets.power.__code__, {}, "power")
    main_power.__module__, main_power.__qualname__ = "__main__", "power"
    return main_power


@pytest.mark.parametrize(
    ("func", "why"),
    [
        (lambda: 1, "is a lambda or a function defined inside a function"),
        (functools.partial(lambda x: x, 1), "is a lambda"),
        (_defined_in_main(), "is defined in __main__"),
    ],
    ids=["lambda", "partial-of-lambda", "main"],
)
def test_a_function_the_child_cannot_import_is_refused_before_starting(
    func, why: str, no_child: None
) -> None:
    with pytest.raises(ChildStartError, match=f"cannot start .* in a child process: it {why}"):
        run_isolated(func)


def test_an_argument_of_main_or_that_does_not_pickle_is_refused(no_child: None) -> None:
    main_class = type("Thing", (), {"__module__": "__main__"})
    with pytest.raises(ChildStartError, match="Thing is defined in __main__"):
        run_isolated(targets.echo, [main_class()])
    with pytest.raises(ChildStartError, match="cannot be sent"):
        run_isolated(targets.echo, threading.Lock())


def test_a_module_the_child_cannot_import_is_a_start_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("only_in_the_parent")
    exec("def f():\n    return 1\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "only_in_the_parent", module)
    with pytest.raises(ChildStartError, match="No module named 'only_in_the_parent'"):
        run_isolated(module.f)


def test_no_python_executable_is_a_start_error(
    monkeypatch: pytest.MonkeyPatch, no_child: None
) -> None:
    monkeypatch.delenv(isolation.PYTHON_ENV, raising=False)
    monkeypatch.setattr(sys, "executable", "")
    with pytest.raises(ChildStartError, match="sys.executable is empty.*TFLM_EXT_PYTHON"):
        run_isolated(targets.power, 2)


def test_a_python_that_does_not_start_is_a_start_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(isolation.PYTHON_ENV, str(tmp_path / "no-such-python"))
    with pytest.raises(ChildStartError, match="does not start"):
        run_isolated(targets.power, 2)
    monkeypatch.setenv(isolation.PYTHON_ENV, shutil.which("false") or "/bin/false")
    with pytest.raises(ChildStartError, match="before it could load the function"):
        run_isolated(targets.power, 2)


def test_tflm_ext_python_chooses_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isolation.PYTHON_ENV, sys.executable)
    monkeypatch.setattr(sys, "executable", "")
    assert run_isolated(targets.power, 5) == 25


def test_error_classes_derive_from_tflm_ext_error_and_pickle() -> None:
    for cls in (ChildStartError, ChildCrashError, ChildTimeoutError, ChildRaisedError):
        assert issubclass(cls, TflmExtError)
    error = pickle.loads(pickle.dumps(ChildRaisedError("m", type_name="T", child_traceback="tb")))
    assert (str(error), error.type_name, error.child_traceback) == ("m", "T", "tb")


def test_a_parent_with_stdio_closed_still_talks_to_its_child() -> None:
    """A daemon's os.pipe() may return fd 0 or 2, where the child gets /dev/null and stderr."""
    code = (
        "import os; os.close(0); os.close(2)\n"
        "from tests.tflm_ext import isolation_targets as t\n"
        "from tflm_ext.isolation import run_isolated\n"
        "print(run_isolated(t.power, 7))\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip() == "49", done.stderr
