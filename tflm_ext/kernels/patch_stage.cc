// TFLM_EXT_PATCH_STAGE core: options parsing and validation, tensor checks, and the entry
// points, which hand over to the tile (tile_stage.cc) or streaming (stream_stage.cc)
// execution. No TFLM types; see patch_stage.h for the contract.
#include "patch_stage.h"

#include <string.h>

#include "stage_internal.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

constexpr int32_t kMaxReach = 1 << 16;  // rows a window may span (bounds the row table)

int32_t ReadWord(const uint8_t* bytes) {
  const uint32_t value = static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
                         static_cast<uint32_t>(bytes[2]) << 16 |
                         static_cast<uint32_t>(bytes[3]) << 24;
  return static_cast<int32_t>(value);
}

// The layout a version's header announces: header and record words; false if unknown.
bool LayoutOf(const uint8_t* options, size_t length, int* header_words, int* op_words) {
  if (options == nullptr || length < kHeaderWordsV1 * 4) return false;
  const int32_t version = ReadWord(options);
  *header_words = version == kTileOptionsVersion ? kHeaderWordsV1 : kHeaderWords;
  *op_words = version == kTileOptionsVersion ? kOpWordsV1 : kOpWords;
  return (version == kTileOptionsVersion || version == kOptionsVersion) &&
         length >= static_cast<size_t>(*header_words) * 4 &&
         ReadWord(options + 4 * kHeaderHeaderWords) == *header_words &&
         ReadWord(options + 4 * kHeaderOpWords) == *op_words;
}

// The largest reach of any convolution's or max pool's kernel (at least 1); 0 if out of
// bounds.
int32_t MaxReach(const uint8_t* records, int op_count, int op_words) {
  int64_t reach = 1;
  for (int i = 0; i < op_count; ++i) {
    const uint8_t* record = records + 4 * static_cast<size_t>(i) * op_words;
    const int32_t kind = ReadWord(record + 4 * kOpKind);
    if (!IsWindowedKind(kind)) continue;  // the others read one row at a time
    const int64_t kernel = ReadWord(record + 4 * kOpKernelHeight);
    const int64_t dilation = ReadWord(record + 4 * kOpDilationHeight);
    const int64_t op_reach = (kernel - 1) * dilation + 1;
    if (op_reach > kMaxReach) return 0;
    reach = op_reach > reach ? op_reach : reach;
  }
  return static_cast<int32_t>(reach);
}

size_t BytesFor(int op_count, int32_t reach) {
  const size_t buffers = static_cast<size_t>(op_count) + 1;
  return sizeof(Stage) + reach * sizeof(int8_t*) + buffers * sizeof(View) +
         op_count * sizeof(InnerOp) + buffers * (sizeof(Window) + 7 * sizeof(int32_t));
}

// Carves the arrays out of the memory after the struct, pointers and views first.
void Carve(Stage* stage, int op_count, int32_t reach) {
  uint8_t* next = reinterpret_cast<uint8_t*>(stage) + sizeof(Stage);
  const int buffers = op_count + 1;
  stage->row_table = reinterpret_cast<const int8_t**>(next);
  next += reach * sizeof(int8_t*);
  stage->views = reinterpret_cast<View*>(next);
  next += buffers * sizeof(View);
  stage->ops = reinterpret_cast<InnerOp*>(next);
  next += op_count * sizeof(InnerOp);
  stage->need = reinterpret_cast<Window*>(next);
  next += buffers * sizeof(Window);
  int32_t** arrays[] = {&stage->offset_of_buffer, &stage->last_use, &stage->ring_rows,
                        &stage->ring_width,       &stage->done,     &stage->pull_buffer,
                        &stage->pull_until};
  for (int32_t** array : arrays) {
    *array = reinterpret_cast<int32_t*>(next);
    next += buffers * sizeof(int32_t);
  }
}

bool InInt8(int32_t value) { return value >= -128 && value <= 127; }

