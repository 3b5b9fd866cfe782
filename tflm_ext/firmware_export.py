"""Export an int8 model as a folder to drop into a TFLite Micro firmware project.

Called by the release step once a model has passed its gates (and from notebooks). The folder
holds everything a TFLM application needs besides TFLM itself:

- ``model_data.cc/.h``: the flatbuffer as an aligned C array (``c_array.write_c_array``);
- ``op_resolver.h``: ``<name>_ops::AddOps(resolver)`` adding exactly the operators the model
  uses to a ``MicroMutableOpResolver<<name>_ops::kOpCount>``, one ``AddXxx()`` per builtin and
  ``AddCustom`` for the project's TFLM_EXT_PATCH_STAGE; so the firmware links no unused kernel;
- ``kernels/``: the project's firmware kernel sources (shared arithmetic and the TFLM adapter,
  never the host-only registerer), only when the model uses the project's custom op;
- ``row_reader.h``: only for a model whose first stage reads the image row by row
  (``tflm_ext.row_reader``): the image's shape and quantization, the callback the
  application implements (``<name>_rows::ReadRow``) and ``<name>_rows::SetUp`` registering it;
- ``README.md``: how to compile it in, and the arena to reserve.

The arena figure is the smallest ``arena_size`` for which the wheel's interpreter builds
(``arena.measure_arena``, in a child process: TFLM aborts on some models). It is a 64-bit host
figure: the head (activation plan) is what an MCU plans with the reference kernels; the tail
is smaller on a 32-bit MCU, and optimized kernels (CMSIS-NN) may request more scratch.

TFLM moved MicroMutableOpResolver and its C types from ``tflite`` into ``tflite::micro`` in
October 2026 (the pinned wheel has them in ``tflite::micro``); ``op_resolver.h`` names them
through using-directives for both namespaces, as the kernel adapter does, so it compiles in
either tree.
"""

from __future__ import annotations

import logging
import re
import shutil
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tflm_ext.arena import ArenaMeasurement, measure_arena
from tflm_ext.c_array import write_c_array
from tflm_ext.errors import TflmExtError
from tflm_ext.firmware_rows import (
    ROW_READER_NAME,
    readme_rows_text,
    row_reader_image,
    row_reader_text,
)
from tflm_ext.isolation import run_isolated
from tflm_ext.patch_op import OP_NAME as PATCH_STAGE_OP_NAME
from tflm_ext.tflite_file import read_model

log = logging.getLogger(__name__)

OP_RESOLVER_NAME = "op_resolver.h"
README_NAME = "README.md"
KERNEL_FOLDER = "kernels"
KERNEL_SOURCE_DIR = Path(__file__).resolve().parent / "kernels"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_ONLY = "host"  # kernels/host/: the wheel's registerer, never firmware
# Per project custom op: the header declaring its registration, AddCustom's two arguments.
_CUSTOM_REGISTRATION = {
    PATCH_STAGE_OP_NAME: (
        "tflm/patch_stage_op.h",
        "tflm_ext::patch_stage::kOpName",
        "tflm_ext::Register_TFLM_EXT_PATCH_STAGE()",
    ),
}

# The MicroMutableOpResolver method that adds each builtin (TFLM's reference kernels). Every
# method here is declared by TFLM's micro_mutable_op_resolver.h, and every op has its
# Register_<OP>() in the pinned wheel's runtime.
BUILTIN_ADD_CALLS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}


@dataclass(frozen=True)
class FirmwareBundle:
    """What ``export_firmware`` wrote: the folder and each file in it; the operators in
    resolver order (builtins by schema name, then custom codes); the measured arena."""

    folder: Path
    model_source: Path
    model_header: Path
    op_resolver: Path
    readme: Path
    kernel_files: tuple[Path, ...]
    builtin_ops: tuple[str, ...]
    custom_ops: tuple[str, ...]
    arena: ArenaMeasurement
    row_reader: Path | None = None  # row_reader.h, when the image is read row by row

    @property
    def op_count(self) -> int:
        """The N of ``MicroMutableOpResolver<N>``: distinct operators the model uses."""
        return len(self.builtin_ops) + len(self.custom_ops)


