"""patch_op: the options round trip, and the C header agrees with Python on every constant."""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tflm_ext.errors import TflmExtError
from tflm_ext.host_build import KERNEL_DIR
from tflm_ext.patch_op import (
    HEADER_FIELDS,
    HEADER_FIELDS_V1,
    INPUTS_PER_WEIGHTED_OP,
    MAX_OPS,
    MAX_TILE_OPS,
    OP_FIELDS,
    OP_FIELDS_V1,
    OP_NAME,
    OPTIONS_VERSION,
    TILE_OPTIONS_VERSION,
    AddParams,
    Execution,
    InnerOp,
    InputSource,
    OpKind,
    PatchStage,
    decode_options,
    encode_options,
)

STAGE = PatchStage(
    grid=(3, 2),
    input_shape=(32, 30, 3),
    ops=(
        InnerOp(
            kind=OpKind.CONV,
            input=0,
            output_shape=(16, 13, 8),
            weights_input=1,
            kernel=(3, 5),
            stride=(2, 2),
            dilation=(1, 2),
            padding=(0, 1, 1, 3),
            input_zero_point=-5,
            output_zero_point=-128,
            activation=(-128, 23),
        ),
        InnerOp(kind=OpKind.PAD, input=1, output_shape=(17, 15, 8), padding=(1, 0, 0, 2)),
        InnerOp(
            kind=OpKind.DEPTHWISE,
            input=2,
            output_shape=(15, 13, 16),
            weights_input=5,
            kernel=(3, 3),
            depth_multiplier=2,
        ),
        InnerOp(
            kind=OpKind.ADD,
            input=3,
            input_b=3,
            output_shape=(15, 13, 16),
            input_b_zero_point=7,
            add=AddParams(20, 1 << 30, -1, 1234567890, -2, 1717986918, -19),
        ),
    ),
)


# Version 2: streamed through a MEAN (with its requantization) at the end.
STREAMED = PatchStage(
    grid=(1, 1),
    input_shape=(32, 30, 3),
    ops=(
        *STAGE.ops,
        InnerOp(
            kind=OpKind.MEAN,
            input=4,
            output_shape=(1, 1, 16),
            kernel=(15, 13),
            input_zero_point=-3,
            output_zero_point=5,
            requant=(1518500250, -2),
        ),
    ),
    execution=Execution.STREAM,
)


def test_tile_stages_are_written_as_version_1() -> None:
    """A tile stage that version 1 can express keeps version 1's shorter layout, so firmware
    with an older kernel still runs it."""
    options = encode_options(STAGE)
    assert len(options) == 4 * (len(HEADER_FIELDS_V1) + 4 * len(OP_FIELDS_V1))
    assert struct.unpack("<4i", options[:16]) == (
        TILE_OPTIONS_VERSION,
        len(HEADER_FIELDS_V1),
        len(OP_FIELDS_V1),
        4,
    )
    assert decode_options(options) == STAGE


def test_streamed_stages_are_written_as_version_2() -> None:
    options = encode_options(STREAMED)
    assert len(options) == 4 * (len(HEADER_FIELDS) + 5 * len(OP_FIELDS))
    assert struct.unpack("<4i", options[:16]) == (
        OPTIONS_VERSION,
        len(HEADER_FIELDS),
        len(OP_FIELDS),
        5,
    )
    assert decode_options(options) == STREAMED
    # a global pool needs version 2 even when tiled (which the kernel then refuses)
    tiled_pool = replace(STREAMED, execution=Execution.TILES)
    assert decode_options(encode_options(tiled_pool)).options_version == OPTIONS_VERSION


def test_version_2_fields_extend_version_1() -> None:
    assert HEADER_FIELDS[: len(HEADER_FIELDS_V1)] == HEADER_FIELDS_V1
    assert OP_FIELDS[: len(OP_FIELDS_V1)] == OP_FIELDS_V1
    assert HEADER_FIELDS[len(HEADER_FIELDS_V1) :] == ("execution", "input_source")
    assert [int(e) for e in Execution] == [1, 2] and [int(s) for s in InputSource] == [0, 1]


