"""make_interpreter: builds on the real wheel, wraps failures, plumbs custom op libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tflm_ext.errors import TflmExtError
from tflm_ext.graph_stats import graph_stats
from tflm_ext.interpreter import (
    OpRegisterer,
    debug_log_capture,
    default_arena_size,
    make_interpreter,
)

_REGISTERERS_CC = """
extern "C" __attribute__((visibility("default"))) bool TflmExtTestAccept(void*) { return true; }
extern "C" __attribute__((visibility("default"))) bool TflmExtTestRefuse(void*) { return false; }
"""


def test_builds_and_runs_with_the_default_arena(tiny_int8_model: bytes) -> None:
    interpreter = make_interpreter(tiny_int8_model)
    details = interpreter.get_input_details(0)
    assert details["dtype"] == np.int8
    assert tuple(details["shape"]) == (1, 16, 16, 1)
    interpreter.set_input(np.zeros((1, 16, 16, 1), np.int8), 0)
    interpreter.invoke()
    assert interpreter.get_output(0).shape == (1, 3)


def test_default_arena_is_aligned_and_covers_every_activation(tiny_int8_model: bytes) -> None:
    size = default_arena_size(tiny_int8_model)
    assert size % 16 == 0
    assert size > graph_stats(tiny_int8_model).activation_bytes + len(tiny_int8_model)


def test_too_small_arena_is_an_error_quoting_tflm(tiny_int8_model: bytes) -> None:
    with pytest.raises(TflmExtError) as caught:
        make_interpreter(tiny_int8_model, arena_size=1500)
    message = str(caught.value)
    assert "1500 B arena" in message
    assert "TFLM failed to allocate tensors" in message  # the wheel's exception
    assert "failed to prepare" in message  # TFLM's DebugLog line, captured from fd 2


def test_bytes_that_are_no_model_are_an_error() -> None:
    with pytest.raises(TflmExtError, match="cannot read"):
        make_interpreter(b"\x00" * 64)


def test_debug_log_capture_takes_fd2_and_gives_it_back(capfd: pytest.CaptureFixture) -> None:
    with debug_log_capture() as log:
        os.write(2, b"first\nsecond\nthird\n")
    os.write(2, b"after\n")
    assert log.text == "first\nsecond\nthird\n"
    assert log.tail(2) == "second\nthird"
    assert capfd.readouterr().err == "after\n"


@pytest.fixture(scope="module")
def registerer_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared library with two registerers that accept/refuse without touching TFLM."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    folder = tmp_path_factory.mktemp("registerers")
    source, library = folder / "registerers.cc", folder / "libtflm_ext_test_registerers.so"
    source.write_text(_REGISTERERS_CC)
    subprocess.run(
        ["g++", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(library), str(source)],
        check=True,
    )
    return library


def test_registerer_library_is_loaded_and_called(
    tiny_int8_model: bytes, registerer_library: Path
) -> None:
    accept = OpRegisterer(registerer_library, "TflmExtTestAccept")
    interpreter = make_interpreter(tiny_int8_model, registerers=[accept])
    interpreter.invoke()


def test_refusing_registerer_is_an_error_naming_it(
    tiny_int8_model: bytes, registerer_library: Path
) -> None:
    refuse = OpRegisterer(registerer_library, "TflmExtTestRefuse")
    with pytest.raises(TflmExtError, match="TflmExtTestRefuse"):
        make_interpreter(tiny_int8_model, registerers=[refuse])


def test_missing_registerer_library_is_an_error(tiny_int8_model: bytes, tmp_path: Path) -> None:
    missing = OpRegisterer(tmp_path / "libmissing.so", "Anything")
    with pytest.raises(TflmExtError, match="libmissing.so"):
        make_interpreter(tiny_int8_model, registerers=[missing])
