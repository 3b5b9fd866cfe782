// Per-pixel arithmetic of the inner ops of TFLM_EXT_PATCH_STAGE (CONV_2D, DEPTHWISE_CONV_2D,
// ADD, PAD), bit-exact with TFLM's int8 reference kernels. Internal to patch_stage.cc, which
// decides which pixels of which window to compute; free of TFLM types.
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

// A buffer's storage: a full tensor (origin 0, full width) or one tile window in the scratch.
struct View {
  int8_t* data;
  int y0, x0, row_pixels, channels;
  int8_t* At(int y, int x) const {
    return data + (static_cast<ptrdiff_t>(y - y0) * row_pixels + (x - x0)) * channels;
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

// Each writes all output channels of output pixel (oy, ox) to dst. Padding pixels (outside
// the input image) contribute nothing to a convolution and are the zero point in PAD.
void ConvPixel(const InnerOp& op, const Shape& in_shape, const View& in, const Weights& w,
               int oy, int ox, int8_t* dst);
void DepthwisePixel(const InnerOp& op, const Shape& in_shape, const View& in,
                    const Weights& w, int oy, int ox, int8_t* dst);
void AddPixel(const InnerOp& op, const int8_t* a, const int8_t* b, int8_t* dst);
void PadPixel(const InnerOp& op, const Shape& in_shape, const View& in, int oy, int ox,
              int8_t* dst);

}  // namespace patch_stage
}  // namespace tflm_ext

#endif  // TFLM_EXT_KERNELS_INNER_OPS_H_
