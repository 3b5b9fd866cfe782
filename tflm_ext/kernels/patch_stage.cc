// TFLM_EXT_PATCH_STAGE arithmetic: options parsing, tile planning and the int8 inner ops.
// No TFLM types; see patch_stage.h for the contract and the scratch formula.
#include "patch_stage.h"

#include <string.h>

#include "inner_ops.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

int32_t ReadWord(const uint8_t* bytes) {
  const uint32_t value = static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
                         static_cast<uint32_t>(bytes[2]) << 16 |
                         static_cast<uint32_t>(bytes[3]) << 24;
  return static_cast<int32_t>(value);
}

bool IsEmpty(const Window& w) { return w.y0 >= w.y1 || w.x0 >= w.x1; }

Window Union(const Window& a, const Window& b) {
  if (IsEmpty(a)) return b;
  if (IsEmpty(b)) return a;
  return {a.y0 < b.y0 ? a.y0 : b.y0, a.y1 > b.y1 ? a.y1 : b.y1, a.x0 < b.x0 ? a.x0 : b.x0,
          a.x1 > b.x1 ? a.x1 : b.x1};
}

Window ClipTo(Window w, const Shape& shape) {
  w.y0 = w.y0 < 0 ? 0 : w.y0;
  w.x0 = w.x0 < 0 ? 0 : w.x0;
  w.y1 = w.y1 > shape.h ? shape.h : w.y1;
  w.x1 = w.x1 > shape.w ? shape.w : w.x1;
  return w;
}

Shape BufferShape(const Stage& stage, int buffer) {
  if (buffer == 0) {
    return {stage.header[kHeaderInputHeight], stage.header[kHeaderInputWidth],
            stage.header[kHeaderInputChannels]};
  }
  const InnerOp& op = stage.ops[buffer - 1];
  return {op[kOpOutputHeight], op[kOpOutputWidth], op[kOpOutputChannels]};
}

