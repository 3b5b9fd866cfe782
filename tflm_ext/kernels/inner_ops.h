// Per-row arithmetic of the inner ops of TFLM_EXT_PATCH_STAGE (CONV_2D, DEPTHWISE_CONV_2D,
// MAX_POOL_2D, ADD, PAD, global AVERAGE_POOL_2D and MEAN), bit-exact with TFLM's int8
// reference kernels.
// Internal to the kernel core (patch_stage.cc, tile_stage.cc, stream_stage.cc), which
// decides which rows of which window to compute; free of TFLM types.
#ifndef TFLM_EXT_KERNELS_INNER_OPS_H_
#define TFLM_EXT_KERNELS_INNER_OPS_H_

#include <stddef.h>
#include <stdint.h>

#include "patch_stage.h"

namespace tflm_ext {
namespace patch_stage {

struct Shape {
  int h, w, c;
};

// A buffer's storage: a full tensor (origin 0, full width), one tile window in the scratch,
// or a ring of rows (row y in slot (y - y0) % ring_rows).
struct View {
  int8_t* data;
  int y0, x0, row_pixels, channels;
  int ring_rows;  // 0: not a ring
  int8_t* Row(int y) const {
    int slot = y - y0;
    if (ring_rows > 0) slot %= ring_rows;
    return data + static_cast<ptrdiff_t>(slot) * row_pixels * channels;
  }
  int8_t* At(int y, int x) const {
    return Row(y) + static_cast<ptrdiff_t>(x - x0) * channels;
  }
};

// The input rows one output row of a convolution reads: row[i] holds input row y_first + i
// from column x0 on (unused entries for rows outside the image).
struct Rows {
  const int8_t* const* row;
  int y_first, x0, channels;
  const int8_t* At(int y, int x) const {
    return row[y - y_first] + static_cast<ptrdiff_t>(x - x0) * channels;
  }
};

// The four constant inputs of a CONV_2D or DEPTHWISE_CONV_2D.
struct Weights {
  const int8_t* filter;
  const int32_t* dims;  // conv [out_c, kh, kw, in_c per group]; depthwise [1, kh, kw, out_c]
  const int32_t* bias;
  const int32_t* multiplier;
  const int32_t* shift;
};

// Each writes output pixels [x_begin, x_end) of output row oy, all channels, to dst (pixel
// x_begin). Padding pixels (outside the input image) contribute nothing to a convolution
// and are the zero point in PAD.
void ConvRow(const InnerOp& op, const Shape& in_shape, const Rows& in, const Weights& w,
             int oy, int x_begin, int x_end, int8_t* dst);
void DepthwiseRow(const InnerOp& op, const Shape& in_shape, const Rows& in, const Weights& w,
                  int oy, int x_begin, int x_end, int8_t* dst);
// MAX_POOL_2D: the largest input value in the window (padding pixels are not candidates),
// clamped to the fused activation; no rescaling, as in TFLM.
void MaxPoolRow(const InnerOp& op, const Shape& in_shape, const Rows& in, int oy, int x_begin,
                int x_end, int8_t* dst);
void AddRow(const InnerOp& op, const int8_t* a, const int8_t* b, int pixels, int8_t* dst);
// in_row: input row oy - pad_top from column in_x0 on, or null when that row is padding.
void PadRow(const InnerOp& op, const Shape& in_shape, const int8_t* in_row, int in_x0,
            int x_begin, int x_end, int8_t* dst);

// Global pools: sums[c] += every input value of channel c in one row, then the output.
void AccumulateRow(const int8_t* in_row, int pixels, int channels, int32_t* sums);
void GlobalAveragePoolOutput(const InnerOp& op, const int32_t* sums, int count, int8_t* dst);
void MeanOutput(const InnerOp& op, const int32_t* sums, int count, int8_t* dst);

}  // namespace patch_stage
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_INNER_OPS_H_
