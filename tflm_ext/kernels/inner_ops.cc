// Per-pixel int8 arithmetic of the patch stage's inner ops; see inner_ops.h.
#include "inner_ops.h"

#include <string.h>

#include "requantize.h"

namespace tflm_ext {
namespace patch_stage {
namespace {

using requantize::Clamp;
using requantize::MultiplyByQuantizedMultiplier;
using requantize::MultiplyByQuantizedMultiplierSmallerThanOneExp;

int8_t Requantize(int32_t acc, const InnerOp& op, const Weights& w, int channel) {
  acc += w.bias[channel];
  acc = MultiplyByQuantizedMultiplier(acc, w.multiplier[channel], w.shift[channel]);
  acc += op[kOpOutputZeroPoint];
  return static_cast<int8_t>(Clamp(acc, op[kOpActivationMin], op[kOpActivationMax]));
}

}  // namespace

// One output pixel of a (possibly grouped) CONV_2D, all output channels.
void ConvPixel(const InnerOp& op, const Shape& in_shape, const View& in, const Weights& w,
               int oy, int ox, int8_t* dst) {
  const int kh = op[kOpKernelHeight], kw = op[kOpKernelWidth];
  const int group_depth = w.dims[3];
  const int per_group = op[kOpOutputChannels] / (in_shape.c / group_depth);
  const int y_origin = oy * op[kOpStrideHeight] - op[kOpPadTop];
  const int x_origin = ox * op[kOpStrideWidth] - op[kOpPadLeft];
  const int32_t input_offset = -op[kOpInputZeroPoint];
  for (int oc = 0; oc < op[kOpOutputChannels]; ++oc) {
    const int first_channel = (oc / per_group) * group_depth;
    int32_t acc = 0;
    for (int ky = 0; ky < kh; ++ky) {
      const int iy = y_origin + ky * op[kOpDilationHeight];
      if (iy < 0 || iy >= in_shape.h) continue;  // padding contributes zero
      for (int kx = 0; kx < kw; ++kx) {
        const int ix = x_origin + kx * op[kOpDilationWidth];
        if (ix < 0 || ix >= in_shape.w) continue;
        const int8_t* src = in.At(iy, ix) + first_channel;
        const int8_t* filter = w.filter + ((oc * kh + ky) * kw + kx) * group_depth;
        for (int ic = 0; ic < group_depth; ++ic) {
          acc += static_cast<int32_t>(filter[ic]) * (src[ic] + input_offset);
        }
      }
    }
    dst[oc] = Requantize(acc, op, w, oc);
  }
}

// One output pixel of a DEPTHWISE_CONV_2D, all output channels.
void DepthwisePixel(const InnerOp& op, const Shape& in_shape, const View& in, const Weights& w,
                    int oy, int ox, int8_t* dst) {
  const int kh = op[kOpKernelHeight], kw = op[kOpKernelWidth];
  const int out_c = op[kOpOutputChannels], multiplier = op[kOpDepthMultiplier];
  const int y_origin = oy * op[kOpStrideHeight] - op[kOpPadTop];
  const int x_origin = ox * op[kOpStrideWidth] - op[kOpPadLeft];
  const int32_t input_offset = -op[kOpInputZeroPoint];
  for (int oc = 0; oc < out_c; ++oc) {
    const int ic = oc / multiplier;
    int32_t acc = 0;
    for (int ky = 0; ky < kh; ++ky) {
      const int iy = y_origin + ky * op[kOpDilationHeight];
      if (iy < 0 || iy >= in_shape.h) continue;
      for (int kx = 0; kx < kw; ++kx) {
        const int ix = x_origin + kx * op[kOpDilationWidth];
        if (ix < 0 || ix >= in_shape.w) continue;
        const int32_t value = in.At(iy, ix)[ic] + input_offset;
        acc += static_cast<int32_t>(w.filter[(ky * kw + kx) * out_c + oc]) * value;
      }
    }
    dst[oc] = Requantize(acc, op, w, oc);
  }
}

// One output pixel of ADD: both operands rescaled to a common scale, summed, rescaled.
void AddPixel(const InnerOp& op, const int8_t* a, const int8_t* b, int8_t* dst) {
  const int32_t scale_up = int32_t{1} << op[kOpAddLeftShift];
  for (int c = 0; c < op[kOpOutputChannels]; ++c) {
    const int32_t shifted_a = (a[c] - op[kOpInputZeroPoint]) * scale_up;
    const int32_t shifted_b = (b[c] - op[kOpInputBZeroPoint]) * scale_up;
    const int32_t sum =
        MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted_a, op[kOpAddInputMultiplier],
                                                       op[kOpAddInputShift]) +
        MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted_b, op[kOpAddInputBMultiplier],
                                                       op[kOpAddInputBShift]);
    const int32_t result = MultiplyByQuantizedMultiplierSmallerThanOneExp(
                               sum, op[kOpAddOutputMultiplier], op[kOpAddOutputShift]) +
                           op[kOpOutputZeroPoint];
    dst[c] = static_cast<int8_t>(Clamp(result, op[kOpActivationMin], op[kOpActivationMax]));
  }
}

void PadPixel(const InnerOp& op, const Shape& in_shape, const View& in, int oy, int ox,
              int8_t* dst) {
  const int iy = oy - op[kOpPadTop], ix = ox - op[kOpPadLeft];
  if (iy >= 0 && iy < in_shape.h && ix >= 0 && ix < in_shape.w) {
    memcpy(dst, in.At(iy, ix), static_cast<size_t>(in_shape.c));
  } else {
    memset(dst, op[kOpOutputZeroPoint], static_cast<size_t>(in_shape.c));
  }
}

}  // namespace patch_stage
}  // namespace tflm_ext