def test_other_versions_and_truncation_are_refused() -> None:
    for stage in (STAGE, STREAMED):
        options = bytearray(encode_options(stage))
        with pytest.raises(TflmExtError, match="options hold"):
            decode_options(bytes(options[:-4]))
        options[0] = OPTIONS_VERSION + 1
        with pytest.raises(TflmExtError, match=f"version {OPTIONS_VERSION + 1} is not one of"):
            decode_options(bytes(options))


def test_a_version_1_header_on_version_2_records_is_refused() -> None:
    options = bytearray(encode_options(STREAMED))
    options[0] = TILE_OPTIONS_VERSION
    with pytest.raises(TflmExtError, match="layout .* differs"):
        decode_options(bytes(options))


def test_unknown_kind_and_op_counts_are_refused() -> None:
    options = bytearray(encode_options(STAGE))
    options[4 * len(HEADER_FIELDS_V1)] = 9  # first op's kind
    with pytest.raises(TflmExtError, match="unknown op kind 9"):
        decode_options(bytes(options))
    with pytest.raises(TflmExtError, match=f"1..{MAX_TILE_OPS} ops, not 0"):
        encode_options(PatchStage(grid=(1, 1), input_shape=(1, 1, 1), ops=()))


def _c_name(prefix: str, field: str) -> str:
    """The header's enumerator for a Python field: kHeaderGridRows, kOpInputBZeroPoint."""
    return prefix + "".join(part.capitalize() for part in field.split("_"))


_PARITY_PROGRAM = """
#include <stdio.h>
#include "patch_stage.h"
using namespace tflm_ext::patch_stage;
int main() {{
  printf("name %s\\nversion %d\\nmax_ops %d\\nper_weighted %d\\n", kOpName,
         (int)kOptionsVersion, kMaxOps, kInputsPerWeightedOp);
  printf("max_tile_ops %d\\n", kMaxTileOps);
  printf("header_words %d\\nop_words %d\\n", (int)kHeaderWords, (int)kOpWords);
  printf("tile_version %d\\nheader_words_v1 %d\\nop_words_v1 %d\\n",
         (int)kTileOptionsVersion, (int)kHeaderWordsV1, (int)kOpWordsV1);
{lines}
  return 0;
}}
"""


_CORE_SOURCES = tuple(
    str(KERNEL_DIR / name)
    for name in (
        "patch_stage.cc",
        "stage_rows.cc",
        "tile_stage.cc",
        "stream_stage.cc",
        "inner_ops.cc",
    )
)


def _compile(tmp_path: Path, program: str, *extra: str) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    source, binary = tmp_path / "program.cc", tmp_path / "program"
    source.write_text(program)
    subprocess.run(
        ["g++", "-std=c++17", f"-I{KERNEL_DIR}", str(source), *extra, "-o", str(binary)],
        check=True,
    )
    return binary


def _run(binary: Path, *args: str) -> str:
    return subprocess.run([str(binary), *args], check=True, capture_output=True, text=True).stdout


def test_c_header_matches_python_constants(tmp_path: Path) -> None:
    lines = [f'  printf("h.{f} %d\\n", (int){_c_name("kHeader", f)});' for f in HEADER_FIELDS]
    lines += [f'  printf("o.{f} %d\\n", (int){_c_name("kOp", f)});' for f in OP_FIELDS]
    lines += [
        f'  printf("k.{k.name} %d\\n", (int){_c_name("kKind", k.name.lower())});' for k in OpKind
    ]
    lines += [
        f'  printf("e.{e.name} %d\\n", (int){_c_name("kExecution", e.name.lower())});'
        for e in Execution
    ]
    lines += [
        f'  printf("s.{e.name} %d\\n", (int){_c_name("kInput", e.name.lower())});'
        for e in InputSource
    ]
    out = _run(_compile(tmp_path, _PARITY_PROGRAM.format(lines="\n".join(lines))))
    values = dict(line.split(" ", 1) for line in out.splitlines())

    assert values["name"] == OP_NAME
    assert int(values["version"]) == OPTIONS_VERSION
    assert int(values["max_ops"]) == MAX_OPS
    assert int(values["max_tile_ops"]) == MAX_TILE_OPS
    assert int(values["per_weighted"]) == INPUTS_PER_WEIGHTED_OP
    assert int(values["header_words"]) == len(HEADER_FIELDS)
    assert int(values["op_words"]) == len(OP_FIELDS)
    assert [int(values[f"h.{f}"]) for f in HEADER_FIELDS] == list(range(len(HEADER_FIELDS)))
    assert [int(values[f"o.{f}"]) for f in OP_FIELDS] == list(range(len(OP_FIELDS)))
    assert {k.name: int(values[f"k.{k.name}"]) for k in OpKind} == {k.name: k for k in OpKind}
    assert int(values["tile_version"]) == TILE_OPTIONS_VERSION
    assert int(values["header_words_v1"]) == len(HEADER_FIELDS_V1)
    assert int(values["op_words_v1"]) == len(OP_FIELDS_V1)
    assert {e.name: int(values[f"e.{e.name}"]) for e in Execution} == {e.name: e for e in Execution}
    assert {e.name: int(values[f"s.{e.name}"]) for e in InputSource} == {
        e.name: e for e in InputSource
    }


