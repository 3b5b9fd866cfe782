// The streaming execution of TFLM_EXT_PATCH_STAGE: rows pulled top to bottom through ring
// buffers, every row of every inner op computed once per column strip. See patch_stage.h
// for the contract; tflm_ext/streaming.py runs the same schedule to size the rings for the
// planner, so the two must change together.
#include <string.h>

#include "stage_internal.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

constexpr int32_t kNever = INT32_MAX;

RowReader g_reader = nullptr;  // SetRowReader's, for every stage reading rows
void* g_reader_user = nullptr;

bool FromReader(const Stage& stage) {
  return stage.header[kHeaderInputSource] == kInputRowReader;
}

// Whether rows of buffer a up to `until` must still be computed (or read) first: the stage
// input is whole unless it comes from the row reader.
bool Pending(const Stage& stage, int a, int until) {
  return (a != 0 || FromReader(stage)) && stage.done[a] < until;
}

int Clamp(int value, int low, int high) { return value < low ? low : (value > high ? high : value); }

// Rows [*lo, *hi) of op's input that its output row y reads, clipped to the input (empty
// for a PAD row of padding). Not for global pools, which read every row once, in order.
void InputRows(const InnerOp& op, int y, int in_h, int* lo, int* hi) {
  int start = y, stop = y + 1;  // ADD
  if (op[kOpKind] == kKindPad) {
    start = y - op[kOpPadTop];
    stop = start + 1;
  } else if (IsWindowed(op)) {
    start = y * op[kOpStrideHeight] - op[kOpPadTop];
    stop = start + Reach(op);
  }
  *lo = Clamp(start, 0, in_h);
  *hi = Clamp(stop, *lo, in_h);
}

bool Reads(const InnerOp& op, int buffer) {
  return op[kOpInput] == buffer || (op[kOpKind] == kKindAdd && op[kOpInputB] == buffer);
}

// The first row of buffer b that a consumer will still read (kNever: none will).
int LowestNeeded(const Stage& stage, int b) {
  int low = kNever;
  for (int i = b; i < stage.op_count; ++i) {  // only later ops read b
    const InnerOp& op = stage.ops[i];
    if (!Reads(op, b)) continue;
    int next = kNever;
    if (IsPool(op)) {
      if (stage.pool_rows < stage.need[b].y1) next = stage.pool_rows;
    } else if (stage.done[i + 1] < stage.need[i + 1].y1) {
      int hi = 0;
      InputRows(op, stage.done[i + 1], BufferShape(stage, b).h, &next, &hi);
    }
    low = next < low ? next : low;
  }
  return low;
}

// Writing row y of buffer b: the ring must hold every row from the lowest one still needed.
void NoteRingRow(Stage* stage, int b, int y) {
  int low = LowestNeeded(*stage, b);
  low = low < stage->need[b].y0 ? stage->need[b].y0 : low;
  low = low > y ? y : low;
  if (y - low + 1 > stage->ring_rows[b]) stage->ring_rows[b] = y - low + 1;
}

int32_t* PoolSums(const Stage& stage, int8_t* scratch) {
  return IsPool(stage.ops[stage.op_count - 1]) ? reinterpret_cast<int32_t*>(scratch) : nullptr;
}

void ResetPull(Stage* stage, int32_t* sums) {
  for (int b = 0; b <= stage->op_count; ++b) stage->done[b] = stage->need[b].y0;
  const InnerOp& last = stage->ops[stage->op_count - 1];
  stage->pool_rows = stage->need[last[kOpInput]].y0;
  if (sums != nullptr) memset(sums, 0, sizeof(int32_t) * last[kOpOutputChannels]);
}

// One step of the trailing pool: sum its next input row, or write its output once all
// are summed. Returns the buffer it waits for (-1: it made progress).
int StepPool(Stage* stage, int b, bool compute, int32_t* sums) {
  const InnerOp& op = stage->ops[b - 1];
  const int src = op[kOpInput];
  const Window& in = stage->need[src];
  if (stage->pool_rows < in.y1) {
    if (Pending(*stage, src, stage->pool_rows + 1)) return src;
    if (compute) {
      const View& view = stage->views[src];
      AccumulateRow(view.At(stage->pool_rows, in.x0), in.x1 - in.x0, view.channels, sums);
    }
    ++stage->pool_rows;
    return -1;
  }
  if (compute) {
    const Shape shape = BufferShape(*stage, src);
    int8_t* dst = stage->views[b].At(0, 0);
    if (op[kOpKind] == kKindMean) {
      MeanOutput(op, sums, shape.h * shape.w, dst);
    } else {
      GlobalAveragePoolOutput(op, sums, shape.h * shape.w, dst);
    }
  }
  stage->done[b] = stage->need[b].y1;
  return -1;
}

// Reads the stage input's next row from the row reader (or, planning, sizes its ring).
bool ReadRow(Stage* stage, bool compute) {
  const int y = stage->done[0];
  if (!compute) {
    NoteRingRow(stage, 0, y);
  } else {
    const Shape in = BufferShape(*stage, 0);
    int8_t* dst = stage->views[0].Row(y);
    if (g_reader == nullptr || !g_reader(g_reader_user, y, dst, in.w, in.c)) return false;
  }
  stage->done[0] = y + 1;
  return true;
}