// Output size along one axis of a convolution, as TFLM pads it: pad-before plus pad-after.
bool ConvAxisFits(int in, int out, int kernel, int stride, int dilation, int before, int after) {
  const int span = in + before + after - ((kernel - 1) * dilation + 1);
  return kernel >= 1 && stride >= 1 && dilation >= 1 && before >= 0 && after >= 0 &&
         span >= 0 && out == span / stride + 1;
}

bool ConvGeometryValid(const InnerOp& op, const Shape& in) {
  const bool rows = ConvAxisFits(in.h, op[kOpOutputHeight], op[kOpKernelHeight],
                                 op[kOpStrideHeight], op[kOpDilationHeight], op[kOpPadTop],
                                 op[kOpPadBottom]);
  const bool cols =
      ConvAxisFits(in.w, op[kOpOutputWidth], op[kOpKernelWidth], op[kOpStrideWidth],
                   op[kOpDilationWidth], op[kOpPadLeft], op[kOpPadRight]);
  if (op[kOpKind] == kKindDepthwise) {
    return rows && cols && op[kOpDepthMultiplier] >= 1 &&
           op[kOpOutputChannels] == in.c * op[kOpDepthMultiplier];
  }
  if (op[kOpKind] == kKindMaxPool) {  // no dilation; channels pass through
    return rows && cols && op[kOpDilationHeight] == 1 && op[kOpDilationWidth] == 1 &&
           op[kOpOutputChannels] == in.c;
  }
  return rows && cols;
}

bool AddGeometryValid(const Stage& stage, const InnerOp& op, const Shape& in) {
  const Shape b = BufferShape(stage, op[kOpInputB]);
  return b.h == in.h && b.w == in.w && b.c == in.c && op[kOpOutputHeight] == in.h &&
         op[kOpOutputWidth] == in.w && op[kOpOutputChannels] == in.c &&
         op[kOpAddLeftShift] >= 0 && op[kOpAddLeftShift] <= 30 && op[kOpAddInputShift] <= 0 &&
         op[kOpAddInputBShift] <= 0 && op[kOpAddOutputShift] <= 0 &&
         op[kOpAddInputShift] >= -31 && op[kOpAddInputBShift] >= -31 &&
         op[kOpAddOutputShift] >= -31 && InInt8(op[kOpInputBZeroPoint]);
}

bool PadGeometryValid(const InnerOp& op, const Shape& in) {
  return op[kOpPadTop] >= 0 && op[kOpPadBottom] >= 0 && op[kOpPadLeft] >= 0 &&
         op[kOpPadRight] >= 0 &&
         op[kOpOutputHeight] == in.h + op[kOpPadTop] + op[kOpPadBottom] &&
         op[kOpOutputWidth] == in.w + op[kOpPadLeft] + op[kOpPadRight] &&
         op[kOpOutputChannels] == in.c;
}

// A global pool: one output pixel per channel from a window that is the whole input.
bool PoolGeometryValid(const InnerOp& op, const Shape& in) {
  const int64_t count = static_cast<int64_t>(in.h) * in.w;
  return op[kOpOutputHeight] == 1 && op[kOpOutputWidth] == 1 && op[kOpOutputChannels] == in.c &&
         op[kOpKernelHeight] == in.h && op[kOpKernelWidth] == in.w && count <= (1 << 23) &&
         (op[kOpKind] != kKindMean ||
          (op[kOpRequantShift] >= -31 && op[kOpRequantShift] <= 30));
}