def export_firmware(model_bytes: bytes, out_dir: Path, name: str = "g_model") -> FirmwareBundle:
    """Write the firmware folder for ``model_bytes`` into ``out_dir`` (new or empty).

    Raises TflmExtError, before writing anything, for an operator the firmware cannot
    register (a builtin missing from BUILTIN_ADD_CALLS, or another project's custom op) and
    when the wheel's interpreter cannot build the model.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise TflmExtError(f"model name {name!r} is not a C identifier (it names the array)")
    model_bytes = bytes(model_bytes)
    builtins, customs = used_ops(model_bytes)
    folder = _check_empty(Path(out_dir))
    arena = run_isolated(measure_arena, model_bytes)
    _make_folder(folder)
    source, header = write_c_array(model_bytes, folder, name)
    kernels = _copy_kernels(folder) if customs else ()
    compiled = tuple(k.relative_to(folder).as_posix() for k in kernels if k.suffix == ".cc")
    resolver = _write(folder / OP_RESOLVER_NAME, op_resolver_text(name, builtins, customs))
    image = row_reader_image(model_bytes)
    rows = _write(folder / ROW_READER_NAME, row_reader_text(name, *image)) if image else None
    readme = _write(
        folder / README_NAME,
        readme_text(name, builtins, customs, compiled, arena)
        + (readme_rows_text(name) if image else ""),
    )
    bundle = FirmwareBundle(
        folder, source, header, resolver, readme, kernels, builtins, customs, arena, rows
    )
    log.info(
        "exported %s to %s: %d ops, arena %d B", name, folder, bundle.op_count, arena.bisected_min
    )
    return bundle


def used_ops(model_bytes: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(builtin names, custom codes) of the operators the model runs, each once, in order of
    first use over all subgraphs; refuses any the firmware could not register."""
    builtins: dict[str, None] = {}
    customs: dict[str, None] = {}
    for s, subgraph in enumerate(read_model(model_bytes).subgraphs):
        for i, op in enumerate(subgraph.operators):
            where = f"operator {i} of subgraph {s}"
            if op.custom_code:
                _check_custom(op.custom_code, where)
                customs.setdefault(op.custom_code)
            else:
                _check_builtin(op.opcode_name, where)
                builtins.setdefault(op.opcode_name)
    return tuple(builtins), tuple(customs)


def firmware_kernel_files() -> tuple[Path, ...]:
    """The kernel sources firmware compiles (relative to kernels/): all but host/."""
    files = (
        path.relative_to(KERNEL_SOURCE_DIR)
        for path in KERNEL_SOURCE_DIR.rglob("*")
        if path.suffix in (".cc", ".h") and path.is_file()
    )
    return tuple(sorted(p for p in files if p.parts[0] != _HOST_ONLY))


def op_resolver_text(name: str, builtins: Iterable[str], customs: Iterable[str]) -> str:
    """The op_resolver.h source for a model using these operators."""
    builtins, customs = tuple(builtins), tuple(customs)
    includes = ["tensorflow/lite/micro/micro_mutable_op_resolver.h"]
    includes += [_CUSTOM_REGISTRATION[c][0] for c in customs]
    checks = [
        f"  if (resolver.{BUILTIN_ADD_CALLS[b]}() != kTfLiteOk) return kTfLiteError;"
        for b in builtins
    ]
    checks += [_add_custom(*_CUSTOM_REGISTRATION[c][1:]) for c in customs]
    ops = textwrap.wrap(f"Distinct operators in {name}: {', '.join((*builtins, *customs))}.", 96)
    return _OP_RESOLVER_TEMPLATE.format(
        name=name,
        guard=f"{name.upper()}_OP_RESOLVER_H_",
        includes="\n".join(f'#include "{header}"' for header in includes),
        ops="\n".join(f"// {line}" for line in ops),
        count=len(builtins) + len(customs),
        checks="\n".join(checks),
    )


def _add_custom(op_name: str, registration: str) -> str:
    return (
        f"  if (resolver.AddCustom({op_name},\n"
        f"                         {registration}) != kTfLiteOk) {{\n"
        f"    return kTfLiteError;\n"
        f"  }}"
    )


_OP_RESOLVER_TEMPLATE = """\
// Generated by tflm_ext.firmware_export: the operators {name} (model_data.h) uses.
//
//   static {name}_ops::OpResolver op_resolver;
//   if ({name}_ops::AddOps(op_resolver) != kTfLiteOk) {{ /* an op failed to register */ }}
//   tflite::MicroInterpreter interpreter(tflite::GetModel({name}), op_resolver, arena, size);
#ifndef {guard}
#define {guard}

{includes}

// TFLM's types live in tflite (trees before October 2026) or tflite::micro (later trees).
namespace tflite {{
namespace micro {{}}
}}  // namespace tflite

namespace {name}_ops {{
using namespace tflite;         // NOLINT: the TFLM tree's namespace, before October 2026
using namespace tflite::micro;  // NOLINT: and after

{ops}
constexpr unsigned int kOpCount = {count};
using OpResolver = MicroMutableOpResolver<kOpCount>;

// Adds every operator {name} uses; kTfLiteError as soon as one fails.
inline TfLiteStatus AddOps(OpResolver& resolver) {{
{checks}
  return kTfLiteOk;
}}

}}  // namespace {name}_ops

#endif  // {guard}
"""


