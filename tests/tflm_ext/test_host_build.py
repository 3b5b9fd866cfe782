"""host_build: the cache, the library's linkage, and registration in the real wheel.

Registration runs in child processes (run_isolated): every variant of the library exports the
same symbol, and the wheel's dlsym finds the first one a process loaded. The helpers are
module-level so the spawned child can import them; this module never imports TensorFlow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tflm_ext.errors import TflmExtError
from tflm_ext.host_build import (
    REGISTERER_SYMBOL,
    SUPPORTED_WHEEL,
    build_host_library,
    installed_wheel,
)
from tflm_ext.interpreter import OpRegisterer, default_registerers, make_interpreter
from tflm_ext.isolation import run_isolated
from tflm_ext.rewrite import rewrite_stage
from tflm_ext.row_reader import ROW_IMAGE_SYMBOL

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


def _outputs(library: str, registrations: int, models: list[bytes]) -> list[np.ndarray]:
    """Child: register the op `registrations` times per interpreter, run each model once."""
    registerers = [OpRegisterer(Path(library), REGISTERER_SYMBOL)] * registrations
    results = []
    for model in models:
        interpreter = make_interpreter(model, registerers=registerers)
        source = np.arange(256, dtype=np.int64).astype(np.int8).reshape(1, 16, 16, 1)
        interpreter.set_input(source, 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0), copy=True))
    return results


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_host_library(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def patched_model(tiny_int8_model: bytes) -> bytes:
    return rewrite_stage(tiny_int8_model, 0, 2, (2, 2))


def test_build_is_cached_by_content(tmp_path: Path) -> None:
    first = build_host_library(tmp_path)
    built_at = first.stat().st_mtime_ns

    again = build_host_library(tmp_path)
    variant = build_host_library(tmp_path, defines={"TFLM_EXT_TEST_VARIANT": "1"})

    assert again == first and first.stat().st_mtime_ns == built_at  # no rebuild
    assert variant != first and variant.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, variant.name])


def test_library_needs_only_libc_and_exports_the_registerer_and_row_reader(library: Path) -> None:
    if shutil.which("readelf") is None or shutil.which("nm") is None:
        pytest.skip("binutils (readelf, nm) are not installed")
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True)
    needed = [
        line.split("[")[1].rstrip("]") for line in dynamic.stdout.splitlines() if "(NEEDED)" in line
    ]
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True
    ).stdout.splitlines()

    assert needed == ["libc.so.6"]
    assert sorted(line.split()[-1] for line in symbols) == [REGISTERER_SYMBOL, ROW_IMAGE_SYMBOL]


def test_registered_op_runs_like_the_builtins_it_replaces(
    library: Path, tiny_int8_model: bytes, patched_model: bytes
) -> None:
    original, patched = run_isolated(_outputs, str(library), 1, [tiny_int8_model, patched_model])
    assert np.array_equal(original, patched)


def test_second_registration_in_one_resolver_is_refused(
    library: Path, patched_model: bytes
) -> None:
    with pytest.raises(TflmExtError) as caught:
        run_isolated(_outputs, str(library), 2, [patched_model])
    message = str(caught.value)
    assert "TFLM_EXT_PATCH_STAGE is already registered in this resolver" in message
    assert f"installed wheel is tflite-micro {installed_wheel()}" in message
    assert SUPPORTED_WHEEL in message


def test_resolver_type_mismatch_is_refused(tmp_path: Path, patched_model: bytes) -> None:
    """The RTTI check, exercised by building a variant that expects another type."""
    expecting_other = build_host_library(
        tmp_path, defines={"TFLM_EXT_RESOLVER_RTTI_NAME": '"N6tflite13OtherResolverE"'}
    )
    with pytest.raises(TflmExtError) as caught:
        run_isolated(_outputs, str(expecting_other), 1, [patched_model])
    message = str(caught.value)
    assert "TFLM could not register custom op via TflmExtRegisterPatchStage" in message
    assert "the resolver's vtable/RTTI is not N6tflite13OtherResolverE" in message
    assert "_runtime.so" in message  # names the library it inspected


def test_model_using_the_op_fails_cleanly_without_it(patched_model: bytes) -> None:
    with pytest.raises(TflmExtError, match="TFLM could not build an interpreter"):
        run_isolated(make_interpreter, patched_model, None, [])


def test_default_registerers_add_the_patch_op_only_when_the_model_uses_it(
    tiny_int8_model: bytes, patched_model: bytes
) -> None:
    assert default_registerers(tiny_int8_model) == ()
    assert [r.symbol for r in default_registerers(patched_model)] == [REGISTERER_SYMBOL]


def test_missing_compiler_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    with pytest.raises(TflmExtError, match="C\\+\\+ compiler '.*no-such-g\\+\\+' not found"):
        build_host_library(tmp_path)


def test_command_line_builds_and_prints_the_path(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tflm_ext.host_build", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = Path(done.stdout.strip())
    assert printed.parent == tmp_path and printed.exists()