Status CheckOp(const Stage& stage, int index) {
  const InnerOp& op = stage.ops[index];
  const int kind = op[kOpKind];
  const int last_kind =
      stage.header[kHeaderVersion] == kTileOptionsVersion ? kKindPad : kKindMaxPool;
  if (kind < kKindConv || kind > last_kind || op[kOpInput] < 0 || op[kOpInput] > index) {
    return kBadOp;
  }
  if (kind == kKindAdd && (op[kOpInputB] < 0 || op[kOpInputB] > index)) return kBadOp;
  if (op[kOpOutputHeight] < 1 || op[kOpOutputWidth] < 1 || op[kOpOutputChannels] < 1 ||
      !InInt8(op[kOpInputZeroPoint]) || !InInt8(op[kOpOutputZeroPoint]) ||
      !InInt8(op[kOpActivationMin]) || !InInt8(op[kOpActivationMax]) ||
      op[kOpActivationMin] > op[kOpActivationMax]) {
    return kBadOp;
  }
  const Shape in = BufferShape(stage, op[kOpInput]);
  const bool fits = kind == kKindAdd   ? AddGeometryValid(stage, op, in)
                    : kind == kKindPad ? PadGeometryValid(op, in)
                    : IsPool(op)       ? PoolGeometryValid(op, in)
                                       : ConvGeometryValid(op, in);
  return fits ? kOk : kBadGeometry;
}

// What only the streaming execution runs, and what it cannot: a global pool ends a
// streamed stage, and a pool's one output pixel cannot be cut into strips.
Status CheckExecution(const Stage& stage) {
  const int execution = stage.header[kHeaderExecution];
  const int source = stage.header[kHeaderInputSource];
  if ((execution != kExecutionTiles && execution != kExecutionStream) ||
      (source != kInputTensor && source != kInputRowReader) ||
      (source == kInputRowReader && execution != kExecutionStream)) {
    return kBadExecution;
  }
  for (int i = 0; i < stage.op_count; ++i) {
    if (!IsPool(stage.ops[i])) continue;
    if (execution != kExecutionStream || i != stage.op_count - 1) return kBadStreamOp;
  }
  if (execution == kExecutionStream && stage.header[kHeaderGridRows] != 1) return kBadGrid;
  if (execution == kExecutionTiles && stage.op_count > kMaxTileOps) return kBadOpCount;
  return kOk;
}

bool HasShape(const TensorRef& t, ElementType type, int rank, const int32_t* dims) {
  if (t.type != type || t.rank != rank || t.dims == nullptr) return false;
  for (int d = 0; d < rank; ++d) {
    if (dims[d] >= 0 && t.dims[d] != dims[d]) return false;  // -1: any size
  }
  return true;
}

bool ShiftsValid(const TensorRef& shift, int count) {
  const int32_t* values = static_cast<const int32_t*>(shift.data);
  if (values == nullptr) return false;
  for (int c = 0; c < count; ++c) {
    if (values[c] < -31 || values[c] > 30) return false;
  }
  return true;
}

bool WeightsValid(const InnerOp& op, const Shape& in, const TensorRef* w) {
  const int out_c = op[kOpOutputChannels];
  const int32_t vector[1] = {out_c};
  if (op[kOpKind] == kKindConv) {
    const int32_t dims[4] = {out_c, op[kOpKernelHeight], op[kOpKernelWidth], -1};
    if (!HasShape(w[0], kTypeInt8, 4, dims) || w[0].dims[3] < 1) return false;
    const int groups = in.c / w[0].dims[3];
    if (in.c % w[0].dims[3] != 0 || out_c % groups != 0) return false;
  } else {
    const int32_t dims[4] = {1, op[kOpKernelHeight], op[kOpKernelWidth], out_c};
    if (!HasShape(w[0], kTypeInt8, 4, dims)) return false;
  }
  return HasShape(w[1], kTypeInt32, 1, vector) && HasShape(w[2], kTypeInt32, 1, vector) &&
         HasShape(w[3], kTypeInt32, 1, vector) && ShiftsValid(w[3], out_c);
}

