// Internal interface of the TFLM_EXT_PATCH_STAGE core, shared by its files and by nothing
// else: geometry and one-row-of-one-op evaluation (stage_rows.cc), the tile execution
// (tile_stage.cc) and the streaming execution (stream_stage.cc). Free of TFLM types.
#ifndef TFLM_EXT_KERNELS_STAGE_INTERNAL_H_
#define TFLM_EXT_KERNELS_STAGE_INTERNAL_H_

#include "inner_ops.h"
#include "patch_stage.h"

namespace tflm_ext {
namespace patch_stage {

// --- stage_rows.cc -----------------------------------------------------------------------

bool IsEmpty(const Window& w);
Shape BufferShape(const Stage& stage, int buffer);
bool IsWeighted(const InnerOp& op);
bool IsPool(const InnerOp& op);  // a global pool
bool IsWindowedKind(int32_t kind);  // reads a kernel window: CONV, DEPTHWISE, MAX_POOL
bool IsWindowed(const InnerOp& op);
bool IsStream(const Stage& stage);
// Rows (or columns) of a convolution's input that it reads: its window's reach.
int Reach(const InnerOp& op);

// The window of op's input that its output window reads, clipped to the image.
Window InputWindow(const InnerOp& op, const Window& out, const Shape& in);

// Walks backwards from a window of the stage output: need[b] becomes the window of buffer b
// that it reads (the union over b's consumers).
void ComputeNeeds(Stage* stage, const Window& out);

// The full stage input and output tensors as views; intermediate views are set by the
// executions.
void SetTensorViews(Stage* stage, const TensorRef* inputs, const TensorRef* output);

// Computes row oy of inner op index, over the columns need[index + 1] holds, from the
// buffers' views (not for global pools).
void RunOpRow(const Stage& stage, int index, int oy, const TensorRef* inputs);

// --- tile_stage.cc -----------------------------------------------------------------------

Status PlanTiles(Stage* stage);
void RunTiles(Stage* stage, const TensorRef* inputs, const TensorRef* output, int8_t* scratch);

// --- stream_stage.cc ---------------------------------------------------------------------

Status PlanStream(Stage* stage);
Status RunStream(Stage* stage, const TensorRef* inputs, const TensorRef* output,
                 int8_t* scratch);

}  // namespace patch_stage
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_STAGE_INTERNAL_H_