bool IsWeighted(const InnerOp& op) {
  return op[kOpKind] == kKindConv || op[kOpKind] == kKindDepthwise;
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

Status CheckOp(const Stage& stage, int index) {
  const InnerOp& op = stage.ops[index];
  const int kind = op[kOpKind];
  if (kind < kKindConv || kind > kKindPad || op[kOpInput] < 0 || op[kOpInput] > index) {
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
                                       : ConvGeometryValid(op, in);
  return fits ? kOk : kBadGeometry;
}

Window TileWindow(const Stage& stage, int row, int col) {
  const Shape out = BufferShape(stage, stage.op_count);
  const int rows = stage.header[kHeaderGridRows];
  const int cols = stage.header[kHeaderGridCols];
  return {row * out.h / rows, (row + 1) * out.h / rows, col * out.w / cols,
          (col + 1) * out.w / cols};
}

// The rows/columns of op's input that its output window reads, clipped to the image.
Window InputWindow(const InnerOp& op, const Window& out, const Shape& in) {
  if (op[kOpKind] == kKindAdd) return ClipTo(out, in);
  if (op[kOpKind] == kKindPad) {
    return ClipTo({out.y0 - op[kOpPadTop], out.y1 - op[kOpPadTop], out.x0 - op[kOpPadLeft],
                   out.x1 - op[kOpPadLeft]},
                  in);
  }
  const int reach_y = (op[kOpKernelHeight] - 1) * op[kOpDilationHeight] + 1;
  const int reach_x = (op[kOpKernelWidth] - 1) * op[kOpDilationWidth] + 1;
  const Window full = {
      out.y0 * op[kOpStrideHeight] - op[kOpPadTop],
      (out.y1 - 1) * op[kOpStrideHeight] - op[kOpPadTop] + reach_y,
      out.x0 * op[kOpStrideWidth] - op[kOpPadLeft],
      (out.x1 - 1) * op[kOpStrideWidth] - op[kOpPadLeft] + reach_x,
  };
  return ClipTo(full, in);
}

// Walks backwards from the tile: need[b] becomes the window of buffer b this tile reads.
void ComputeNeeds(Stage* stage, const Window& tile) {
  const int n = stage->op_count;
  for (int b = 0; b < n; ++b) stage->need[b] = {0, 0, 0, 0};
  stage->need[n] = tile;
  for (int i = n - 1; i >= 0; --i) {
    const InnerOp& op = stage->ops[i];
    if (IsEmpty(stage->need[i + 1])) continue;
    const Window in =
        InputWindow(op, stage->need[i + 1], BufferShape(*stage, op[kOpInput]));
    stage->need[op[kOpInput]] = Union(stage->need[op[kOpInput]], in);
    if (op[kOpKind] == kKindAdd) {
      stage->need[op[kOpInputB]] = Union(stage->need[op[kOpInputB]], in);
    }
  }
}

// For each intermediate buffer, the last op reading it (the op writing it if none does).
void FindLastUses(Stage* stage) {
  const int n = stage->op_count;
  for (int b = 1; b <= n; ++b) stage->last_use[b] = static_cast<int8_t>(b - 1);
  stage->last_use[0] = 0;
  for (int i = 0; i < n; ++i) {
    const InnerOp& op = stage->ops[i];
    stage->last_use[op[kOpInput]] = static_cast<int8_t>(i);
    if (op[kOpKind] == kKindAdd) stage->last_use[op[kOpInputB]] = static_cast<int8_t>(i);
  }
}

// window[b]: the largest window (bytes) of intermediate buffer b over all tiles.
void LargestWindows(Stage* stage, int64_t* window) {
  for (int b = 0; b <= stage->op_count; ++b) window[b] = 0;
  for (int r = 0; r < stage->header[kHeaderGridRows]; ++r) {
    for (int c = 0; c < stage->header[kHeaderGridCols]; ++c) {
      ComputeNeeds(stage, TileWindow(*stage, r, c));
      for (int b = 1; b < stage->op_count; ++b) {
        const Window& w = stage->need[b];
        if (IsEmpty(w)) continue;
        const int64_t bytes = static_cast<int64_t>(w.y1 - w.y0) * (w.x1 - w.x0) *
                              BufferShape(*stage, b).c;
        window[b] = bytes > window[b] ? bytes : window[b];
      }
    }
  }
}

bool LifetimesOverlap(const Stage& stage, int a, int b) {
  return a - 1 <= stage.last_use[b] && b - 1 <= stage.last_use[a];
}

// Places the intermediate windows one by one, each at the lowest offset that overlaps no
// placed window alive at the same time: largest first (ties: lower buffer) or in op order.
// Returns the scratch size; offset[b] receives each window's place.
int64_t FirstFit(const Stage& stage, const int64_t* window, bool largest_first,
                 int64_t* offset) {
  const int n = stage.op_count;
  bool placed[kMaxOps + 1] = {};
  int64_t end = 0;
  for (int round = 1; round < n; ++round) {
    int t = largest_first ? 0 : round;
    for (int b = 1; largest_first && b < n; ++b) {
      if (!placed[b] && (t == 0 || window[b] > window[t])) t = b;
    }
    // Candidates: 0 and the end of every placed rival; the lowest that fits wins.
    int64_t best = -1;
    for (int c = 0; c < n; ++c) {
      if (c > 0 && !(placed[c] && LifetimesOverlap(stage, c, t))) continue;
      const int64_t start = c == 0 ? 0 : offset[c] + window[c];
      if (best >= 0 && start >= best) continue;
      bool fits = true;
      for (int u = 1; u < n && fits; ++u) {
        fits = !(placed[u] && LifetimesOverlap(stage, u, t)) ||
               start + window[t] <= offset[u] || offset[u] + window[u] <= start;
      }
      if (fits) best = start;
    }
    offset[t] = best;
    placed[t] = true;
    end = best + window[t] > end ? best + window[t] : end;
  }
  return end;
}

// Lays out the scratch: the smaller of FirstFit's two orders (ties: largest first).
// tflm_ext/receptive_field.py (scratch_layout) computes the same layout for the planner.
Status PlanScratch(Stage* stage) {
  int64_t window[kMaxOps + 1];
  LargestWindows(stage, window);
  int64_t by_size[kMaxOps + 1] = {}, by_op[kMaxOps + 1] = {};
  const int64_t size_end = FirstFit(*stage, window, true, by_size);
  const int64_t op_end = FirstFit(*stage, window, false, by_op);
  const int64_t* offset = op_end < size_end ? by_op : by_size;
  const int64_t end = op_end < size_end ? op_end : size_end;
  if (end > INT32_MAX) return kBadGeometry;
  for (int b = 0; b <= stage->op_count; ++b) {
    stage->offset_of_buffer[b] = static_cast<int32_t>(offset[b]);
  }
  stage->scratch_bytes = static_cast<int32_t>(end);
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
  const Shape out = BufferShape(stage, stage.op_count);
  const int32_t in_dims[4] = {1, in.h, in.w, in.c};
  const int32_t out_dims[4] = {1, out.h, out.w, out.c};
  if (!HasShape(inputs[0], kTypeInt8, 4, in_dims) || output == nullptr ||
      !HasShape(*output, kTypeInt8, 4, out_dims)) {
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

Weights WeightsOf(const InnerOp& op, const TensorRef* inputs) {
  const TensorRef* w = inputs + op[kOpWeightsInput];
  return {static_cast<const int8_t*>(w[0].data), w[0].dims,
          static_cast<const int32_t*>(w[1].data), static_cast<const int32_t*>(w[2].data),
          static_cast<const int32_t*>(w[3].data)};
}

View ViewOf(const Stage& stage, int buffer, const TensorRef* inputs, const TensorRef* output,
            int8_t* scratch) {
  const Shape shape = BufferShape(stage, buffer);
  if (buffer == 0) return {static_cast<int8_t*>(inputs[0].data), 0, 0, shape.w, shape.c};
  if (buffer == stage.op_count) return {static_cast<int8_t*>(output->data), 0, 0, shape.w, shape.c};
  const Window& w = stage.need[buffer];
  return {scratch + stage.offset_of_buffer[buffer], w.y0, w.x0, w.x1 - w.x0, shape.c};
}

void RunOp(const Stage& stage, int index, const TensorRef* inputs, const TensorRef* output,
           int8_t* scratch) {
  const InnerOp& op = stage.ops[index];
  const Window& w = stage.need[index + 1];
  const Shape in_shape = BufferShape(stage, op[kOpInput]);
  const View in = ViewOf(stage, op[kOpInput], inputs, output, scratch);
  const View out = ViewOf(stage, index + 1, inputs, output, scratch);
  const int kind = op[kOpKind];
  const Weights weights = IsWeighted(op) ? WeightsOf(op, inputs) : Weights{};
  const View b = kind == kKindAdd ? ViewOf(stage, op[kOpInputB], inputs, output, scratch) : in;
  for (int oy = w.y0; oy < w.y1; ++oy) {
    for (int ox = w.x0; ox < w.x1; ++ox) {
      int8_t* dst = out.At(oy, ox);
      if (kind == kKindConv) ConvPixel(op, in_shape, in, weights, oy, ox, dst);
      if (kind == kKindDepthwise) DepthwisePixel(op, in_shape, in, weights, oy, ox, dst);
      if (kind == kKindAdd) AddPixel(op, in.At(oy, ox), b.At(oy, ox), dst);
      if (kind == kKindPad) PadPixel(op, in_shape, in, oy, ox, dst);
    }
  }
}

}  // namespace

size_t ParsedStageBytes(const uint8_t* options, size_t length) {
  if (options == nullptr || length < kHeaderWords * 4) return 0;
  const int32_t op_count = ReadWord(options + 4 * kHeaderOpCount);
  if (op_count < 1 || op_count > kMaxOps) return 0;
  const size_t buffers = static_cast<size_t>(op_count) + 1;
  return sizeof(Stage) + op_count * sizeof(InnerOp) +
         buffers * (sizeof(Window) + sizeof(int32_t) + 1);
}

Status ParseOptions(const uint8_t* options, size_t length, void* memory, size_t bytes,
                    Stage** stage_out) {
  if (options == nullptr || length < kHeaderWords * 4) return kBadOptionsLength;
  if (ReadWord(options) != kOptionsVersion) return kBadOptionsVersion;
  if (ReadWord(options + 4 * kHeaderHeaderWords) != kHeaderWords ||
      ReadWord(options + 4 * kHeaderOpWords) != kOpWords) {
    return kBadOptionsLayout;
  }
  const int32_t op_count = ReadWord(options + 4 * kHeaderOpCount);
  if (op_count < 1 || op_count > kMaxOps) return kBadOpCount;
  if (length != (kHeaderWords + static_cast<size_t>(op_count) * kOpWords) * 4) {
    return kBadOptionsLength;
  }
  if (memory == nullptr || bytes < ParsedStageBytes(options, length)) return kBadMemory;
  Stage* stage = static_cast<Stage*>(memory);
  memset(stage, 0, sizeof(Stage));
  // Carve the arrays in decreasing alignment: InnerOp and Window hold int32 only.
  uint8_t* next = static_cast<uint8_t*>(memory) + sizeof(Stage);
  stage->ops = reinterpret_cast<InnerOp*>(next);
  next += op_count * sizeof(InnerOp);
  stage->need = reinterpret_cast<Window*>(next);
  next += (op_count + 1) * sizeof(Window);
  stage->offset_of_buffer = reinterpret_cast<int32_t*>(next);
  next += (op_count + 1) * sizeof(int32_t);
  stage->last_use = reinterpret_cast<int8_t*>(next);
  stage->op_count = op_count;
  stage->scratch_index = -1;
  for (int f = 0; f < kHeaderWords; ++f) stage->header[f] = ReadWord(options + 4 * f);
  const uint8_t* record = options + 4 * kHeaderWords;
  for (int i = 0; i < op_count; ++i) {
    for (int f = 0; f < kOpWords; ++f) stage->ops[i].word[f] = ReadWord(record + 4 * f);
    record += 4 * kOpWords;
  }
  const Shape in = BufferShape(*stage, 0);
  if (in.h < 1 || in.w < 1 || in.c < 1) return kBadGeometry;
  for (int i = 0; i < op_count; ++i) {
    const Status status = CheckOp(*stage, i);
    if (status != kOk) return status;
  }
  const Shape out = BufferShape(*stage, op_count);
  const int rows = stage->header[kHeaderGridRows], cols = stage->header[kHeaderGridCols];
  if (rows < 1 || cols < 1 || rows > out.h || cols > out.w) return kBadGrid;
  *stage_out = stage;
  return kOk;
}

Status PrepareStage(Stage* stage, const TensorRef* inputs, int input_count,
                    const TensorRef* output) {
  if (inputs == nullptr || input_count < 1) return kBadInputCount;
  const Status status = CheckTensors(*stage, inputs, input_count, output);
  if (status != kOk) return status;
  FindLastUses(stage);
  return PlanScratch(stage);
}

size_t ScratchBytes(const Stage* stage) {
  return static_cast<size_t>(stage->scratch_bytes);
}

Status RunStage(Stage* stage, const TensorRef* inputs, int input_count, const TensorRef* output,
                int8_t* scratch) {
  if (inputs == nullptr || output == nullptr || inputs[0].data == nullptr ||
      output->data == nullptr || input_count < 1) {
    return kBadTensor;
  }
  if (ScratchBytes(stage) > 0 && scratch == nullptr) return kBadMemory;
  for (int r = 0; r < stage->header[kHeaderGridRows]; ++r) {
    for (int c = 0; c < stage->header[kHeaderGridCols]; ++c) {
      ComputeNeeds(stage, TileWindow(*stage, r, c));
      for (int i = 0; i < stage->op_count; ++i) {
        if (!IsEmpty(stage->need[i + 1])) RunOp(*stage, i, inputs, output, scratch);
      }
    }
  }
  return kOk;
}

const char* StatusText(Status status) {
  switch (status) {
    case kOk:
      return "ok";
    case kBadOptionsLength:
      return "custom options have the wrong length for their op count";
    case kBadOptionsVersion:
      return "custom options version is not the one this kernel was built for";
    case kBadOptionsLayout:
      return "custom options header/op word counts differ from this kernel's layout";
    case kBadOpCount:
      return "op count is outside 1..kMaxOps";
    case kBadGrid:
      return "tile grid is empty or larger than the stage output";
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
  }
  return "unknown status";
}

}  // namespace patch_stage
}  // namespace tflm_ext