// The operator's output: [1, h, w, c]; a global pool's may also be MEAN's [1, c].
bool OutputValid(const Stage& stage, const TensorRef* output) {
  const Shape out = BufferShape(stage, stage.op_count);
  const int32_t dims[4] = {1, out.h, out.w, out.c};
  if (output == nullptr) return false;
  if (HasShape(*output, kTypeInt8, 4, dims)) return true;
  const int32_t flat[2] = {1, out.c};
  return IsPool(stage.ops[stage.op_count - 1]) && HasShape(*output, kTypeInt8, 2, flat);
}

Status CheckTensors(const Stage& stage, const TensorRef* inputs, int input_count,
                    const TensorRef* output) {
  int expected = 1;
  for (int i = 0; i < stage.op_count; ++i) {
    if (!IsWeighted(stage.ops[i])) continue;
    if (stage.ops[i][kOpWeightsInput] != expected) return kBadInputCount;
    expected += kInputsPerWeightedOp;
  }
  if (input_count != expected) return kBadInputCount;
  const Shape in = BufferShape(stage, 0);
  const bool reader = stage.header[kHeaderInputSource] == kInputRowReader;
  const int32_t in_dims[4] = {1, reader ? 1 : in.h, in.w, in.c};  // reader: one row
  if (!HasShape(inputs[0], kTypeInt8, 4, in_dims) || !OutputValid(stage, output)) {
    return kBadTensor;
  }
  for (int i = 0; i < stage.op_count; ++i) {
    const InnerOp& op = stage.ops[i];
    if (IsWeighted(op) && !WeightsValid(op, BufferShape(stage, op[kOpInput]),
                                        inputs + op[kOpWeightsInput])) {
      return kBadTensor;
    }
  }
  return kOk;
}

// Copies the header and records, filling what version 1 lacks with its meaning.
void CopyOptions(Stage* stage, const uint8_t* options, int header_words, int op_words) {
  for (int f = 0; f < kHeaderWords; ++f) {
    stage->header[f] = f < header_words ? ReadWord(options + 4 * f) : 0;
  }
  if (header_words == kHeaderWordsV1) {
    stage->header[kHeaderExecution] = kExecutionTiles;
    stage->header[kHeaderInputSource] = kInputTensor;
  }
  const uint8_t* record = options + 4 * header_words;
  for (int i = 0; i < stage->op_count; ++i) {
    for (int f = 0; f < kOpWords; ++f) {
      stage->ops[i].word[f] = f < op_words ? ReadWord(record + 4 * f) : 0;
    }
    record += 4 * op_words;
  }
}

Status Validate(const Stage& stage) {
  const Shape in = BufferShape(stage, 0);
  if (in.h < 1 || in.w < 1 || in.c < 1) return kBadGeometry;
  for (int i = 0; i < stage.op_count; ++i) {
    const Status status = CheckOp(stage, i);
    if (status != kOk) return status;
  }
  const Status status = CheckExecution(stage);
  if (status != kOk) return status;
  const Shape out = BufferShape(stage, stage.op_count);
  const int rows = stage.header[kHeaderGridRows], cols = stage.header[kHeaderGridCols];
  if (rows < 1 || cols < 1 || rows > out.h || cols > out.w) return kBadGrid;
  return kOk;
}

}  // namespace

size_t ParsedStageBytes(const uint8_t* options, size_t length) {
  int header_words = 0, op_words = 0;
  if (!LayoutOf(options, length, &header_words, &op_words)) return 0;
  const int32_t op_count = ReadWord(options + 4 * kHeaderOpCount);
  if (op_count < 1 || op_count > kMaxOps) return 0;
  if (length != (header_words + static_cast<size_t>(op_count) * op_words) * 4) return 0;
  const int32_t reach = MaxReach(options + 4 * header_words, op_count, op_words);
  return reach == 0 ? 0 : BytesFor(op_count, reach);
}

