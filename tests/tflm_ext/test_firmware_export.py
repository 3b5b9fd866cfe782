"""firmware_export: the resolver lists exactly the model's ops, kernels ship only when used,
and what ships compiles and links.

No TFLM source tree is available here (no registry ships its headers), so the TFLM kernel
adapter and op_resolver.h are compiled against the minimal stand-in headers below, written
for this test in the layout of the TFLM tree the pinned wheel was built from (C types in
tflite::micro, callbacks on TfLiteContext forwarding to exported functions). The adapter is
then linked against the wheel's own _runtime.so with no undefined symbol allowed: every TFLM
function it calls, with its parameter types, exists in the TFLM build the project targets.
Struct layouts and inline helpers are not checked that way. The shared arithmetic and
model_data.cc compile without any stand-in.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_ext.arena import measure_arena
from tflm_ext.errors import TflmExtError
from tflm_ext.firmware_export import (
    BUILTIN_ADD_CALLS,
    KERNEL_SOURCE_DIR,
    FirmwareBundle,
    export_firmware,
    firmware_kernel_files,
)
from tflm_ext.firmware_rows import row_reader_image, row_reader_text
from tflm_ext.isolation import run_isolated
from tflm_ext.patch_op import OP_NAME
from tflm_ext.rewrite import rewrite_stage

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ is not installed")
CXXFLAGS = ("-std=c++17", "-Wall", "-Wextra", "-Werror")
BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}

# The tiny fixture's operators, from its docstring (its Flatten of a 1x1x8 tensor converts to
# nothing), and the MicroMutableOpResolver method TFLM names for each.
TINY_OPS = {
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "FULLY_CONNECTED": "AddFullyConnected",
}

# Minimal stand-ins for the TFLM headers the adapter and op_resolver.h include, in the layout
# of the tree the pinned wheel was built from (October 2026): the C types live in
# tflite::micro, with using-declarations into tflite and (unless TFLM_NO_GLOBAL_C_ALIASES) the
# global namespace; TfLiteContext's callbacks are static members forwarding to exported
# functions; kernel_util.h only declares what _runtime.so exports. tensorflow/lite/c/common.h
# is deliberately absent: that tree defines the types in micro_common.h.
STAND_INS = {
    "tensorflow/lite/micro/micro_common.h": """
#pragma once
#include <stddef.h>
#include <stdint.h>
namespace tflite {
namespace micro {
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteInt32 = 2, kTfLiteInt8 = 9 } TfLiteType;
typedef struct { int size; int data[]; } TfLiteIntArray;
typedef union { void* data; int8_t* int8; int32_t* i32; } TfLitePtrUnion;
typedef struct { TfLitePtrUnion data; TfLiteIntArray* dims; TfLiteType type; } TfLiteEvalTensor;
typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  void* user_data;
} TfLiteNode;
struct TfLiteContext;
void* MicroContextAllocatePersistentBuffer(TfLiteContext* context, size_t bytes);
TfLiteStatus MicroContextRequestScratchBufferInArena(TfLiteContext* context, size_t bytes,
                                                     int* buffer_index);
