// Per-row int8 arithmetic of the patch stage's inner ops; see inner_ops.h.
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

// floor(log2(value)) for value >= 1: 63 minus TFLM's CountLeadingZeros of a uint64.
int FloorLog2(uint64_t value) {
  int bits = -1;
  while (value != 0) {
    value >>= 1;
    ++bits;
  }
  return bits;
}

}  // namespace

// One output row of a (possibly grouped) CONV_2D, all output channels.
void ConvRow(const InnerOp& op, const Shape& in_shape, const Rows& in, const Weights& w,
             int oy, int x_begin, int x_end, int8_t* dst) {
  const int kh = op[kOpKernelHeight], kw = op[kOpKernelWidth];
  const int out_c = op[kOpOutputChannels];
  const int group_depth = w.dims[3];
  const int per_group = out_c / (in_shape.c / group_depth);
  const int y_origin = oy * op[kOpStrideHeight] - op[kOpPadTop];
  const int32_t input_offset = -op[kOpInputZeroPoint];
  for (int ox = x_begin; ox < x_end; ++ox, dst += out_c) {
    const int x_origin = ox * op[kOpStrideWidth] - op[kOpPadLeft];
    for (int oc = 0; oc < out_c; ++oc) {
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
}

// One output row of a DEPTHWISE_CONV_2D, all output channels.
void DepthwiseRow(const InnerOp& op, const Shape& in_shape, const Rows& in, const Weights& w,
                  int oy, int x_begin, int x_end, int8_t* dst) {
  const int kh = op[kOpKernelHeight], kw = op[kOpKernelWidth];
  const int out_c = op[kOpOutputChannels], multiplier = op[kOpDepthMultiplier];
  const int y_origin = oy * op[kOpStrideHeight] - op[kOpPadTop];
  const int32_t input_offset = -op[kOpInputZeroPoint];
  for (int ox = x_begin; ox < x_end; ++ox, dst += out_c) {
    const int x_origin = ox * op[kOpStrideWidth] - op[kOpPadLeft];
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
}

void MaxPoolRow(const InnerOp& op, const Shape& in_shape, const Rows& in, int oy, int x_begin,
                int x_end, int8_t* dst) {
  const int kh = op[kOpKernelHeight], kw = op[kOpKernelWidth];
  const int channels = op[kOpOutputChannels];
  const int y_origin = oy * op[kOpStrideHeight] - op[kOpPadTop];
  for (int ox = x_begin; ox < x_end; ++ox, dst += channels) {
    const int x_origin = ox * op[kOpStrideWidth] - op[kOpPadLeft];
    for (int c = 0; c < channels; ++c) {
      int32_t largest = -128;
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = y_origin + ky;
        if (iy < 0 || iy >= in_shape.h) continue;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = x_origin + kx;
          if (ix < 0 || ix >= in_shape.w) continue;
          const int32_t value = in.At(iy, ix)[c];
          largest = value > largest ? value : largest;
        }
      }
      dst[c] = static_cast<int8_t>(Clamp(largest, op[kOpActivationMin], op[kOpActivationMax]));
    }
  }
}

// ADD: both operands rescaled to a common scale, summed, rescaled, pixel by pixel.
void AddRow(const InnerOp& op, const int8_t* a, const int8_t* b, int pixels, int8_t* dst) {
  const int32_t scale_up = int32_t{1} << op[kOpAddLeftShift];
  const int values = pixels * op[kOpOutputChannels];
  for (int i = 0; i < values; ++i) {
    const int32_t shifted_a = (a[i] - op[kOpInputZeroPoint]) * scale_up;
    const int32_t shifted_b = (b[i] - op[kOpInputBZeroPoint]) * scale_up;
    const int32_t sum =
        MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted_a, op[kOpAddInputMultiplier],
                                                       op[kOpAddInputShift]) +
        MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted_b, op[kOpAddInputBMultiplier],
                                                       op[kOpAddInputBShift]);
    const int32_t result = MultiplyByQuantizedMultiplierSmallerThanOneExp(
                               sum, op[kOpAddOutputMultiplier], op[kOpAddOutputShift]) +
                           op[kOpOutputZeroPoint];
    dst[i] = static_cast<int8_t>(Clamp(result, op[kOpActivationMin], op[kOpActivationMax]));
  }
}

void PadRow(const InnerOp& op, const Shape& in_shape, const int8_t* in_row, int in_x0,
            int x_begin, int x_end, int8_t* dst) {
  const size_t channels = static_cast<size_t>(in_shape.c);
  for (int ox = x_begin; ox < x_end; ++ox, dst += channels) {
    const int ix = ox - op[kOpPadLeft];
    if (in_row != nullptr && ix >= 0 && ix < in_shape.w) {
      memcpy(dst, in_row + static_cast<ptrdiff_t>(ix - in_x0) * in_shape.c, channels);
    } else {
      memset(dst, op[kOpOutputZeroPoint], channels);
    }
  }
}

void AccumulateRow(const int8_t* in_row, int pixels, int channels, int32_t* sums) {
  for (int x = 0; x < pixels; ++x, in_row += channels) {
    for (int c = 0; c < channels; ++c) sums[c] += in_row[c];
  }
}

// AVERAGE_POOL_2D whose window covers the whole input: TFLM's rounding to nearest of the
// sum over the count, then the fused activation's bounds.
void GlobalAveragePoolOutput(const InnerOp& op, const int32_t* sums, int count, int8_t* dst) {
  for (int c = 0; c < op[kOpOutputChannels]; ++c) {
    int32_t acc = sums[c];
    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    dst[c] = static_cast<int8_t>(Clamp(acc, op[kOpActivationMin], op[kOpActivationMax]));
  }
}

// MEAN over height and width: TFLM's QuantizedMeanOrSum folds 1/count into the multiplier
// (shifted up by floor(log2(count)), at most 32 and at most 31 + shift), then requantizes
// the zero-point-corrected sum.
void MeanOutput(const InnerOp& op, const int32_t* sums, int count, int8_t* dst) {
  int32_t multiplier = op[kOpRequantMultiplier];
  int shift = op[kOpRequantShift];
  int up = FloorLog2(static_cast<uint64_t>(count));
  up = up < 32 ? up : 32;
  up = up < 31 + shift ? up : 31 + shift;
  multiplier = static_cast<int32_t>((static_cast<int64_t>(multiplier) << up) / count);
  shift -= up;
  for (int c = 0; c < op[kOpOutputChannels]; ++c) {
    const int32_t centred = sums[c] - op[kOpInputZeroPoint] * count;
    const int32_t value =
        MultiplyByQuantizedMultiplier(centred, multiplier, shift) + op[kOpOutputZeroPoint];
    dst[c] = static_cast<int8_t>(Clamp(value, -128, 127));
  }
}

}  // namespace patch_stage
}  // namespace tflm_ext