Status ParseOptions(const uint8_t* options, size_t length, void* memory, size_t bytes,
                    Stage** stage_out) {
  if (options == nullptr || length < kHeaderWordsV1 * 4) return kBadOptionsLength;
  const int32_t version = ReadWord(options);
  if (version != kTileOptionsVersion && version != kOptionsVersion) return kBadOptionsVersion;
  int header_words = 0, op_words = 0;
  if (!LayoutOf(options, length, &header_words, &op_words)) return kBadOptionsLayout;
  const int32_t op_count = ReadWord(options + 4 * kHeaderOpCount);
  if (op_count < 1 || op_count > kMaxOps) return kBadOpCount;
  if (length != (header_words + static_cast<size_t>(op_count) * op_words) * 4) {
    return kBadOptionsLength;
  }
  const int32_t reach = MaxReach(options + 4 * header_words, op_count, op_words);
  if (reach == 0) return kBadGeometry;
  if (memory == nullptr || bytes < BytesFor(op_count, reach)) return kBadMemory;
  Stage* stage = static_cast<Stage*>(memory);
  memset(stage, 0, sizeof(Stage));
  Carve(stage, op_count, reach);
  stage->op_count = op_count;
  stage->max_reach = reach;
  stage->scratch_index = -1;
  CopyOptions(stage, options, header_words, op_words);
  const Status status = Validate(*stage);
  if (status != kOk) return status;
  *stage_out = stage;
  return kOk;
}

Status PrepareStage(Stage* stage, const TensorRef* inputs, int input_count,
                    const TensorRef* output) {
  if (inputs == nullptr || input_count < 1) return kBadInputCount;
  const Status status = CheckTensors(*stage, inputs, input_count, output);
  if (status != kOk) return status;
  return IsStream(*stage) ? PlanStream(stage) : PlanTiles(stage);
}

size_t ScratchBytes(const Stage* stage) {
  return static_cast<size_t>(stage->scratch_bytes);
}

Status RunStage(Stage* stage, const TensorRef* inputs, int input_count, const TensorRef* output,
                int8_t* scratch) {
  const bool reader = stage->header[kHeaderInputSource] == kInputRowReader;
  if (inputs == nullptr || output == nullptr || (inputs[0].data == nullptr && !reader) ||
      output->data == nullptr || input_count < 1) {
    return kBadTensor;
  }
  if (ScratchBytes(stage) > 0 && scratch == nullptr) return kBadMemory;
  if (IsStream(*stage)) return RunStream(stage, inputs, output, scratch);
  RunTiles(stage, inputs, output, scratch);
  return kOk;
}

const char* StatusText(Status status) {
  switch (status) {
    case kOk:
      return "ok";
    case kBadOptionsLength:
      return "custom options have the wrong length for their op count";
    case kBadOptionsVersion:
      return "custom options version is not one this kernel was built for (1 or 2)";
    case kBadOptionsLayout:
      return "custom options header/op word counts differ from this kernel's layout";
    case kBadOpCount:
      return "op count is outside 1..kMaxOps (1..kMaxTileOps for tiles)";
    case kBadGrid:
      return "tile grid or strips are empty, larger than the stage output, or not one row of "
             "strips in streaming";
    case kBadOp:
      return "an inner op has an unknown kind, a forward input or out-of-range values";
    case kBadGeometry:
      return "an inner op's shapes, kernel, stride, dilation or padding do not fit together";
    case kBadInputCount:
      return "operator inputs do not match the options (1 + 4 per conv/depthwise op)";
    case kBadTensor:
      return "an operator tensor has the wrong type or shape for the options";
    case kBadMemory:
      return "missing persistent or scratch memory";
    case kBadExecution:
      return "the execution (tiles or streaming) or the input source is not one this kernel "
             "runs (a row reader feeds only a streamed stage)";
    case kBadStreamOp:
      return "a global pool runs only streamed, as the stage's last op (it reads every row "
             "before it writes)";
    case kBadRowReader:
      return "the stage reads its input from a row reader, but none is set "
             "(tflm_ext::patch_stage::SetRowReader) or it failed to deliver a row";
  }
  return "unknown status";
}

}  // namespace patch_stage
}  // namespace tflm_ext