def readme_text(
    name: str,
    builtins: tuple[str, ...],
    customs: tuple[str, ...],
    kernel_sources: tuple[str, ...],
    arena: ArenaMeasurement,
) -> str:
    """The bundle's README: files, build steps, resolver usage and the arena to reserve.
    kernel_sources: the .cc files under kernels/, relative to the bundle."""
    sources = ["model_data.cc", *kernel_sources]
    steps = [
        f"1. Add these sources to the firmware build: {', '.join(f'`{s}`' for s in sources)}.",
        "2. Put this folder on the include path"
        + (
            f", and `{KERNEL_FOLDER}/` too (the kernels include `patch_stage.h`)."
            if customs
            else "."
        ),
        "3. Build against a TFLite Micro source tree (it provides `tensorflow/lite/...`).",
    ]
    return _README_TEMPLATE.format(
        name=name,
        ops="\n".join(f"- `{op}`" for op in (*builtins, *customs)),
        count=len(builtins) + len(customs),
        steps="\n".join(steps),
        custom=_README_CUSTOM if customs else "",
        arena=arena.bisected_min,
        head=arena.head,
        tail=arena.tail,
    )


_README_TEMPLATE = """\
# {name}: firmware bundle

Generated by `tflm_ext.firmware_export`. Operators the model uses ({count}, registered by
`{name}_ops::AddOps` in `op_resolver.h`):

{ops}

## Build

{steps}

```cpp
#include "model_data.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

constexpr size_t kArenaSize = {arena};  // see "Arena" below
alignas(16) static uint8_t tensor_arena[kArenaSize];
static {name}_ops::OpResolver op_resolver;

bool SetUpModel() {{
  if ({name}_ops::AddOps(op_resolver) != kTfLiteOk) return false;
  static tflite::MicroInterpreter interpreter(tflite::GetModel({name}), op_resolver,
                                              tensor_arena, kArenaSize);
  return interpreter.AllocateTensors() == kTfLiteOk;
}}
```

(In TFLM trees from October 2026 on, the interpreter is `tflite::micro::MicroInterpreter`.)
{custom}
## Arena

Reserve at least **{arena} bytes** (16-byte aligned): the smallest arena for which the
tflite-micro Python interpreter (64-bit host, reference kernels) builds this model. Of it,
{head} B are the activation plan (the head, the same on an MCU with the same kernels) and
{tail} B TFLM's persistent structures (the tail, smaller on a 32-bit MCU). Optimized kernel
libraries such as CMSIS-NN request scratch of their own: with them, add what
`MicroInterpreter::arena_used_bytes()` reports beyond this figure on the device.
"""

_README_CUSTOM = """
## The custom operator

The model uses `TFLM_EXT_PATCH_STAGE`, the project's patch-based stage operator: it runs
layers tile by tile, or streams them row by row through small ring buffers, so their large
activations never exist whole. Its sources are in `kernels/` (everything but `tflm/` is
plain C++ arithmetic; `tflm/` is the adapter to TFLM's kernel API). `AddOps` registers it
with `AddCustom`; the operator asks TFLM for its scratch (tile windows or rings) while the
interpreter is built, so the arena figure below includes it.
"""


def _check_builtin(op_name: str, where: str) -> None:
    if op_name not in BUILTIN_ADD_CALLS:
        raise TflmExtError(
            f"{where} is {op_name}, which tflm_ext.firmware_export cannot register: "
            f"it is not in BUILTIN_ADD_CALLS (add its MicroMutableOpResolver method there)"
        )


def _check_custom(custom_code: str, where: str) -> None:
    if custom_code not in _CUSTOM_REGISTRATION:
        raise TflmExtError(
            f"{where} is the custom op {custom_code!r}, which is not one of the "
            f"project's ({', '.join(sorted(_CUSTOM_REGISTRATION))}): its firmware kernel and "
            f"registration are unknown to tflm_ext.firmware_export"
        )


def _check_empty(folder: Path) -> Path:
    """Refuse a folder that holds anything: a kernel source left there by an earlier export
    would otherwise end up in the firmware."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TflmExtError(f"firmware folder {folder} exists and is not empty: choose a new one")
    return folder


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TflmExtError(f"cannot create the firmware folder {folder}: {e}") from e


def _copy_kernels(folder: Path) -> tuple[Path, ...]:
    copied = []
    for relative in firmware_kernel_files():
        target = folder / KERNEL_FOLDER / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(KERNEL_SOURCE_DIR / relative, target)
        except OSError as e:
            raise TflmExtError(f"cannot copy kernel source {relative} to {target}: {e}") from e
        copied.append(target)
    return tuple(copied)


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text)
    except OSError as e:
        raise TflmExtError(f"cannot write {path}: {e}") from e
    return path
