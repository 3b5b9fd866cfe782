// The tile execution of TFLM_EXT_PATCH_STAGE: scratch layout and tile-by-tile evaluation.
// See patch_stage.h for the contract; tflm_ext/receptive_field.py (grid_cost,
// scratch_layout) computes the same scratch for the planner.
#include "stage_internal.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

Window TileWindow(const Stage& stage, int row, int col) {
  const Shape out = BufferShape(stage, stage.op_count);
  const int rows = stage.header[kHeaderGridRows];
  const int cols = stage.header[kHeaderGridCols];
  return {row * out.h / rows, (row + 1) * out.h / rows, col * out.w / cols,
          (col + 1) * out.w / cols};
}

// For each intermediate buffer, the last op reading it (the op writing it if none does).
void FindLastUses(Stage* stage) {
  const int n = stage->op_count;
  for (int b = 1; b <= n; ++b) stage->last_use[b] = b - 1;
  stage->last_use[0] = 0;
  for (int i = 0; i < n; ++i) {
    const InnerOp& op = stage->ops[i];
    stage->last_use[op[kOpInput]] = i;
    if (op[kOpKind] == kKindAdd) stage->last_use[op[kOpInputB]] = i;
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
  bool placed[kMaxTileOps + 1] = {};
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

void SetWindowViews(Stage* stage, int8_t* scratch) {
  for (int b = 1; b < stage->op_count; ++b) {
    const Window& w = stage->need[b];
    stage->views[b] = {scratch + stage->offset_of_buffer[b], w.y0, w.x0, w.x1 - w.x0,
                       BufferShape(*stage, b).c, 0};
  }
}

}  // namespace

// Lays out the scratch: the smaller of FirstFit's two orders (ties: largest first).
Status PlanTiles(Stage* stage) {
  FindLastUses(stage);
  int64_t window[kMaxTileOps + 1];
  LargestWindows(stage, window);
  int64_t by_size[kMaxTileOps + 1] = {}, by_op[kMaxTileOps + 1] = {};
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

void RunTiles(Stage* stage, const TensorRef* inputs, const TensorRef* output, int8_t* scratch) {
  SetTensorViews(stage, inputs, output);
  for (int r = 0; r < stage->header[kHeaderGridRows]; ++r) {
    for (int c = 0; c < stage->header[kHeaderGridCols]; ++c) {
      ComputeNeeds(stage, TileWindow(*stage, r, c));
      SetWindowViews(stage, scratch);
      for (int i = 0; i < stage->op_count; ++i) {
        const Window& w = stage->need[i + 1];
        if (IsEmpty(w)) continue;
        for (int oy = w.y0; oy < w.y1; ++oy) RunOpRow(*stage, i, oy, inputs);
      }
    }
  }
}

}  // namespace patch_stage
}  // namespace tflm_ext