_PARSER_PROGRAM = """
#include <stdio.h>
#include <stdlib.h>
#include "patch_stage.h"
using namespace tflm_ext::patch_stage;
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  unsigned char options[4096];
  size_t length = fread(options, 1, sizeof(options), f);
  size_t bytes = ParsedStageBytes(options, length);
  void* memory = malloc(bytes);
  Stage* stage = nullptr;
  Status status = ParseOptions(options, length, memory, bytes, &stage);
  printf("%s\\n", StatusText(status));
  if (status != kOk) return 0;
  const int header_words = stage->header[kHeaderHeaderWords];
  const int op_words = stage->header[kHeaderOpWords];
  for (int w = 0; w < header_words; ++w) printf("%d ", (int)stage->header[w]);
  printf("\\n");
  for (int i = 0; i < stage->op_count; ++i) {
    for (int w = 0; w < op_words; ++w) printf("%d ", (int)stage->ops[i].word[w]);
    printf("\\n");
  }
  return 0;
}
"""


@pytest.mark.parametrize(
    "stage",
    [STAGE, STREAMED, replace(STREAMED, input_source=InputSource.ROW_READER)],
    ids=["version 1", "version 2", "version 2 row reader"],
)
def test_c_parser_reads_what_python_encodes(tmp_path: Path, stage: PatchStage) -> None:
    options = encode_options(stage)
    (tmp_path / "options.bin").write_bytes(options)
    parser = _compile(tmp_path, _PARSER_PROGRAM, *_CORE_SOURCES)

    lines = _run(parser, str(tmp_path / "options.bin")).splitlines()

    assert lines[0] == "ok"
    words = struct.unpack(f"<{len(options) // 4}i", options)
    assert [int(w) for line in lines[1:] for w in line.split()] == list(words)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (replace(STREAMED, execution=Execution.TILES), "a global pool runs only streamed"),
        (
            replace(
                STREAMED,
                ops=(*STREAMED.ops, InnerOp(kind=OpKind.PAD, input=5, output_shape=(1, 1, 16))),
            ),
            "a global pool runs only streamed, as the stage's last op",
        ),
        (replace(STREAMED, grid=(2, 1)), "not one row of strips in streaming"),
        (
            replace(STREAMED, execution=Execution.TILES, input_source=InputSource.ROW_READER),
            "a row reader feeds only a streamed stage",
        ),
    ],
    ids=["pool in tiles", "pool not last", "two rows of strips", "row reader on tiles"],
)
def test_c_parser_refuses_what_it_cannot_run(tmp_path: Path, stage: PatchStage, message) -> None:
    (tmp_path / "options.bin").write_bytes(encode_options(stage))
    parser = _compile(tmp_path, _PARSER_PROGRAM, *_CORE_SOURCES)
    assert message in _run(parser, str(tmp_path / "options.bin"))


def test_c_parser_rejects_inconsistent_geometry(tmp_path: Path) -> None:
    """A conv whose output height does not follow from kernel, stride and padding."""
    bad = replace(STAGE.ops[0], output_shape=(17, 13, 8))
    (tmp_path / "options.bin").write_bytes(
        encode_options(PatchStage(grid=(1, 1), input_shape=(32, 30, 3), ops=(bad,)))
    )
    parser = _compile(tmp_path, _PARSER_PROGRAM, *_CORE_SOURCES)

    out = _run(parser, str(tmp_path / "options.bin"))

    assert "shapes, kernel, stride, dilation or padding do not fit together" in out
