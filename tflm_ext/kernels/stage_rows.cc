// Geometry of a patch stage and one row of one inner op; see stage_internal.h.
#include "stage_internal.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

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

Weights WeightsOf(const InnerOp& op, const TensorRef* inputs) {
  const TensorRef* w = inputs + op[kOpWeightsInput];
  return {static_cast<const int8_t*>(w[0].data), w[0].dims,
          static_cast<const int32_t*>(w[1].data), static_cast<const int32_t*>(w[2].data),
          static_cast<const int32_t*>(w[3].data)};
}

// The table of input rows output row oy of a convolution or max pool reads.
Rows RowsFor(const Stage& stage, const InnerOp& op, int oy) {
  const View& in = stage.views[op[kOpInput]];
  const Shape shape = BufferShape(stage, op[kOpInput]);
  const int y_first = oy * op[kOpStrideHeight] - op[kOpPadTop];
  const int reach = Reach(op);
  for (int i = 0; i < reach; ++i) {
    const int y = y_first + i;
    stage.row_table[i] = y >= 0 && y < shape.h ? in.Row(y) : nullptr;
  }
  return {stage.row_table, y_first, in.x0, in.channels};
}

}  // namespace

bool IsEmpty(const Window& w) { return w.y0 >= w.y1 || w.x0 >= w.x1; }

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

bool IsPool(const InnerOp& op) {
  return op[kOpKind] == kKindGlobalAveragePool || op[kOpKind] == kKindMean;
}

bool IsStream(const Stage& stage) { return stage.header[kHeaderExecution] == kExecutionStream; }

bool IsWindowedKind(int32_t kind) {
  return kind == kKindConv || kind == kKindDepthwise || kind == kKindMaxPool;
}

bool IsWindowed(const InnerOp& op) { return IsWindowedKind(op[kOpKind]); }

int Reach(const InnerOp& op) {
  if (!IsWindowed(op)) return 1;
  return (op[kOpKernelHeight] - 1) * op[kOpDilationHeight] + 1;
}

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

void ComputeNeeds(Stage* stage, const Window& out) {
  const int n = stage->op_count;
  for (int b = 0; b < n; ++b) stage->need[b] = {0, 0, 0, 0};
  stage->need[n] = out;
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

void SetTensorViews(Stage* stage, const TensorRef* inputs, const TensorRef* output) {
  const Shape in = BufferShape(*stage, 0);
  const Shape out = BufferShape(*stage, stage->op_count);
  stage->views[0] = {static_cast<int8_t*>(inputs[0].data), 0, 0, in.w, in.c, 0};
  stage->views[stage->op_count] = {static_cast<int8_t*>(output->data), 0, 0, out.w, out.c, 0};
}

void RunOpRow(const Stage& stage, int index, int oy, const TensorRef* inputs) {
  const InnerOp& op = stage.ops[index];
  const Window& w = stage.need[index + 1];
  const Shape in_shape = BufferShape(stage, op[kOpInput]);
  const View& in = stage.views[op[kOpInput]];
  int8_t* dst = stage.views[index + 1].At(oy, w.x0);
  switch (op[kOpKind]) {
    case kKindConv:
      ConvRow(op, in_shape, RowsFor(stage, op, oy), WeightsOf(op, inputs), oy, w.x0, w.x1, dst);
      break;
    case kKindDepthwise:
      DepthwiseRow(op, in_shape, RowsFor(stage, op, oy), WeightsOf(op, inputs), oy, w.x0, w.x1,
                   dst);
      break;
    case kKindMaxPool:
      MaxPoolRow(op, in_shape, RowsFor(stage, op, oy), oy, w.x0, w.x1, dst);
      break;
    case kKindAdd:
      AddRow(op, in.At(oy, w.x0), stage.views[op[kOpInputB]].At(oy, w.x0), w.x1 - w.x0, dst);
      break;
    case kKindPad: {
      const int iy = oy - op[kOpPadTop];
      const int8_t* row = iy >= 0 && iy < in_shape.h ? in.Row(iy) : nullptr;
      PadRow(op, in_shape, row, in.x0, w.x0, w.x1, dst);
      break;
    }
    default:
      break;  // global pools run in stream_stage.cc
  }
}

}  // namespace patch_stage
}  // namespace tflm_ext
