"""write_c_array: the generated pair compiles, links and holds the model's exact bytes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tflm_ext.c_array import write_c_array
from tflm_ext.errors import TflmExtError

# Dumps the array to argv[1] and reports whether it is 16-byte aligned.
_DUMP_MAIN = """
#include <cstdint>
#include <cstdio>
#include "model_data.h"
int main(int, char** argv) {
  FILE* out = std::fopen(argv[1], "wb");
  std::fwrite(test_model, 1, test_model_len, out);
  std::fclose(out);
  std::printf("%u %d\\n", test_model_len, static_cast<int>(
      reinterpret_cast<std::uintptr_t>(test_model) % 16));
  return 0;
}
"""


@pytest.fixture
def model_bytes() -> bytes:
    """Arbitrary bytes (1001: not a multiple of the 12 per line); the writer never parses."""
    return np.random.default_rng(3).integers(0, 256, 1001, dtype=np.uint8).tobytes()


def test_files_declare_and_define_the_array(model_bytes: bytes, tmp_path: Path) -> None:
    source, header = write_c_array(model_bytes, tmp_path / "fw", "test_model")

    assert (source.name, header.name) == ("model_data.cc", "model_data.h")
    header_text, source_text = header.read_text(), source.read_text()
    assert "#ifndef TEST_MODEL_MODEL_DATA_H_" in header_text
    assert "extern const unsigned char test_model[];" in header_text
    assert "1001 byte" in header_text and "1001 byte" in source_text
    assert "alignas(16) const unsigned char test_model[] = {" in source_text
    assert "const unsigned int test_model_len = 1001;" in source_text
    parsed = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", source_text))
    assert parsed == model_bytes


def test_compiled_array_round_trips_aligned(model_bytes: bytes, tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    source, _ = write_c_array(model_bytes, tmp_path, "test_model")
    main, program, dumped = tmp_path / "main.cc", tmp_path / "dump", tmp_path / "dumped.bin"
    main.write_text(_DUMP_MAIN)
    compile_flags = ["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path)]
    subprocess.run(
        [*compile_flags, "-c", str(source), "-o", str(tmp_path / "model_data.o")], check=True
    )
    subprocess.run(
        [*compile_flags, str(main), str(tmp_path / "model_data.o"), "-o", str(program)], check=True
    )

    report = subprocess.run(
        [str(program), str(dumped)], check=True, capture_output=True, text=True
    ).stdout.split()

    assert report == ["1001", "0"]
    assert dumped.read_bytes() == model_bytes


def test_name_must_be_a_c_identifier(model_bytes: bytes, tmp_path: Path) -> None:
    with pytest.raises(TflmExtError, match="'my-model'"):
        write_c_array(model_bytes, tmp_path, "my-model")


def test_empty_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TflmExtError, match="empty"):
        write_c_array(b"", tmp_path)