// The pull schedule over one strip: the last op asks for its rows in order; a row whose
// input rows are not all computed yet pushes the first missing input (with the rows it
// needs) onto the pull stack. Only earlier buffers are pushed, so the stack never holds
// more than op_count + 1 entries. With compute false, only the ring sizes are recorded.
// False when the row reader fails.
bool Pull(Stage* stage, bool compute, const TensorRef* inputs, int32_t* sums) {
  const int n = stage->op_count;
  ResetPull(stage, sums);
  int depth = 0;
  stage->pull_buffer[0] = n;
  stage->pull_until[0] = stage->need[n].y1;
  while (depth >= 0) {
    const int b = stage->pull_buffer[depth];
    if (stage->done[b] >= stage->pull_until[depth]) {
      --depth;
      continue;
    }
    if (b == 0) {  // only pushed when the rows come from the reader
      if (!ReadRow(stage, compute)) return false;
      continue;
    }
    const InnerOp& op = stage->ops[b - 1];
    int wanted = -1, until = 0;
    if (IsPool(op)) {
      wanted = StepPool(stage, b, compute, sums);
      until = stage->pool_rows + 1;
    } else {
      const int y = stage->done[b];
      int lo = 0;
      InputRows(op, y, BufferShape(*stage, op[kOpInput]).h, &lo, &until);
      if (Pending(*stage, op[kOpInput], until)) {
        wanted = op[kOpInput];
      } else if (op[kOpKind] == kKindAdd && Pending(*stage, op[kOpInputB], until)) {
        wanted = op[kOpInputB];
      } else {
        if (compute) {
          RunOpRow(*stage, b - 1, y, inputs);
        } else if (b != n) {
          NoteRingRow(stage, b, y);
        }
        stage->done[b] = y + 1;
      }
    }
    if (wanted >= 0) {
      ++depth;
      stage->pull_buffer[depth] = wanted;
      stage->pull_until[depth] = until;
    }
  }
  return true;
}

Window StripWindow(const Stage& stage, int strip) {
  const Shape out = BufferShape(stage, stage.op_count);
  const int strips = stage.header[kHeaderGridCols];
  return {0, out.h, strip * out.w / strips, (strip + 1) * out.w / strips};
}

void SetRingViews(Stage* stage, int8_t* scratch) {
  if (FromReader(*stage)) {  // whole rows, as the reader writes them
    const Shape in = BufferShape(*stage, 0);
    stage->views[0] = {scratch + stage->offset_of_buffer[0], stage->need[0].y0, 0, in.w, in.c,
                       stage->ring_rows[0]};
  }
  for (int b = 1; b < stage->op_count; ++b) {
    const Window& w = stage->need[b];
    stage->views[b] = {scratch + stage->offset_of_buffer[b], w.y0, w.x0, stage->ring_width[b],
                       BufferShape(*stage, b).c, stage->ring_rows[b]};
  }
}

}  // namespace

void SetRowReader(RowReader reader, void* user) {
  g_reader = reader;
  g_reader_user = user;
}

// Ring rows from one strip's schedule (rows do not depend on the strip), ring widths as the
// widest strip's window (the reader's ring: whole input rows), then the scratch: pool sums,
// then each ring in buffer order (the reader's first).
Status PlanStream(Stage* stage) {
  const int n = stage->op_count;
  for (int b = 0; b <= n; ++b) stage->ring_rows[b] = stage->ring_width[b] = 0;
  if (FromReader(*stage)) stage->ring_width[0] = BufferShape(*stage, 0).w;
  for (int s = 0; s < stage->header[kHeaderGridCols]; ++s) {
    ComputeNeeds(stage, StripWindow(*stage, s));
    for (int b = 1; b < n; ++b) {
      const Window& w = stage->need[b];
      if (IsEmpty(w)) return kBadGrid;  // a strip that does not read this buffer at all
      if (w.x1 - w.x0 > stage->ring_width[b]) stage->ring_width[b] = w.x1 - w.x0;
    }
  }
  ComputeNeeds(stage, StripWindow(*stage, 0));
  Pull(stage, false, nullptr, nullptr);
  const InnerOp& last = stage->ops[n - 1];
  int64_t end = IsPool(last) ? int64_t{4} * last[kOpOutputChannels] : 0;
  for (int b = 0; b <= n; ++b) {
    stage->offset_of_buffer[b] = 0;
    if ((b == 0 && !FromReader(*stage)) || b == n) continue;
    stage->offset_of_buffer[b] = static_cast<int32_t>(end);
    end += static_cast<int64_t>(stage->ring_rows[b]) * stage->ring_width[b] *
           BufferShape(*stage, b).c;
    if (end > INT32_MAX) return kBadGeometry;
  }
  stage->scratch_bytes = static_cast<int32_t>(end);
  return kOk;
}

Status RunStream(Stage* stage, const TensorRef* inputs, const TensorRef* output,
                 int8_t* scratch) {
  SetTensorViews(stage, inputs, output);
  int32_t* sums = PoolSums(*stage, scratch);
  for (int s = 0; s < stage->header[kHeaderGridCols]; ++s) {
    ComputeNeeds(stage, StripWindow(*stage, s));
    SetRingViews(stage, scratch);
    if (!Pull(stage, true, inputs, sums)) return kBadRowReader;
  }
  return kOk;
}

}  // namespace patch_stage
}  // namespace tflm_ext