void* MicroContextGetScratchBuffer(TfLiteContext* context, int buffer_index);
void MicroContextReportOpError(TfLiteContext* context, const char* format, ...);
struct TfLiteContext {
  template <auto Function>
  struct Method {
    template <typename... Args>
    auto operator()(Args... args) const { return Function(args...); }
  };
  static constexpr Method<&MicroContextReportOpError> ReportError{};
  static constexpr Method<&MicroContextAllocatePersistentBuffer> AllocatePersistentBuffer{};
  static constexpr Method<&MicroContextRequestScratchBufferInArena>
      RequestScratchBufferInArena{};
  static constexpr Method<&MicroContextGetScratchBuffer> GetScratchBuffer{};
  void* impl;
};
typedef struct {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  void (*reset)(TfLiteContext* context, void* buffer);
  int32_t builtin_code;
  const char* custom_name;
} TFLMRegistration;
}  // namespace micro
using micro::kTfLiteError;
using micro::kTfLiteInt32;
using micro::kTfLiteInt8;
using micro::kTfLiteOk;
using micro::TfLiteContext;
using micro::TfLiteEvalTensor;
using micro::TfLiteIntArray;
using micro::TfLiteNode;
using micro::TfLiteStatus;
using micro::TfLiteType;
using micro::TFLMRegistration;
}  // namespace tflite
using ::tflite::micro::TFLMRegistration;
#if !defined(TFLM_NO_GLOBAL_C_ALIASES)
using ::tflite::micro::kTfLiteError;
using ::tflite::micro::kTfLiteInt32;
using ::tflite::micro::kTfLiteInt8;
using ::tflite::micro::kTfLiteOk;
using ::tflite::micro::TfLiteContext;
using ::tflite::micro::TfLiteEvalTensor;
using ::tflite::micro::TfLiteIntArray;
using ::tflite::micro::TfLiteNode;
using ::tflite::micro::TfLiteStatus;
using ::tflite::micro::TfLiteType;
#endif
#define TF_LITE_ENSURE(context, a)                                               \\
  do {                                                                           \\
    if (!(a)) {                                                                  \\
      (context)->ReportError((context), "%s:%d %s was not true.", __FILE__, __LINE__, #a); \\
      return ::tflite::micro::kTfLiteError;                                      \\
    }                                                                            \\
  } while (0)
#define TF_LITE_ENSURE_EQ(context, a, b)                                         \\
  do {                                                                           \\
    if ((a) != (b)) {                                                            \\
      (context)->ReportError((context), "%s:%d %s != %s (%d != %d)", __FILE__,  \\
                             __LINE__, #a, #b, (a), (b));                        \\
      return ::tflite::micro::kTfLiteError;                                      \\
    }                                                                            \\
  } while (0)
""",
    "tensorflow/lite/micro/micro_log.h": """
#pragma once
void MicroPrintf(const char* format, ...);
""",
    "tensorflow/lite/micro/kernels/kernel_util.h": """
#pragma once
#include "tensorflow/lite/micro/micro_common.h"
namespace tflite {
namespace micro {
TFLMRegistration RegisterOp(
    void* (*init)(TfLiteContext* context, const char* buffer, size_t length),
    TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node),
    TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node),
    void (*free)(TfLiteContext* context, void* buffer) = nullptr,
    void (*reset)(TfLiteContext* context, void* buffer) = nullptr);
const TfLiteEvalTensor* GetEvalInput(const TfLiteContext* context, const TfLiteNode* node,
                                     int index);
TfLiteEvalTensor* GetEvalOutput(const TfLiteContext* context, const TfLiteNode* node,
                                int index);
}  // namespace micro
}  // namespace tflite
""",
    # Records what is added; refuses duplicates and more than tOpCount, as TFLM's does.
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": """
#pragma once
#include <string.h>
#include "tensorflow/lite/micro/micro_common.h"
#define STAND_IN_ADD(method) TfLiteStatus method() { return Record(#method); }
namespace tflite {
namespace micro {
template <unsigned int tOpCount>
class MicroMutableOpResolver {
 public:
  TfLiteStatus AddCustom(const char* name, const TFLMRegistration* registration) {
    if (registration == nullptr) return kTfLiteError;
    return Record(name);
  }
  %(methods)s
  unsigned int count = 0;
  const char* names[tOpCount];
 private:
  TfLiteStatus Record(const char* name) {
    if (count >= tOpCount) return kTfLiteError;
    for (unsigned int i = 0; i < count; ++i) {
      if (strcmp(names[i], name) == 0) return kTfLiteError;
    }
    names[count++] = name;
    return kTfLiteOk;
  }
};
}  // namespace micro
}  // namespace tflite
""",
}

# Bodies for what the stand-in headers only declare, so a program can link without the wheel.
STAND_IN_DEFINITIONS = """
#include "tensorflow/lite/micro/kernels/kernel_util.h"
void MicroPrintf(const char*, ...) {}
namespace tflite {
namespace micro {
void* MicroContextAllocatePersistentBuffer(TfLiteContext*, size_t) { return nullptr; }
TfLiteStatus MicroContextRequestScratchBufferInArena(TfLiteContext*, size_t, int*) {
  return kTfLiteError;
}
void* MicroContextGetScratchBuffer(TfLiteContext*, int) { return nullptr; }
void MicroContextReportOpError(TfLiteContext*, const char*, ...) {}
TFLMRegistration RegisterOp(void* (*init)(TfLiteContext*, const char*, size_t),
                            TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*),
                            TfLiteStatus (*invoke)(TfLiteContext*, TfLiteNode*),
                            void (*free)(TfLiteContext*, void*),
                            void (*reset)(TfLiteContext*, void*)) {
  return {init, free, prepare, invoke, reset, 0, nullptr};
}
const TfLiteEvalTensor* GetEvalInput(const TfLiteContext*, const TfLiteNode*, int) {
  return nullptr;
}
TfLiteEvalTensor* GetEvalOutput(const TfLiteContext*, const TfLiteNode*, int) { return nullptr; }
}  // namespace micro
}  // namespace tflite
"""

REGISTER_ALL = """
#include <stdio.h>
#include "op_resolver.h"
int main() {
  static g_model_ops::OpResolver resolver;
  if (g_model_ops::AddOps(resolver) != kTfLiteOk) return 1;
  for (unsigned int i = 0; i < resolver.count; ++i) printf("%s\\n", resolver.names[i]);
  return resolver.count == g_model_ops::kOpCount ? 0 : 2;
}
"""


@pytest.fixture(scope="module")
def patched_model(tiny_int8_model: bytes) -> bytes:
    """The tiny model with CONV_2D, DEPTHWISE_CONV_2D, CONV_2D fused into the custom op."""
    return rewrite_stage(tiny_int8_model, 0, 2, (2, 2))


@pytest.fixture(scope="module")
def plain(tiny_int8_model: bytes, tmp_path_factory: pytest.TempPathFactory) -> FirmwareBundle:
    return export_firmware(tiny_int8_model, tmp_path_factory.mktemp("plain") / "firmware")


@pytest.fixture(scope="module")
def patched(patched_model: bytes, tmp_path_factory: pytest.TempPathFactory) -> FirmwareBundle:
    return export_firmware(patched_model, tmp_path_factory.mktemp("patched") / "firmware")


def model_ops(model_bytes: bytes) -> list[str]:
    """Distinct operator names in order of first use, read with the raw schema reader."""
    model = schema.Model.GetRootAs(model_bytes, 0)
    names: list[str] = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for i in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = code.CustomCode().decode() if code.CustomCode() else BUILTIN_NAMES[builtin]
            names += [] if name in names else [name]
    return names


def parse_resolver(text: str) -> tuple[int, list[str]]:
    """(kOpCount, what AddOps adds in order: builtin methods and custom registrations)."""
    count = int(re.search(r"constexpr unsigned int kOpCount = (\d+);", text).group(1))
    body = text[text.index("inline TfLiteStatus AddOps(") :]
    added = re.findall(r"resolver\.(Add\w+)\((.*?)[,)]", body)
    return count, [argument if method == "AddCustom" else method for method, argument in added]


def compile_cc(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [GXX, *CXXFLAGS, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def test_the_table_names_schema_operators_and_resolver_methods() -> None:
    assert set(BUILTIN_ADD_CALLS) <= set(BUILTIN_NAMES.values())
    assert all(re.fullmatch(r"Add[A-Z][A-Za-z0-9]*", m) for m in BUILTIN_ADD_CALLS.values())
    assert len(set(BUILTIN_ADD_CALLS.values())) == len(BUILTIN_ADD_CALLS)
    for op, method in TINY_OPS.items():
        assert BUILTIN_ADD_CALLS[op] == method


def test_resolver_lists_exactly_the_plain_models_ops(
    plain: FirmwareBundle, tiny_int8_model: bytes
) -> None:
    assert model_ops(tiny_int8_model) == list(TINY_OPS)
    count, added = parse_resolver(plain.op_resolver.read_text())
    assert added == list(TINY_OPS.values())
    assert count == plain.op_count == 4
    assert plain.builtin_ops == tuple(TINY_OPS) and plain.custom_ops == ()
    assert "tflm/" not in plain.op_resolver.read_text()


def test_resolver_lists_exactly_the_patched_models_ops(
    patched: FirmwareBundle, patched_model: bytes
) -> None:
    ops = model_ops(patched_model)
    assert ops == [OP_NAME, "AVERAGE_POOL_2D", "FULLY_CONNECTED"]
    count, added = parse_resolver(patched.op_resolver.read_text())
    assert count == patched.op_count == 3
    assert added == ["AddAveragePool2D", "AddFullyConnected", "tflm_ext::patch_stage::kOpName"]
    assert patched.builtin_ops == ("AVERAGE_POOL_2D", "FULLY_CONNECTED")
    assert patched.custom_ops == (OP_NAME,)
    assert '#include "tflm/patch_stage_op.h"' in patched.op_resolver.read_text()


def test_kernel_sources_ship_only_with_the_custom_op(
    plain: FirmwareBundle, patched: FirmwareBundle
) -> None:
    assert plain.kernel_files == () and not (plain.folder / "kernels").exists()
    shipped = sorted(p.relative_to(patched.folder / "kernels") for p in patched.kernel_files)
    on_disk = sorted(
        p.relative_to(patched.folder / "kernels")
        for p in (patched.folder / "kernels").rglob("*")
        if p.is_file()
    )
    assert shipped == on_disk == list(firmware_kernel_files())
    assert {str(p) for p in shipped} >= {"patch_stage.cc", "inner_ops.cc", "tflm/patch_stage_op.cc"}
    assert not any(p.parts[0] == "host" for p in shipped)
    for relative in shipped:
        assert (patched.folder / "kernels" / relative).read_bytes() == (
            KERNEL_SOURCE_DIR / relative
        ).read_bytes()


def test_every_project_include_resolves_inside_the_bundle(patched: FirmwareBundle) -> None:
    roots = (patched.folder, patched.folder / "kernels")
    for path in (*patched.kernel_files, patched.op_resolver, patched.model_source):
        for header in re.findall(r'#include "([^"]+)"', path.read_text()):
            if header.startswith("tensorflow/"):
                continue  # from the TFLM tree
            found = [r / header for r in (path.parent, *roots) if (r / header).is_file()]
            assert found, f"{path.name} includes {header}, which the bundle does not hold"


def test_readme_gives_the_measured_arena_and_the_sources(
    patched: FirmwareBundle, patched_model: bytes
) -> None:
    measured = run_isolated(measure_arena, patched_model)
    assert patched.arena.bisected_min == measured.bisected_min
    readme = patched.readme.read_text()
    assert f"**{measured.bisected_min} bytes**" in readme
    assert f"kArenaSize = {measured.bisected_min};" in readme
    for source in ("model_data.cc", "kernels/patch_stage.cc", "kernels/tflm/patch_stage_op.cc"):
        assert f"`{source}`" in readme
    assert "TFLM_EXT_PATCH_STAGE" in readme


def test_plain_readme_mentions_no_kernels(plain: FirmwareBundle) -> None:
    readme = plain.readme.read_text()
    assert "kernels/" not in readme and "TFLM_EXT_PATCH_STAGE" not in readme
    assert f"**{plain.arena.bisected_min} bytes**" in readme


@needs_gxx
def test_model_data_compiles(plain: FirmwareBundle, tmp_path: Path) -> None:
    compile_cc("-c", plain.model_source, "-o", tmp_path / "model_data.o", cwd=plain.folder)


@needs_gxx
def test_shared_arithmetic_compiles_alone(patched: FirmwareBundle, tmp_path: Path) -> None:
    kernels = patched.folder / "kernels"
    for source in ("patch_stage.cc", "inner_ops.cc"):
        compile_cc("-c", kernels / source, "-o", tmp_path / f"{source}.o", cwd=kernels)


@needs_gxx
def test_bundle_links_and_registers_exactly_its_ops_with_stand_ins(
    patched: FirmwareBundle, tmp_path: Path
) -> None:
    program = _stand_in_program(patched, tmp_path, ["AddAveragePool2D", "AddFullyConnected"])
    run = subprocess.run([program], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout
    expected = ["AddAveragePool2D", "AddFullyConnected", OP_NAME]
    assert run.stdout.split() == expected


@needs_gxx
def test_plain_resolver_compiles_with_stand_ins(plain: FirmwareBundle, tmp_path: Path) -> None:
    program = _stand_in_program(plain, tmp_path, list(TINY_OPS.values()))
    run = subprocess.run([program], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.split() == list(TINY_OPS.values())


@needs_gxx
@pytest.mark.parametrize("defines", [[], ["-DTFLM_NO_GLOBAL_C_ALIASES"]])
def test_adapter_links_against_the_wheels_runtime(
    patched: FirmwareBundle, tmp_path: Path, defines: list[str]
) -> None:
    """Every TFLM function the adapter calls, with the parameter types the stand-ins give it
    (they are in the mangled names), must be exported by the pinned wheel's _runtime.so, so
    the adapter calls functions that exist in the TFLM build the project targets."""
    _write_stand_ins(tmp_path, [])
    runtime = Path(importlib.util.find_spec("tflite_micro").submodule_search_locations[0])
    runtime = runtime / "python" / "tflite_micro" / "_runtime.so"
    kernels = patched.folder / "kernels"
    sources = [p for p in patched.kernel_files if p.suffix == ".cc"]
    compile_cc(
        "-shared", "-fPIC", *defines, "-I", tmp_path / "tflm", "-I", kernels, *sources,
        "-o", tmp_path / "libpatch_stage_op.so", f"-L{runtime.parent}", f"-l:{runtime.name}",
        "-Wl,--no-undefined", cwd=tmp_path,
    )  # fmt: skip


def _write_stand_ins(tmp_path: Path, methods: list[str]) -> None:
    fill = {"methods": "\n  ".join(f"STAND_IN_ADD({m})" for m in sorted(methods))}
    for relative, text in STAND_INS.items():
        header = tmp_path / "tflm" / relative
        header.parent.mkdir(parents=True, exist_ok=True)
        header.write_text(text % fill if "%(methods)s" in text else text)


def _stand_in_program(bundle: FirmwareBundle, tmp_path: Path, methods: list[str]) -> Path:
    """Compile main + every shipped .cc against the stand-ins, whose resolver has just the
    listed Add methods; return the program."""
    _write_stand_ins(tmp_path, methods)
    (tmp_path / "main.cc").write_text(REGISTER_ALL)
    (tmp_path / "definitions.cc").write_text(STAND_IN_DEFINITIONS)
    sources = [p for p in bundle.kernel_files if p.suffix == ".cc"]
    program = tmp_path / "program"
    includes = ["-I", tmp_path / "tflm", "-I", bundle.folder, "-I", bundle.folder / "kernels"]
    main = (tmp_path / "main.cc", tmp_path / "definitions.cc")
    compile_cc(*includes, *main, *sources, "-o", program, cwd=tmp_path)
    return program


def _with_operator(model_bytes: bytes, index: int, opcode: int, custom: str | None) -> bytes:
    model = model_editor.read(model_bytes)
    operator = model.subgraphs[0].operators[index]
    operator.opcode, operator.custom_code = opcode, custom
    return bytes(model.build())


def test_refuses_a_builtin_missing_from_the_table(tiny_int8_model: bytes, tmp_path: Path) -> None:
    odd = _with_operator(tiny_int8_model, 3, schema.BuiltinOperator.RFFT2D, None)
    with pytest.raises(TflmExtError, match=r"operator 3 of subgraph 0 is RFFT2D.*BUILTIN_ADD"):
        export_firmware(odd, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_another_projects_custom_op(tiny_int8_model: bytes, tmp_path: Path) -> None:
    odd = _with_operator(tiny_int8_model, 1, schema.BuiltinOperator.CUSTOM, "VENDOR_OP")
    with pytest.raises(TflmExtError, match=r"custom op 'VENDOR_OP'.*not one of the project"):
        export_firmware(odd, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_empty(tiny_int8_model: bytes, tmp_path: Path) -> None:
    (tmp_path / "stale.cc").write_text("// left by someone\n")
    with pytest.raises(TflmExtError, match="not empty"):
        export_firmware(tiny_int8_model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["stale.cc"]


def test_refuses_a_name_that_is_no_c_identifier(tiny_int8_model: bytes, tmp_path: Path) -> None:
    with pytest.raises(TflmExtError, match="not a C identifier"):
        export_firmware(tiny_int8_model, tmp_path / "out", name="my-model")
    assert not (tmp_path / "out").exists()


# --- a model reading its image row by row: the callback the application implements ---

READ_ROWS_MAIN = """\
#include <string.h>
#include "row_reader.h"
namespace {
int8_t image[g_model_rows::kImageHeight][g_model_rows::kImageWidth *
                                          g_model_rows::kImageChannels];
}
bool g_model_rows::ReadRow(void* user, int row, int8_t* dst, int width, int channels) {
  memcpy(dst, static_cast<int8_t(*)[kImageWidth * kImageChannels]>(user)[row],
         static_cast<size_t>(width) * static_cast<size_t>(channels));
  return true;
}
int main() {
  g_model_rows::SetUp(image);
  return 0;
}
"""


@pytest.fixture(scope="module")
def reading_rows(tiny_int8_model: bytes, tmp_path_factory: pytest.TempPathFactory):
    """The tiny model with its first convolution streamed from the row reader."""
    model = rewrite_stage(tiny_int8_model, 0, 0, (1, 1), mode="reader")
    return export_firmware(model, tmp_path_factory.mktemp("rows") / "firmware")


def test_a_row_reading_model_ships_the_callback_to_implement(
    reading_rows: FirmwareBundle, tiny_int8_model: bytes, plain: FirmwareBundle
) -> None:
    """row_reader.h gives the whole image's shape and the input's quantization (the model
    input is one row), declares ReadRow and registers it; the README says so."""
    graph = model_editor.read(tiny_int8_model).subgraphs[0]
    image = graph.inputs[0]
    assert reading_rows.row_reader is not None and plain.row_reader is None
    header = reading_rows.row_reader.read_text()
    height, width, channels = (int(d) for d in image.shape[1:])
    for constant, value in (("Height", height), ("Width", width), ("Channels", channels)):
        assert f"constexpr int kImage{constant} = {value};" in header
    assert f"constexpr int kInputZeroPoint = {int(image.quantization.zero_points[0])};" in header
    assert "constexpr int kImagePasses = 1;" in header  # one strip: each row once per Invoke
    assert "bool ReadRow(void* user, int row, int8_t* dst, int width, int channels);" in header
    assert "SetRowReader(ReadRow, user)" in header
    readme = reading_rows.readme.read_text()
    assert "## The image, row by row" in readme and "g_model_rows::ReadRow" in readme
    assert "row_reader.h" not in plain.readme.read_text()


def test_a_stage_reading_rows_on_strips_asks_for_the_image_once_per_strip(
    tiny_int8_model: bytes,
) -> None:
    """Each column strip reads every row again: row_reader.h says how many passes."""
    model = rewrite_stage(tiny_int8_model, 0, 0, (1, 2), mode="reader")
    image = row_reader_image(model)
    assert image is not None and image[3] == 2
    assert "constexpr int kImagePasses = 2;" in row_reader_text("g_model", *image)


@needs_gxx
def test_the_callback_compiles_and_links_with_the_shared_kernels(
    reading_rows: FirmwareBundle, tmp_path: Path
) -> None:
    """An application's ReadRow over a frame buffer, registered through SetUp, compiles
    against row_reader.h and links with the shipped TFLM-free kernel sources."""
    kernels = reading_rows.folder / "kernels"
    (tmp_path / "main.cc").write_text(READ_ROWS_MAIN)
    shared = [p for p in reading_rows.kernel_files if p.suffix == ".cc" and p.parent == kernels]
    program = tmp_path / "program"
    includes = ["-I", reading_rows.folder, "-I", kernels]
    compile_cc(*includes, tmp_path / "main.cc", *shared, "-o", program, cwd=tmp_path)
    assert subprocess.run([program], timeout=30).returncode == 0
