"""Compile the project's custom-op kernels into a host library for the tflite-micro wheel.

Called lazily by ``tflm_ext.interpreter.make_interpreter`` the first time a model uses
``TFLM_EXT_PATCH_STAGE``, and from the command line (``python -m tflm_ext.host_build``) to
build ahead of time, e.g. in a container image.

Why a lazily built, content-hashed cache rather than a setuptools build step: the same code
path then serves editable installs (CI), wheels/containers and plain source checkouts; the
library's file name carries a hash of every source, flag and define, so a changed kernel or a
different installed wheel can never load a stale build, and an up-to-date build is a no-op
(one stat). Users who never rewrite a model never need g++.

The cache is ``$TFLM_EXT_CACHE_DIR``, else ``$XDG_CACHE_HOME/tflm_ext``, else
``~/.cache/tflm_ext``. Builds write a temporary file and rename it into place, so concurrent
processes (isolated children, Beam workers) never see half a library.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from tflm_ext.errors import TflmExtError
from tflm_ext.op_registerer import OpRegisterer

log = logging.getLogger(__name__)

SUPPORTED_WHEEL = "0.dev20261023182759"  # the nightly whose layout kernels/host/ mirrors
REGISTERER_SYMBOL = "TflmExtRegisterPatchStage"
KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
SOURCES = (
    "patch_stage.cc",
    "stage_rows.cc",
    "tile_stage.cc",
    "stream_stage.cc",
    "inner_ops.cc",
    "host/host_registerer.cc",
)
HEADERS = (
    "patch_stage.h",
    "stage_internal.h",
    "inner_ops.h",
    "requantize.h",
    "host/tflm_abi.h",
)
CXXFLAGS = (
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-fno-exceptions",
    "-fno-rtti",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--as-needed",  # drops libstdc++/libm: the code uses nothing from them
    "-Wl,-z,defs",
)
_LIBRARY_STEM = "libtflm_ext_patch_stage"
_BUILD_TIMEOUT_S = 300


@functools.cache
def patch_stage_registerer() -> OpRegisterer:
    """The OpRegisterer for TFLM_EXT_PATCH_STAGE, building the library once per process."""
    return OpRegisterer(build_host_library(), REGISTERER_SYMBOL)


def build_host_library(
    cache_dir: Path | None = None, defines: Mapping[str, str] | None = None
) -> Path:
    """Path of the host library for the current sources, compiling it if not cached yet.

    defines are extra ``-D`` macros (tests use them to exercise the registerer's refusals);
    they are part of the content hash, so each variant is cached separately.
    """
    all_defines = {**_wheel_defines(), **(defines or {})}
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    library = folder / f"{_LIBRARY_STEM}-{source_hash(all_defines)}.so"
    if library.exists():
        log.debug("host library up to date: %s", library)
        return library
    _compile(library, all_defines)
    return library


def default_cache_dir() -> Path:
    """$TFLM_EXT_CACHE_DIR, else $XDG_CACHE_HOME/tflm_ext, else ~/.cache/tflm_ext."""
    if os.environ.get("TFLM_EXT_CACHE_DIR"):
        return Path(os.environ["TFLM_EXT_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tflm_ext"


def source_hash(defines: Mapping[str, str]) -> str:
    """16 hex digits over every source and header, the flags and the defines."""
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        digest.update(name.encode() + b"\0" + _read(KERNEL_DIR / name) + b"\0")
    digest.update(repr((CXXFLAGS, sorted(defines.items()), compiler())).encode())
    return digest.hexdigest()[:16]


def compiler() -> str:
    """$CXX, else g++."""
    return os.environ.get("CXX") or "g++"


def installed_wheel() -> str:
    """The installed tflite-micro distribution's version, or '(not installed)'."""
    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _wheel_defines() -> dict[str, str]:
    installed = installed_wheel()
    if installed != SUPPORTED_WHEEL:
        log.warning(
            "tflite-micro %s is installed; the patch-stage host kernel was written for %s and "
            "will refuse to register if the runtime's layout differs",
            installed,
            SUPPORTED_WHEEL,
        )
    return {
        "TFLM_EXT_SUPPORTED_WHEEL": f'"{SUPPORTED_WHEEL}"',
        "TFLM_EXT_INSTALLED_WHEEL": f'"{installed}"',
    }


def _compile(library: Path, defines: Mapping[str, str]) -> None:
    command = _command(defines)
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=library.parent, prefix=".building-", suffix=".so")
        os.close(handle)
    except OSError as e:
        raise TflmExtError(f"cannot write the host library cache {library.parent}: {e}") from e
    try:
        _run(command + ["-o", partial])
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide the library from other users
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    log.info("built %s", library)


def _command(defines: Mapping[str, str]) -> list[str]:
    cxx = compiler()
    if shutil.which(cxx) is None:
        raise TflmExtError(
            f"C++ compiler {cxx!r} not found: the {REGISTERER_SYMBOL} host kernel is compiled "
            f"from {KERNEL_DIR} on first use; install g++ or set CXX"
        )
    macros = [f"-D{name}={value}" for name, value in sorted(defines.items())]
    return [cxx, *CXXFLAGS, *macros, *(str(KERNEL_DIR / source) for source in SOURCES)]


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TflmExtError(f"cannot run {command[0]} to build the host library: {e}") from e
    if done.returncode != 0:
        raise TflmExtError(
            f"building the host library failed ({' '.join(command)}):\n{done.stderr[-4000:]}"
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TflmExtError(f"kernel source {path} is missing from the installation: {e}") from e


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the host library and write its path to stdout."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else None
    try:
        library = build_host_library(folder)
    except TflmExtError as e:
        log.error("%s", e)
        return 1
    sys.stdout.write(f"{library}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
